#!/usr/bin/env bash
# Teacher concurrency: KD training throughput with `teacher.concurrent = true` (teacher forward on a worker thread,
# overlapping the student's forward) against `false` (teacher inline), measured in the same run, alternating A B A B.
# The KD step is the demo's: PSPNet-R18 stride-16 student <- PSPNet-R18 stride-8 teacher, logit KD, 64x64 synthetic
# scenes, batch 4 per rank. Layouts: 1 rank x 2 threads (idle cores for a second forward) and 2 ranks x 1 thread.
# Usage: bench/train/teacher_concurrency.sh [BUILD_DIR] [ITERS] [REPEATS]
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${1:-build}
ITERS=${2:-40}
REPEATS=${3:-2}
WARM=5
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
W=$(mktemp -d /tmp/segkd-bench-teacher-XXXXXX)
trap 'rm -rf "$W"' EXIT
"$BUILD/segkd" synth --out "$W/train.h5" --num 256 --size 64x64 --classes 8 --seed 1 >/dev/null
/usr/bin/python3 bench/train/make_teacher.py 18 8 "$W/teacher.pth"   # weights do not depend on the output stride

run() {  # run LAYOUT CONCURRENT -> images/s
  local ranks=${1%x*} threads=${1#*x} concurrent=$2 dir="$W/run_$1_$2"
  rm -rf "$dir"
  cat > "$W/cfg.toml" <<TOML
[run]
name = "bench_teacher_concurrency"
work_dir = "$dir"
threads = $threads
[data]
train = ["$W/train.h5"]
num_classes = 8
crop = [64, 64]
batch_per_rank = 4
workers = 1
[student]
arch = "pspnet"
backbone = "resnet18_v1c"
output_stride = 16
[teacher]
arch = "pspnet"
backbone = "resnet18_v1c"
output_stride = 8
weights = "$W/teacher.pth"
concurrent = $concurrent
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
  OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads \
    mpirun -n "$ranks" --bind-to none "$BUILD/segkd" train "$W/cfg.toml" > "$W/log" 2>&1 || { cat "$W/log" >&2; exit 1; }
  /usr/bin/python3 bench/train/throughput.py "$dir/metrics.jsonl" "$WARM" $((ranks * 4))
}

echo "teacher concurrency: KD step R18/16 <- R18/8, 64x64, batch 4/rank, $ITERS timed iterations, $REPEATS repeats"
for layout in 1x2 2x1; do
  inline=() concurrent=()
  for ((r = 0; r < REPEATS; ++r)); do
    inline+=("$(run "$layout" false)")
    concurrent+=("$(run "$layout" true)")
  done
  /usr/bin/python3 - "$layout" "${inline[*]}" "${concurrent[*]}" <<'PY'
import statistics, sys
layout, a, b = sys.argv[1], [float(x) for x in sys.argv[2].split()], [float(x) for x in sys.argv[3].split()]
ranks, threads = layout.split("x")
ratios = [y / x for x, y in zip(a, b)]
print(f"{ranks} rank(s) x {threads} thread(s): inline {statistics.median(a):.1f} img/s, concurrent "
      f"{statistics.median(b):.1f} img/s, ratio concurrent/inline median {statistics.median(ratios):.2f}x "
      f"(min {min(ratios):.2f}, max {max(ratios):.2f})")
PY
done
