#!/usr/bin/python3
"""PyTorch peer of a segkd KD training step: DDP (gloo) over MPI-launched ranks, the same mmseg-layout PSPNets
(tests/parity/models/reference.py), CE + 0.4 aux CE + pixel-wise logit KD, SGD with momentum.

Launch with mpirun (torchrun fails on Debian's Python 3.11); prints global images/s over the timed iterations.
Inputs are pre-generated random tensors, so the peer pays nothing for data loading (segkd does).
"""
import argparse
import os
import sys
import time

import torch
import torch.distributed as dist
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tests", "parity", "models"))
import reference  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--student", type=int, default=18)
    p.add_argument("--teacher", type=int, default=101)
    p.add_argument("--crop", type=int, nargs=2, default=[128, 256])
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--classes", type=int, default=19)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--tau", type=float, default=1.0)
    p.add_argument("--port", type=int, default=29517)
    p.add_argument("--phases", action="store_true",
                   help="also print ms per phase (teacher forward, student forward, loss, backward incl. DDP "
                        "all-reduce, optimizer), the same split as segkd's metrics.jsonl")
    a = p.parse_args()

    rank = int(os.environ.get("OMPI_COMM_WORLD_RANK", "0"))
    world = int(os.environ.get("OMPI_COMM_WORLD_SIZE", "1"))
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", str(a.port))
    dist.init_process_group("gloo", rank=rank, world_size=world)

    torch.manual_seed(0)
    student = reference.EncoderDecoder("pspnet", a.student, a.classes)
    teacher = reference.EncoderDecoder("pspnet", a.teacher, a.classes).eval()
    for q in teacher.parameters():
        q.requires_grad_(False)
    model = torch.nn.parallel.DistributedDataParallel(student)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    h, w = a.crop
    g = torch.Generator().manual_seed(rank)
    images = torch.randn(a.batch, 3, h, w, generator=g)
    labels = torch.randint(0, a.classes, (a.batch, h, w), generator=g)

    phases = {k: 0.0 for k in ("teacher_forward", "student_forward", "loss", "backward", "optimizer")}
    clock = [time.perf_counter()]

    def mark(name):
        now = time.perf_counter()
        phases[name] += now - clock[0]
        clock[0] = now

    def step():
        clock[0] = time.perf_counter()
        with torch.no_grad():
            t_logits, _ = teacher(images)
        mark("teacher_forward")
        logits, aux = model(images)
        mark("student_forward")
        up = lambda x: F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)  # noqa: E731
        loss = F.cross_entropy(up(logits), labels, ignore_index=255) + 0.4 * F.cross_entropy(up(aux), labels, ignore_index=255)
        s = F.log_softmax(logits / a.tau, dim=1)
        t = F.softmax(t_logits / a.tau, dim=1)
        kd = (t * (torch.log(t + 1e-12) - s)).sum(1).mean() * a.tau ** 2
        loss = loss + kd
        mark("loss")
        opt.zero_grad()
        loss.backward()
        mark("backward")
        opt.step()
        mark("optimizer")

    for _ in range(a.warmup):
        step()
    dist.barrier()
    for k in phases:
        phases[k] = 0.0
    t0 = time.perf_counter()
    for _ in range(a.iters):
        step()
    dist.barrier()
    elapsed = time.perf_counter() - t0
    if rank == 0:
        print(f"pytorch_images_per_s {a.iters * a.batch * world / elapsed:.3f}")
        if a.phases:
            print("pytorch_ms_per_step " + " ".join(f"{k} {1000 * v / a.iters:.0f}" for k, v in phases.items()))
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
