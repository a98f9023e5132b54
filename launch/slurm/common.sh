# Shared by the sbatch scripts of launch/slurm (sourced, not run). Environment:
#   SEGKD           the segkd binary (default build/segkd, relative to the submit directory)
#   SEGKD_MPI       srun's --mpi= plugin: pmix (default), pmi2, ... (`srun --mpi=list` shows the cluster's)
#   SEGKD_GPU_BIND  srun's --gpu-bind= value (default closest); "none" for CPU-only nodes: no GPU options at all
#   SEGKD_DRY_RUN=1 print the srun line instead of running it
SEGKD=${SEGKD:-build/segkd}
SEGKD_MPI=${SEGKD_MPI:-pmix}
SEGKD_GPU_BIND=${SEGKD_GPU_BIND:-closest}
# Intra-op threads per rank: the CPUs SLURM gave the task.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}
export OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}

# segkd_srun SEGKD_ARGS...: one task per GPU, each bound to its own GPU (segkd then sees it as device 0); a failing
# rank ends the job step.
segkd_srun() {
  local cmd=(srun "--mpi=$SEGKD_MPI" --kill-on-bad-exit=1)
  if [ "$SEGKD_GPU_BIND" != none ]; then cmd+=(--gpus-per-task=1 "--gpu-bind=$SEGKD_GPU_BIND"); fi
  cmd+=("$SEGKD" "$@")
  if [ "${SEGKD_DRY_RUN:-0}" = 1 ]; then
    echo "${cmd[*]}"
  else
    exec "${cmd[@]}"
  fi
}

# The job-array task id, with a clear message when the script was not submitted with --array.
segkd_array_index() {
  if [ -z "${SLURM_ARRAY_TASK_ID:-}" ]; then
    echo "segkd: error: SLURM_ARRAY_TASK_ID is not set: submit with sbatch --array=0-(N-1), N from --dry-run" >&2
    exit 2
  fi
  echo "$SLURM_ARRAY_TASK_ID"
}
