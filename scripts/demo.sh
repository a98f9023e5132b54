#!/usr/bin/env bash
# The segkd demo: generate a synthetic dataset, train a teacher, then compare a student alone and two distilled
# students (logit KD, feature KD) under the same wall-clock budget with `segkd compare`, each on 2 MPI ranks; print
# the comparison table and draw the curves and the predictions. About 12 minutes on a 2-core machine after the
# build. Usage: scripts/demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh build
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1   # harmless when not root
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1                   # 2 ranks x 1 thread on 2 cores
SEGKD=build/segkd
MPIRUN=(mpirun -n 2 --oversubscribe --bind-to none)
start=$(date +%s)

rm -rf demo && mkdir -p demo/data   # regenerated every time (under a second), so it always matches this build
$SEGKD synth --out demo/data/train.h5 --num 2000 --size 64x64 --classes 8 --seed 1
$SEGKD synth --out demo/data/val.h5 --num 200 --size 64x64 --classes 8 --seed 2

echo "== teacher (supervised) =="
"${MPIRUN[@]}" $SEGKD train configs/demo/teacher.toml
$SEGKD export "demo/runs/teacher/checkpoints/$(cat demo/runs/teacher/checkpoints/latest)" --out demo/teacher.pth
echo "== segkd compare: student alone, logit KD, feature KD; 2 minutes of training each =="
"${MPIRUN[@]}" $SEGKD compare configs/demo/compare/student.toml configs/demo/compare/logit_kd.toml \
  configs/demo/compare/feature_kd.toml --budget 2m --work-dir demo/compare

echo
echo "== demo results: synthetic 8-class scenes, 2 MPI ranks, students under the same training budget =="
cat demo/compare/compare.md
$SEGKD report demo/runs/teacher demo/compare/student-2m-x1-s42 demo/compare/logit_kd-2m-x1-s42 \
  demo/compare/feature_kd-2m-x1-s42 --out demo/results.md --panel demo/panel.png --panel-images 6
echo "demo finished in $(( $(date +%s) - start )) s (tables in demo/compare/compare.md and demo/results.md," \
  "curves in demo/compare/curves.png, predictions in demo/panel.png)"
