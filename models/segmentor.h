#pragma once
/// The segmentation model segkd trains: mmseg's EncoderDecoder (backbone + decode head + optional auxiliary
/// head) with mmseg's state_dict key names, its factory from config, and teacher preparation.
#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "models/options.h"
#include "common/model_output.h"
#include "models/backbone.h"
#include "models/heads.h"

namespace segkd::models {

/// mmseg EncoderDecoder: children registered as "backbone", "decode_head", "auxiliary_head" (when aux_head).
/// Head channels: 512 (aux 256) for resnet50/101, 128 (aux 64) for resnet18/34 and efficientnet_b0. The decode
/// head reads layer4, the auxiliary FCN head layer3.
class SegmentorImpl : public torch::nn::Module {
 public:
  /// Throws ConfigError for an unknown arch/backbone or a bad output stride / class count.
  SegmentorImpl(const ModelOptions& cfg, int64_t num_classes);

  /// Logits at head resolution (NOT upsampled); computes only what `request` asks (skip heads when
  /// backbone_only, skip aux head when !aux_logits); features["layer1".."layer4","head"] on request.
  /// Throws segkd::Error for a feature name outside feature_names().
  ModelOutput forward(const torch::Tensor& images, const OutputRequest& request = {});

  /// Channels of layer1..layer4 and head.
  std::map<std::string, int64_t> feature_channels() const;
  int64_t num_classes() const { return num_classes_; }
  bool has_aux_head() const { return static_cast<bool>(aux_head_); }
  /// Parameters of decode_head and auxiliary_head (for the head learning-rate multiplier).
  std::vector<torch::Tensor> head_parameters();

  std::shared_ptr<BackboneImpl> backbone() { return backbone_; }
  std::shared_ptr<DecodeHeadImpl> decode_head() { return decode_head_; }
  /// nullptr when built without aux_head.
  std::shared_ptr<FCNHeadImpl> auxiliary_head() { return aux_head_; }

 private:
  int64_t num_classes_;
  std::shared_ptr<BackboneImpl> backbone_;
  std::shared_ptr<DecodeHeadImpl> decode_head_;
  std::shared_ptr<FCNHeadImpl> aux_head_;
};
TORCH_MODULE(Segmentor);

/// Builds from config; loads cfg.pretrained (backbone-only, logged report) and then cfg.weights (whole model,
/// strict) if set. Throws ConfigError (bad config) or InputError (unreadable or mismatching weights).
Segmentor build_model(const ModelOptions& cfg, int64_t num_classes);

/// Teacher preparation: requires_grad=false everywhere, eval(), and (fold_bn) every conv→Norm2d pair folded
/// (conv weight *= scale per output channel, conv bias = bias * scale + shift; the Norm2d set_folded()).
/// A pair is a Conv2d child immediately followed by a Norm2d sibling, which is how every segkd module is laid out.
/// The shift of a bias-free conv is not a registered parameter: move the model to its device before calling this.
void prepare_teacher(Segmentor& model, bool fold_bn);

/// Number of scalar parameters (all, or only those with requires_grad).
int64_t count_parameters(torch::nn::Module& module, bool trainable_only = false);

/// Multiply-accumulates ×2 per image of size h×w (forward, eval, all heads). Convolutions only (norms,
/// activations, pooling and resizing are not counted), as mmcv's flop counter reports for these nets.
double flops_per_image(Segmentor& model, int64_t height, int64_t width);

}  // namespace segkd::models
