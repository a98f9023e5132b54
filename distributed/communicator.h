#pragma once
/// Collective communication between the ranks of a job, behind one interface with an MPI and an NCCL backend.
///
/// Every collective — blocking ones too — is waited on with a deadline of `timeout_s()` from the moment it was
/// issued; a collective not finished by then is a hang (a peer skipped it, died or diverged), so the watchdog logs
/// rank, host, collective and tag and aborts the whole job (MPI_Abort) instead of waiting forever.
/// Collectives must be issued in the same order on every rank; one communicator may be used from several threads
/// only if they do not issue collectives concurrently.
#include <torch/torch.h>

#include <memory>
#include <string>
#include <vector>

#include "distributed/options.h"

namespace segkd::dist {

/// Element-wise reduction of an all-reduce. kAverage = sum / world size (floating-point tensors only).
enum class ReduceOp { kSum, kAverage, kMax, kMin };

/// Name of a ReduceOp ("sum", "average", "max", "min").
const char* to_string(ReduceOp op);

/// Handle of an asynchronous collective.
class Work {
 public:
  virtual ~Work() = default;
  /// True once the collective finished (its tensor holds the result); never blocks.
  virtual bool test() = 0;
  /// Waits until the collective finished, at most until timeout_s after it was issued; on timeout logs rank, host,
  /// collective name/tag and aborts the job (watchdog). Rethrows a backend error as DistributedError.
  virtual void wait() = 0;
};

/// A group of ranks that run collectives together.
class Communicator {
 public:
  explicit Communicator(double timeout_s) : timeout_s_(timeout_s) {}
  virtual ~Communicator() = default;
  Communicator(const Communicator&) = delete;
  Communicator& operator=(const Communicator&) = delete;

  virtual int rank() const = 0;
  virtual int size() const = 0;
  /// "mpi" or "nccl".
  virtual std::string backend() const = 0;

  /// In-place all-reduce of `t` (same shape and dtype on every rank).
  virtual void all_reduce(torch::Tensor& t, ReduceOp op = ReduceOp::kSum) = 0;
  /// Starts an in-place all-reduce; `tag` names it in watchdog messages (e.g. "bucket 3"). `t` must stay alive and
  /// untouched until the Work finished.
  virtual std::shared_ptr<Work> all_reduce_async(torch::Tensor& t, ReduceOp op, const std::string& tag) = 0;
  /// Overwrites `t` on every rank with root's `t`.
  virtual void broadcast(torch::Tensor& t, int root = 0) = 0;
  /// Every rank's `t` (same shape on all ranks), indexed by rank.
  virtual std::vector<torch::Tensor> all_gather(const torch::Tensor& t) = 0;
  /// Every rank's `s` (any length), indexed by rank; for agreement checks.
  virtual std::vector<std::string> all_gather_string(const std::string& s);
  /// Returns once every rank entered the barrier.
  virtual void barrier() = 0;
  /// A new communicator over the same ranks with its own ordering of collectives (collective call: every rank
  /// must call it). SyncBatchNorm uses one so its collectives cannot interleave with the gradient reducer's.
  virtual std::shared_ptr<Communicator> duplicate() = 0;

  /// Watchdog limit in seconds for every collective (blocking ones too).
  double timeout_s() const { return timeout_s_; }

 private:
  double timeout_s_;
};

/// backend "auto" | "mpi" | "nccl" (auto: nccl when device is CUDA and NCCL was built). World size 1 works (no-op
/// reductions, identical API). Throws ConfigError for "nccl" when not built/no device, or options that break
/// DistributedOptions::validate() (an unknown backend, a timeout <= 0, ...).
/// Initialises the runtime (dist::init) as a singleton when the caller has not.
std::shared_ptr<Communicator> make_communicator(const DistributedOptions& cfg, torch::Device device);

/// The MPI backend over a duplicate of the runtime's world communicator (collective call).
std::shared_ptr<Communicator> make_mpi_communicator(double timeout_s);

/// The device rule of every subcommand, with LibTorch's two CUDA answers as parameters (so it is unit-testable):
/// CUDA device `local_rank % cuda_devices` when LibTorch can use CUDA (`torch_cuda_available`, i.e. it was built
/// with CUDA and a driver and device are present) and `cuda_devices` > 0, else the CPU. A GPU visible to the CUDA
/// runtime is not enough: a CPU-only LibTorch cannot move a model there.
torch::Device choose_device(bool torch_cuda_available, int64_t cuda_devices, int local_rank);

/// The device this rank runs on: choose_device(torch::cuda::is_available(), torch::cuda::device_count(),
/// topology().local_rank). Used by train, eval and predict alike.
torch::Device local_device();

/// True when the NCCL backend was compiled in.
bool nccl_built();
/// Number of CUDA devices usable by the NCCL backend (0 when not built or no driver/device).
int cuda_device_count();

}  // namespace segkd::dist
