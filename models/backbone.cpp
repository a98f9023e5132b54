#include "models/backbone.h"

#include "common/error.h"

namespace segkd::models {

// ---- ResNetV1c ------------------------------------------------------------------------------------------------

ResBlockImpl::ResBlockImpl(int64_t inplanes, int64_t planes, int64_t expansion, int64_t stride, int64_t dilation)
    : bottleneck_(expansion == 4) {
  // Registration order matters: prepare_teacher folds each Norm2d into the Conv2d registered just before it.
  if (bottleneck_) {
    conv1_ = register_module("conv1", make_conv(inplanes, planes, 1));
    bn1_ = register_module("bn1", Norm2d(planes));
    conv2_ = register_module("conv2", make_conv(planes, planes, 3, stride, dilation));
    bn2_ = register_module("bn2", Norm2d(planes));
    conv3_ = register_module("conv3", make_conv(planes, planes * 4, 1));
    bn3_ = register_module("bn3", Norm2d(planes * 4));
  } else {
    conv1_ = register_module("conv1", make_conv(inplanes, planes, 3, stride, dilation));
    bn1_ = register_module("bn1", Norm2d(planes));
    // mmseg's BasicBlock: the second 3x3 conv is never dilated (padding 1).
    conv2_ = register_module("conv2", make_conv(planes, planes, 3));
    bn2_ = register_module("bn2", Norm2d(planes));
  }
  if (stride != 1 || inplanes != planes * expansion) {
    torch::nn::Sequential downsample;
    down_conv_ = make_conv(inplanes, planes * expansion, 1, stride);
    down_bn_ = Norm2d(planes * expansion);
    downsample->push_back(down_conv_);
    downsample->push_back(down_bn_);
    register_module("downsample", downsample);
  }
}

torch::Tensor ResBlockImpl::forward(const torch::Tensor& x) {
  auto out = torch::relu(bn1_(run_conv(conv1_, x)));
  if (bottleneck_) {
    out = torch::relu(bn2_(run_conv(conv2_, out)));
    out = bn3_(run_conv(conv3_, out));
  } else {
    out = bn2_(run_conv(conv2_, out));
  }
  auto identity = down_conv_ ? down_bn_(run_conv(down_conv_, x)) : x;
  return torch::relu(out + identity);
}

ResNetV1cImpl::ResNetV1cImpl(const ResNetOptions& options) {
  std::vector<int64_t> counts;
  int64_t expansion = 1;
  switch (options.depth()) {
    case 18: counts = {2, 2, 2, 2}; break;
    case 34: counts = {3, 4, 6, 3}; break;
    case 50: counts = {3, 4, 6, 3}; expansion = 4; break;
    case 101: counts = {3, 4, 23, 3}; expansion = 4; break;
    default: throw ConfigError(str_cat("ResNetV1c: unsupported depth ", options.depth(), " (18, 34, 50, 101)"));
  }
  std::array<int64_t, 4> strides{1, 2, 1, 1}, dilations{1, 1, 2, 4};
  if (options.output_stride() == 16) {
    strides = {1, 2, 2, 1};
    dilations = {1, 1, 1, 2};
  } else if (options.output_stride() != 8) {
    throw ConfigError(str_cat("ResNetV1c: output_stride ", options.output_stride(), " is not 8 or 16"));
  }

  // stem.{0,3,6} convs, stem.{1,4,7} norms, ReLUs at 2, 5, 8 (parameter-free, kept for the indices).
  torch::nn::Sequential stem;
  const std::array<std::array<int64_t, 3>, 3> stem_spec{{{3, 32, 2}, {32, 32, 1}, {32, 64, 1}}};
  for (const auto& s : stem_spec) {
    stem_convs_.push_back(make_conv(s[0], s[1], 3, s[2]));
    stem_norms_.push_back(Norm2d(s[1]));
    stem->push_back(stem_convs_.back());
    stem->push_back(stem_norms_.back());
    stem->push_back(torch::nn::ReLU());
  }
  register_module("stem", stem);

  int64_t inplanes = 64;
  for (int64_t i = 0; i < 4; ++i) {
    const int64_t planes = 64 << i;
    const int64_t first_dilation = dilations[i] > 1 ? dilations[i] / 2 : dilations[i];  // contract dilation
    torch::nn::Sequential layer;
    std::vector<ResBlock> blocks;
    for (int64_t b = 0; b < counts[i]; ++b) {
      blocks.emplace_back(inplanes, planes, expansion, b == 0 ? strides[i] : 1, b == 0 ? first_dilation
                                                                                      : dilations[i]);
      layer->push_back(blocks.back());
      inplanes = planes * expansion;
    }
    register_module("layer" + std::to_string(i + 1), layer);
    layers_.push_back(std::move(blocks));
    channels_[i] = planes * expansion;
  }
}

std::vector<torch::Tensor> ResNetV1cImpl::forward(const torch::Tensor& images) {
  auto x = images;
  for (size_t i = 0; i < stem_convs_.size(); ++i) x = torch::relu(stem_norms_[i](run_conv(stem_convs_[i], x)));
  x = torch::max_pool2d(x, /*kernel_size=*/3, /*stride=*/2, /*padding=*/1);
  std::vector<torch::Tensor> outs;
  for (auto& layer : layers_) {
    for (auto& block : layer) x = block(x);
    outs.push_back(x);
  }
  return outs;
}

// ---- EfficientNet-B0 ------------------------------------------------------------------------------------------

MBConvImpl::MBConvImpl(int64_t in, int64_t out, int64_t expand_ratio, int64_t kernel, int64_t stride,
                       int64_t dilation)
    : residual_(stride == 1 && in == out) {
  const int64_t expanded = in * expand_ratio;
  const int64_t squeeze = std::max<int64_t>(1, in / 4);
  // torchvision's layout: block.{[expand CNA], depthwise CNA, SqueezeExcitation, project CNA}, where each CNA
  // (Conv2dNormActivation) has children "0" (conv) and "1" (norm). Plain modules, since SE is not a Sequential.
  auto block = std::make_shared<torch::nn::Module>("MBConvBlock");
  int index = 0;
  auto add_cna = [&](const torch::nn::Conv2d& conv, const Norm2d& norm) {
    auto cna = std::make_shared<torch::nn::Module>("Conv2dNormActivation");
    cna->register_module("0", conv);
    cna->register_module("1", norm);
    block->register_module(std::to_string(index++), cna);
  };
  if (expand_ratio != 1) {
    expand_conv_ = make_conv(in, expanded, 1);
    expand_bn_ = Norm2d(expanded);
    add_cna(expand_conv_, expand_bn_);
  }
  dw_conv_ = make_conv(expanded, expanded, kernel, stride, dilation, /*groups=*/expanded);
  dw_bn_ = Norm2d(expanded);
  add_cna(dw_conv_, dw_bn_);
  auto se = std::make_shared<torch::nn::Module>("SqueezeExcitation");
  fc1_ = se->register_module("fc1", make_conv(expanded, squeeze, 1, 1, 1, 1, /*bias=*/true));
  fc2_ = se->register_module("fc2", make_conv(squeeze, expanded, 1, 1, 1, 1, /*bias=*/true));
  block->register_module(std::to_string(index++), se);
  project_conv_ = make_conv(expanded, out, 1);
  project_bn_ = Norm2d(out);
  add_cna(project_conv_, project_bn_);
  register_module("block", block);
}

torch::Tensor MBConvImpl::forward(const torch::Tensor& x) {
  auto y = x;
  if (expand_conv_) y = torch::silu(expand_bn_(run_conv(expand_conv_, y)));
  y = torch::silu(dw_bn_(run_conv(dw_conv_, y)));
  auto scale = torch::adaptive_avg_pool2d(y, {1, 1});
  scale = torch::sigmoid(run_conv(fc2_, torch::silu(run_conv(fc1_, scale))));
  y = project_bn_(run_conv(project_conv_, y * scale));
  return residual_ ? y + x : y;
}

EfficientNetB0Impl::EfficientNetB0Impl(int64_t output_stride) {
  if (output_stride != 8 && output_stride != 16) {
    throw ConfigError(str_cat("EfficientNet-B0: output_stride ", output_stride, " is not 8 or 16"));
  }
  auto features = std::make_shared<torch::nn::Module>("Features");
  auto stem = std::make_shared<torch::nn::Module>("Conv2dNormActivation");
  stem_conv_ = stem->register_module("0", make_conv(3, 32, 3, 2));
  stem_bn_ = stem->register_module("1", Norm2d(32));
  features->register_module("0", stem);
  // (expand, kernel, stride, in, out, layers) of torchvision's efficientnet_b0.
  const std::array<std::array<int64_t, 6>, 7> spec{{{1, 3, 1, 32, 16, 1},
                                                    {6, 3, 2, 16, 24, 2},
                                                    {6, 5, 2, 24, 40, 2},
                                                    {6, 3, 2, 40, 80, 3},
                                                    {6, 5, 1, 80, 112, 3},
                                                    {6, 5, 2, 112, 192, 4},
                                                    {6, 3, 1, 192, 320, 1}}};
  int64_t current_stride = 2, dilation = 1;
  for (const auto& s : spec) {
    int64_t stride = s[2];
    int64_t first_dilation = dilation;
    if (current_stride * stride > output_stride) {
      // Replace the stride by dilation: the first block keeps the previous dilation, as torchvision does.
      dilation *= stride;
      stride = 1;
    } else {
      current_stride *= stride;
    }
    torch::nn::Sequential stage;
    std::vector<MBConv> blocks;
    for (int64_t b = 0; b < s[5]; ++b) {
      blocks.emplace_back(b == 0 ? s[3] : s[4], s[4], s[0], s[1], b == 0 ? stride : 1,
                          b == 0 ? first_dilation : dilation);
      stage->push_back(blocks.back());
    }
    features->register_module(std::to_string(stages_.size() + 1), stage);
    stages_.push_back(std::move(blocks));
  }
  register_module("features", features);
}

std::vector<torch::Tensor> EfficientNetB0Impl::forward(const torch::Tensor& images) {
  auto x = torch::silu(stem_bn_(run_conv(stem_conv_, images)));
  std::vector<torch::Tensor> outs;
  for (size_t i = 0; i < stages_.size(); ++i) {
    for (auto& block : stages_[i]) x = block(x);
    // features.2, .3, .5, .7 (stages_ index 1, 2, 4, 6) are layer1..layer4.
    if (i == 1 || i == 2 || i == 4 || i == 6) outs.push_back(x);
  }
  return outs;
}

std::shared_ptr<BackboneImpl> make_backbone(const std::string& name, int64_t output_stride,
                                            const std::string& key) {
  if (output_stride != 8 && output_stride != 16) {
    throw ConfigError(str_cat(key, ": output_stride ", output_stride, " is not 8 or 16"));
  }
  for (int64_t depth : {18, 34, 50, 101}) {
    if (name == "resnet" + std::to_string(depth) + "_v1c") {
      return std::make_shared<ResNetV1cImpl>(ResNetOptions(depth).output_stride(output_stride));
    }
  }
  if (name == "efficientnet_b0") return std::make_shared<EfficientNetB0Impl>(output_stride);
  throw ConfigError(str_cat(key, ": unknown backbone \"", name,
                            "\" (resnet18_v1c, resnet34_v1c, resnet50_v1c, resnet101_v1c, efficientnet_b0)"));
}

}  // namespace segkd::models
