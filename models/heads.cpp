#include "models/heads.h"

#include "models/layers.h"

namespace segkd::models {

// ---- layers.h -------------------------------------------------------------------------------------------------

namespace {
thread_local MacCounter* t_counter = nullptr;
}

MacCounter::MacCounter(bool dry_run) : dry_run_(dry_run), previous_(t_counter) { t_counter = this; }
MacCounter::~MacCounter() { t_counter = previous_; }
MacCounter* MacCounter::current() { return t_counter; }

namespace {

/// Output size of a convolution along one dimension.
int64_t conv_out(int64_t n, int64_t k, int64_t stride, int64_t pad, int64_t dilation) {
  return (n + 2 * pad - dilation * (k - 1) - 1) / stride + 1;
}

}  // namespace

torch::Tensor run_conv(torch::nn::Conv2d& conv, const torch::Tensor& x) {
  auto* counter = MacCounter::current();
  torch::Tensor y;
  if (counter && counter->dry_run()) {
    const auto& o = conv->options;
    const auto& pad = c10::get<torch::ExpandingArray<2>>(o.padding());
    y = torch::zeros({x.size(0), o.out_channels(),
                      conv_out(x.size(2), (*o.kernel_size())[0], (*o.stride())[0], (*pad)[0], (*o.dilation())[0]),
                      conv_out(x.size(3), (*o.kernel_size())[1], (*o.stride())[1], (*pad)[1], (*o.dilation())[1])},
                     x.options());
  } else {
    y = conv->forward(x);
  }
  if (counter) {
    const auto& w = conv->weight;  // (out, in/groups, kh, kw)
    counter->add(static_cast<double>(y.numel()) * static_cast<double>(w.size(1) * w.size(2) * w.size(3)));
  }
  return y;
}

torch::nn::Conv2d make_conv(int64_t in, int64_t out, int64_t k, int64_t stride, int64_t dilation, int64_t groups,
                            bool bias) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, k)
                               .stride(stride)
                               .padding(dilation * (k - 1) / 2)
                               .dilation(dilation)
                               .groups(groups)
                               .bias(bias));
}

torch::Tensor resize_bilinear(const torch::Tensor& x, int64_t height, int64_t width) {
  if (x.size(2) == height && x.size(3) == width) return x;
  namespace F = torch::nn::functional;
  return F::interpolate(x, F::InterpolateFuncOptions()
                               .size(std::vector<int64_t>{height, width})
                               .mode(torch::kBilinear)
                               .align_corners(false));
}

ConvModuleImpl::ConvModuleImpl(int64_t in, int64_t out, int64_t k, int64_t dilation) {
  conv = register_module("conv", make_conv(in, out, k, /*stride=*/1, dilation));
  bn = register_module("bn", Norm2d(out));
}

torch::Tensor ConvModuleImpl::forward(const torch::Tensor& x) { return torch::relu(bn(run_conv(conv, x))); }

// ---- heads.h --------------------------------------------------------------------------------------------------

DecodeHeadImpl::DecodeHeadImpl(const HeadOptions& options) : options_(options) {
  // Registered first, as mmseg's BaseDecodeHead does; the key order does not matter for loading.
  conv_seg_ = register_module(
      "conv_seg", torch::nn::Conv2d(torch::nn::Conv2dOptions(options.channels(), options.num_classes(), 1)));
  dropout_ = register_module("dropout", torch::nn::Dropout2d(torch::nn::Dropout2dOptions(options.dropout())));
}

torch::Tensor DecodeHeadImpl::classify(const torch::Tensor& feature) {
  auto x = options_.dropout() > 0 ? dropout_(feature) : feature;
  return run_conv(conv_seg_, x);
}

PSPHeadImpl::PSPHeadImpl(const HeadOptions& options, std::vector<int64_t> pool_scales)
    : DecodeHeadImpl(options), scales_(std::move(pool_scales)) {
  torch::nn::ModuleList psp_modules;
  for (int64_t scale : scales_) {
    // psp_modules.K = Sequential(AdaptiveAvgPool2d(scale), ConvModule): the ConvModule is child "1".
    torch::nn::Sequential branch;
    branch->push_back(torch::nn::AdaptiveAvgPool2d(torch::nn::AdaptiveAvgPool2dOptions(scale)));
    ConvModule conv(options.in_channels(), options.channels(), 1);
    branch->push_back(conv);
    pool_convs_.push_back(conv);
    psp_modules->push_back(branch);
  }
  register_module("psp_modules", psp_modules);
  bottleneck_ = register_module(
      "bottleneck",
      ConvModule(options.in_channels() + static_cast<int64_t>(scales_.size()) * options.channels(),
                 options.channels(), 3));
}

torch::Tensor PSPHeadImpl::forward_feature(const torch::Tensor& x) {
  if (!is_training() && bottleneck_->bn->is_folded() && !torch::GradMode::is_enabled() && !MacCounter::current()) {
    return forward_feature_factored(x);
  }
  std::vector<torch::Tensor> outs{x};
  for (size_t i = 0; i < scales_.size(); ++i) {
    auto pooled = torch::adaptive_avg_pool2d(x, {scales_[i], scales_[i]});
    outs.push_back(resize_bilinear(pool_convs_[i](pooled), x.size(2), x.size(3)));
  }
  return bottleneck_(torch::cat(outs, 1));
}

const PSPHeadImpl::Factored& PSPHeadImpl::factored(int64_t h, int64_t w) {
  const auto& weight = bottleneck_->conv->weight;  // [out, in_x + k * channels, 3, 3]
  if (factored_.h == h && factored_.w == w && factored_.weights == weight.data_ptr() &&
      factored_.version == static_cast<int64_t>(weight._version())) {
    return factored_;
  }
  torch::NoGradGuard no_grad;
  Factored f{h, w, static_cast<int64_t>(weight._version()), weight.data_ptr(), {}, {}, {}};
  const int64_t out = weight.size(0), c = pool_convs_[0]->conv->weight.size(0);
  const int64_t cx = weight.size(1) - static_cast<int64_t>(scales_.size()) * c;
  f.x_weights = weight.narrow(1, 0, cx).contiguous();
  std::vector<torch::Tensor> spreads;
  for (size_t i = 0; i < scales_.size(); ++i) {
    const int64_t s = scales_[i];
    f.taps.push_back(weight.narrow(1, cx + static_cast<int64_t>(i) * c, c)
                         .permute({2, 3, 0, 1})
                         .reshape({9 * out, c, 1, 1})
                         .contiguous());
    // Row j of tap t: where small-map position j lands after upsampling to h x w and shifting by the tap.
    auto up = resize_bilinear(torch::eye(s * s, weight.options()).view({s * s, 1, s, s}), h, w);
    auto padded = torch::constant_pad_nd(up, {1, 1, 1, 1});
    for (int64_t ky = 0; ky < 3; ++ky) {
      for (int64_t kx = 0; kx < 3; ++kx) spreads.push_back(padded.narrow(2, ky, h).narrow(3, kx, w).reshape({s * s, h * w}));
    }
  }
  f.spread = torch::cat(spreads, 0);
  factored_ = std::move(f);
  return factored_;
}

torch::Tensor PSPHeadImpl::forward_feature_factored(const torch::Tensor& x) {
  // relu(conv3x3(cat(x, up(p_1), ..., up(p_k))) + b), padding 1, equals relu(conv3x3(x; W_x) + b
  //   + sum_k sum_taps shift_tap(up(W_k,tap p_k))): each W_k,tap p_k is a 1x1 convolution on the small map p_k, and
  // all the shifted upsamplings together are one matrix product with `spread`.
  auto& conv = bottleneck_->conv;
  const auto& weight = conv->weight;
  const int64_t n = x.size(0), h = x.size(2), w = x.size(3), out = weight.size(0);
  const auto& f = factored(h, w);
  auto y = torch::conv2d(x, f.x_weights, conv->bias, /*stride=*/1, /*padding=*/1);
  std::vector<torch::Tensor> mixed;
  for (size_t i = 0; i < scales_.size(); ++i) {
    const int64_t s = scales_[i];
    auto pooled = pool_convs_[i](torch::adaptive_avg_pool2d(x, {s, s}));
    // [n, 9 * out, s, s] -> [n, out, 9 * s * s], tap-major like the rows of `spread`.
    mixed.push_back(torch::conv2d(pooled, f.taps[i]).view({n, 9, out, s * s}).permute({0, 2, 1, 3}).reshape({n, out, 9 * s * s}));
  }
  y.add_(torch::matmul(torch::cat(mixed, 2), f.spread).view({n, out, h, w}));
  return torch::relu_(y);
}

ASPPHeadImpl::ASPPHeadImpl(const HeadOptions& options, std::vector<int64_t> dilations) : DecodeHeadImpl(options) {
  torch::nn::Sequential image_pool;
  image_pool->push_back(torch::nn::AdaptiveAvgPool2d(torch::nn::AdaptiveAvgPool2dOptions(1)));
  image_pool_conv_ = ConvModule(options.in_channels(), options.channels(), 1);
  image_pool->push_back(image_pool_conv_);
  register_module("image_pool", image_pool);
  torch::nn::ModuleList aspp_modules;
  for (int64_t d : dilations) {
    ConvModule branch(options.in_channels(), options.channels(), d == 1 ? 1 : 3, d);
    aspp_.push_back(branch);
    aspp_modules->push_back(branch);
  }
  register_module("aspp_modules", aspp_modules);
  bottleneck_ = register_module(
      "bottleneck", ConvModule((static_cast<int64_t>(dilations.size()) + 1) * options.channels(),
                               options.channels(), 3));
}

torch::Tensor ASPPHeadImpl::forward_feature(const torch::Tensor& x) {
  auto pooled = image_pool_conv_(torch::adaptive_avg_pool2d(x, {1, 1}));
  std::vector<torch::Tensor> outs{resize_bilinear(pooled, x.size(2), x.size(3))};
  for (auto& branch : aspp_) outs.push_back(branch(x));
  return bottleneck_(torch::cat(outs, 1));
}

FCNHeadImpl::FCNHeadImpl(const HeadOptions& options) : DecodeHeadImpl(options) {
  torch::nn::Sequential convs;
  conv_ = ConvModule(options.in_channels(), options.channels(), 3);
  convs->push_back(conv_);
  register_module("convs", convs);
}

torch::Tensor FCNHeadImpl::forward_feature(const torch::Tensor& x) { return conv_(x); }

}  // namespace segkd::models
