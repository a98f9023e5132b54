#include "losses/terms.h"

#include <cmath>
#include <functional>

#include "common/error.h"
#include "common/norm.h"

namespace segkd::losses {
namespace F = torch::nn::functional;

namespace {

/// Teacher tensors are constants. Inference tensors cannot be saved for backward, so those are cloned.
torch::Tensor constant(const torch::Tensor& t) { return t.is_inference() ? t.clone() : t.detach(); }

/// Resizes `x` (N,C,h,w) bilinearly (align_corners=false) to `like`'s spatial size when it differs.
torch::Tensor resize_like(const torch::Tensor& x, at::IntArrayRef hw) {
  if (x.size(2) == hw[0] && x.size(3) == hw[1]) return x;
  return F::interpolate(x, F::InterpolateFuncOptions()
                               .size(std::vector<int64_t>{hw[0], hw[1]})
                               .mode(torch::kBilinear)
                               .align_corners(false));
}

/// Nearest-neighbour resize of an (N,H,W) int64 label map to `hw` (PyTorch's "nearest": index floor(i·in/out)).
torch::Tensor resize_label(const torch::Tensor& label, at::IntArrayRef hw) {
  if (label.size(1) == hw[0] && label.size(2) == hw[1]) return label;
  auto l = label.unsqueeze(1).to(torch::kFloat);
  l = F::interpolate(l, F::InterpolateFuncOptions()
                            .size(std::vector<int64_t>{hw[0], hw[1]})
                            .mode(torch::kNearest));
  return l.squeeze(1).to(torch::kLong);
}

const torch::Tensor& require_logits(const ModelOutput& out, const char* who, const std::string& ctx) {
  if (!out.logits.defined()) throw Error(str_cat(ctx, ": ", who, " output has no logits"));
  SEGKD_CHECK(out.logits.dim() == 4, ctx, ": ", who, " logits must be (N,C,H,W), got ", out.logits.sizes());
  return out.logits;
}

const torch::Tensor& require_feature(const ModelOutput& out, const std::string& name, const char* who,
                                     const std::string& ctx) {
  auto it = out.features.find(name);
  if (it == out.features.end() || !it->second.defined()) {
    throw Error(str_cat(ctx, ": ", who, " output has no feature \"", name, "\""));
  }
  SEGKD_CHECK(it->second.dim() == 4, ctx, ": ", who, " feature \"", name, "\" must be (N,C,H,W), got ",
              it->second.sizes());
  return it->second;
}

void check_label(const torch::Tensor& label, const torch::Tensor& like, const std::string& ctx) {
  SEGKD_CHECK(label.defined(), ctx, ": this term needs the label, none was given");
  SEGKD_CHECK(label.dim() == 3 && label.size(0) == like.size(0), ctx, ": label must be (N,H,W) with N = ",
              like.size(0), ", got ", label.sizes());
}

/// Σ softmax(t)·(log softmax(t) − log softmax(s)) along `dim`, elementwise (not reduced) — stable for p_t → 0.
torch::Tensor kl_along(const torch::Tensor& s, const torch::Tensor& t, int64_t dim) {
  auto log_s = torch::log_softmax(s, dim);
  auto log_t = torch::log_softmax(t, dim);
  return F::kl_div(log_s, log_t, F::KLDivFuncOptions().reduction(torch::kNone).log_target(true)).sum(dim);
}

OutputRequest logits_only() {
  OutputRequest r;
  r.logits = true;
  r.aux_logits = false;
  return r;
}

torch::Tensor channel_standardise(const torch::Tensor& x) {
  auto mean = x.mean({2, 3}, /*keepdim=*/true);
  auto var = x.var({2, 3}, /*unbiased=*/false, /*keepdim=*/true);
  return (x - mean) / torch::sqrt(var + 1e-5);
}

/// Pearson correlation of corresponding rows of a and b (P, K): cos of the row-centred vectors, eps 1e-8.
torch::Tensor pearson_rows(const torch::Tensor& a, const torch::Tensor& b) {
  auto ac = a - a.mean(1, /*keepdim=*/true);
  auto bc = b - b.mean(1, /*keepdim=*/true);
  return (ac * bc).sum(1) / (ac.norm(2, 1) * bc.norm(2, 1) + 1e-8);
}

}  // namespace

// ---------------------------------------------------------------------------------------------------- logit

LogitTerm::LogitTerm(const LogitOptions& cfg, int64_t ignore_index)
    : tau_(cfg.tau),
      label_resolution_(cfg.resolution == "label"),
      mask_ignore_(cfg.mask_ignore),
      ignore_index_(ignore_index) {}

OutputRequest LogitTerm::student_needs() const { return logits_only(); }
OutputRequest LogitTerm::teacher_needs() const { return logits_only(); }

torch::Tensor LogitTerm::forward(const ModelOutput& student, const ModelOutput& teacher, const torch::Tensor& label) {
  auto s = require_logits(student, "student", context());
  auto t = constant(require_logits(teacher, "teacher", context()));
  SEGKD_CHECK(s.size(1) == t.size(1), context(), ": student logits have ", s.size(1), " classes, teacher ",
              t.size(1));
  if (label_resolution_) {
    check_label(label, s, context());
    s = resize_like(s, label.sizes().slice(1));
    t = resize_like(t, label.sizes().slice(1));
  } else {
    s = resize_like(s, t.sizes().slice(2));
  }
  auto kl = kl_along(s / tau_, t / tau_, /*dim=*/1);  // (N,H,W)
  torch::Tensor value;
  if (mask_ignore_) {
    check_label(label, s, context());
    auto lab = resize_label(label, t.sizes().slice(2));
    auto valid = (lab != ignore_index_).to(kl.scalar_type());
    value = (kl * valid).sum() / valid.sum().clamp_min(1);
  } else {
    value = kl.mean();
  }
  return value * (tau_ * tau_);
}

// ---------------------------------------------------------------------------------------------- feature pairs

FeaturePairTerm::FeaturePairTerm(std::vector<std::string> student_names, std::vector<std::string> teacher_names,
                                 const Channels& student, const Channels& teacher, Projection project,
                                 const std::string& projector)
    : student_names_(std::move(student_names)), teacher_names_(std::move(teacher_names)) {
  proj_ = register_module("proj", torch::nn::ModuleList());
  for (size_t i = 0; i < student_names_.size(); ++i) {
    int64_t cs = student.at(student_names_[i]);
    int64_t ct = teacher.at(teacher_names_[i]);
    bool wanted = project == Projection::kAlways || (project == Projection::kIfChannelsDiffer && cs != ct);
    if (!wanted) {
      proj_index_.push_back(-1);
      continue;
    }
    torch::nn::Sequential seq;
    if (projector == "conv1x1_bn") {
      seq->push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(cs, ct, 1).bias(false)));
      seq->push_back(Norm2d(ct));
    } else {
      seq->push_back(torch::nn::Conv2d(torch::nn::Conv2dOptions(cs, ct, 1).bias(true)));
    }
    proj_index_.push_back(static_cast<int>(proj_->size()));
    proj_->push_back(seq);
  }
}

OutputRequest FeaturePairTerm::student_needs() const {
  OutputRequest r;
  r.logits = false;
  r.aux_logits = false;
  r.features.insert(student_names_.begin(), student_names_.end());
  return r;
}

OutputRequest FeaturePairTerm::teacher_needs() const {
  OutputRequest r;
  r.logits = false;
  r.aux_logits = false;
  r.features.insert(teacher_names_.begin(), teacher_names_.end());
  return r;
}

std::pair<torch::Tensor, torch::Tensor> FeaturePairTerm::pair(size_t i, const ModelOutput& student,
                                                              const ModelOutput& teacher) {
  auto s = require_feature(student, student_names_[i], "student", context());
  auto t = constant(require_feature(teacher, teacher_names_[i], "teacher", context()));
  if (proj_index_[i] >= 0) s = proj_[proj_index_[i]]->as<torch::nn::SequentialImpl>()->forward(s);
  SEGKD_CHECK(s.size(0) == t.size(0), context(), ": student batch ", s.size(0), " != teacher batch ", t.size(0));
  return {resize_like(s, t.sizes().slice(2)), t};
}

// ---------------------------------------------------------------------------------------------------- feature

FeatureTerm::FeatureTerm(const FeatureOptions& cfg, const Channels& student, const Channels& teacher)
    : FeaturePairTerm(cfg.student, cfg.teacher, student, teacher, Projection::kAlways, cfg.projector),
      channel_norm_(cfg.normalize == "channel") {}

torch::Tensor FeatureTerm::forward(const ModelOutput& student, const ModelOutput& teacher, const torch::Tensor&) {
  torch::Tensor total;
  for (size_t i = 0; i < num_pairs(); ++i) {
    auto [s, t] = pair(i, student, teacher);
    SEGKD_CHECK(s.size(1) == t.size(1), context(), ": projected student has ", s.size(1), " channels, teacher ",
                t.size(1));
    if (channel_norm_) {
      s = channel_standardise(s);
      t = channel_standardise(t);
    }
    auto v = F::mse_loss(s, t);
    total = total.defined() ? total + v : v;
  }
  return total / static_cast<double>(num_pairs());
}

// -------------------------------------------------------------------------------------------------------- cwd

namespace {
torch::Tensor cwd_value(const torch::Tensor& s, const torch::Tensor& t, double tau) {
  int64_t n = t.size(0), c = t.size(1);
  auto s2 = s.reshape({n * c, -1}) / tau;
  auto t2 = t.reshape({n * c, -1}) / tau;
  return kl_along(s2, t2, /*dim=*/1).sum() * (tau * tau) / static_cast<double>(n * c);
}
}  // namespace

CwdTerm::CwdTerm(const CwdOptions& cfg, const Channels& student, const Channels& teacher)
    : FeaturePairTerm(cfg.on == "logits" ? std::vector<std::string>{} : cfg.student,
                      cfg.on == "logits" ? std::vector<std::string>{} : cfg.teacher, student, teacher,
                      Projection::kIfChannelsDiffer, cfg.projector),
      tau_(cfg.tau),
      on_logits_(cfg.on == "logits") {}

OutputRequest CwdTerm::student_needs() const {
  return on_logits_ ? logits_only() : FeaturePairTerm::student_needs();
}
OutputRequest CwdTerm::teacher_needs() const {
  return on_logits_ ? logits_only() : FeaturePairTerm::teacher_needs();
}

torch::Tensor CwdTerm::forward(const ModelOutput& student, const ModelOutput& teacher, const torch::Tensor&) {
  if (on_logits_) {
    auto s = require_logits(student, "student", context());
    auto t = constant(require_logits(teacher, "teacher", context()));
    SEGKD_CHECK(s.size(1) == t.size(1), context(), ": student logits have ", s.size(1), " classes, teacher ",
                t.size(1));
    return cwd_value(resize_like(s, t.sizes().slice(2)), t, tau_);
  }
  torch::Tensor total;
  for (size_t i = 0; i < num_pairs(); ++i) {
    auto [s, t] = pair(i, student, teacher);
    auto v = cwd_value(s, t, tau_);
    total = total.defined() ? total + v : v;
  }
  return total / static_cast<double>(num_pairs());
}

// --------------------------------------------------------------------------------------------------- pairwise

namespace {
torch::Tensor cosine_matrix(const torch::Tensor& f) {
  // CIRKD detaches the norm; segkd differentiates through it (same value, the exact gradient).
  auto norm = f.pow(2).sum(1, /*keepdim=*/true).sqrt() + 1e-8;
  auto g = (f / norm).flatten(2);               // (N, C, M)
  return torch::bmm(g.transpose(1, 2), g);      // (N, M, M)
}
}  // namespace

PairwiseTerm::PairwiseTerm(const PairwiseOptions& cfg, const Channels& student, const Channels& teacher)
    : FeaturePairTerm(cfg.student, cfg.teacher, student, teacher, Projection::kNone, "conv1x1"),
      pool_kernel_(cfg.pool_kernel) {}

torch::Tensor PairwiseTerm::forward(const ModelOutput& student, const ModelOutput& teacher, const torch::Tensor&) {
  auto pool = [&](const torch::Tensor& x) {
    if (pool_kernel_ == 1) return x;
    return F::max_pool2d(x, F::MaxPool2dFuncOptions(pool_kernel_).stride(pool_kernel_).ceil_mode(true));
  };
  torch::Tensor total;
  for (size_t i = 0; i < num_pairs(); ++i) {
    auto [s, t] = pair(i, student, teacher);
    auto ps = pool(s), pt = pool(t);
    double m = static_cast<double>(pt.size(2) * pt.size(3));
    auto v = (cosine_matrix(pt) - cosine_matrix(ps)).pow(2).sum() / (m * m) / static_cast<double>(pt.size(0));
    total = total.defined() ? total + v : v;
  }
  return total / static_cast<double>(num_pairs());
}

// ------------------------------------------------------------------------------------------------------- ifvd

namespace {
/// Per-pixel cosine similarity of `f` (N,C,H,W) to its class centre; `onehot` (N,K,H·W) marks the K classes
/// present (all-zero columns for ignore pixels, whose centre is the pixel's own feature).
torch::Tensor centre_similarity(const torch::Tensor& f, const torch::Tensor& onehot) {
  auto flat = f.flatten(2);                                    // (N, C, M)
  auto counts = onehot.sum(2).unsqueeze(1);                    // (N, 1, K)
  auto centres = torch::bmm(flat, onehot.transpose(1, 2)) / (counts + 1e-6);  // (N, C, K)
  auto labelled = onehot.sum(1, /*keepdim=*/true);             // (N, 1, M): 1 where some class, 0 where ignore
  auto centre_map = torch::bmm(centres, onehot) + flat * (1 - labelled);
  return torch::cosine_similarity(flat, centre_map, /*dim=*/1, /*eps=*/1e-8);  // (N, M)
}
}  // namespace

IfvdTerm::IfvdTerm(const IfvdOptions& cfg, const Channels& student, const Channels& teacher, int64_t ignore_index)
    : FeaturePairTerm(cfg.student, cfg.teacher, student, teacher, Projection::kNone, "conv1x1"),
      ignore_index_(ignore_index) {}

torch::Tensor IfvdTerm::forward(const ModelOutput& student, const ModelOutput& teacher, const torch::Tensor& label) {
  torch::Tensor total;
  for (size_t i = 0; i < num_pairs(); ++i) {
    auto [s, t] = pair(i, student, teacher);
    check_label(label, t, context());
    auto lab = resize_label(label, t.sizes().slice(2)).flatten(1);  // (N, M)
    auto classes = std::get<0>(at::_unique(lab, /*sorted=*/true));
    classes = classes.masked_select(classes != ignore_index_);
    auto onehot = (lab.unsqueeze(1) == classes.view({1, -1, 1})).to(s.scalar_type());  // (N, K, M)
    auto v = F::mse_loss(centre_similarity(s, onehot), centre_similarity(t, onehot));
    total = total.defined() ? total + v : v;
  }
  return total / static_cast<double>(num_pairs());
}

// --------------------------------------------------------------------------------------------------------- at

AtTerm::AtTerm(const AtOptions& cfg, const Channels& student, const Channels& teacher)
    : FeaturePairTerm(cfg.student, cfg.teacher, student, teacher, Projection::kNone, "conv1x1") {}

torch::Tensor AtTerm::forward(const ModelOutput& student, const ModelOutput& teacher, const torch::Tensor&) {
  auto attention = [](const torch::Tensor& x) {
    return F::normalize(x.pow(2).mean(1).flatten(1), F::NormalizeFuncOptions().p(2).dim(1).eps(1e-12));
  };
  torch::Tensor total;
  for (size_t i = 0; i < num_pairs(); ++i) {
    auto [s, t] = pair(i, student, teacher);
    auto v = (attention(s) - attention(t)).pow(2).mean();
    total = total.defined() ? total + v : v;
  }
  return total / static_cast<double>(num_pairs());
}

// ------------------------------------------------------------------------------------------------------- dist

DistTerm::DistTerm(const DistOptions& cfg) : tau_(cfg.tau), beta_(cfg.beta), gamma_(cfg.gamma) {}

OutputRequest DistTerm::student_needs() const { return logits_only(); }
OutputRequest DistTerm::teacher_needs() const { return logits_only(); }

torch::Tensor DistTerm::forward(const ModelOutput& student, const ModelOutput& teacher, const torch::Tensor&) {
  auto s = require_logits(student, "student", context());
  auto t = constant(require_logits(teacher, "teacher", context()));
  SEGKD_CHECK(s.size(1) == t.size(1), context(), ": student logits have ", s.size(1), " classes, teacher ",
              t.size(1));
  s = resize_like(s, t.sizes().slice(2));
  int64_t c = t.size(1);
  auto ys = torch::softmax(s / tau_, 1).permute({0, 2, 3, 1}).reshape({-1, c});
  auto yt = torch::softmax(t / tau_, 1).permute({0, 2, 3, 1}).reshape({-1, c});
  double t2 = tau_ * tau_;
  auto inter = t2 * (1 - pearson_rows(ys, yt).mean());
  auto intra = t2 * (1 - pearson_rows(ys.t(), yt.t()).mean());
  return beta_ * inter + gamma_ * intra;
}

// --------------------------------------------------------------------------------------------------- registry

namespace {

using Factory = std::function<std::shared_ptr<DistillTerm>(const DistillOptions&, const Channels&, const Channels&,
                                                           int64_t)>;

/// type -> factory, one entry per alternative of TermOptions (options.h), same order.
const std::vector<std::pair<std::string, Factory>>& registry() {
  static const std::vector<std::pair<std::string, Factory>> entries{
      {"logit", [](auto& c, auto&, auto&, int64_t ig) { return std::make_shared<LogitTerm>(c.template as<LogitOptions>(), ig); }},
      {"feature", [](auto& c, auto& s, auto& t, int64_t) {
         return std::make_shared<FeatureTerm>(c.template as<FeatureOptions>(), s, t);
       }},
      {"cwd", [](auto& c, auto& s, auto& t, int64_t) { return std::make_shared<CwdTerm>(c.template as<CwdOptions>(), s, t); }},
      {"pairwise", [](auto& c, auto& s, auto& t, int64_t) {
         return std::make_shared<PairwiseTerm>(c.template as<PairwiseOptions>(), s, t);
       }},
      {"ifvd", [](auto& c, auto& s, auto& t, int64_t ig) {
         return std::make_shared<IfvdTerm>(c.template as<IfvdOptions>(), s, t, ig);
       }},
      {"at", [](auto& c, auto& s, auto& t, int64_t) { return std::make_shared<AtTerm>(c.template as<AtOptions>(), s, t); }},
      {"dist", [](auto& c, auto&, auto&, int64_t) { return std::make_shared<DistTerm>(c.template as<DistOptions>()); }},
  };
  return entries;
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : ", ") + s;
  return out;
}

/// The features named on one side exist in that model (its `channels`).
void check_names(const std::vector<std::string>& names, const Channels& channels, const char* side,
                 const std::string& ctx) {
  if (names.empty()) throw ConfigError(str_cat(ctx, ": `", side, "` lists no feature"));
  std::vector<std::string> known(feature_names().begin(), feature_names().end());
  for (const auto& n : names) {
    if (feature_names().count(n) == 0) {
      throw ConfigError(str_cat(ctx, ": unknown ", side, " feature \"", n, "\" (known: ", join(known), ")"));
    }
    auto it = channels.find(n);
    if (it == channels.end() || it->second <= 0) {
      throw ConfigError(str_cat(ctx, ": the ", side, " model does not provide feature \"", n, "\""));
    }
  }
}

}  // namespace

std::shared_ptr<DistillTerm> make_term(const DistillOptions& cfg, size_t index, const Channels& student,
                                       const Channels& teacher, int64_t ignore_index) {
  std::string ctx = str_cat("distill[", index, "] (type \"", cfg.type, "\")");
  const Factory* make = nullptr;
  for (const auto& [type, factory] : registry()) {
    if (type == cfg.type) make = &factory;
  }
  if (make == nullptr) {
    throw ConfigError(str_cat(ctx, ": unknown type (known: ", join(registered_terms()), ")"));
  }
  // What depends on the models: the features compared exist on both sides, pair by pair.
  if (cfg.reads_features()) {
    const auto [student_names, teacher_names] = cfg.feature_pairs();
    check_names(student_names, student, "student", ctx);
    check_names(teacher_names, teacher, "teacher", ctx);
    if (student_names.size() != teacher_names.size()) {
      throw ConfigError(str_cat(ctx, ": student lists ", student_names.size(), " features, teacher ",
                                teacher_names.size(), "; they are compared pair by pair"));
    }
  }
  // The option rules themselves are the options' own (options.cpp), worded for this context.
  const std::string prefix = str_cat("distill[", index, "]");
  Shown shown;
  add_shown(cfg.bind_fields(), prefix, shown);
  cfg.validate(prefix, Checker::in_context(ctx, prefix, &shown));
  auto term = (*make)(cfg, student, teacher, ignore_index);
  term->set_context(ctx);
  return term;
}

}  // namespace segkd::losses
