#!/usr/bin/python3
"""Writes the seed corpus of the fuzz targets: the crafted files of the unit tests, plus a valid file of each kind.

Run with Debian's /usr/bin/python3 (needs h5py): /usr/bin/python3 tests/fuzz/make_corpus.py
Names say what a reader must do with them: good_* load, bad_* end in a one-line segkd error (test_fuzz_corpus).
"""
import os
import struct
import zipfile

import h5py
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))


def p_str(s):
    b = s.encode()
    return b"\x8c" + bytes([len(b)]) + b


def p_int(v):
    return b"\x8a\x08" + struct.pack("<q", v)


def p_u32(op, v):
    return op + struct.pack("<I", v)


def p_tuple(values):
    return b"(" + b"".join(p_int(v) for v in values) + b"t"


def tensor_pickle(numel, offset, size, stride):
    pk = b"\x80\x02}(" + p_str("w") + b"ctorch._utils\n_rebuild_tensor_v2\n("
    pk += b"(" + p_str("storage") + b"ctorch\nFloatStorage\n" + p_str("0") + p_str("cpu") + p_int(numel) + b"tQ"
    pk += p_int(offset) + p_tuple(size) + p_tuple(stride) + b"\x89N" + b"tRu."
    return pk


def write_zip(name, pickle, storage_bytes=0):
    with zipfile.ZipFile(os.path.join(HERE, "corpus", "pth", name), "w", zipfile.ZIP_STORED) as z:
        z.writestr("archive/data.pkl", pickle)
        z.writestr("archive/data/0", bytes(storage_bytes))
        z.writestr("archive/version", "3\n")


def pth_corpus():
    write_zip("good_view.pth", tensor_pickle(6, 2, [2, 2], [2, 1]), 24)
    write_zip("bad_offset.pth", tensor_pickle(6, 5, [2, 2], [2, 1]), 24)
    write_zip("bad_offset_wraps.pth", tensor_pickle(6, 2**63 - 2, [4], [1]), 24)
    write_zip("bad_size_overflow.pth", tensor_pickle(6, 0, [2**62, 4], [4, 1]), 24)
    write_zip("bad_numel_overflow.pth", tensor_pickle(2**62, 0, [1], [1]), 24)
    write_zip("bad_negative_size.pth", tensor_pickle(6, 0, [-1], [1]), 24)
    write_zip("bad_deep_lists.pth", b"\x80\x02" + b"]" * 20000 + b"a" * 19999 + b".")
    chain = b"\x80\x02]]" + p_u32(b"r", 0) + b"a" + p_u32(b"j", 0)
    chain += (b"]" + p_u32(b"r", 0) + b"a0" + p_u32(b"j", 0)) * 5000 + b"0."
    write_zip("bad_memo_chain.pth", chain)
    write_zip("bad_memo_put.pth", b"\x80\x02]pabc\n.")
    write_zip("bad_memo_get.pth", b"\x80\x02]g\n.")
    write_zip("bad_truncated_pickle.pth", tensor_pickle(6, 0, [6], [1])[:40], 24)


def write_h5(name, index):
    """A segkd format-1 file with two 4x4 samples and the given /index rows."""
    with h5py.File(os.path.join(HERE, "corpus", "h5", name), "w") as f:
        f.attrs["segkd_format"] = np.int64(1)
        f.attrs["num_classes"] = np.int64(3)
        f.attrs["ignore_index"] = np.int64(255)
        f.attrs.create("class_names", ["a", "b", "c"], dtype=h5py.string_dtype())
        f.attrs["palette"] = np.array([[0, 0, 0], [255, 0, 0], [0, 255, 0]], dtype=np.uint8)
        f["images"] = np.arange(2 * 4 * 4 * 3, dtype=np.uint8)
        f["labels"] = (np.arange(2 * 4 * 4) % 3).astype(np.uint8)
        f["index"] = np.array(index, dtype=np.int64)
        f.create_dataset("names", data=["s0", "s1"], dtype=h5py.string_dtype())


def h5_corpus():
    write_h5("good.h5", [[0, 0, 4, 4], [48, 16, 4, 4]])
    write_h5("bad_index_wraps_to_zero.h5", [[0, 0, 4, 4], [0, 0, 2**32, 2**32]])
    write_h5("bad_index_overflows_int64.h5", [[0, 0, 4, 4], [0, 0, 3 << 60, 1]])
    write_h5("bad_index_offset_near_max.h5", [[0, 0, 4, 4], [2**63 - 11, 0, 4, 4]])
    write_h5("bad_index_negative.h5", [[0, 0, 4, 4], [-48, 0, 4, 4]])


if __name__ == "__main__":
    pth_corpus()
    h5_corpus()
