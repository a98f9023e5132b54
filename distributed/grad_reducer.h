#pragma once
/// Data-parallel gradient synchronisation and the start-up/agreement helpers around it (SyncBatchNorm is in
/// distributed/sync_batchnorm.h).
#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "distributed/options.h"
#include "distributed/communicator.h"

namespace segkd::dist {

/// Observes a GradReducer's communication, for benchmarks and tests (e.g. "did a bucket start before backward
/// returned?"). Called with the reducer's lock held, on the thread that runs the gradient hook (backward) or
/// finish(): an implementation must be quick, thread-safe, and must not call back into the reducer.
class GradReducerListener {
 public:
  virtual ~GradReducerListener() = default;
  /// Bucket `bucket`'s asynchronous all-reduce was started (during backward, or by finish() for the rest).
  virtual void bucket_started(size_t bucket) {}
  /// finish() finished waiting for bucket `bucket`'s all-reduce (its averages are written into .grad next).
  virtual void bucket_done(size_t bucket) {}
};

/// Averages gradients over all ranks, bucket by bucket, while backward still runs (like PyTorch DDP's reducer).
///
/// Parameters are grouped into buckets in reverse registration order — roughly the order backward produces their
/// gradients — the first bucket capped at `first_bucket_mb` so communication starts early, the rest at
/// `bucket_mb` (MiB; a parameter larger than the cap gets a bucket of its own; a bucket holds one dtype/device).
/// A hook on each parameter's gradient accumulator copies the gradient into its bucket's flat buffer; when a
/// bucket is complete and every earlier bucket has started, its all-reduce (average) starts asynchronously, so
/// buckets start in the same order on every rank. finish() starts buckets still incomplete — a parameter that got
/// no gradient this step contributes its current .grad, or zeros when it has none — identically on every rank,
/// waits, and writes the averaged gradients back into each parameter's .grad.
class GradReducer {
 public:
  /// `params` in registration order (model->parameters()); parameters not requiring grad are skipped.
  GradReducer(std::shared_ptr<Communicator> comm, std::vector<torch::Tensor> params, const DistributedOptions& cfg);
  ~GradReducer();
  GradReducer(const GradReducer&) = delete;
  GradReducer& operator=(const GradReducer&) = delete;

  /// Call before each backward; `sync` false = accumulation micro-batch (no communication; .grad accumulates).
  void prepare(bool sync = true);
  /// Waits for all buckets (unused parameters: zero-filled identically on all ranks), averages, leaves .grad
  /// reduced. No-op after prepare(false). Throws segkd::Error when called twice without prepare() in between.
  void finish();
  /// Reports every bucket's start and completion to `listener` from now on (nullptr: to nobody).
  void set_listener(std::shared_ptr<GradReducerListener> listener);

  /// Number of buckets.
  size_t num_buckets() const;
  /// Indices (into the constructor's `params`) of the parameters in bucket `b`, in bucket order.
  std::vector<size_t> bucket_params(size_t b) const;
  /// Size of bucket `b` in bytes.
  int64_t bucket_bytes(size_t b) const;

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

/// Broadcast every parameter and buffer of `module` from rank 0 (one collective per dtype).
void broadcast_module(torch::nn::Module& module, Communicator& comm);

/// 16 hex digits of a 64-bit hash over the names, shapes, dtypes and bytes of every parameter and buffer; equal
/// on two ranks exactly when their modules are bit-identical.
std::string module_checksum(torch::nn::Module& module);

/// Compares config hash and a parameter checksum across ranks; on mismatch throws DistributedError on EVERY rank
/// naming the ranks that differ ("config hash differs: rank 0 a1b2..., rank 2 ffee...").
void check_agreement(Communicator& comm, const std::string& config_hash, torch::nn::Module& module);

}  // namespace segkd::dist
