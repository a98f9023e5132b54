#pragma once
/// Internal: the NCCL backend's factory, from nccl_communicator.cpp or, without NCCL, nccl_stub.cpp (use
/// make_communicator instead).
#include "distributed/communicator.h"

namespace segkd::dist::detail {
/// NCCL communicator over all ranks of the job, on CUDA device `device`; bootstrapped through MPI (rank 0
/// creates the unique id and broadcasts it). Throws ConfigError when no CUDA device is usable.
std::shared_ptr<Communicator> make_nccl_communicator(double timeout_s, torch::Device device);
}  // namespace segkd::dist::detail
