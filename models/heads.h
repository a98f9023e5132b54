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
class PSPHeadImpl : public DecodeHeadImpl {
 public:
  explicit PSPHeadImpl(const HeadOptions& options, std::vector<int64_t> pool_scales = {1, 2, 3, 6});
  torch::Tensor forward_feature(const torch::Tensor& x) override;
  /// Output sizes of the pyramid's adaptive average pools, one per `psp_modules.K`.
  const std::vector<int64_t>& pool_scales() const { return scales_; }

 private:
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
