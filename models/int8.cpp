#include "models/int8.h"

#include <ATen/core/dispatch/Dispatcher.h>

#include <cmath>
#include <limits>
#include <optional>

#include "common/error.h"
#include "models/layers.h"

namespace segkd::models {

namespace {

// Activations use 0..127 of quint8 (see int8.h); weights the full symmetric int8 range.
constexpr int64_t kActMin = 0, kActMax = 127;
constexpr double kWeightHalfRange = 127.5;
constexpr double kMinScale = 1.1920928955078125e-07;  // float32 epsilon, PyTorch observers' floor

/// The quantised operators, looked up once in the dispatcher (they have no C++ frontend functions).
struct QuantOps {
  c10::OperatorHandle prepack, conv, conv_relu, add_relu, cat;
  static c10::OperatorHandle find(const char* name, const char* overload) {
    return c10::Dispatcher::singleton().findSchemaOrThrow(name, overload);
  }
  QuantOps()
      : prepack(find("quantized::conv2d_prepack", "")),
        conv(find("quantized::conv2d", "new")),
        conv_relu(find("quantized::conv2d_relu", "new")),
        add_relu(find("quantized::add_relu", "")),
        cat(find("quantized::cat", "")) {}
};

const QuantOps& ops() {
  static const QuantOps instance;
  return instance;
}

c10::IValue call(const c10::OperatorHandle& op, std::vector<c10::IValue> stack) {
  op.callBoxed(&stack);
  return std::move(stack.back());
}

/// The x86 quantised engine this LibTorch offers: "X86" (LibTorch >= 2.0, fbgemm and oneDNN combined), "FBGEMM",
/// or "ONEDNN" (Debian's 1.13 build has only oneDNN and QNNPACK; QNNPACK is for ARM and ~10x slower here).
std::optional<at::QEngine> x86_engine() {
  const auto& supported = at::globalContext().supportedQEngines();
  for (const char* name : {"X86", "FBGEMM", "ONEDNN"}) {
    for (auto engine : supported) {
      if (c10::toString(engine) == name) return engine;
    }
  }
  return std::nullopt;
}

/// A quantisation point: where an activation is (re)quantised, with its observed range and derived parameters.
struct Point {
  std::string name;
  double min = std::numeric_limits<double>::infinity();
  double max = -std::numeric_limits<double>::infinity();
  double scale = 1;
  int64_t zero_point = 0;
};

/// A folded convolution of the model, its output point and (once ranges are set) its prepacked int8 weight.
struct Conv {
  std::string name;
  torch::Tensor weight, bias;
  std::vector<int64_t> stride, padding, dilation;
  int64_t groups = 1;
  bool relu = false;
  int point = -1;
  c10::IValue packed;
};

struct Block {
  int conv1 = -1, conv2 = -1, conv3 = -1, down = -1;
  int add = -1;  ///< point of relu(out + identity)
};

}  // namespace

struct Int8Segmentor::Impl {
  Segmentor model;
  std::vector<Point> points;
  std::vector<std::string> names;
  std::vector<Conv> convs;
  int input = -1;
  std::vector<int> stem;
  std::vector<std::vector<Block>> layers;
  // Decode head: PSP (pool branches at `scales`) or ASPP (image pool + dilated branches), then a bottleneck.
  bool psp = true;
  std::vector<int64_t> scales;
  int image_pool = -1;
  std::vector<int> branches;
  int head_cat = -1, bottleneck = -1;
  torch::Tensor seg_weight, seg_bias;
  int aux_conv = -1;
  torch::Tensor aux_seg_weight, aux_seg_bias;
  bool ready = false;

  explicit Impl(Segmentor m);
  int add_point(const std::string& name);
  int add_conv(const std::string& name, bool relu);
  bool has(const std::string& name) const { return modules.contains(name); }
  void classifier(const std::string& name, torch::Tensor& weight, torch::Tensor& bias);
  void see(int point, const torch::Tensor& x);
  void build_backbone();
  void build_heads();

  torch::OrderedDict<std::string, std::shared_ptr<torch::nn::Module>> modules;
};

int Int8Segmentor::Impl::add_point(const std::string& name) {
  points.push_back(Point{name});
  names.push_back(name);
  return static_cast<int>(points.size()) - 1;
}

int Int8Segmentor::Impl::add_conv(const std::string& name, bool relu) {
  auto* found = modules.find(name);
  auto* conv = found ? dynamic_cast<torch::nn::Conv2dImpl*>(found->get()) : nullptr;
  SEGKD_CHECK(conv, "int8: the model has no convolution ", name);
  const auto& o = conv->options;
  const auto& pad = c10::get<torch::ExpandingArray<2>>(o.padding());
  Conv c;
  c.name = name;
  c.weight = conv->weight.detach().contiguous();
  c.bias = conv->bias.defined() ? conv->bias.detach().contiguous() : torch::zeros({c.weight.size(0)});
  c.stride = {(*o.stride())[0], (*o.stride())[1]};
  c.padding = {(*pad)[0], (*pad)[1]};
  c.dilation = {(*o.dilation())[0], (*o.dilation())[1]};
  c.groups = o.groups();
  SEGKD_CHECK(c.groups == 1, "int8: grouped convolution ", name, " is not supported");
  c.relu = relu;
  c.point = add_point(name);
  convs.push_back(std::move(c));
  return static_cast<int>(convs.size()) - 1;
}

void Int8Segmentor::Impl::classifier(const std::string& name, torch::Tensor& weight, torch::Tensor& bias) {
  auto* found = modules.find(name);
  auto* conv = found ? dynamic_cast<torch::nn::Conv2dImpl*>(found->get()) : nullptr;
  SEGKD_CHECK(conv, "int8: the model has no classifier ", name);
  weight = conv->weight.detach();
  bias = conv->bias.defined() ? conv->bias.detach() : torch::Tensor();
}

void Int8Segmentor::Impl::build_backbone() {
  SEGKD_CHECK(dynamic_cast<ResNetV1cImpl*>(model->backbone().get()),
              "int8: only ResNetV1c backbones run in int8 (resnet18_v1c .. resnet101_v1c)");
  input = add_point("input");
  for (const char* index : {"0", "3", "6"}) stem.push_back(add_conv(str_cat("backbone.stem.", index), /*relu=*/true));
  for (int i = 1; i <= 4; ++i) {
    std::vector<Block> layer;
    for (int b = 0; has(str_cat("backbone.layer", i, ".", b, ".conv1")); ++b) {
      const std::string prefix = str_cat("backbone.layer", i, ".", b, ".");
      const bool bottleneck = has(prefix + "conv3");
      Block block;
      block.conv1 = add_conv(prefix + "conv1", /*relu=*/true);
      block.conv2 = add_conv(prefix + "conv2", /*relu=*/bottleneck);
      if (bottleneck) block.conv3 = add_conv(prefix + "conv3", /*relu=*/false);
      if (has(prefix + "downsample.0")) block.down = add_conv(prefix + "downsample.0", /*relu=*/false);
      block.add = add_point(prefix + "add");
      layer.push_back(block);
    }
    SEGKD_CHECK(!layer.empty(), "int8: the backbone has no blocks in layer", i);
    layers.push_back(std::move(layer));
  }
}

void Int8Segmentor::Impl::build_heads() {
  auto head = model->decode_head();
  if (auto* p = dynamic_cast<PSPHeadImpl*>(head.get())) {
    scales = p->pool_scales();
    for (size_t k = 0; k < scales.size(); ++k) {
      branches.push_back(add_conv(str_cat("decode_head.psp_modules.", k, ".1.conv"), /*relu=*/true));
    }
  } else {
    SEGKD_CHECK(dynamic_cast<ASPPHeadImpl*>(head.get()), "int8: unsupported decode head");
    psp = false;
    image_pool = add_conv("decode_head.image_pool.1.conv", /*relu=*/true);
    for (int k = 0; has(str_cat("decode_head.aspp_modules.", k, ".conv")); ++k) {
      branches.push_back(add_conv(str_cat("decode_head.aspp_modules.", k, ".conv"), /*relu=*/true));
    }
  }
  head_cat = add_point("decode_head.cat");
  bottleneck = add_conv("decode_head.bottleneck.conv", /*relu=*/true);
  classifier("decode_head.conv_seg", seg_weight, seg_bias);
  if (model->auxiliary_head()) {
    aux_conv = add_conv("auxiliary_head.convs.0.conv", /*relu=*/true);
    classifier("auxiliary_head.conv_seg", aux_seg_weight, aux_seg_bias);
  }
}

Int8Segmentor::Impl::Impl(Segmentor m) : model(std::move(m)) {
  SEGKD_CHECK(!model->is_training(), "int8: the model must be prepared as a teacher (eval mode)");
  for_each_norm(*model, [](Norm2dImpl& norm) {
    SEGKD_CHECK(norm.is_folded(), "int8: BatchNorm must be folded into the convolutions (teacher.fold_bn = true)");
  });
  modules = model->named_modules("", /*include_self=*/false);
  build_backbone();
  build_heads();
  modules.clear();
}

void Int8Segmentor::Impl::see(int point, const torch::Tensor& x) {
  auto& p = points[point];
  auto mm = torch::aminmax(x);
  p.min = std::min(p.min, std::get<0>(mm).item<double>());
  p.max = std::max(p.max, std::get<1>(mm).item<double>());
}

namespace {

/// Calibration: the fp32 folded graph, recording each point's range.
struct ObserveExec {
  Int8Segmentor::Impl& m;
  torch::Tensor input(const torch::Tensor& x) {
    m.see(m.input, x);
    return x;
  }
  torch::Tensor conv(int index, const torch::Tensor& x) {
    const Conv& c = m.convs[index];
    auto y = torch::conv2d(x, c.weight, c.bias, c.stride, c.padding, c.dilation, c.groups);
    if (c.relu) y = torch::relu(y);
    m.see(c.point, y);
    return y;
  }
  torch::Tensor add_relu(const torch::Tensor& a, const torch::Tensor& b, int point) {
    auto y = torch::relu(a + b);
    m.see(point, y);
    return y;
  }
  torch::Tensor cat(const std::vector<torch::Tensor>& xs, int point) {
    auto y = torch::cat(xs, 1);
    m.see(point, y);
    return y;
  }
  torch::Tensor to_float(const torch::Tensor& x) { return x; }
};

/// Inference: quantised tensors (NHWC, quint8) from the input quantisation to the head feature.
struct QuantExec {
  Int8Segmentor::Impl& m;
  const Point& at(int point) const { return m.points[point]; }
  torch::Tensor input(const torch::Tensor& x) {
    const auto& p = at(m.input);
    return torch::quantize_per_tensor(x.contiguous(torch::MemoryFormat::ChannelsLast), p.scale, p.zero_point,
                                      torch::kQUInt8);
  }
  torch::Tensor conv(int index, const torch::Tensor& x) {
    const Conv& c = m.convs[index];
    const auto& p = at(c.point);
    return call(c.relu ? ops().conv_relu : ops().conv, {x, c.packed, p.scale, p.zero_point}).toTensor();
  }
  torch::Tensor add_relu(const torch::Tensor& a, const torch::Tensor& b, int point) {
    const auto& p = at(point);
    return call(ops().add_relu, {a, b, p.scale, p.zero_point}).toTensor();
  }
  torch::Tensor cat(const std::vector<torch::Tensor>& xs, int point) {
    const auto& p = at(point);
    return call(ops().cat, {c10::List<torch::Tensor>(xs), int64_t{1}, p.scale, p.zero_point}).toTensor();
  }
  torch::Tensor to_float(const torch::Tensor& x) { return x.dequantize().contiguous(); }
};

template <class Exec>
torch::Tensor run_block(Exec& e, const Block& b, const torch::Tensor& x) {
  auto out = e.conv(b.conv2, e.conv(b.conv1, x));
  if (b.conv3 >= 0) out = e.conv(b.conv3, out);
  auto identity = b.down >= 0 ? e.conv(b.down, x) : x;
  return e.add_relu(out, identity, b.add);
}

template <class Exec>
torch::Tensor run_head_feature(Exec& e, Int8Segmentor::Impl& m, const torch::Tensor& x) {
  const int64_t h = x.size(2), w = x.size(3);
  std::vector<torch::Tensor> outs;
  if (m.psp) {
    outs.push_back(x);
    for (size_t k = 0; k < m.scales.size(); ++k) {
      auto pooled = torch::adaptive_avg_pool2d(x, {m.scales[k], m.scales[k]});
      outs.push_back(resize_bilinear(e.conv(m.branches[k], pooled), h, w));
    }
  } else {
    auto pooled = e.conv(m.image_pool, torch::adaptive_avg_pool2d(x, {1, 1}));
    outs.push_back(resize_bilinear(pooled, h, w));
    for (int branch : m.branches) outs.push_back(e.conv(branch, x));
  }
  return e.conv(m.bottleneck, e.cat(outs, m.head_cat));
}

template <class Exec>
ModelOutput run(Exec& e, Int8Segmentor::Impl& m, const torch::Tensor& images, const OutputRequest& request) {
  auto x = e.input(images);
  for (int c : m.stem) x = e.conv(c, x);
  // Two-element sizes: the quantised max-pool does not expand a single number.
  x = torch::max_pool2d(x, /*kernel_size=*/{3, 3}, /*stride=*/{2, 2}, /*padding=*/{1, 1}, /*dilation=*/{1, 1});
  std::vector<torch::Tensor> stages;
  for (const auto& layer : m.layers) {
    for (const auto& block : layer) x = run_block(e, block, x);
    stages.push_back(x);
  }
  ModelOutput out;
  for (int i = 0; i < 4; ++i) {
    const std::string name = "layer" + std::to_string(i + 1);
    if (request.features.count(name)) out.features[name] = e.to_float(stages[i]);
  }
  if (request.logits || request.features.count("head")) {
    auto feature = e.to_float(run_head_feature(e, m, stages[3]));
    if (request.features.count("head")) out.features["head"] = feature;
    if (request.logits) out.logits = torch::conv2d(feature, m.seg_weight, m.seg_bias);
  }
  if (request.aux_logits && m.aux_conv >= 0) {
    out.aux_logits = torch::conv2d(e.to_float(e.conv(m.aux_conv, stages[2])), m.aux_seg_weight, m.aux_seg_bias);
  }
  return out;
}

}  // namespace

void check_int8_supported(const std::string& backbone, const std::string& key) {
  if (backbone.rfind("resnet", 0) != 0) {
    throw ConfigError(str_cat(key, ": int8 runs ResNetV1c backbones (resnet18_v1c .. resnet101_v1c), not \"",
                              backbone, "\"; use precision = \"fp32\""));
  }
  if (!x86_engine()) {
    throw ConfigError(str_cat(key, ": int8 needs an x86 quantised engine (fbgemm or oneDNN), which this LibTorch build "
                              "lacks"));
  }
}

Int8Segmentor::Int8Segmentor(Segmentor model) {
  auto engine = x86_engine();
  SEGKD_CHECK(engine, "int8: this LibTorch build has no x86 quantised engine (fbgemm or oneDNN)");
  at::globalContext().setQEngine(*engine);
  impl_ = std::make_unique<Impl>(std::move(model));
}

Int8Segmentor::~Int8Segmentor() = default;

void Int8Segmentor::observe(const torch::Tensor& images) {
  c10::InferenceMode guard;
  OutputRequest all;
  all.features = feature_names();
  ObserveExec exec{*impl_};
  run(exec, *impl_, images, all);
}

torch::Tensor Int8Segmentor::ranges() const {
  auto r = torch::empty({static_cast<int64_t>(impl_->points.size()), 2}, torch::kDouble);
  auto a = r.accessor<double, 2>();
  for (size_t i = 0; i < impl_->points.size(); ++i) {
    a[i][0] = impl_->points[i].min;
    a[i][1] = impl_->points[i].max;
  }
  return r;
}

const std::vector<std::string>& Int8Segmentor::point_names() const { return impl_->names; }

void Int8Segmentor::set_ranges(const torch::Tensor& ranges) {
  auto& m = *impl_;
  const auto k = static_cast<int64_t>(m.points.size());
  SEGKD_CHECK(ranges.dim() == 2 && ranges.size(0) == k && ranges.size(1) == 2, "int8: expected ranges of shape [",
              k, ", 2] for this model, got ", ranges.sizes());
  auto r = ranges.to(torch::kDouble).contiguous();
  auto a = r.accessor<double, 2>();
  for (int64_t i = 0; i < k; ++i) {
    auto& p = m.points[i];
    SEGKD_CHECK(std::isfinite(a[i][0]) && std::isfinite(a[i][1]) && a[i][0] <= a[i][1], "int8: calibration range of ",
                p.name, " is [", a[i][0], ", ", a[i][1], "] (no data observed, or non-finite activations)");
    p.min = a[i][0];
    p.max = a[i][1];
    const double lo = std::min(p.min, 0.0), hi = std::max(p.max, 0.0);
    p.scale = std::max((hi - lo) / static_cast<double>(kActMax - kActMin), kMinScale);
    p.zero_point = std::clamp<int64_t>(kActMin - std::llround(lo / p.scale), kActMin, kActMax);
  }
  c10::InferenceMode guard;
  for (auto& c : m.convs) {
    auto scales = (c.weight.abs().amax({1, 2, 3}).to(torch::kDouble) / kWeightHalfRange).clamp_min(kMinScale);
    auto zero_points = torch::zeros({c.weight.size(0)}, torch::kLong);
    auto qweight = torch::quantize_per_channel(c.weight, scales, zero_points, /*axis=*/0, torch::kQInt8);
    c.packed = call(ops().prepack, {qweight, c.bias, c.stride, c.padding, c.dilation, c.groups});
  }
  m.ready = true;
}

bool Int8Segmentor::ready() const { return impl_->ready; }

ModelOutput Int8Segmentor::forward(const torch::Tensor& images, const OutputRequest& request) {
  SEGKD_CHECK(impl_->ready, "int8: forward before calibration (set_ranges)");
  SEGKD_CHECK(images.dim() == 4 && images.size(1) == 3, "int8: expected images (N, 3, H, W), got ", images.sizes());
  c10::InferenceMode guard;
  QuantExec exec{*impl_};
  return run(exec, *impl_, images, request);
}

}  // namespace segkd::models
