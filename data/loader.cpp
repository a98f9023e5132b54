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
      pin_(torch::cuda::is_available()) {
  if (!ds_) throw InputError("TrainLoader: no dataset");
  if (batch_per_rank <= 0) throw ConfigError(str_cat("data.batch_per_rank must be > 0, got ", batch_per_rank));
  if (workers < 0) throw ConfigError(str_cat("data.workers must be >= 0, got ", workers));
  if (prefetch <= 0) throw ConfigError(str_cat("data.prefetch must be > 0, got ", prefetch));
  if (start_iteration < 0) throw ConfigError(str_cat("TrainLoader: start_iteration ", start_iteration, " < 0"));
  producer_ = std::make_unique<OrderedProducer<Batch>>([this](int64_t iteration) { return build(iteration); },
                                                       workers, /*window=*/prefetch, /*first=*/start_iteration);
}

void check_labels(const Sample& s, int64_t num_classes, int64_t ignore_index, const std::string& file) {
  for (size_t p = 0; p < s.label.size(); ++p) {
    const int64_t v = s.label[p];
    if (v < num_classes || v == ignore_index) continue;
    const int64_t y = static_cast<int64_t>(p) / s.width, x = static_cast<int64_t>(p) % s.width;
    throw InputError(str_cat("label value ", v, " at (y=", y, ", x=", x, ") is >= num_classes ", num_classes,
                             " and != ignore_index ", ignore_index, " in '", file, "'"));
  }
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
      check_labels(s, ds_->info().num_classes, aug_.ignore_index, ds_->file_of(index));
      augment_into(s, aug_, seed_, epoch, index, img + j * 3 * h * w, lbl + j * h * w);
      b.names.push_back(std::move(s.name));
    } catch (const std::exception& e) {
      if (out_of_memory_request(e)) throw;  // not the sample's fault: train() names the crop and batch
      throw InputError(str_cat("data loader: sample '", ds_->name(index), "' (index ", index, ", batch ",
                               iteration, "): ", e.what()));
    }
    b.indices.push_back(index);
  }
  return b;
}

Batch TrainLoader::next() { return producer_->next(); }

}  // namespace segkd::data
