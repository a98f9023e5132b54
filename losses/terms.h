#pragma once
/// The KD terms segkd implements, one class per `[[distill]] type`, each built from its own options type
/// (losses/options.h). Build them with `make_term` (objective.h), which validates the table; the constructors here
/// assume validated options.
///
/// Conventions shared by all terms: S is a student tensor, T the matching teacher tensor (constant). Where S and T
/// differ in spatial size, S is resized bilinearly (align_corners=false) to T's size — after the projector when the
/// term has one. A term over a list of feature pairs (`student = [...]`, `teacher = [...]`) averages the per-pair
/// values (so `weight` keeps its meaning whatever the list length). All values are scalars.
#include "losses/objective.h"

namespace segkd::losses {

/// `logit` — pixel-wise KD (Hinton KD per pixel):
///   τ² · (1/P) Σ_{valid pixels p} Σ_c softmax(T_p/τ)_c · (log softmax(T_p/τ)_c − log softmax(S_p/τ)_c)
/// on the logits. `resolution = "logits"`: at the teacher logits' size (label nearest-downsampled there for the
/// mask); `"label"`: both logits bilinearly upsampled to the label's size first. With `mask_ignore`, pixels whose
/// label is ignore_index are dropped and P counts the remaining ones (value 0 when none remain); otherwise
/// P = N·H·W. The τ² factor keeps gradient magnitudes comparable across τ: value(S,T,τ) = τ²·value(S/τ,T/τ,1).
class LogitTerm : public DistillTerm {
 public:
  LogitTerm(const LogitOptions& cfg, int64_t ignore_index);
  std::string type() const override { return "logit"; }
  OutputRequest student_needs() const override;
  OutputRequest teacher_needs() const override;
  bool needs_label() const override { return label_resolution_ || mask_ignore_; }
  torch::Tensor forward(const ModelOutput& student, const ModelOutput& teacher, const torch::Tensor& label) override;

 private:
  double tau_;
  bool label_resolution_;
  bool mask_ignore_;
  int64_t ignore_index_;
};

/// Base of the terms that compare named features pair by pair: owns the pair list and, when the term uses
/// them, one trainable projector per pair (ModuleList "proj": "proj.<i>" is a Sequential of a 1×1 convolution
/// student→teacher channels — with bias for `conv1x1`, without bias and followed by a segkd::Norm2d for
/// `conv1x1_bn`).
class FeaturePairTerm : public DistillTerm {
 public:
  OutputRequest student_needs() const override;
  OutputRequest teacher_needs() const override;

 protected:
  /// kAlways: a projector per pair; kIfChannelsDiffer: only for pairs whose channel counts differ.
  enum class Projection { kNone, kIfChannelsDiffer, kAlways };
  /// `projector`: "conv1x1" | "conv1x1_bn". Names must be keys of `student`/`teacher` (checked by make_term).
  FeaturePairTerm(std::vector<std::string> student_names, std::vector<std::string> teacher_names,
                  const Channels& student, const Channels& teacher, Projection project, const std::string& projector);
  /// Student feature of pair `i`, projected and resized to the teacher's size; and the teacher feature (constant).
  std::pair<torch::Tensor, torch::Tensor> pair(size_t i, const ModelOutput& student, const ModelOutput& teacher);
  size_t num_pairs() const { return student_names_.size(); }

 private:
  std::vector<std::string> student_names_, teacher_names_;
  std::vector<int> proj_index_;  ///< per pair: index into proj_, or -1
  torch::nn::ModuleList proj_{nullptr};
};

/// `feature` — FitNets hint loss: mean over pairs of MSE(norm(proj(S)), norm(T)), MSE averaged over all
/// N·C·H·W elements. `normalize = "channel"` standardises each (sample, channel) map of both features over H·W:
/// (x − mean)/sqrt(var + 1e-5) (biased variance); `"none"` leaves them as they are. The projector is always used.
class FeatureTerm : public FeaturePairTerm {
 public:
  FeatureTerm(const FeatureOptions& cfg, const Channels& student, const Channels& teacher);
  std::string type() const override { return "feature"; }
  torch::Tensor forward(const ModelOutput& student, const ModelOutput& teacher, const torch::Tensor& label) override;

 private:
  bool channel_norm_;
};

/// `cwd` — channel-wise distillation (Shu et al. 2021; mmrazor ChannelWiseDivergence): each channel map is turned
/// into a distribution over its H·W positions,
///   τ² / (N·C) · Σ_{n,c} Σ_{hw} softmax(T_nc/τ)_hw · (log softmax(T_nc/τ)_hw − log softmax(S_nc/τ)_hw),
/// C the teacher's channels. `on = "logits"` uses the logits; `on = "feature"` the named feature pairs (averaged),
/// with a projector only where student and teacher channels differ.
class CwdTerm : public FeaturePairTerm {
 public:
  CwdTerm(const CwdOptions& cfg, const Channels& student, const Channels& teacher);
  std::string type() const override { return "cwd"; }
  OutputRequest student_needs() const override;
  OutputRequest teacher_needs() const override;
  torch::Tensor forward(const ModelOutput& student, const ModelOutput& teacher, const torch::Tensor& label) override;

 private:
  double tau_;
  bool on_logits_;
};

/// `pairwise` — pair-wise term of structured KD (Liu et al. 2019; CIRKD CriterionPairWiseforWholeFeatAfterPool):
/// max-pool S and T (kernel = stride = pool_kernel, ceil mode), divide each pixel's feature by its channel L2 norm
/// (+1e-8; unlike CIRKD, which detaches the norm, the gradient flows through it — same value, exact gradient),
/// A = FᵀF the M×M cosine-similarity matrix
/// (M = H′W′), value = Σ_n Σ_ij (A^T_nij − A^S_nij)² / (N·M²), averaged over pairs.
class PairwiseTerm : public FeaturePairTerm {
 public:
  PairwiseTerm(const PairwiseOptions& cfg, const Channels& student, const Channels& teacher);
  std::string type() const override { return "pairwise"; }
  torch::Tensor forward(const ModelOutput& student, const ModelOutput& teacher, const torch::Tensor& label) override;

 private:
  int64_t pool_kernel_;
};

/// `ifvd` — intra-class feature variation distillation (Wang et al. 2020; CIRKD CriterionIFV): the label is
/// nearest-downsampled to the teacher feature size; per sample and per class present, the class centre is the mean
/// feature over its pixels (sum / (count + 1e-6)); each pixel's map value is cos(feature, its class centre)
/// (torch cosine_similarity, eps 1e-8) — 1 for ignore pixels, whose "centre" is the pixel itself. Value =
/// MSE between the student and teacher maps over all N·H·W pixels, averaged over pairs. Channel counts may differ.
class IfvdTerm : public FeaturePairTerm {
 public:
  IfvdTerm(const IfvdOptions& cfg, const Channels& student, const Channels& teacher, int64_t ignore_index);
  std::string type() const override { return "ifvd"; }
  bool needs_label() const override { return true; }
  torch::Tensor forward(const ModelOutput& student, const ModelOutput& teacher, const torch::Tensor& label) override;

 private:
  int64_t ignore_index_;
};

/// `at` — attention transfer (Zagoruyko & Komodakis 2017): a(F) = mean_c F² flattened over H·W and L2-normalised
/// per sample (F.normalize, eps 1e-12); value = mean over N·H·W of (a(S) − a(T))², averaged over pairs.
class AtTerm : public FeaturePairTerm {
 public:
  AtTerm(const AtOptions& cfg, const Channels& student, const Channels& teacher);
  std::string type() const override { return "at"; }
  torch::Tensor forward(const ModelOutput& student, const ModelOutput& teacher, const torch::Tensor& label) override;
};

/// `dist` — DIST (Huang et al. 2022) on logits: y = softmax(z/τ) over classes, rows = the N·H·W pixels;
/// ρ(a,b) = Pearson correlation = cos(a − mean a, b − mean b) with cos = a·b/(‖a‖‖b‖ + 1e-8);
///   inter = τ²·(1 − mean_pixels ρ(y_S[p,:], y_T[p,:])),  intra = τ²·(1 − mean_classes ρ(y_S[:,c], y_T[:,c])),
///   value = beta·inter + gamma·intra (minimum 0, reached when S = T).
class DistTerm : public DistillTerm {
 public:
  explicit DistTerm(const DistOptions& cfg);
  std::string type() const override { return "dist"; }
  OutputRequest student_needs() const override;
  OutputRequest teacher_needs() const override;
  torch::Tensor forward(const ModelOutput& student, const ModelOutput& teacher, const torch::Tensor& label) override;

 private:
  double tau_, beta_, gamma_;
};

}  // namespace segkd::losses
