#include "data/loader.h"

#include <torch/cuda.h>

#include "common/error.h"

namespace segkd::data {

TrainLoader::TrainLoader(std::shared_ptr<const H5Dataset> ds, const AugmentOptions& aug, int64_t batch_per_rank,
                         int64_t workers, int64_t prefetch, int64_t rank, int64_t world, uint64_t seed,
                         int64_t start_iteration)
    : ds_(std::move(ds)),
      aug_(aug),
      batch_(batch_per_rank),
      prefetch_(prefetch),
      seed_(seed),
      sampler_(ds_ ? ds_->size() : 0, rank, world, seed, /*shuffle=*/true),
      pin_(torch::cuda::is_available()),
      next_to_claim_(start_iteration),
      next_to_return_(start_iteration) {
  if (!ds_) throw InputError("TrainLoader: no dataset");
  if (batch_per_rank <= 0) throw ConfigError(str_cat("data.batch_per_rank must be > 0, got ", batch_per_rank));
  if (workers < 0) throw ConfigError(str_cat("data.workers must be >= 0, got ", workers));
  if (prefetch <= 0) throw ConfigError(str_cat("data.prefetch must be > 0, got ", prefetch));
  if (start_iteration < 0) throw ConfigError(str_cat("TrainLoader: start_iteration ", start_iteration, " < 0"));
  for (int64_t i = 0; i < workers; ++i) threads_.emplace_back([this] { worker_loop(); });
}

TrainLoader::~TrainLoader() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  consumed_.notify_all();
  produced_.notify_all();
  for (auto& t : threads_) t.join();
}

Batch TrainLoader::build(int64_t iteration) const {
  Batch b;
  b.iteration = iteration;
  const int64_t h = aug_.crop[0], w = aug_.crop[1];
  auto fopts = torch::TensorOptions().dtype(torch::kFloat32).pinned_memory(pin_);
  auto lopts = torch::TensorOptions().dtype(torch::kInt64).pinned_memory(pin_);
  b.image = torch::empty({batch_, 3, h, w}, fopts);
  b.label = torch::empty({batch_, h, w}, lopts);
  float* img = b.image.data_ptr<float>();
  int64_t* lbl = b.label.data_ptr<int64_t>();
  for (int64_t j = 0; j < batch_; ++j) {
    const int64_t pos = iteration * batch_ + j;
    const int64_t epoch = pos / sampler_.per_rank();
    const int64_t index = sampler_.stream_at(pos);
    try {
      Sample s = ds_->get(index);
      augment_into(s, aug_, seed_, epoch, index, img + j * 3 * h * w, lbl + j * h * w);
      b.names.push_back(std::move(s.name));
    } catch (const std::exception& e) {
      throw InputError(str_cat("data loader: sample '", ds_->name(index), "' (index ", index, ", batch ",
                               iteration, "): ", e.what()));
    }
    b.indices.push_back(index);
  }
  return b;
}

void TrainLoader::worker_loop() {
  for (;;) {
    int64_t iteration;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      consumed_.wait(lock, [&] { return stop_ || next_to_claim_ < next_to_return_ + prefetch_; });
      if (stop_) return;
      iteration = next_to_claim_++;
    }
    Slot slot;
    try {
      slot.batch = build(iteration);
    } catch (...) {
      slot.error = std::current_exception();
    }
    {
      std::lock_guard<std::mutex> lock(mutex_);
      ready_.emplace(iteration, std::move(slot));
    }
    produced_.notify_all();
  }
}

Batch TrainLoader::next() {
  if (threads_.empty()) return build(next_to_return_++);  // workers = 0: synchronous
  Slot slot;
  {
    std::unique_lock<std::mutex> lock(mutex_);
    produced_.wait(lock, [&] { return ready_.count(next_to_return_) > 0; });
    auto it = ready_.find(next_to_return_);
    slot = std::move(it->second);
    ready_.erase(it);
    ++next_to_return_;
  }
  consumed_.notify_all();
  if (slot.error) std::rethrow_exception(slot.error);
  return std::move(slot.batch);
}

}  // namespace segkd::data
