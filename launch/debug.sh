#!/usr/bin/env bash
# One process, no launcher, verbose logs, a few iterations: for stepping through with gdb or reading every line.
# Usage: launch/debug.sh CONFIG [segkd train options...]   (prefix with `gdb --args` by setting GDB=1)
set -euo pipefail
CONFIG=${1:?config}; shift
SEGKD=${SEGKD:-$(dirname "$0")/../build/segkd}
CMD=("$SEGKD" train "$CONFIG" --set log.level=debug --set log.interval=1 --set schedule.iterations=10 \
     --set run.work_dir=\"runs/debug\" "$@")
if [ "${GDB:-0}" = 1 ]; then exec gdb --args "${CMD[@]}"; else exec "${CMD[@]}"; fi
