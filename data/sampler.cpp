#include "data/sampler.h"

#include <numeric>

#include "common/error.h"
#include "data/random.h"

namespace segkd::data {

namespace {
void check_topology(int64_t n, int64_t rank, int64_t world, const char* who) {
  if (n < 0) throw Error(str_cat(who, ": dataset size ", n, " is negative"));
  if (world <= 0 || rank < 0 || rank >= world)
    throw Error(str_cat(who, ": rank ", rank, " is outside world of size ", world));
}
}  // namespace

std::vector<int64_t> epoch_permutation(int64_t n, uint64_t seed, int64_t epoch) {
  std::vector<int64_t> perm(n);
  std::iota(perm.begin(), perm.end(), 0);
  Rng rng(hash_key(seed, static_cast<uint64_t>(epoch), 0x5a3b1e));
  for (int64_t i = n - 1; i > 0; --i) std::swap(perm[i], perm[rng.below(i + 1)]);
  return perm;
}

Sampler::Sampler(int64_t n, int64_t rank, int64_t world, uint64_t seed, bool shuffle)
    : n_(n), rank_(rank), world_(world), per_rank_(0), seed_(seed), shuffle_(shuffle) {
  check_topology(n, rank, world, "Sampler");
  if (n == 0) throw InputError("Sampler: the training dataset is empty");
  per_rank_ = (n + world - 1) / world;
}

std::vector<int64_t> Sampler::epoch_indices(int64_t epoch) const {
  std::vector<int64_t> perm;
  if (shuffle_) {
    perm = epoch_permutation(n_, seed_, epoch);
  } else {
    perm.resize(n_);
    std::iota(perm.begin(), perm.end(), 0);
  }
  std::vector<int64_t> out(per_rank_);
  for (int64_t k = 0; k < per_rank_; ++k) out[k] = perm[(rank_ + k * world_) % n_];  // wrap pads
  return out;
}

int64_t Sampler::stream_at(int64_t pos) const {
  if (pos < 0) throw Error(str_cat("Sampler: stream position ", pos, " is negative"));
  const int64_t epoch = pos / per_rank_;
  std::lock_guard<std::mutex> lock(mutex_);
  if (epoch != cached_epoch_) {
    cached_ = epoch_indices(epoch);
    cached_epoch_ = epoch;
  }
  return cached_[pos % per_rank_];
}

std::vector<int64_t> val_indices(int64_t n, int64_t rank, int64_t world) {
  check_topology(n, rank, world, "val_indices");
  std::vector<int64_t> out;
  for (int64_t i = rank; i < n; i += world) out.push_back(i);
  return out;
}

}  // namespace segkd::data
