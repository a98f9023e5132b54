#pragma once
/// Rank-sharded sampling: per-epoch permutations derived from (seed, epoch), an endless stream for
/// iteration-based schedules, and duplicate-free validation sharding.
#include <cstdint>
#include <mutex>
#include <vector>

namespace segkd::data {

/// Rank r's part of the per-epoch permutation of [0, n) derived from (seed, epoch), padded by wrapping so every
/// rank gets ceil(n/world) indices; disjoint across ranks except for padding. Rank r takes permutation positions
/// r, r+world, r+2*world, ... of the padded permutation (as PyTorch's DistributedSampler does).
class Sampler {
 public:
  Sampler(int64_t n, int64_t rank, int64_t world, uint64_t seed, bool shuffle = true);

  /// This rank's indices for `epoch` (per_rank() of them).
  std::vector<int64_t> epoch_indices(int64_t epoch) const;
  /// ceil(n / world).
  int64_t per_rank() const { return per_rank_; }
  /// The index at position `pos` of this rank's endless stream (epoch = pos / per_rank()).
  /// Thread-safe; the last epoch's indices are cached.
  int64_t stream_at(int64_t pos) const;
  int64_t size() const { return n_; }

 private:
  int64_t n_, rank_, world_, per_rank_;
  uint64_t seed_;
  bool shuffle_;
  mutable std::mutex mutex_;
  mutable int64_t cached_epoch_ = -1;
  mutable std::vector<int64_t> cached_;
};

/// The permutation of [0, n) for (seed, epoch) (Fisher-Yates with a counter-based generator).
std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch);

/// Validation sharding without duplicates: indices rank, rank+world, ... (uneven counts allowed).
std::vector<int64_t> val_indices(int64_t n, int64_t rank, int64_t world);

}  // namespace segkd::data
