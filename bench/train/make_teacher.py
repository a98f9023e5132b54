#!/usr/bin/python3
"""Writes a randomly initialised mmseg-layout PSPNet as a torch.save state_dict (an OrderedDict) for benchmarks."""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tests", "parity", "models"))
import reference  # noqa: E402

depth, classes, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
torch.manual_seed(0)
model = reference.EncoderDecoder("pspnet", depth, classes)
reference.randomize(model, torch.Generator().manual_seed(0))
torch.save(model.state_dict(), out)
