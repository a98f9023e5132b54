#pragma once
/// Mixed precision (`run.precision`): an autocast region for the forward passes and dynamic loss scaling for fp16.
/// Autocast applies to CUDA only; a CPU run trains in fp32 whatever the setting (the trainer says so once).
#include <torch/torch.h>

#include <string>
#include <vector>

#include "common/model_output.h"

namespace segkd::train {

/// Numeric precision of a forward pass. kInt8 is the teacher's quantised CPU path (models/int8.h), never autocast.
enum class Precision { kFp32, kFp16, kBf16, kInt8 };

/// "fp32" | "fp16" | "bf16" | "int8".
const char* to_string(Precision precision);

/// "fp32" | "fp16" | "bf16" (the config validator has already checked the spelling).
Precision parse_precision(const std::string& name);

/// Autocast to fp16/bf16 on CUDA for the lifetime of the object; does nothing for kFp32 or a CPU device.
/// Nested regions are not supported (none are needed: one per forward pass).
class AutocastRegion {
 public:
  AutocastRegion(Precision precision, const torch::Device& device);
  ~AutocastRegion();
  AutocastRegion(const AutocastRegion&) = delete;
  AutocastRegion& operator=(const AutocastRegion&) = delete;

 private:
  bool active_ = false;
};

/// Casts fp16/bf16 outputs of an autocast forward to fp32 (losses are computed in fp32); other tensors are kept as
/// they are, or cloned when `copy` (to leave inference mode).
void widen_outputs(ModelOutput& out, bool copy);

/// LossScaler settings (the defaults of torch.cuda.amp.GradScaler).
struct LossScalerOptions {
  double init_scale = 65536.0;
  double growth_factor = 2.0;
  double backoff_factor = 0.5;
  int64_t growth_interval = 2000;
};

/// Dynamic loss scaling as in torch.cuda.amp.GradScaler: the loss is multiplied by `scale` before backward, the
/// gradients divided by it before the step; a step whose gradients hold inf/NaN is skipped and the scale halved; after
/// `growth_interval` clean steps the scale doubles. Gradients are checked after the all-reduce, so every rank sees the
/// same inf and takes the same decision. Disabled (fp32, bf16) it is the identity.
class LossScaler {
 public:
  using Options = LossScalerOptions;
  explicit LossScaler(bool enabled, Options options = {});

  bool enabled() const { return enabled_; }
  double scale() const { return scale_; }
  int64_t clean_steps() const { return clean_steps_; }

  /// loss × scale (the loss itself when disabled).
  torch::Tensor scale_loss(const torch::Tensor& loss) const;
  /// Divides the defined gradients of `params` by the scale; returns true if any gradient is not finite.
  bool unscale(const std::vector<torch::Tensor>& params) const;
  /// Adjusts the scale after a step attempt (`found_inf`: the step was skipped).
  void update(bool found_inf);
  /// Checkpoint state (scale, clean steps), so a resumed run scales exactly as the uninterrupted one.
  void restore(double scale, int64_t clean_steps);

 private:
  bool enabled_;
  Options options_;
  double scale_;
  int64_t clean_steps_ = 0;
};

}  // namespace segkd::train
