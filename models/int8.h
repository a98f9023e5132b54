#pragma once
/// Int8Segmentor: a frozen, BatchNorm-folded segmentation model executed on LibTorch's quantised CPU kernels
/// (the x86 engine LibTorch was built with: fbgemm, or oneDNN as in Debian's 1.13), for the teacher of a KD run
/// (`teacher.precision = "int8"`) and for `segkd eval --precision int8`.
///
/// Scheme (the one PyTorch's post-training static quantisation uses on x86):
///   - weights: int8, symmetric, one scale per output channel (scale_c = max|w_c| / 127.5);
///   - activations: uint8, affine, one scale per tensor, range reduced to 0..127 (on CPUs without VNNI, such as
///     AVX2 ones, the int8 kernels add pairs of uint8 x int8 products in int16, which a full 0..255 range can
///     saturate);
///   - activation ranges come from calibration: `observe()` runs the fp32 folded model on a few batches and records
///     the min/max at every quantisation point (the input, each convolution's output, each residual sum, each
///     concatenation); `set_ranges()` turns them into scales and prepacks the weights.
/// Activations stay quantised from the input to the head feature; ReLU is fused into the convolutions and residual
/// sums. The classifier (`conv_seg`, 1x1) runs in fp32 on the dequantised head feature, so logits — the soft
/// targets of logit KD — lose no precision beyond the feature's. Every output comes back as fp32.
///
/// Supported: ResNetV1c backbones (18/34/50/101, output stride 8 or 16) with the PSP or ASPP decode head and the
/// FCN auxiliary head. EfficientNet-B0 (depthwise convolutions, SiLU, squeeze-excitation) is not.
#include <torch/torch.h>

#include <string>
#include <vector>

#include "common/model_output.h"
#include "models/segmentor.h"

namespace segkd::models {

/// Throws ConfigError (naming `key`) unless a `backbone` can run in int8 and the quantised engine is available.
void check_int8_supported(const std::string& backbone, const std::string& key);

class Int8Segmentor {
 public:
  /// `model` must be prepared as a teacher with folded BatchNorm (prepare_teacher(model, true)) and live on the
  /// CPU. The model is shared, not copied: observe() runs it.
  explicit Int8Segmentor(Segmentor model);
  ~Int8Segmentor();
  Int8Segmentor(const Int8Segmentor&) = delete;
  Int8Segmentor& operator=(const Int8Segmentor&) = delete;

  /// Runs the fp32 folded model on `images` (N, 3, H, W) and widens every quantisation point's observed range.
  void observe(const torch::Tensor& images);
  /// The observed (or set) ranges: (points, 2) float64, columns min and max, in a fixed point order.
  torch::Tensor ranges() const;
  /// Number of quantisation points and their names (e.g. "backbone.layer1.0.conv2", "backbone.layer1.0.add").
  const std::vector<std::string>& point_names() const;
  /// Takes ranges (from observe() on every rank, reduced; or from a checkpoint), computes the activation scales and
  /// prepacks the weights. Throws segkd::Error if the shape does not match point_names() or a range is not finite.
  void set_ranges(const torch::Tensor& ranges);
  /// True once set_ranges() has run.
  bool ready() const;

  /// The int8 forward pass; outputs as Segmentor::forward, in fp32 (contiguous). Requires ready().
  ModelOutput forward(const torch::Tensor& images, const OutputRequest& request);

  struct Impl;  ///< the graph, its points and packed weights (int8.cpp)

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace segkd::models
