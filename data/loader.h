#pragma once
/// The threaded training loader: an endless, deterministic stream of augmented batches for one rank.
#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "data/ordered_producer.h"
#include "data/sampler.h"
#include "data/transforms.h"

namespace segkd::data {

/// One training batch.
struct Batch {
  torch::Tensor image;  ///< (N,3,H,W) float, contiguous (pinned when CUDA is available)
  torch::Tensor label;  ///< (N,H,W) int64
  std::vector<std::string> names;
  std::vector<int64_t> indices;  ///< dataset indices of the samples
  int64_t iteration = 0;         ///< k for the k-th batch of the stream
};

/// Throws InputError naming `file` and the pixel when a label of `s` is >= `num_classes` and not `ignore_index`
/// (LibTorch's loss would fail later with "Target N is out of bounds", naming neither file nor sample).
void check_labels(const Sample& s, int64_t num_classes, int64_t ignore_index, const std::string& file);

/// Endless iteration-based stream for rank `rank`: batch k holds stream positions [k*B, (k+1)*B) of the Sampler
/// (epoch of a sample = position / per_rank), so a loader created with start_iteration=k continues exactly
/// (resume). `workers` threads each build whole batches (an OrderedProducer); at most `prefetch`
/// finished-or-in-progress batches are ahead of the consumer. Batches come out in order regardless of thread
/// timing. A worker exception is re-thrown from next() (as InputError naming the sample and its index) when its
/// batch is due; the destructor stops the workers cleanly mid-epoch. Workers use plain loops (no ATen intra-op parallelism), so they never
/// oversubscribe the cores the training thread uses.
class TrainLoader {
 public:
  TrainLoader(std::shared_ptr<const H5Dataset> ds, const AugmentOptions& aug, int64_t batch_per_rank,
              int64_t workers, int64_t prefetch, int64_t rank, int64_t world, uint64_t seed,
              int64_t start_iteration = 0);
  TrainLoader(const TrainLoader&) = delete;
  TrainLoader& operator=(const TrainLoader&) = delete;

  /// The next batch (blocks until it is ready).
  Batch next();
  const Sampler& sampler() const { return sampler_; }

 private:
  Batch build(int64_t iteration) const;

  std::shared_ptr<const H5Dataset> ds_;
  AugmentOptions aug_;
  int64_t batch_, prefetch_;
  uint64_t seed_;
  Sampler sampler_;
  bool pin_;
  std::unique_ptr<OrderedProducer<Batch>> producer_;  ///< last member: its workers stop before the rest goes
};

}  // namespace segkd::data
