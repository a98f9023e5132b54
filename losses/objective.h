#pragma once
/// segkd losses: the task loss (cross-entropy with ignore index, auxiliary head) and every knowledge-distillation
/// term, combined into one weighted `Objective` built from the `[loss]` and `[[distill]]` config tables.
///
/// losses/ does not know models/: it reads `ModelOutput` (common/model_output.h) and is told feature channel
/// counts through `Channels` maps. The KD terms themselves (formulas, reductions) are documented in losses/terms.h.
#include <torch/torch.h>

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/model_output.h"
#include "losses/options.h"

namespace segkd::losses {

/// Feature name ("layer1".."layer4", "head", and "logits" for the class count) -> channels.
using Channels = std::map<std::string, int64_t>;

/// A KD term, registered by name and built from one `[[distill]]` table.
///
/// Terms read the teacher's tensors as constants: they are detached (and cloned when they are inference tensors,
/// so a teacher run under `torch::InferenceMode` is accepted). When a student tensor and the teacher tensor it is
/// compared with differ in spatial size, the student tensor is resized bilinearly (align_corners=false) to the
/// teacher's size (after the projector, where there is one).
class DistillTerm : public torch::nn::Module {
 public:
  /// The config `type`: "logit", "feature", "cwd", "pairwise", "ifvd", "at", "dist".
  virtual std::string type() const = 0;
  /// The features/logits this term reads from the student (aux_logits always false).
  virtual OutputRequest student_needs() const = 0;
  /// The features/logits this term reads from the teacher (aux_logits always false).
  virtual OutputRequest teacher_needs() const = 0;
  /// True when `forward` reads the label.
  virtual bool needs_label() const { return false; }
  /// Unweighted term value (scalar). `label` is (N,H,W) int64 at input resolution (ignore_index where unlabeled);
  /// it may be undefined when `needs_label()` is false.
  virtual torch::Tensor forward(const ModelOutput& student, const ModelOutput& teacher, const torch::Tensor& label) = 0;

  /// Where the term came from, for error messages: "distill[1] (type \"cwd\")" (set by make_term).
  const std::string& context() const { return context_; }
  void set_context(std::string context) { context_ = std::move(context); }

 private:
  std::string context_;
};

/// Builds the term described by one `[[distill]]` table. `index` is the table's position, used in error messages
/// ("distill[1] (type \"cwd\"): ..."). `student`/`teacher` give the channels of each feature name (and "logits").
/// Throws ConfigError for an unknown type, a feature name these models do not provide, or options that break
/// their own rules (DistillOptions::validate, e.g. a negative or non-finite weight, tau <= 0).
std::shared_ptr<DistillTerm> make_term(const DistillOptions& cfg, size_t index, const Channels& student,
                                       const Channels& teacher, int64_t ignore_index);

/// What one `Objective::forward` computed.
struct ObjectiveResult {
  torch::Tensor total;  ///< scalar with grad: the weighted sum
  /// Unweighted values by name: "ce", "aux_ce" (only when the student has aux logits), then each KD term by its
  /// type ("logit", "feature", ...), or "<type>.<table index>" ("cwd.1", "cwd.2") when a type appears more than once.
  /// Each a detached scalar tensor on the loss's device: reading one (`item()`) waits for the device, so the
  /// trainer reads them once per log window, not every step.
  std::vector<std::pair<std::string, torch::Tensor>> values;
  /// Wall time in seconds of each entry's forward computation, same names and order as `values` (on an
  /// asynchronous device only with `forward(..., timed = true)`; otherwise the time to queue it).
  std::vector<std::pair<std::string, double>> seconds;
};

/// The training objective:
///   total = CE(logits↑label) + aux_weight·CE(aux_logits↑label) + Σ_i weight_i·KD_i(student, teacher, label),
/// with CE = `segmentation_ce` (class weights from `[loss] class_weights`). KD terms are registered submodules
/// "terms.<table index>" (their projectors e.g. "terms.1.proj.0"), so the Objective's state_dict carries them.
class ObjectiveImpl : public torch::nn::Module {
 public:
  /// `student_channels`/`teacher_channels`: channels of each feature the models can return. `num_classes` is the
  /// logits' channel count for both networks (added to the maps as "logits" when absent).
  ObjectiveImpl(const LossOptions& loss, const std::vector<DistillOptions>& distill, int64_t num_classes,
                int64_t ignore_index, const Channels& student_channels, const Channels& teacher_channels);

  /// `label`: (N,H,W) int64 at input resolution. `teacher` may be nullptr when there are no KD terms.
  /// Throws segkd::Error when a KD term is configured and `teacher` is nullptr, or an output a term needs is missing.
  /// `timed`: wait for each term's value before stopping its clock (only matters on an asynchronous device).
  ObjectiveResult forward(const ModelOutput& student, const ModelOutput* teacher, const torch::Tensor& label,
                          bool timed = false);

  /// Logits, aux logits, and every student feature a KD term reads.
  OutputRequest student_request() const;
  /// Only what KD terms read (logits only when some term reads them); never aux logits.
  OutputRequest teacher_request() const;
  /// True when at least one `[[distill]]` term is configured.
  bool has_distill() const { return !terms_.empty(); }
  /// Trainable KD modules' parameters (projectors); also reachable through `parameters()`.
  std::vector<torch::Tensor> projector_parameters();
  /// The KD terms, in table order, with their report names.
  const std::vector<std::pair<std::string, std::shared_ptr<DistillTerm>>>& terms() const { return terms_; }

 private:
  LossOptions loss_;
  std::vector<double> weights_;
  int64_t ignore_index_;
  torch::Tensor class_weights_;
  std::vector<std::pair<std::string, std::shared_ptr<DistillTerm>>> terms_;
};
TORCH_MODULE(Objective);

/// Cross-entropy on `logits` (N,C,h,w) bilinearly upsampled (align_corners=false) to the size of `label` (N,H,W,
/// int64): Σ_valid w[y]·(−log softmax(z)_y) / Σ_valid w[y] over pixels whose label is not `ignore_index`
/// (w ≡ 1 without `class_weights`); 0 (with a zero gradient) when no pixel is valid.
torch::Tensor segmentation_ce(const torch::Tensor& logits, const torch::Tensor& label, int64_t ignore_index,
                              const torch::Tensor& class_weights = {});

}  // namespace segkd::losses
