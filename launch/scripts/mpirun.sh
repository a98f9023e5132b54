#!/usr/bin/env bash
# Train on one node with N MPI ranks, one thread each by default (threads = cores / ranks otherwise).
# Usage: launch/scripts/mpirun.sh N CONFIG [segkd train options...]
set -euo pipefail
N=${1:?ranks}; shift
CONFIG=${1:?config}; shift
SEGKD=${SEGKD:-$(dirname "$0")/../../build/segkd}
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
CORES=$(nproc)
THREADS=$(( CORES / N > 0 ? CORES / N : 1 ))
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$THREADS} OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-$THREADS}
EXTRA=()
(( N > CORES )) && EXTRA+=(--oversubscribe)
exec mpirun -n "$N" "${EXTRA[@]}" --bind-to none "$SEGKD" train "$CONFIG" "$@"
