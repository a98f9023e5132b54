#!/usr/bin/env bash
# The synthetic KD protocol of docs/results.md, end to end: data, the PSPNet-R34-D8 teacher (a fixed 1000 iterations,
# trained once and reused), then every KD method against the PSPNet-R18-D8 student alone, 3 seeds each,
#   (a) at matched iterations (150),
#   (b) at matched training wall-clock, 30 s and 60 s (--budget 30s --extend 1,2),
# and a tau x weight grid of logit KD. About 100 minutes on an otherwise idle 2-core machine; the wall-clock runs
# are only fair on an idle machine. Every step skips what is finished, so an interrupted run of this script is
# resumed by running it again. Usage: scripts/results.sh [STEP...]   (steps: teacher iters budget grid; default all)
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh build
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1   # harmless when not root
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1                   # 2 ranks x 1 thread on 2 cores
SEGKD=build/segkd
MPIRUN=(mpirun -n 2 --oversubscribe --bind-to none)
P=configs/results
METHODS=("$P/student.toml" "$P/logit.toml" "$P/feature.toml" "$P/cwd.toml" "$P/pairwise.toml" "$P/ifvd.toml"
         "$P/at.toml" "$P/dist.toml")
steps=("$@")
[ ${#steps[@]} -gt 0 ] || steps=(teacher iters budget grid)

for step in "${steps[@]}"; do
  case "$step" in
    teacher)
      mkdir -p results/data
      [ -f results/data/train.h5 ] || $SEGKD synth --out results/data/train.h5 --num 2000 --size 96x96 --classes 8 --seed 1
      [ -f results/data/val.h5 ] || $SEGKD synth --out results/data/val.h5 --num 200 --size 96x96 --classes 8 --seed 2
      if [ ! -f results/runs/teacher/summary.json ]; then
        "${MPIRUN[@]}" $SEGKD train $P/teacher.toml --resume auto
      fi
      $SEGKD export "results/runs/teacher/checkpoints/$(cat results/runs/teacher/checkpoints/latest)" \
        --out results/teacher.pth
      ;;
    iters)   # (a) matched iterations: 8 methods x 3 seeds
      "${MPIRUN[@]}" $SEGKD compare "${METHODS[@]}" --iterations 150 --seeds 3 --work-dir results/iters
      cat results/iters/compare.md
      ;;
    grid)    # logit KD's tau x weight grid at the same 150 iterations, 2 seeds per point
      "${MPIRUN[@]}" $SEGKD sweep $P/logit.toml --grid distill.0.tau=1,4 --grid distill.0.weight=0.3,1,3 --seeds 2 \
        --work-dir results/logit_grid
      cat results/logit_grid/sweep.md
      ;;
    budget)  # (b) matched training wall-clock at two budgets: 8 methods x 3 seeds x {30 s, 60 s}
      "${MPIRUN[@]}" $SEGKD compare "${METHODS[@]}" --budget 30s --extend 1,2 --seeds 3 --work-dir results/budget
      cat results/budget/compare.md
      ;;
    *) echo "scripts/results.sh: unknown step '$step' (steps: teacher iters budget grid)" >&2; exit 2 ;;
  esac
done
