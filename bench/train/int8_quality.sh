#!/usr/bin/env bash
# Quality of the int8 teacher on the demo's data: the demo teacher (PSPNet-R18-D8, trained as in the demo but for a
# fixed number of iterations, so the result does not depend on the machine's speed) evaluated in fp32 and in int8,
# then students distilled from the fp32 teacher and from the int8 teacher for the same number of iterations with the
# same seed (logit KD and feature KD, the demo's configs). Prints one table. Iteration counts, not wall-clock: the
# comparison is about quality, so machine load does not change it.
# Usage: bench/train/int8_quality.sh [BUILD_DIR] [TEACHER_ITERS=750] [STUDENT_ITERS=400]
set -euo pipefail
cd "$(dirname "$0")/../.."
BUILD=${1:-build}
TEACHER_ITERS=${2:-750}
STUDENT_ITERS=${3:-400}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
SEGKD=$BUILD/segkd
MPIRUN=(mpirun -n 2 --oversubscribe --bind-to none)
W=${W:-$(mktemp -d /tmp/segkd-int8-quality-XXXXXX)}
mkdir -p "$W/demo/data"
cd "$W"
ln -sfn "$OLDPWD/configs" configs
[ -f demo/data/train.h5 ] || "$OLDPWD/$SEGKD" synth --out demo/data/train.h5 --num 2000 --size 64x64 --classes 8 --seed 1 >/dev/null
[ -f demo/data/val.h5 ] || "$OLDPWD/$SEGKD" synth --out demo/data/val.h5 --num 200 --size 64x64 --classes 8 --seed 2 >/dev/null
SEGKD=$OLDPWD/$SEGKD
miou() { /usr/bin/python3 -c "import json,sys; print(f\"{100*json.load(open(sys.argv[1]))['mIoU']:.2f}\")" "$1"; }

if [ ! -f demo/teacher.pth ]; then
  "${MPIRUN[@]}" "$SEGKD" train configs/demo/teacher.toml --set schedule.budget=\"\" \
    --set schedule.iterations="$TEACHER_ITERS" > teacher.log 2>&1 || { tail teacher.log; exit 1; }
  "$SEGKD" export "demo/runs/teacher/checkpoints/$(cat demo/runs/teacher/checkpoints/latest)" --out demo/teacher.pth
fi
for p in fp32 int8; do
  "${MPIRUN[@]}" "$SEGKD" eval configs/demo/teacher.toml --weights demo/teacher.pth --precision $p \
    --out "teacher_$p.json" > "eval_$p.log" 2>&1 || { tail "eval_$p.log"; exit 1; }
done
echo "| model | fp32 teacher | int8 teacher | difference |"
echo "|---|---|---|---|"
echo "| teacher PSPNet-R18-D8, $TEACHER_ITERS iterations (val mIoU) | $(miou teacher_fp32.json) | $(miou teacher_int8.json) | $(/usr/bin/python3 -c "print(f'{$(miou teacher_int8.json)-$(miou teacher_fp32.json):+.2f}')") |"
for kd in logit feature; do
  for p in fp32 int8; do
    run="student_${kd}_kd_$p"
    "${MPIRUN[@]}" "$SEGKD" train "configs/demo/student_${kd}_kd.toml" --set schedule.budget=\"\" \
      --set schedule.iterations="$STUDENT_ITERS" --set teacher.precision=\"$p\" --set run.name=\"$run\" \
      --set run.work_dir=\"demo/runs/$run\" > "$run.log" 2>&1 || { tail "$run.log"; exit 1; }
  done
  a=$(miou "demo/runs/student_${kd}_kd_fp32/summary.json"); b=$(miou "demo/runs/student_${kd}_kd_int8/summary.json")
  echo "| student PSPNet-R18-D16, $kd KD, $STUDENT_ITERS iterations, seed 42 | $a | $b | $(/usr/bin/python3 -c "print(f'{$b-$a:+.2f}')") |"
done
echo "(work directory: $W)"
