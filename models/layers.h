#pragma once
/// Building blocks shared by segkd's backbones and heads (internal to models/).
///
/// Every convolution of a segkd model runs through `run_conv`, which adds its multiply-accumulates to the
/// thread's active `MacCounter` (if any); that is how `flops_per_image` counts without forward hooks.
#include <torch/torch.h>

#include <vector>

#include "common/norm.h"

namespace segkd::models {

/// Accumulates the multiply-accumulates of every convolution run on this thread while it is alive.
class MacCounter {
 public:
  /// dry_run: convolutions return zeros of the right shape instead of computing (shapes and counts only).
  explicit MacCounter(bool dry_run = false);
  ~MacCounter();
  MacCounter(const MacCounter&) = delete;
  MacCounter& operator=(const MacCounter&) = delete;
  /// Multiply-accumulates counted so far (all images of the batch).
  double macs() const { return macs_; }
  /// The counter active on this thread, or nullptr.
  static MacCounter* current();
  void add(double macs) { macs_ += macs; }
  bool dry_run() const { return dry_run_; }

 private:
  double macs_ = 0;
  bool dry_run_;
  MacCounter* previous_;
};

/// Runs `conv` on `x`, counting its multiply-accumulates into the active MacCounter.
torch::Tensor run_conv(torch::nn::Conv2d& conv, const torch::Tensor& x);

/// A 2-D convolution without bias (followed by a Norm2d): kernel k, stride, dilation, groups; padding keeps
/// "same" geometry: dilation * (k - 1) / 2.
torch::nn::Conv2d make_conv(int64_t in, int64_t out, int64_t k, int64_t stride = 1, int64_t dilation = 1,
                            int64_t groups = 1, bool bias = false);

/// Bilinear resize with align_corners=false (mmseg's `resize`).
torch::Tensor resize_bilinear(const torch::Tensor& x, int64_t height, int64_t width);

/// mmcv ConvModule: conv (no bias) -> Norm2d -> ReLU; children "conv" and "bn" as in mmseg checkpoints.
class ConvModuleImpl : public torch::nn::Module {
 public:
  ConvModuleImpl(int64_t in, int64_t out, int64_t k, int64_t dilation = 1);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::Conv2d conv{nullptr};
  Norm2d bn{nullptr};
};
TORCH_MODULE(ConvModule);

}  // namespace segkd::models
