#pragma once
/// Error checks for the communication backends: each turns a failed MPI / NCCL / CUDA call into a
/// `segkd::DistributedError` whose message names the call, the library's error string, file, line, rank and host
/// (via segkd::throw_located).
#include <mpi.h>

#include <string>

#include "common/error.h"

namespace segkd::dist::detail {
/// Human-readable text of an MPI error code.
inline std::string mpi_error_string(int code) {
  char buf[MPI_MAX_ERROR_STRING] = {0};
  int len = 0;
  if (MPI_Error_string(code, buf, &len) != MPI_SUCCESS) return "MPI error " + std::to_string(code);
  return std::string(buf, static_cast<size_t>(len));
}
}  // namespace segkd::dist::detail

/// Throws DistributedError ("MPI_Allreduce(...) failed: <MPI error string> (rank R on HOST, file:line)").
#define SEGKD_MPI_CHECK(expr)                                                                              \
  do {                                                                                                     \
    int segkd_mpi_rc_ = (expr);                                                                            \
    if (segkd_mpi_rc_ != MPI_SUCCESS)                                                                      \
      ::segkd::throw_located(__FILE__, __LINE__,                                                           \
                             ::segkd::str_cat(#expr, " failed: ",                                         \
                                              ::segkd::dist::detail::mpi_error_string(segkd_mpi_rc_)));    \
  } while (0)

/// Throws DistributedError when an NCCL call does not return ncclSuccess (needs <nccl.h>).
#define SEGKD_NCCL_CHECK(expr)                                                                               \
  do {                                                                                                       \
    ncclResult_t segkd_nccl_rc_ = (expr);                                                                    \
    if (segkd_nccl_rc_ != ncclSuccess)                                                                       \
      ::segkd::throw_located(__FILE__, __LINE__,                                                             \
                             ::segkd::str_cat(#expr, " failed: ", ncclGetErrorString(segkd_nccl_rc_)));      \
  } while (0)

/// Throws DistributedError when a CUDA runtime call does not return cudaSuccess (needs <cuda_runtime.h>).
#define SEGKD_CUDA_CHECK(expr)                                                                               \
  do {                                                                                                       \
    cudaError_t segkd_cuda_rc_ = (expr);                                                                     \
    if (segkd_cuda_rc_ != cudaSuccess)                                                                       \
      ::segkd::throw_located(__FILE__, __LINE__,                                                             \
                             ::segkd::str_cat(#expr, " failed: ", cudaGetErrorString(segkd_cuda_rc_)));      \
  } while (0)
