#pragma once
/// Segmentation heads with mmseg key names: PSPHead, ASPPHead (DeepLabV3) and FCNHead (auxiliary).
///
/// Every head ends as mmseg's BaseDecodeHead: feature -> Dropout2d(p) -> `conv_seg` (1x1, with bias).
#include <torch/torch.h>

#include <vector>

#include "models/layers.h"

namespace segkd::models {

/// Common options: input channels, head channels, classes, dropout before conv_seg.
struct HeadOptions {
  HeadOptions(int64_t in_channels, int64_t channels, int64_t num_classes)
      : in_channels_(in_channels), channels_(channels), num_classes_(num_classes) {}
  TORCH_ARG(int64_t, in_channels);
  TORCH_ARG(int64_t, channels);
  TORCH_ARG(int64_t, num_classes);
  TORCH_ARG(double, dropout) = 0.1;
};

/// mmseg BaseDecodeHead: owns `conv_seg` and the dropout; subclasses compute the feature.
class DecodeHeadImpl : public torch::nn::Module {
 public:
  explicit DecodeHeadImpl(const HeadOptions& options);
  /// The head feature (mmseg: the bottleneck output), before dropout.
  virtual torch::Tensor forward_feature(const torch::Tensor& x) = 0;
  /// conv_seg(dropout(feature)): logits at the feature's resolution.
  torch::Tensor classify(const torch::Tensor& feature);
  int64_t channels() const { return options_.channels(); }

 protected:
  HeadOptions options_;
  torch::nn::Conv2d conv_seg_{nullptr};
  torch::nn::Dropout2d dropout_{nullptr};
};

/// PSPHead: pyramid pooling at scales (1,2,3,6) (`psp_modules.K.1` ConvModules), upsampled and concatenated with
/// the input, then a 3x3 `bottleneck` ConvModule.
///
/// A frozen teacher (BatchNorm folded, eval mode, no autograd) takes a cheaper, mathematically identical route through
/// the bottleneck: a 3x3 convolution of an upsampled pooled map equals the sum over its nine taps of the shifted,
/// upsampled product of that tap's weights with the small map (channel mixing commutes with bilinear upsampling and
/// with shifting), so the pooled channels are mixed at 1x1..6x6 instead of at the full map. For PSPNet-R101 that
/// halves the bottleneck's multiply-accumulates; the outputs agree with the direct route to float rounding.
class PSPHeadImpl : public DecodeHeadImpl {
 public:
  explicit PSPHeadImpl(const HeadOptions& options, std::vector<int64_t> pool_scales = {1, 2, 3, 6});
  torch::Tensor forward_feature(const torch::Tensor& x) override;
  /// Output sizes of the pyramid's adaptive average pools, one per `psp_modules.K`.
  const std::vector<int64_t>& pool_scales() const { return scales_; }

 private:
  torch::Tensor forward_feature_factored(const torch::Tensor& x);
  /// The factored route's constants for one feature-map size, derived from the frozen weights (rebuilt when the
  /// size, the weights or their version change; the teacher runs on one thread at a time).
  struct Factored {
    int64_t h = -1, w = -1, version = -1;
    const void* weights = nullptr;
    torch::Tensor x_weights;          ///< the bottleneck weights that read the input map, contiguous
    std::vector<torch::Tensor> taps;  ///< per branch: its bottleneck weights as nine stacked 1x1 convolutions
    torch::Tensor spread;             ///< [sum over branches of 9 * scale^2, h * w]: shifted bilinear upsampling
  };
  const Factored& factored(int64_t h, int64_t w);
  Factored factored_;
  std::vector<int64_t> scales_;
  std::vector<ConvModule> pool_convs_;
  ConvModule bottleneck_{nullptr};
};
TORCH_MODULE(PSPHead);

/// ASPPHead (DeepLabV3): `image_pool.1` (global pooling + 1x1), `aspp_modules.K` (1x1 for dilation 1, 3x3
/// dilated otherwise; dilations 1,12,24,36), concatenated, then a 3x3 `bottleneck`.
class ASPPHeadImpl : public DecodeHeadImpl {
 public:
  explicit ASPPHeadImpl(const HeadOptions& options, std::vector<int64_t> dilations = {1, 12, 24, 36});
  torch::Tensor forward_feature(const torch::Tensor& x) override;

 private:
  ConvModule image_pool_conv_{nullptr};
  std::vector<ConvModule> aspp_;
  ConvModule bottleneck_{nullptr};
};
TORCH_MODULE(ASPPHead);

/// FCNHead with one 3x3 ConvModule (`convs.0`) and concat_input=false, as mmseg's auxiliary head.
class FCNHeadImpl : public DecodeHeadImpl {
 public:
  explicit FCNHeadImpl(const HeadOptions& options);
  torch::Tensor forward_feature(const torch::Tensor& x) override;

 private:
  ConvModule conv_{nullptr};
};
TORCH_MODULE(FCNHead);

}  // namespace segkd::models
