#pragma once
/// Data-parallel gradient synchronisation and the start-up/agreement helpers around it (SyncBatchNorm is in
/// distributed/sync_batchnorm.h).
#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/config.h"
#include "distributed/communicator.h"

namespace segkd::dist {

/// One entry of the reducer's per-step log. `seq` orders entries of one step (0, 1, 2, ...).
struct BucketEvent {
  int bucket;        ///< bucket index, -1 for a mark()
  std::string what;  ///< "start" | "done" | the text given to mark()
  int64_t seq;
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
  GradReducer(std::shared_ptr<Communicator> comm, std::vector<torch::Tensor> params, const DistributedConfig& cfg);
  ~GradReducer();
  GradReducer(const GradReducer&) = delete;
  GradReducer& operator=(const GradReducer&) = delete;

  /// Call before each backward; `sync` false = accumulation micro-batch (no communication; .grad accumulates).
  /// Clears the event log.
  void prepare(bool sync = true);
  /// Waits for all buckets (unused parameters: zero-filled identically on all ranks), averages, leaves .grad
  /// reduced. No-op after prepare(false). Throws segkd::Error when called twice without prepare() in between.
  void finish();
  /// Log of the current/last step: "start"/"done" per bucket and the marks added with mark().
  const std::vector<BucketEvent>& events() const;
  /// Appends a marker (e.g. "backward_end" right after backward returns) to the event log.
  void mark(const std::string& what);

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
