#!/usr/bin/python3
"""PyTorch peer of bench_losses: times the reference implementations of every loss term
(tests/parity/losses/losses_ref.py) forward + backward at the same shapes, so bench_losses can print segkd's cost
next to PyTorch's measured in the same run.

Usage: /usr/bin/python3 bench_losses_peer.py --scale S --batch N --iters K --threads T
Prints one line per term: "PEER <name>\t<ms per iteration>" (names as in bench_losses).
"""
import argparse
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "parity", "losses"))
import losses_ref as ref  # noqa: E402

STRIDES = {"layer1": 4, "layer2": 8, "layer3": 8, "layer4": 8, "head": 8}
STUDENT = {"layer1": 64, "layer2": 128, "layer3": 256, "layer4": 512, "head": 128}
TEACHER = {"layer1": 256, "layer2": 512, "layer3": 1024, "layer4": 2048, "head": 512}


def opts(kind, **kw):
    o = {"type": kind, "tau": 1.0, "resolution": "logits", "mask_ignore": False, "student": ["layer4"],
         "teacher": ["layer4"], "normalize": "none", "projector": "conv1x1", "on": "logits", "pool_kernel": 2,
         "beta": 1.0, "gamma": 1.0, "ignore_index": 255}
    o.update(kw)
    return o


CASES = [
    ("logit (tau 1)", opts("logit")),
    ("logit (label res, mask)", opts("logit", resolution="label", mask_ignore=True)),
    ("feature layer4 conv1x1", opts("feature")),
    ("feature head conv1x1_bn", opts("feature", student=["head"], teacher=["head"], projector="conv1x1_bn")),
    ("cwd logits (tau 4)", opts("cwd", tau=4.0)),
    ("cwd head feature", opts("cwd", on="feature", student=["head"], teacher=["head"], tau=4.0)),
    ("pairwise head (k 2)", opts("pairwise", student=["head"], teacher=["head"])),
    ("ifvd head", opts("ifvd", student=["head"], teacher=["head"])),
    ("at layer1..4", opts("at", student=["layer1", "layer2", "layer3", "layer4"],
                          teacher=["layer1", "layer2", "layer3", "layer4"])),
    ("dist (tau 1)", opts("dist")),
]


def outputs(n, h, w, classes, channels, grad):
    out = {"logits": torch.randn(n, classes, h // 8, w // 8) * 2}
    for name, c in channels.items():
        out[name] = torch.randn(n, c, h // STRIDES[name], w // STRIDES[name])
    if grad:
        for v in out.values():
            v.requires_grad_(True)
    return out


def projector_params(o):
    params = {}
    pairs = list(zip(o["student"], o["teacher"])) if o["type"] in ("feature", "cwd") else []
    if o["type"] == "cwd" and o["on"] == "logits":
        pairs = []
    k = 0
    for sn, tn in pairs:
        cs, ct = STUDENT[sn], TEACHER[tn]
        if o["type"] == "cwd" and cs == ct:
            continue
        conv = torch.nn.Conv2d(cs, ct, 1, bias=o["projector"] == "conv1x1")
        params["proj.%d.0.weight" % k] = conv.weight
        if conv.bias is not None:
            params["proj.%d.0.bias" % k] = conv.bias
        else:
            params["proj.%d.1.weight" % k] = torch.ones(ct, requires_grad=True)
            params["proj.%d.1.bias" % k] = torch.zeros(ct, requires_grad=True)
        k += 1
    return params


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--scale", type=float, default=0.25)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    h, w, classes = int(512 * a.scale), int(1024 * a.scale), 19
    label = torch.randint(classes, (a.batch, h, w))
    label[torch.rand(a.batch, h, w) < 0.1] = 255
    teacher = outputs(a.batch, h, w, classes, TEACHER, grad=False)

    def time_it(fn):
        ms = []
        for i in range(a.iters + 2):
            student = outputs(a.batch, h, w, classes, STUDENT, grad=True)
            start = time.perf_counter()
            fn(student).backward()
            if i >= 2:
                ms.append((time.perf_counter() - start) * 1e3)
        return sorted(ms)[len(ms) // 2]

    print("PEER %s\t%.3f" % ("ce (task loss)", time_it(lambda s: ref.seg_ce(s["logits"], label, 255))))
    for name, o in CASES:
        params = projector_params(o)
        ms = time_it(lambda s: ref.compute(o, s, teacher, label, params, None))
        print("PEER %s\t%.3f" % (name, ms))


if __name__ == "__main__":
    main()
