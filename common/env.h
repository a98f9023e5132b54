#pragma once
/// Every environment variable segkd reads, in one place.
namespace segkd::env {
constexpr const char* kOmpiRank = "OMPI_COMM_WORLD_RANK";
constexpr const char* kOmpiSize = "OMPI_COMM_WORLD_SIZE";
constexpr const char* kOmpiLocalRank = "OMPI_COMM_WORLD_LOCAL_RANK";
constexpr const char* kPmiRank = "PMI_RANK";
constexpr const char* kSlurmProcId = "SLURM_PROCID";
constexpr const char* kSlurmNtasks = "SLURM_NTASKS";
constexpr const char* kSlurmLocalId = "SLURM_LOCALID";
constexpr const char* kSlurmJobId = "SLURM_JOB_ID";
constexpr const char* kOmpNumThreads = "OMP_NUM_THREADS";
constexpr const char* kOpenblasNumThreads = "OPENBLAS_NUM_THREADS";
constexpr const char* kCudaVisibleDevices = "CUDA_VISIBLE_DEVICES";
/// Test-only: makes one rank throw at a given training iteration ("RANK:ITER") to exercise fail-together.
constexpr const char* kFaultInject = "SEGKD_FAULT_INJECT";
/// Test-only: `segkd sweep`/`compare` stop with an error after this many trained runs, as if killed between runs.
constexpr const char* kStopAfterRuns = "SEGKD_STOP_AFTER_RUNS";
}  // namespace segkd::env
