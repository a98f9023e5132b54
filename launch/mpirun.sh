#!/usr/bin/env bash
# Any segkd subcommand under mpirun: N ranks on this machine, or spread over the nodes of a hostfile (Open MPI
# format: "node1 slots=4" per line). Threads per rank: the cores of a node / the ranks on it (OMP_NUM_THREADS wins).
# Usage: launch/mpirun.sh [--hostfile FILE] N SUBCOMMAND [ARGS...]
#   launch/mpirun.sh 2 train configs/demo/student.toml
#   launch/mpirun.sh --hostfile hosts.txt 8 compare configs/demo/compare/*.toml --budget 2m --seeds 3
# SEGKD_DRY_RUN=1 prints the mpirun line instead of running it; SEGKD overrides the binary (default build/segkd).
# SEGKD_SIGKILL_TIMEOUT (default 20, seconds; 0 = Open MPI's own 1 s): when mpirun itself gets SIGTERM or SIGINT
# (kill, Ctrl-C), Open MPI 4.1 waits this long, sends SIGTERM to the ranks, waits this long again, then SIGKILL
# (MCA odls_base_sigkill_timeout). The ranks need that second wait to finish their step and write the final
# checkpoint (docs/run-directory.md, "Signals"). The price: a job whose rank fails also takes up to twice this long
# to end. Signalling one rank directly (its pid is in run.lock) stops the job at once, whatever this is.
set -euo pipefail
HOSTFILE=""
if [ "${1:-}" = "--hostfile" ]; then
  HOSTFILE=${2:?--hostfile needs a file}; shift 2
  [ -r "$HOSTFILE" ] || { echo "segkd: error: --hostfile $HOSTFILE: not readable" >&2; exit 2; }
fi
N=${1:?usage: mpirun.sh [--hostfile FILE] N SUBCOMMAND [ARGS...]}; shift
[[ "$N" =~ ^[1-9][0-9]*$ ]] || { echo "segkd: error: N = '$N': expected a positive number of ranks" >&2; exit 2; }
(($#)) || { echo "usage: mpirun.sh [--hostfile FILE] N SUBCOMMAND [ARGS...]" >&2; exit 2; }
SEGKD=${SEGKD:-$(dirname "$0")/../build/segkd}
if [ "$(id -u)" -eq 0 ]; then export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1; fi
SIGKILL_TIMEOUT=${SEGKD_SIGKILL_TIMEOUT:-20}
[[ "$SIGKILL_TIMEOUT" =~ ^[0-9]+$ ]] || { echo "segkd: error: SEGKD_SIGKILL_TIMEOUT = '$SIGKILL_TIMEOUT': expected seconds" >&2; exit 2; }
CMD=(mpirun -n "$N" --bind-to none)
(( SIGKILL_TIMEOUT > 0 )) && CMD+=(--mca odls_base_sigkill_timeout "$SIGKILL_TIMEOUT")
if [ -n "$HOSTFILE" ]; then
  # Ranks per node from the hostfile's first slots= entry (nodes are assumed alike).
  PER_NODE=$(awk '/slots=/{sub(/.*slots=/, ""); print $1; exit}' "$HOSTFILE")
  CMD+=(--hostfile "$HOSTFILE" -x OMP_NUM_THREADS -x OPENBLAS_NUM_THREADS)
else
  PER_NODE=$N
  (( N > $(nproc) )) && CMD+=(--oversubscribe)
fi
PER_NODE=${PER_NODE:-$N}
THREADS=$(( $(nproc) / PER_NODE > 0 ? $(nproc) / PER_NODE : 1 ))
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-$THREADS} OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-$THREADS}
CMD+=("$SEGKD" "$@")
if [ "${SEGKD_DRY_RUN:-0}" = 1 ]; then echo "${CMD[*]}"; else exec "${CMD[@]}"; fi
