#!/usr/bin/env bash
# Train-step benchmark: segkd vs a PyTorch DDP peer on the same KD step (PSPNet-R18 student, PSPNet-R101 teacher,
# logit KD, 19 classes, Cityscapes 512x1024 crop scaled to 128x256, batch 2 per rank, 2 ranks x 1 thread), measured
# in the same run. segkd reads and augments real HDF5 samples; the peer uses pre-generated tensors.
# Usage: bench/train/run.sh [BUILD_DIR] [ITERS]
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${1:-build}
ITERS=${2:-10}
WARM=3
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
W=$(mktemp -d /tmp/segkd-bench-train-XXXXXX)
trap 'rm -rf "$W"' EXIT
"$BUILD/segkd" synth --out "$W/train.h5" --num 64 --size 160x288 --classes 19 --seed 1 >/dev/null
/usr/bin/python3 bench/train/make_teacher.py 101 19 "$W/teacher.pth"
cat > "$W/bench.toml" <<TOML
[run]
name = "bench_train_step"
work_dir = "$W/run"
threads = 1
[data]
train = ["$W/train.h5"]
num_classes = 19
crop = [128, 256]
batch_per_rank = 2
workers = 1
[student]
arch = "pspnet"
backbone = "resnet18_v1c"
sync_bn = false        # the PyTorch peer cannot use SyncBatchNorm on CPU
[teacher]
arch = "pspnet"
backbone = "resnet101_v1c"
weights = "$W/teacher.pth"
concurrent = false
[[distill]]
type = "logit"
[schedule]
iterations = $((WARM + ITERS))
[eval]
interval = 0
[checkpoint]
interval = 0
[log]
interval = $WARM
TOML
mpirun -n 2 --bind-to none "$BUILD/segkd" train "$W/bench.toml" > "$W/segkd.log" 2>&1 || { cat "$W/segkd.log"; exit 1; }
# Throughput after warm-up: images / training seconds (2 ranks x batch 2).
segkd_ips=$(/usr/bin/python3 bench/train/throughput.py "$W/run/metrics.jsonl" "$WARM" 4)
peer=$(mpirun -n 2 --bind-to none /usr/bin/python3 bench/train/pytorch_kd_step.py --warmup $WARM --iters "$ITERS" | awk '/pytorch_images_per_s/ {print $2}')
echo "KD train step, PSPNet-R18 <- PSPNet-R101, 128x256, 2 ranks x batch 2, $ITERS timed iterations"
echo "segkd:   $segkd_ips images/s"
echo "pytorch: $peer images/s (DDP, gloo)"
/usr/bin/python3 -c "print(f'ratio segkd/pytorch: {$segkd_ips/$peer:.2f}x')"
