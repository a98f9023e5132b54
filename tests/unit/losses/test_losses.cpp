// Unit tests of losses/: task loss, KD-term invariants, finite-difference gradient checks, config validation and
// the Objective's bookkeeping. Parity against PyTorch lives in tests/parity/losses.
#include <functional>

#include "common/error.h"
#include "losses/objective.h"
#include "losses/terms.h"
#include "tests/testing/testing.h"

namespace segkd::losses {
namespace {

namespace F = torch::nn::functional;
using segkd::testing::tensors_close;

class LossesTest : public segkd::testing::Seeded {};

constexpr int64_t kIgnore = 255;

DistillOptions cfg_of(const std::string& type) { return DistillOptions(type); }

/// Student and teacher channels used by the term tests: layer4 has equal channels, layer3 differs (4 -> 6).
Channels student_channels() { return {{"layer3", 4}, {"layer4", 4}, {"head", 4}, {"logits", 3}}; }
Channels teacher_channels() { return {{"layer3", 6}, {"layer4", 4}, {"head", 4}, {"logits", 3}}; }

/// A label (N,H,W) with classes 0..classes-1 and about a quarter of the pixels ignored.
torch::Tensor random_label(int64_t n, int64_t h, int64_t w, int64_t classes) {
  auto lab = torch::randint(classes, {n, h, w}, torch::kLong);
  return lab.masked_fill(torch::rand({n, h, w}) < 0.25, kIgnore);
}

/// The named terms every invariant test runs over: config, and whether the term reads logits (else "layer4").
struct TermCase {
  std::string name;
  DistillOptions cfg;
  bool on_logits;
};

std::vector<TermCase> term_cases() {
  std::vector<TermCase> cases;
  auto logit = cfg_of("logit");
  logit.as<LogitOptions>().tau = 2.0;
  cases.push_back({"logit", logit, true});
  auto logit_mask = cfg_of("logit");
  logit_mask.as<LogitOptions>().tau = 3.0;
  logit_mask.as<LogitOptions>().mask_ignore = true;
  logit_mask.as<LogitOptions>().resolution = "label";
  cases.push_back({"logit_label_mask", logit_mask, true});
  auto feature = cfg_of("feature");
  cases.push_back({"feature", feature, false});
  auto feature_norm = cfg_of("feature");
  feature_norm.as<FeatureOptions>().normalize = "channel";
  cases.push_back({"feature_channel", feature_norm, false});
  auto cwd = cfg_of("cwd");
  cwd.as<CwdOptions>().tau = 4.0;
  cases.push_back({"cwd_logits", cwd, true});
  auto cwd_feat = cfg_of("cwd");
  cwd_feat.as<CwdOptions>().on = "feature";
  cases.push_back({"cwd_feature", cwd_feat, false});
  auto pairwise = cfg_of("pairwise");
  cases.push_back({"pairwise", pairwise, false});
  cases.push_back({"ifvd", cfg_of("ifvd"), false});
  cases.push_back({"at", cfg_of("at"), false});
  auto dist = cfg_of("dist");
  dist.as<DistOptions>().tau = 2.0;
  dist.as<DistOptions>().gamma = 2.0;
  cases.push_back({"dist", dist, true});
  return cases;
}

ModelOutput output_of(const torch::Tensor& x, bool on_logits) {
  ModelOutput out;
  if (on_logits) {
    out.logits = x;
  } else {
    out.features["layer4"] = x;
  }
  return out;
}

/// Sets every projector of `term` to the identity (equal channels), so student == teacher gives the minimum.
void identity_projectors(torch::nn::Module& term) {
  torch::NoGradGuard no_grad;
  for (auto& p : term.named_parameters()) {
    if (p.key().find("proj.") != 0) continue;
    if (p.value().dim() == 4) {
      p.value().copy_(torch::eye(p.value().size(0)).view(p.value().sizes()));
    } else {
      p.value().zero_();
    }
  }
}

// ------------------------------------------------------------------------------------------------ task loss

TEST_F(LossesTest, CeMatchesTorchMeanOverValidPixelsAfterUpsampling) {
  auto logits = torch::randn({2, 4, 5, 7});
  auto label = random_label(2, 13, 17, 4);
  auto up = F::interpolate(logits, F::InterpolateFuncOptions()
                                       .size(std::vector<int64_t>{13, 17})
                                       .mode(torch::kBilinear)
                                       .align_corners(false));
  auto expected = F::cross_entropy(up, label, F::CrossEntropyFuncOptions().ignore_index(kIgnore));
  EXPECT_TRUE(tensors_close(segmentation_ce(logits, label, kIgnore), expected, 1e-5));
}

TEST_F(LossesTest, CeWithClassWeightsIsTheWeightedMean) {
  auto logits = torch::randn({2, 3, 6, 5});
  auto label = random_label(2, 6, 5, 3);
  auto w = torch::tensor({0.5f, 2.0f, 1.5f});
  auto expected =
      F::cross_entropy(logits, label, F::CrossEntropyFuncOptions().ignore_index(kIgnore).weight(w));
  EXPECT_TRUE(tensors_close(segmentation_ce(logits, label, kIgnore, w), expected, 1e-5));
  // And it differs from the unweighted value, so the weights were applied.
  EXPECT_GT(std::abs(segmentation_ce(logits, label, kIgnore).item<double>() - expected.item<double>()), 1e-4);
}

TEST_F(LossesTest, CeWithNoValidPixelIsZeroWithFiniteZeroGradient) {
  auto logits = torch::randn({1, 3, 4, 4}, torch::requires_grad());
  auto label = torch::full({1, 8, 8}, kIgnore, torch::kLong);
  auto v = segmentation_ce(logits, label, kIgnore);
  EXPECT_EQ(v.item<double>(), 0.0);
  v.backward();
  EXPECT_EQ(logits.grad().abs().max().item<double>(), 0.0);
}

// ---------------------------------------------------------------------------------------------- invariants

TEST_F(LossesTest, EveryTermIsAtItsMinimumZeroWhenStudentEqualsTeacher) {
  for (const auto& tc : term_cases()) {
    SCOPED_TRACE(tc.name);
    auto term = make_term(tc.cfg, 0, student_channels(), teacher_channels(), kIgnore);
    term->to(torch::kDouble);  // double: the minimum is then exact up to the terms' own eps (dist: 1e-8)
    identity_projectors(*term);
    auto x = tc.on_logits ? torch::randn({2, 3, 7, 9}, torch::kDouble) * 3 : torch::randn({2, 4, 7, 9}, torch::kDouble);
    auto label = random_label(2, 13, 17, 3);
    auto v = term->forward(output_of(x, tc.on_logits), output_of(x.clone(), tc.on_logits), label).item<double>();
    double minimum = 0.0;
    if (tc.cfg.type == "dist") {
      // Pearson ρ(a, a) = ‖a‖²/(‖a‖² + 1e-8) with centred a: the minimum is τ²·(β·mean(1−ρ_rows) + γ·mean(1−ρ_cols)).
      const auto& o = tc.cfg.as<DistOptions>();
      auto y = torch::softmax(x / o.tau, 1).permute({0, 2, 3, 1}).reshape({-1, 3});
      auto one_minus_rho = [](const torch::Tensor& a) {
        auto n2 = (a - a.mean(1, /*keepdim=*/true)).pow(2).sum(1);
        return (1 - n2 / (n2 + 1e-8)).mean().item<double>();
      };
      minimum = o.tau * o.tau * (o.beta * one_minus_rho(y) + o.gamma * one_minus_rho(y.t()));
      EXPECT_LT(minimum, 1e-4);
    }
    EXPECT_NEAR(v, minimum, 1e-9);
    // And it is clearly positive for a different teacher: the zero above is not trivial.
    auto other = tc.on_logits ? torch::randn({2, 3, 7, 9}, torch::kDouble) * 3
                              : torch::randn({2, 4, 7, 9}, torch::kDouble);
    auto w = term->forward(output_of(x, tc.on_logits), output_of(other, tc.on_logits), label).item<double>();
    EXPECT_GT(w, 1e-3);
  }
}

TEST_F(LossesTest, LogitScalesAsTauSquaredTimesTheSoftenedKl) {
  auto s = torch::randn({2, 5, 6, 7}, torch::kDouble);
  auto t = torch::randn({2, 5, 6, 7}, torch::kDouble);
  auto value = [&](double tau, const torch::Tensor& ss, const torch::Tensor& tt) {
    auto c = cfg_of("logit");
    c.as<LogitOptions>().tau = tau;
    return make_term(c, 0, {}, {}, kIgnore)->forward(output_of(ss, true), output_of(tt, true), {}).item<double>();
  };
  for (double tau : {0.5, 2.0, 4.0}) {
    // Documented identity: value(S, T, τ) = τ² · value(S/τ, T/τ, 1).
    EXPECT_NEAR(value(tau, s, t), tau * tau * value(1.0, s / tau, t / tau), 1e-10) << "tau " << tau;
  }
  // High-temperature limit (the τ² factor makes it finite): τ²·KL → 1/(2C)·mean_pixels Σ_c (Δ_c − mean_c Δ)².
  auto d = s - t;
  auto centred = d - d.mean(1, /*keepdim=*/true);
  double limit = centred.pow(2).sum(1).mean().item<double>() / (2.0 * 5);
  EXPECT_NEAR(value(1000.0, s, t), limit, 1e-3 * limit);
  // Without the τ² factor the KL itself vanishes as τ grows; with it the value changes little from τ = 4 on.
  EXPECT_NEAR(value(50.0, s, t), limit, 0.05 * limit);
}

TEST_F(LossesTest, LogitMaskIgnoreAveragesOnlyValidPixels) {
  auto c = cfg_of("logit");
  c.as<LogitOptions>().mask_ignore = true;
  auto s = torch::randn({1, 3, 4, 4});
  auto t = torch::randn({1, 3, 4, 4});
  auto label = torch::zeros({1, 4, 4}, torch::kLong);
  label.index_put_({0, torch::indexing::Slice(0, 2)}, kIgnore);  // top half ignored
  auto term = make_term(c, 0, {}, {}, kIgnore);
  double masked = term->forward(output_of(s, true), output_of(t, true), label).item<double>();
  auto kl = F::kl_div(torch::log_softmax(s, 1), torch::log_softmax(t, 1),
                      F::KLDivFuncOptions().reduction(torch::kNone).log_target(true))
                .sum(1);
  double expected = kl.index({0, torch::indexing::Slice(2, 4)}).mean().item<double>();
  EXPECT_NEAR(masked, expected, 1e-6);
  // All pixels ignored: 0, not NaN.
  label.fill_(kIgnore);
  EXPECT_EQ(term->forward(output_of(s, true), output_of(t, true), label).item<double>(), 0.0);
}

TEST_F(LossesTest, TeacherInferenceTensorsAreAccepted) {
  torch::Tensor t;
  {
    c10::InferenceMode guard;
    t = torch::randn({2, 4, 5, 5});
  }
  ASSERT_TRUE(t.is_inference());
  for (const auto& tc : term_cases()) {
    if (tc.on_logits) continue;
    SCOPED_TRACE(tc.name);
    auto term = make_term(tc.cfg, 0, student_channels(), teacher_channels(), kIgnore);
    auto s = torch::randn({2, 4, 5, 5}, torch::requires_grad());
    auto v = term->forward(output_of(s, false), output_of(t, false), random_label(2, 10, 10, 3));
    v.backward();
    EXPECT_TRUE(s.grad().defined());
  }
}

TEST_F(LossesTest, StudentFeatureOfOtherSizeIsResizedToTheTeacher) {
  auto c = cfg_of("at");
  auto term = make_term(c, 0, student_channels(), teacher_channels(), kIgnore);
  auto s = torch::randn({2, 4, 5, 6});
  auto t = torch::randn({2, 4, 10, 12});
  auto up = F::interpolate(s, F::InterpolateFuncOptions()
                                  .size(std::vector<int64_t>{10, 12})
                                  .mode(torch::kBilinear)
                                  .align_corners(false));
  auto a = term->forward(output_of(s, false), output_of(t, false), {});
  auto b = term->forward(output_of(up, false), output_of(t, false), {});
  EXPECT_TRUE(tensors_close(a, b, 1e-6));
}

// ------------------------------------------------------------------------------- finite-difference gradients

/// Central differences of `f` at every element of `x` (double) against autograd.
::testing::AssertionResult gradcheck(const std::function<torch::Tensor(const torch::Tensor&)>& f,
                                     const torch::Tensor& x0) {
  auto x = x0.clone().requires_grad_(true);
  auto analytic = torch::autograd::grad({f(x)}, {x})[0];
  auto numeric = torch::zeros_like(x0);
  const double eps = 1e-6;
  auto base = x0.clone();
  for (int64_t i = 0; i < base.numel(); ++i) {
    auto plus = base.clone(), minus = base.clone();
    plus.view(-1)[i] += eps;
    minus.view(-1)[i] -= eps;
    numeric.view(-1)[i] = (f(plus).item<double>() - f(minus).item<double>()) / (2 * eps);
  }
  if (numeric.abs().max().item<double>() < 1e-8) {
    return ::testing::AssertionFailure() << "numeric gradient is zero: the check would be vacuous";
  }
  return tensors_close(analytic, numeric, 1e-5, 1e-7);
}

TEST_F(LossesTest, EveryTermPassesADoublePrecisionGradientCheck) {
  for (const auto& tc : term_cases()) {
    SCOPED_TRACE(tc.name);
    auto term = make_term(tc.cfg, 0, student_channels(), teacher_channels(), kIgnore);
    term->to(torch::kDouble);
    auto shape = tc.on_logits ? std::vector<int64_t>{2, 3, 3, 4} : std::vector<int64_t>{2, 4, 3, 5};
    auto x = torch::randn(shape, torch::kDouble);
    auto t = torch::randn(shape, torch::kDouble);
    auto label = random_label(2, 5, 7, 3);
    auto f = [&](const torch::Tensor& s) {
      return term->forward(output_of(s, tc.on_logits), output_of(t, tc.on_logits), label);
    };
    EXPECT_TRUE(gradcheck(f, x));
  }
}

TEST_F(LossesTest, ProjectedTermsPassADoublePrecisionGradientCheckThroughBatchNorm) {
  // layer3: 4 student channels -> 6 teacher channels, so both terms project (1x1 conv + Norm2d in training mode).
  for (const std::string type : {"feature", "cwd"}) {
    SCOPED_TRACE(type);
    auto c = type == "feature"
                 ? DistillOptions(FeatureOptions().set_student({"layer3"}).set_teacher({"layer3"}).set_projector("conv1x1_bn"))
                 : DistillOptions(CwdOptions().set_on("feature").set_student({"layer3"}).set_teacher({"layer3"}).set_projector("conv1x1_bn"));
    auto term = make_term(c, 0, student_channels(), teacher_channels(), kIgnore);
    term->to(torch::kDouble);
    ASSERT_EQ(term->parameters().size(), 3u);
    auto t = torch::randn({2, 6, 3, 4}, torch::kDouble);
    auto f = [&](const torch::Tensor& s) {
      ModelOutput so, to;
      so.features["layer3"] = s;
      to.features["layer3"] = t;
      return term->forward(so, to, {});
    };
    EXPECT_TRUE(gradcheck(f, torch::randn({2, 4, 3, 4}, torch::kDouble)));
  }
}

TEST_F(LossesTest, SegmentationCePassesADoublePrecisionGradientCheck) {
  auto label = random_label(2, 5, 7, 3);
  auto w = torch::tensor({1.0, 0.3, 2.0}, torch::kDouble);
  EXPECT_TRUE(gradcheck([&](const torch::Tensor& z) { return segmentation_ce(z, label, kIgnore, w); },
                        torch::randn({2, 3, 3, 4}, torch::kDouble)));
}

// ------------------------------------------------------------------------------------------- config errors

TEST_F(LossesTest, MakeTermRejectsBadTablesNamingTheIndex) {
  auto s = student_channels(), t = teacher_channels();
  SEGKD_EXPECT_THROW_MSG(make_term(cfg_of("kl"), 2, s, t, kIgnore), "distill[2] (type \"kl\"): unknown type");
  auto bad_feature = cfg_of("feature");
  bad_feature.as<FeatureOptions>().student = {"layer5"};
  SEGKD_EXPECT_THROW_MSG(make_term(bad_feature, 1, s, t, kIgnore),
                         "distill[1] (type \"feature\"): unknown student feature \"layer5\"");
  auto missing = cfg_of("at");
  missing.as<AtOptions>().student = {"layer1"};
  missing.as<AtOptions>().teacher = {"layer1"};
  SEGKD_EXPECT_THROW_MSG(make_term(missing, 3, s, t, kIgnore), "distill[3] (type \"at\"): the student model");
  auto negative = cfg_of("logit");
  negative.weight = -0.5;
  SEGKD_EXPECT_THROW_MSG(make_term(negative, 0, s, t, kIgnore), "distill[0] (type \"logit\"): weight");
  for (double tau : {0.0, -1.0}) {
    auto c = cfg_of("cwd");
    c.as<CwdOptions>().tau = tau;
    SEGKD_EXPECT_THROW_MSG(make_term(c, 4, s, t, kIgnore), "distill[4] (type \"cwd\"): tau must be > 0");
  }
  auto lengths = cfg_of("feature");
  lengths.as<FeatureOptions>().student = {"layer3", "layer4"};
  SEGKD_EXPECT_THROW_MSG(make_term(lengths, 5, s, t, kIgnore), "distill[5] (type \"feature\"): student lists 2");
  auto proj = cfg_of("feature");
  proj.as<FeatureOptions>().projector = "mlp";
  SEGKD_EXPECT_THROW_MSG(make_term(proj, 6, s, t, kIgnore), "distill[6] (type \"feature\"): projector = \"mlp\"");
  EXPECT_THROW(make_term(cfg_of("kl"), 0, s, t, kIgnore), ConfigError);
  // The objective forwards the same errors (its table index is the vector position).
  std::vector<DistillOptions> tables{cfg_of("logit"), cfg_of("nope")};
  SEGKD_EXPECT_THROW_MSG(Objective(LossOptions{}, tables, int64_t{3}, kIgnore, s, t), "distill[1] (type \"nope\")");
}

TEST_F(LossesTest, RegistryListsEveryTerm) {
  EXPECT_EQ(registered_terms(),
            (std::vector<std::string>{"logit", "feature", "cwd", "pairwise", "ifvd", "at", "dist"}));
  for (const auto& type : registered_terms()) {
    EXPECT_EQ(make_term(cfg_of(type), 0, student_channels(), teacher_channels(), kIgnore)->type(), type);
  }
}

TEST_F(LossesTest, TermsDeclareWhatTheyRead) {
  auto s = student_channels(), t = teacher_channels();
  auto logit = make_term(cfg_of("logit"), 0, s, t, kIgnore);
  EXPECT_TRUE(logit->teacher_needs().logits);
  EXPECT_TRUE(logit->teacher_needs().features.empty());
  EXPECT_FALSE(logit->needs_label());
  auto masked = cfg_of("logit");
  masked.as<LogitOptions>().mask_ignore = true;
  EXPECT_TRUE(make_term(masked, 0, s, t, kIgnore)->needs_label());
  auto feat = cfg_of("feature");
  feat.as<FeatureOptions>().student = {"layer3", "head"};
  feat.as<FeatureOptions>().teacher = {"layer3", "head"};
  auto f = make_term(feat, 0, s, t, kIgnore);
  EXPECT_FALSE(f->teacher_needs().logits);
  EXPECT_EQ(f->teacher_needs().features, (std::set<std::string>{"layer3", "head"}));
  EXPECT_TRUE(make_term(cfg_of("ifvd"), 0, s, t, kIgnore)->needs_label());
}

// --------------------------------------------------------------------------------------------- objective

TEST_F(LossesTest, ObjectiveSumsWeightedTermsAndReportsEachByName) {
  LossOptions loss;
  loss.aux_weight = 0.4;
  auto logit = cfg_of("logit");
  logit.weight = 0.7;
  auto cwd1 = cfg_of("cwd");
  cwd1.weight = 2.0;
  auto cwd2 = cfg_of("cwd");
  cwd2.as<CwdOptions>().on = "feature";
  cwd2.as<CwdOptions>().student = {"layer3"};
  cwd2.as<CwdOptions>().teacher = {"layer3"};
  cwd2.as<CwdOptions>().projector = "conv1x1_bn";
  cwd2.weight = 0.5;
  Objective obj(loss, std::vector<DistillOptions>{logit, cwd1, cwd2}, int64_t{3}, kIgnore, student_channels(), teacher_channels());

  ModelOutput st, te;
  st.logits = torch::randn({2, 3, 5, 6}, torch::requires_grad());
  st.aux_logits = torch::randn({2, 3, 5, 6}, torch::requires_grad());
  st.features["layer3"] = torch::randn({2, 4, 5, 6}, torch::requires_grad());
  te.logits = torch::randn({2, 3, 5, 6});
  te.features["layer3"] = torch::randn({2, 6, 5, 6});
  auto label = random_label(2, 20, 24, 3);
  auto r = obj->forward(st, &te, label);

  std::vector<std::string> names;
  for (const auto& [n, v] : r.values) names.push_back(n);
  EXPECT_EQ(names, (std::vector<std::string>{"ce", "aux_ce", "logit", "cwd.1", "cwd.2"}));
  ASSERT_EQ(r.seconds.size(), r.values.size());
  for (size_t i = 0; i < r.seconds.size(); ++i) {
    EXPECT_EQ(r.seconds[i].first, r.values[i].first);
    EXPECT_GE(r.seconds[i].second, 0.0);
  }
  double ce = segmentation_ce(st.logits, label, kIgnore).item<double>();
  double aux = segmentation_ce(st.aux_logits, label, kIgnore).item<double>();
  EXPECT_NEAR(r.values[0].second.item<double>(), ce, 1e-6);
  EXPECT_NEAR(r.values[1].second.item<double>(), aux, 1e-6);
  double expected = ce + 0.4 * aux + 0.7 * r.values[2].second.item<double>() + 2.0 * r.values[3].second.item<double>() +
                    0.5 * r.values[4].second.item<double>();
  EXPECT_NEAR(r.total.item<double>(), expected, 1e-5);
  r.total.backward();
  EXPECT_TRUE(st.features["layer3"].grad().defined());
  // The projector trains: it has a gradient and is exposed under a stable name.
  auto params = obj->projector_parameters();
  ASSERT_EQ(params.size(), 3u);  // conv weight, norm weight, norm bias
  for (const auto& p : params) EXPECT_TRUE(p.grad().defined());
  auto named = obj->named_parameters();
  EXPECT_TRUE(named.contains("terms.2.proj.0.0.weight"));
  EXPECT_TRUE(named.contains("terms.2.proj.0.1.weight"));
  EXPECT_TRUE(obj->named_buffers().contains("terms.2.proj.0.1.running_mean"));
}

TEST_F(LossesTest, ObjectiveRequestsOnlyWhatTermsRead) {
  auto feat = cfg_of("feature");
  feat.as<FeatureOptions>().student = {"layer3"};
  feat.as<FeatureOptions>().teacher = {"layer3"};
  Objective obj(LossOptions{}, std::vector<DistillOptions>{feat, cfg_of("at")}, int64_t{3}, kIgnore, student_channels(), teacher_channels());
  auto tr = obj->teacher_request();
  EXPECT_FALSE(tr.logits);
  EXPECT_FALSE(tr.aux_logits);
  EXPECT_EQ(tr.features, (std::set<std::string>{"layer3", "layer4"}));
  EXPECT_TRUE(tr.backbone_only());
  auto sr = obj->student_request();
  EXPECT_TRUE(sr.logits);
  EXPECT_TRUE(sr.aux_logits);
  EXPECT_EQ(sr.features, (std::set<std::string>{"layer3", "layer4"}));
  EXPECT_TRUE(obj->has_distill());
  auto names = std::vector<std::string>{obj->terms()[0].first, obj->terms()[1].first};
  EXPECT_EQ(names, (std::vector<std::string>{"feature", "at"}));
}

TEST_F(LossesTest, SupervisedObjectiveNeedsNoTeacherAndSkipsMissingAux) {
  LossOptions loss;
  Objective obj(loss, std::vector<DistillOptions>{}, int64_t{3}, kIgnore, Channels{}, Channels{});
  EXPECT_FALSE(obj->has_distill());
  EXPECT_TRUE(obj->projector_parameters().empty());
  ModelOutput st;
  st.logits = torch::randn({1, 3, 4, 4});
  auto label = random_label(1, 8, 8, 3);
  auto r = obj->forward(st, nullptr, label);
  ASSERT_EQ(r.values.size(), 1u);
  EXPECT_EQ(r.values[0].first, "ce");
  EXPECT_NEAR(r.total.item<double>(), segmentation_ce(st.logits, label, kIgnore).item<double>(), 1e-6);

  Objective kd(loss, std::vector<DistillOptions>{cfg_of("logit")}, int64_t{3}, kIgnore, Channels{}, Channels{});
  SEGKD_EXPECT_THROW_MSG(kd->forward(st, nullptr, label), "no teacher output");
  ModelOutput te;  // teacher without the logits the term needs
  SEGKD_EXPECT_THROW_MSG(kd->forward(st, &te, label), "distill[0] (type \"logit\"): teacher output has no logits");
}

}  // namespace
}  // namespace segkd::losses
