#pragma once
/// What a segmentation model returns and what a caller may ask of it. Lives in common/ because both models/
/// (which produce it) and losses/ (which consume it) use it, and those two libraries do not know each other.
#include <torch/torch.h>

#include <map>
#include <set>
#include <string>

namespace segkd {

/// Feature names every model exposes: the four backbone stages and the decode head's bottleneck output
/// (before dropout and `conv_seg`).
inline const std::set<std::string>& feature_names() {
  static const std::set<std::string> names{"layer1", "layer2", "layer3", "layer4", "head"};
  return names;
}

/// Which outputs a forward pass must produce. The teacher is asked only for what the KD terms need.
struct OutputRequest {
  bool logits = true;                 ///< decode-head logits (N, C, H/8, W/8 at output stride 8)
  bool aux_logits = true;             ///< auxiliary FCN head logits (training only)
  std::set<std::string> features;     ///< named features to return (subset of feature_names())

  /// Backbone only: no head output and no "head" feature asked for.
  bool backbone_only() const { return !logits && !aux_logits && features.count("head") == 0; }
};

/// Output of a segmentation model. Logits are at the head's resolution (not upsampled to the input).
struct ModelOutput {
  torch::Tensor logits;                         ///< (N, num_classes, h, w); undefined if not requested
  torch::Tensor aux_logits;                     ///< (N, num_classes, h, w); undefined if absent/not requested
  std::map<std::string, torch::Tensor> features;  ///< requested named features
};

/// Calls `fn(tensor)` on every defined tensor of `out` (logits, aux_logits, each feature); `Out` is ModelOutput or
/// const ModelOutput. Code that must treat all outputs alike (precision casts, stream bookkeeping) goes through
/// here, so a field added to ModelOutput cannot be missed by one of them.
template <typename Out, typename Fn>
void for_each_tensor(Out& out, Fn&& fn) {
  if (out.logits.defined()) fn(out.logits);
  if (out.aux_logits.defined()) fn(out.aux_logits);
  for (auto& kv : out.features) {
    if (kv.second.defined()) fn(kv.second);
  }
}

}  // namespace segkd
