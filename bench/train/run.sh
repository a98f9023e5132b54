#!/usr/bin/env bash
# KD training step: segkd against a PyTorch DDP peer on the same step, measured in the same run.
# Workload: PSPNet-R18 student <- PSPNet-R101 teacher, logit KD, 19 classes, 128x128 crops, batch 2 per rank,
# 2 ranks x 1 thread. Sides, alternated within every round (order rotated per round) so drifts hit all alike:
#   segkd-fp32        teacher.precision = "fp32" (BatchNorm folded), plain BatchNorm in the student
#   segkd-int8        teacher.precision = "int8", plain BatchNorm
#   segkd-int8-sync   teacher.precision = "int8", SyncBatchNorm in the student (segkd's default on 2 ranks)
#   pytorch           DDP (gloo) with its fp32 eval-mode teacher, plain BatchNorm (PyTorch's SyncBatchNorm is GPU-only)
# segkd reads and augments real HDF5 samples; the peer uses pre-generated tensors. Each side's figure is images/s
# after WARM iterations; printed: min / median / max over rounds and each segkd side's ratio to the peer (ratio of
# medians, and the min / max of the per-round ratios), then each side's ms per step by phase.
# Usage: bench/train/run.sh [BUILD_DIR] [ITERS=10] [ROUNDS=3] [CROP=128]
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${1:-build}
ITERS=${2:-10}
ROUNDS=${3:-3}
CROP=${4:-128}
WARM=3
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
W=$(mktemp -d /tmp/segkd-bench-train-XXXXXX)
trap 'rm -rf "$W"' EXIT
"$BUILD/segkd" synth --out "$W/train.h5" --num 64 --size "$((CROP + 32))x$((CROP + 32))" --classes 19 --seed 1 >/dev/null
/usr/bin/python3 bench/train/make_teacher.py 101 19 "$W/teacher.pth"

segkd_side() {  # segkd_side PRECISION SYNC_BN -> images/s
  local dir="$W/run_$1_$2"
  rm -rf "$dir"
  cat > "$W/bench.toml" <<TOML
[run]
name = "bench_train_step"
work_dir = "$dir"
threads = 1
[data]
train = ["$W/train.h5"]
num_classes = 19
crop = [$CROP, $CROP]
batch_per_rank = 2
workers = 1
[student]
arch = "pspnet"
backbone = "resnet18_v1c"
sync_bn = $2
[teacher]
arch = "pspnet"
backbone = "resnet101_v1c"
weights = "$W/teacher.pth"
precision = "$1"
calibration_batches = 4
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
  mpirun -n 2 --bind-to none "$BUILD/segkd" train "$W/bench.toml" > "$W/segkd.log" 2>&1 || { cat "$W/segkd.log" >&2; exit 1; }
  /usr/bin/python3 bench/train/throughput.py "$dir/metrics.jsonl" "$WARM" 4 "$W/phases.txt" "segkd-$1-sync_bn=$2"
}

pytorch_side() {
  mpirun -n 2 --bind-to none /usr/bin/python3 bench/train/pytorch_kd_step.py --crop "$CROP" "$CROP" \
    --warmup $WARM --iters "$ITERS" --phases > "$W/pytorch.out"
  awk '/pytorch_ms_per_step/ {$1 = "pytorch"; print}' "$W/pytorch.out" >> "$W/phases.txt"
  awk '/pytorch_images_per_s/ {print $2}' "$W/pytorch.out"
}

sides=(segkd-fp32 segkd-int8 segkd-int8-sync pytorch)
: > "$W/results.txt"
: > "$W/phases.txt"
for ((r = 0; r < ROUNDS; ++r)); do
  for ((k = 0; k < ${#sides[@]}; ++k)); do
    side=${sides[$(((k + r) % ${#sides[@]}))]}
    case $side in
      segkd-fp32) v=$(segkd_side fp32 false) ;;
      segkd-int8) v=$(segkd_side int8 false) ;;
      segkd-int8-sync) v=$(segkd_side int8 true) ;;
      pytorch) v=$(pytorch_side) ;;
    esac
    echo "round $((r + 1)) $side $v images/s"
    echo "$r $side $v" >> "$W/results.txt"
  done
done
echo "KD train step, PSPNet-R18 <- PSPNet-R101, ${CROP}x${CROP}, 2 ranks x batch 2, $ITERS timed iterations, $ROUNDS rounds"
/usr/bin/python3 - "$W/results.txt" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
by = {}
for r, side, v in rows:
    by.setdefault(side, {})[int(r)] = float(v)
peer = by["pytorch"]
for side in ["segkd-fp32", "segkd-int8", "segkd-int8-sync", "pytorch"]:
    v = list(by[side].values())
    line = f"{side:16s} images/s  min {min(v):.3f}  median {statistics.median(v):.3f}  max {max(v):.3f}"
    if side != "pytorch":
        per_round = [by[side][r] / peer[r] for r in by[side]]
        line += (f"  | vs pytorch {statistics.median(v) / statistics.median(peer.values()):.2f}x"
                 f" (per round {min(per_round):.2f}-{max(per_round):.2f}x)")
    print(line)
PY
echo "ms per step by phase, median over rounds (segkd: metrics.jsonl; pytorch: the same split timed in the peer,"
echo "its backward includes DDP's overlapped all-reduce)"
/usr/bin/python3 - "$W/phases.txt" <<'PY'
import statistics, sys
by = {}
for line in open(sys.argv[1]):
    f = line.split()
    for k, v in zip(f[1::2], f[2::2]):
        by.setdefault(f[0], {}).setdefault(k, []).append(float(v))
for side, phases in by.items():
    print(f"{side:24s} " + "  ".join(f"{k} {statistics.median(v):.0f}" for k, v in phases.items()))
PY
