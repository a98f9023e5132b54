#!/usr/bin/env bash
# Sets up (installs missing packages, builds) and runs every test: unit, multi-process MPI (2 and 3 ranks),
# parity against PyTorch, and end-to-end CLI runs. Usage: scripts/test.sh [extra ctest args]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh build
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1
start=$(date +%s)
ctest --test-dir build --output-on-failure -j "$(nproc)" --timeout 900 "$@"
echo "segkd tests: finished in $(( $(date +%s) - start )) s"
