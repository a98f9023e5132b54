"""Loads a segkd write_pth export into the Python reference model with strict=True and checks its logits.

Usage: /usr/bin/python3 check_export.py OUTDIR CASE
Reads OUTDIR/CASE_export.pth (written by segkd) and OUTDIR/CASE_io.pth (written by gen_reference.py). Exits 0
when the export loads strictly as a dict of tensors and reproduces the reference logits; 1 otherwise.
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gen_reference  # noqa: E402
import reference  # noqa: E402


def main(outdir, case):
    torch.set_num_threads(1)
    arch, depth = gen_reference.CASES[case]
    state = torch.load(os.path.join(outdir, f"{case}_export.pth"))
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        print(f"{case}: export is {type(state).__name__}, not a dict of tensors")
        return 1
    model = reference.EncoderDecoder(arch, depth, gen_reference.NUM_CLASSES)
    model.load_state_dict(state, strict=True)  # raises on any missing/unexpected/mis-shaped key
    model.eval()
    io = torch.load(os.path.join(outdir, f"{case}_io.pth"))
    with torch.no_grad():
        logits, aux = model(io["input"])
    for name, got, want in (("logits", logits, io["logits"]), ("aux_logits", aux, io["aux_logits"])):
        err = (got - want).abs().max().item() / want.abs().max().item()
        print(f"{case} {name}: max error relative to max |ref| = {err:.3g}")
        if err > 1e-6:
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
