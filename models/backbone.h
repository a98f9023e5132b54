#pragma once
/// Segmentation backbones: ResNetV1c (mmseg key names) and EfficientNet-B0 (torchvision key names), both with
/// dilation instead of stride past the requested output stride.
#include <torch/torch.h>

#include <array>
#include <string>
#include <vector>

#include "common/norm.h"
#include "models/layers.h"

namespace segkd::models {

/// A backbone returns four stage features ("layer1".."layer4") at strides 4, 8, 8|16, 8|16|32 (output stride
/// 8 or 16).
class BackboneImpl : public torch::nn::Module {
 public:
  /// The four stage outputs, in order.
  virtual std::vector<torch::Tensor> forward(const torch::Tensor& images) = 0;
  /// Channels of the four stage outputs.
  virtual std::array<int64_t, 4> stage_channels() const = 0;
};

/// Options of ResNetV1c: depth 18|34|50|101, output stride 8 (strides 1,2,1,1, dilations 1,1,2,4) or 16
/// (strides 1,2,2,1, dilations 1,1,1,2); the first block of a dilated stage uses half the dilation.
struct ResNetOptions {
  explicit ResNetOptions(int64_t depth) : depth_(depth) {}
  TORCH_ARG(int64_t, depth);
  TORCH_ARG(int64_t, output_stride) = 8;
};

/// One residual block (BasicBlock when expansion is 1, Bottleneck when 4), mmseg "pytorch" style (stride on the
/// 3x3 conv). Children: conv1, bn1, conv2, bn2[, conv3, bn3][, downsample.{0,1}].
class ResBlockImpl : public torch::nn::Module {
 public:
  ResBlockImpl(int64_t inplanes, int64_t planes, int64_t expansion, int64_t stride, int64_t dilation);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  bool bottleneck_;
  torch::nn::Conv2d conv1_{nullptr}, conv2_{nullptr}, conv3_{nullptr}, down_conv_{nullptr};
  Norm2d bn1_{nullptr}, bn2_{nullptr}, bn3_{nullptr}, down_bn_{nullptr};
};
TORCH_MODULE(ResBlock);

/// mmseg ResNetV1c: deep stem `stem.{0,1,3,4,6,7}` (3x3 convs 3->32 s2, 32->32, 32->64), 3x3/2 max-pool, then
/// `layer1..layer4`.
class ResNetV1cImpl : public BackboneImpl {
 public:
  explicit ResNetV1cImpl(const ResNetOptions& options);
  std::vector<torch::Tensor> forward(const torch::Tensor& images) override;
  std::array<int64_t, 4> stage_channels() const override { return channels_; }

 private:
  std::vector<torch::nn::Conv2d> stem_convs_;
  std::vector<Norm2d> stem_norms_;
  std::vector<std::vector<ResBlock>> layers_;
  std::array<int64_t, 4> channels_{};
};
TORCH_MODULE(ResNetV1c);

/// torchvision MBConv: `block.{[expand], depthwise, SE (fc1, fc2), project}` of Conv2dNormActivation pieces.
/// Stochastic depth is not applied (it is a no-op in eval; training runs without it).
class MBConvImpl : public torch::nn::Module {
 public:
  MBConvImpl(int64_t in, int64_t out, int64_t expand_ratio, int64_t kernel, int64_t stride, int64_t dilation);
  torch::Tensor forward(const torch::Tensor& x);

 private:
  bool residual_;
  torch::nn::Conv2d expand_conv_{nullptr}, dw_conv_{nullptr}, fc1_{nullptr}, fc2_{nullptr}, project_conv_{nullptr};
  Norm2d expand_bn_{nullptr}, dw_bn_{nullptr}, project_bn_{nullptr};
};
TORCH_MODULE(MBConv);

/// torchvision EfficientNet-B0 `features.0..7` (the 1x1 320->1280 conv `features.8` and the classifier are not
/// part of the backbone). Stages map to layer1 = features.2 (24 ch), layer2 = features.3 (40), layer3 =
/// features.5 (112), layer4 = features.7 (320). Past the output stride, stride-2 stages become dilated.
class EfficientNetB0Impl : public BackboneImpl {
 public:
  explicit EfficientNetB0Impl(int64_t output_stride = 8);
  std::vector<torch::Tensor> forward(const torch::Tensor& images) override;
  std::array<int64_t, 4> stage_channels() const override { return {24, 40, 112, 320}; }

 private:
  torch::nn::Conv2d stem_conv_{nullptr};
  Norm2d stem_bn_{nullptr};
  std::vector<std::vector<MBConv>> stages_;  // features.1 .. features.7
};
TORCH_MODULE(EfficientNetB0);

/// Builds the backbone named in config ("resnet{18,34,50,101}_v1c" | "efficientnet_b0"). Throws ConfigError
/// naming the key `key` for an unknown name or output stride.
std::shared_ptr<BackboneImpl> make_backbone(const std::string& name, int64_t output_stride,
                                            const std::string& key = "student.backbone");

}  // namespace segkd::models
