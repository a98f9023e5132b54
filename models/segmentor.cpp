#include "models/segmentor.h"

#include <spdlog/spdlog.h>

#include "common/error.h"
#include "models/weights.h"

namespace segkd::models {

namespace {

bool is_small_backbone(const std::string& name) {
  return name == "resnet18_v1c" || name == "resnet34_v1c" || name == "efficientnet_b0";
}

}  // namespace

SegmentorImpl::SegmentorImpl(const ModelOptions& cfg, int64_t num_classes) : num_classes_(num_classes) {
  if (num_classes < 1) throw ConfigError(str_cat("data.num_classes: must be >= 1, got ", num_classes));
  if (cfg.dropout < 0 || cfg.dropout >= 1) {
    throw ConfigError(str_cat("dropout: must be in [0, 1), got ", cfg.dropout));
  }
  backbone_ = make_backbone(cfg.backbone, cfg.output_stride, "backbone");
  register_module("backbone", backbone_);
  const auto stages = backbone_->stage_channels();
  const bool small = is_small_backbone(cfg.backbone);
  const int64_t head_channels = small ? 128 : 512;
  const int64_t aux_channels = small ? 64 : 256;
  auto head_options = HeadOptions(stages[3], head_channels, num_classes).dropout(cfg.dropout);
  if (cfg.arch == "pspnet") {
    decode_head_ = std::make_shared<PSPHeadImpl>(head_options);
  } else if (cfg.arch == "deeplabv3") {
    decode_head_ = std::make_shared<ASPPHeadImpl>(head_options);
  } else {
    throw ConfigError(str_cat("arch: unknown architecture \"", cfg.arch, "\" (pspnet, deeplabv3)"));
  }
  register_module("decode_head", decode_head_);
  if (cfg.aux_head) {
    aux_head_ = std::make_shared<FCNHeadImpl>(
        HeadOptions(stages[2], aux_channels, num_classes).dropout(cfg.dropout));
    register_module("auxiliary_head", aux_head_);
  }
}

ModelOutput SegmentorImpl::forward(const torch::Tensor& images, const OutputRequest& request) {
  SEGKD_CHECK(images.dim() == 4 && images.size(1) == 3, "Segmentor::forward: expected images (N, 3, H, W), got ",
              images.sizes());
  for (const auto& name : request.features) {
    SEGKD_CHECK(feature_names().count(name), "Segmentor::forward: unknown feature \"", name,
                "\" (layer1, layer2, layer3, layer4, head)");
  }
  ModelOutput out;
  auto stages = backbone_->forward(images);
  for (int i = 0; i < 4; ++i) {
    const std::string name = "layer" + std::to_string(i + 1);
    if (request.features.count(name)) out.features[name] = stages[i];
  }
  if (request.logits || request.features.count("head")) {
    auto feature = decode_head_->forward_feature(stages[3]);
    if (request.features.count("head")) out.features["head"] = feature;
    if (request.logits) out.logits = decode_head_->classify(feature);
  }
  if (request.aux_logits && aux_head_) out.aux_logits = aux_head_->classify(aux_head_->forward_feature(stages[2]));
  return out;
}

std::map<std::string, int64_t> SegmentorImpl::feature_channels() const {
  const auto stages = backbone_->stage_channels();
  return {{"layer1", stages[0]}, {"layer2", stages[1]}, {"layer3", stages[2]}, {"layer4", stages[3]},
          {"head", decode_head_->channels()}};
}

std::vector<torch::Tensor> SegmentorImpl::head_parameters() {
  auto params = decode_head_->parameters();
  if (aux_head_) {
    auto aux = aux_head_->parameters();
    params.insert(params.end(), aux.begin(), aux.end());
  }
  return params;
}

Segmentor build_model(const ModelOptions& cfg, int64_t num_classes) {
  Segmentor model(cfg, num_classes);
  if (!cfg.pretrained.empty()) {
    auto report = load_pretrained_backbone(model, cfg.pretrained);
    spdlog::info("pretrained backbone {}: {} missing, {} unexpected, {} mismatched keys", cfg.pretrained,
                 report.missing.size(), report.unexpected.size(), report.mismatched.size());
  }
  if (!cfg.weights.empty()) {
    load_state_dict(*model, read_pth(cfg.weights), /*strict=*/true, cfg.weights);
  }
  return model;
}

namespace {

/// Folds `norm`'s eval affine transform into `conv` and turns `norm` into the identity.
void fold_pair(torch::nn::Conv2dImpl& conv, Norm2dImpl& norm, const std::string& where) {
  SEGKD_CHECK(conv.weight.size(0) == norm.channels(), "prepare_teacher: conv with ", conv.weight.size(0),
              " output channels is followed by a Norm2d of ", norm.channels(), " channels at ", where);
  torch::NoGradGuard no_grad;
  auto [scale, shift] = norm.eval_affine();
  conv.weight.mul_(scale.reshape({-1, 1, 1, 1}));
  auto bias = conv.bias.defined() ? conv.bias * scale + shift : shift.clone();
  if (conv.bias.defined()) {
    conv.bias.copy_(bias);
  } else {
    // LibTorch registers an undefined "bias" for bias-free convs and cannot re-register it; forward reads the
    // member, so the folded shift lives there (not in parameters(): move the model before preparing it).
    conv.bias = bias;
  }
  norm.set_folded();
}

void fold_children(torch::nn::Module& module, const std::string& prefix) {
  std::shared_ptr<torch::nn::Module> previous;
  std::string previous_name;
  for (const auto& item : module.named_children()) {
    const std::string name = prefix.empty() ? item.key() : prefix + "." + item.key();
    auto* norm = dynamic_cast<Norm2dImpl*>(item.value().get());
    auto* conv = previous ? dynamic_cast<torch::nn::Conv2dImpl*>(previous.get()) : nullptr;
    if (norm && conv && !norm->is_folded()) fold_pair(*conv, *norm, previous_name + " -> " + name);
    fold_children(*item.value(), name);
    previous = item.value();
    previous_name = name;
  }
}

}  // namespace

void prepare_teacher(Segmentor& model, bool fold_bn) {
  model->eval();
  if (fold_bn) {
    fold_children(*model, "");
    // Every Norm2d must have been folded; one left over means a layout the pairing rule does not know.
    for_each_norm(*model, [](Norm2dImpl& norm) {
      SEGKD_CHECK(norm.is_folded(), "prepare_teacher: a Norm2d of ", norm.channels(),
                  " channels does not follow a convolution and cannot be folded");
    });
  }
  for (auto& p : model->parameters()) p.set_requires_grad(false);
}

int64_t count_parameters(torch::nn::Module& module, bool trainable_only) {
  int64_t total = 0;
  for (const auto& p : module.parameters()) {
    if (!trainable_only || p.requires_grad()) total += p.numel();
  }
  return total;
}

double flops_per_image(Segmentor& model, int64_t height, int64_t width) {
  SEGKD_CHECK(height > 0 && width > 0, "flops_per_image: bad size ", height, "x", width);
  const bool was_training = model->is_training();
  model->eval();
  MacCounter counter(/*dry_run=*/true);  // shapes only: an R101 at 512x1024 costs no real convolution
  {
    torch::NoGradGuard no_grad;
    model->forward(torch::zeros({1, 3, height, width}));
  }
  if (was_training) model->train();
  return 2.0 * counter.macs();
}

}  // namespace segkd::models
