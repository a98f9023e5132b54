"""Writes the PyTorch side of the segkd models parity test into OUTDIR.

For each case (PSPNet-R18, PSPNet-R50, DeepLabV3-R18, all output stride 8, 5 classes):
  <case>.pth     torch.save(model.state_dict()) of random weights (an OrderedDict, BN statistics random too)
  <case>_io.pth  {"input", "logits", "aux_logits"}: eval-mode outputs at head resolution on a 2x3x33x45 input
and psp_r18_mmseg.pth: {"meta": {...}, "state_dict": ..., "optimizer": ...} as mmseg checkpoints are, with
Python objects in meta that a C++ reader cannot build (numpy arrays, datetime, a set, a user class);
psp_r18_legacy.pth and psp_r18_mmseg_legacy.pth: the same in the pre-1.6 (non-zip) torch.save format.

Usage: /usr/bin/python3 gen_reference.py OUTDIR
"""
import collections
import datetime
import os
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import reference  # noqa: E402

CASES = {"psp_r18": ("pspnet", 18), "psp_r50": ("pspnet", 50), "dlv3_r18": ("deeplabv3", 18)}
NUM_CLASSES = 5


class RunInfo:
    """Stands for the arbitrary objects mmcv puts into checkpoint metadata."""

    def __init__(self):
        self.host = "node17"
        self.iters = 80000


def main(outdir):
    torch.set_num_threads(1)
    os.makedirs(outdir, exist_ok=True)
    for seed, (case, (arch, depth)) in enumerate(CASES.items()):
        generator = torch.Generator().manual_seed(100 + seed)
        model = reference.EncoderDecoder(arch, depth, NUM_CLASSES)
        reference.randomize(model, generator)
        model.eval()
        images = torch.randn(2, 3, 33, 45, generator=generator)
        with torch.no_grad():
            logits, aux = model(images)
        state = model.state_dict()
        assert isinstance(state, collections.OrderedDict)
        torch.save(state, os.path.join(outdir, f"{case}.pth"))
        torch.save({"input": images, "logits": logits, "aux_logits": aux}, os.path.join(outdir, f"{case}_io.pth"))
        if case == "psp_r18":
            meta = {
                "mmseg_version": "0.30.0",
                "CLASSES": ("road", "sidewalk", "building", "wall", "fence"),
                "PALETTE": [[128, 64, 128], [244, 35, 232], [70, 70, 70], [102, 102, 156], [190, 153, 153]],
                "time": datetime.datetime(2023, 1, 2, 3, 4, 5),
                "seed": np.int64(42),
                "hist": np.arange(6, dtype=np.float32).reshape(2, 3),
                "tags": {"teacher", "cityscapes"},
                "run": RunInfo(),
                "hook_msgs": {"last_ckpt": "iter_80000.pth", "best_score": 0.7976},
                "iter": 80000,
            }
            optimizer = {"state": {}, "param_groups": [{"lr": 1e-4, "momentum": 0.9, "params": [0, 1, 2]}]}
            checkpoint = {"meta": meta, "state_dict": state, "optimizer": optimizer}
            torch.save(checkpoint, os.path.join(outdir, "psp_r18_mmseg.pth"))
            # The format of torch.save before PyTorch 1.6 (older model-zoo and ImageNet files use it).
            torch.save(state, os.path.join(outdir, "psp_r18_legacy.pth"), _use_new_zipfile_serialization=False)
            torch.save(checkpoint, os.path.join(outdir, "psp_r18_mmseg_legacy.pth"),
                       _use_new_zipfile_serialization=False)
    print("wrote", ", ".join(CASES), "to", outdir)


if __name__ == "__main__":
    main(sys.argv[1])
