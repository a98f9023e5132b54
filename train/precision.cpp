#include "train/precision.h"

#include <ATen/autocast_mode.h>
#include <torch/version.h>

#include "common/error.h"

namespace segkd::train {

// LibTorch 2.4 replaced the CUDA-only autocast setters with device-type ones (the old ones warn as deprecated).
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
#define SEGKD_AUTOCAST_BY_DEVICE 1
#endif

Precision parse_precision(const std::string& name) {
  if (name == "fp32") return Precision::kFp32;
  if (name == "fp16") return Precision::kFp16;
  if (name == "bf16") return Precision::kBf16;
  throw ConfigError(str_cat("run.precision: must be one of fp32, fp16, bf16, got '", name, "'"));
}

const char* to_string(Precision precision) {
  switch (precision) {
    case Precision::kFp32: return "fp32";
    case Precision::kFp16: return "fp16";
    case Precision::kBf16: return "bf16";
    case Precision::kInt8: return "int8";
  }
  return "?";
}

AutocastRegion::AutocastRegion(Precision precision, const torch::Device& device) {
  if (precision == Precision::kFp32 || precision == Precision::kInt8 || !device.is_cuda()) return;
  const auto dtype = precision == Precision::kFp16 ? at::kHalf : at::kBFloat16;
#ifdef SEGKD_AUTOCAST_BY_DEVICE
  at::autocast::set_autocast_dtype(at::kCUDA, dtype);
  at::autocast::set_autocast_enabled(at::kCUDA, true);
#else
  at::autocast::set_autocast_gpu_dtype(dtype);
  at::autocast::set_enabled(true);
#endif
  at::autocast::increment_nesting();
  active_ = true;
}

AutocastRegion::~AutocastRegion() {
  if (!active_) return;
  // Leaving the outermost region drops the cached fp16 copies of the weights (they change every step).
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
#ifdef SEGKD_AUTOCAST_BY_DEVICE
  at::autocast::set_autocast_enabled(at::kCUDA, false);
#else
  at::autocast::set_enabled(false);
#endif
}

void widen_outputs(ModelOutput& out, bool copy) {
  for_each_tensor(out, [copy](torch::Tensor& t) {
    if (t.scalar_type() == torch::kHalf || t.scalar_type() == torch::kBFloat16) {
      t = t.to(torch::kFloat);
    } else if (copy) {
      t = t.clone();
    }
  });
}

LossScaler::LossScaler(bool enabled, Options options)
    : enabled_(enabled), options_(options), scale_(enabled ? options.init_scale : 1.0) {}

torch::Tensor LossScaler::scale_loss(const torch::Tensor& loss) const {
  return enabled_ ? loss * scale_ : loss;
}

bool LossScaler::unscale(const std::vector<torch::Tensor>& params) const {
  if (!enabled_) return false;
  const double inv = 1.0 / scale_;
  std::vector<torch::Tensor> finite_flags;
  for (const auto& p : params) {
    auto g = p.grad();
    if (!g.defined()) continue;
    g.mul_(inv);
    finite_flags.push_back(torch::isfinite(g).all());
  }
  if (finite_flags.empty()) return false;
  // One device-to-host sync for all parameters.
  return !torch::stack(finite_flags).all().item<bool>();
}

void LossScaler::update(bool found_inf) {
  if (!enabled_) return;
  if (found_inf) {
    scale_ *= options_.backoff_factor;
    clean_steps_ = 0;
  } else if (++clean_steps_ >= options_.growth_interval) {
    scale_ *= options_.growth_factor;
    clean_steps_ = 0;
  }
}

void LossScaler::restore(double scale, int64_t clean_steps) {
  if (!enabled_) return;
  scale_ = scale;
  clean_steps_ = clean_steps;
}

}  // namespace segkd::train
