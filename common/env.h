#pragma once
/// Every environment variable segkd reads, in one place.
namespace segkd::env {
/// Set by Open MPI's mpirun for each rank; its presence means "launched by mpirun".
constexpr const char* kOmpiRank = "OMPI_COMM_WORLD_RANK";
/// Set by PMI-based launchers (MPICH's mpiexec, srun with PMI-2).
constexpr const char* kPmiRank = "PMI_RANK";
/// Set by SLURM's srun for each task.
constexpr const char* kSlurmProcId = "SLURM_PROCID";
/// Test-only: makes one rank throw at a given training iteration ("RANK:ITER") to exercise fail-together.
constexpr const char* kFaultInject = "SEGKD_FAULT_INJECT";
/// Test-only (set by ctest): the source tree, where tests find configs/ and scripts.
constexpr const char* kTestSourceDir = "SEGKD_SOURCE_DIR";
/// Test-only (set by ctest): the build tree, where tests find the segkd binary and test helpers.
constexpr const char* kTestBinaryDir = "SEGKD_BINARY_DIR";
/// Test-only: `segkd sweep`/`compare` stop with an error after this many trained runs, as if killed between runs.
constexpr const char* kStopAfterRuns = "SEGKD_STOP_AFTER_RUNS";
}  // namespace segkd::env
