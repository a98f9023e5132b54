#include "losses/objective.h"

#include <chrono>
#include <cmath>
#include <map>

#include "common/error.h"

namespace segkd::losses {
namespace F = torch::nn::functional;

torch::Tensor segmentation_ce(const torch::Tensor& logits, const torch::Tensor& label, int64_t ignore_index,
                              const torch::Tensor& class_weights) {
  SEGKD_CHECK(logits.dim() == 4, "segmentation_ce: logits must be (N,C,H,W), got ", logits.sizes());
  SEGKD_CHECK(label.dim() == 3 && label.size(0) == logits.size(0),
              "segmentation_ce: label must be (N,H,W) with N = ", logits.size(0), ", got ", label.sizes());
  auto z = logits;
  if (z.size(2) != label.size(1) || z.size(3) != label.size(2)) {
    z = F::interpolate(z, F::InterpolateFuncOptions()
                              .size(std::vector<int64_t>{label.size(1), label.size(2)})
                              .mode(torch::kBilinear)
                              .align_corners(false));
  }
  auto lab = label.to(torch::kLong);
  auto opts = F::CrossEntropyFuncOptions().ignore_index(ignore_index).reduction(torch::kSum);
  auto valid = lab != ignore_index;
  torch::Tensor denom;
  if (class_weights.defined() && class_weights.numel() > 0) {
    SEGKD_CHECK(class_weights.numel() == z.size(1), "segmentation_ce: ", class_weights.numel(),
                " class weights for ", z.size(1), " classes");
    auto w = class_weights.to(z.options());
    opts.weight(w);
    auto safe = lab.masked_fill(~valid, 0).clamp(0, z.size(1) - 1);
    denom = (w.index({safe}) * valid.to(z.scalar_type())).sum();
  } else {
    denom = valid.sum().to(z.scalar_type());
  }
  // Sum / weight of valid pixels: PyTorch's "mean" except that no valid pixel gives 0 (not 0/0 = NaN).
  return F::cross_entropy(z, lab, opts) / denom.clamp_min(1e-12);
}

namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point start) { return std::chrono::duration<double>(Clock::now() - start).count(); }

void merge(OutputRequest& into, const OutputRequest& from) {
  into.logits = into.logits || from.logits;
  into.features.insert(from.features.begin(), from.features.end());
}

}  // namespace

ObjectiveImpl::ObjectiveImpl(const LossOptions& loss, const std::vector<DistillOptions>& distill, int64_t num_classes,
                             int64_t ignore_index, const Channels& student_channels,
                             const Channels& teacher_channels)
    : loss_(loss), ignore_index_(ignore_index) {
  if (!std::isfinite(loss.aux_weight) || loss.aux_weight < 0) {
    throw ConfigError(str_cat("loss.aux_weight must be finite and >= 0, got ", loss.aux_weight));
  }
  if (!loss.class_weights.empty()) {
    if (static_cast<int64_t>(loss.class_weights.size()) != num_classes) {
      throw ConfigError(str_cat("loss.class_weights has ", loss.class_weights.size(), " entries for ", num_classes,
                                " classes"));
    }
    class_weights_ = torch::tensor(loss.class_weights, torch::kFloat);
  }
  Channels sc = student_channels, tc = teacher_channels;
  sc.emplace("logits", num_classes);
  tc.emplace("logits", num_classes);

  std::map<std::string, int> type_count;
  for (const auto& d : distill) type_count[d.type]++;
  auto list = register_module("terms", torch::nn::ModuleList());
  for (size_t i = 0; i < distill.size(); ++i) {
    auto term = make_term(distill[i], i, sc, tc, ignore_index);
    std::string name = type_count[distill[i].type] > 1 ? str_cat(distill[i].type, ".", i) : distill[i].type;
    list->push_back(term);  // registered as "terms.<i>", i = table index
    terms_.emplace_back(name, term);
    weights_.push_back(distill[i].weight);
  }
}

ObjectiveResult ObjectiveImpl::forward(const ModelOutput& student, const ModelOutput* teacher,
                                       const torch::Tensor& label, bool timed) {
  SEGKD_CHECK(student.logits.defined(), "objective: the student output has no logits");
  SEGKD_CHECK(teacher != nullptr || terms_.empty(), "objective: ", terms_.size(),
              " distill term(s) configured but no teacher output was given");
  ObjectiveResult r;
  // On the CPU every value is ready when its function returns; on an asynchronous device `timed` waits for it.
  const bool wait = timed && !student.logits.device().is_cpu();
  auto value = [wait](const torch::Tensor& v) {
    auto detached = v.detach();
    if (wait) detached.item<double>();
    return detached;
  };
  auto start = Clock::now();
  auto ce = segmentation_ce(student.logits, label, ignore_index_, class_weights_);
  r.values.emplace_back("ce", value(ce));
  r.seconds.emplace_back("ce", since(start));
  r.total = ce;
  if (student.aux_logits.defined()) {
    start = Clock::now();
    auto aux = segmentation_ce(student.aux_logits, label, ignore_index_, class_weights_);
    r.values.emplace_back("aux_ce", value(aux));
    r.seconds.emplace_back("aux_ce", since(start));
    r.total = r.total + loss_.aux_weight * aux;
  }
  for (size_t i = 0; i < terms_.size(); ++i) {
    start = Clock::now();
    auto v = terms_[i].second->forward(student, *teacher, label);
    r.values.emplace_back(terms_[i].first, value(v));
    r.seconds.emplace_back(terms_[i].first, since(start));
    r.total = r.total + weights_[i] * v;
  }
  return r;
}

OutputRequest ObjectiveImpl::student_request() const {
  OutputRequest r;
  r.logits = true;
  r.aux_logits = true;
  for (const auto& [name, term] : terms_) merge(r, term->student_needs());
  return r;
}

OutputRequest ObjectiveImpl::teacher_request() const {
  OutputRequest r;
  r.logits = false;
  r.aux_logits = false;
  for (const auto& [name, term] : terms_) merge(r, term->teacher_needs());
  return r;
}

std::vector<torch::Tensor> ObjectiveImpl::projector_parameters() {
  std::vector<torch::Tensor> out;
  for (auto& p : parameters(/*recurse=*/true)) {
    if (p.requires_grad()) out.push_back(p);
  }
  return out;
}

}  // namespace segkd::losses
