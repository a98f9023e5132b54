// losses/options.h on its own: LossOptions, each KD term's options (the keys it takes, validate() naming the key),
// the `[[distill]]` table's canonical form.
#include <gtest/gtest.h>

#include "common/error.h"
#include "losses/options.h"
#include "tests/testing/testing.h"

namespace segkd::losses {
namespace {

TEST(LossOptions, DefaultsAndChainedSettersValidate) {
  EXPECT_NO_THROW(LossOptions().validate());
  LossOptions o = LossOptions().set_aux_weight(0.2).set_class_weights({1.0, 2.0}).set_skip_nonfinite(true);
  EXPECT_DOUBLE_EQ(o.aux_weight, 0.2);
  EXPECT_NO_THROW(o.validate());
  SEGKD_EXPECT_THROW_MSG(LossOptions().set_aux_weight(-1).validate(), "loss.aux_weight = -1.0: must be >= 0");
  SEGKD_EXPECT_THROW_MSG(LossOptions().set_max_skipped_steps(0).validate(), "loss.max_skipped_steps");
  SEGKD_EXPECT_THROW_MSG(LossOptions().set_class_weights({1.0, -0.5}).validate(), "loss.class_weights");
}

TEST(DistillOptions, EachTermTakesItsOwnKeys) {
  EXPECT_EQ(registered_terms(), (std::vector<std::string>{"logit", "feature", "cwd", "pairwise", "ifvd", "at", "dist"}));
  using Keys = std::vector<std::string>;
  EXPECT_EQ(DistillOptions("logit").keys(), (Keys{"weight", "tau", "resolution", "mask_ignore"}));
  EXPECT_EQ(DistillOptions("feature").keys(), (Keys{"weight", "student", "teacher", "normalize", "projector"}));
  EXPECT_EQ(DistillOptions("cwd").keys(), (Keys{"weight", "tau", "on", "student", "teacher", "projector"}));
  EXPECT_EQ(DistillOptions("pairwise").keys(), (Keys{"weight", "student", "teacher", "pool_kernel"}));
  EXPECT_EQ(DistillOptions("ifvd").keys(), (Keys{"weight", "student", "teacher"}));
  EXPECT_EQ(DistillOptions("at").keys(), (Keys{"weight", "student", "teacher"}));
  EXPECT_EQ(DistillOptions("dist").keys(), (Keys{"weight", "tau", "beta", "gamma"}));
  EXPECT_EQ(DistillOptions("kl").keys(), (Keys{"weight"}));
  // The union (what `--set distill.N.KEY` may name) is exactly the former shared table's keys.
  std::vector<std::string> all;
  for (const auto& [key, type] : distill_key_types()) all.push_back(key);
  EXPECT_EQ(all.size(), 2 + former_shared_keys().size());
}

TEST(DistillOptions, ChainedSettersAndTheTermsOptions) {
  DistillOptions d = DistillOptions(CwdOptions().set_tau(4).set_on("feature")).set_weight(0.5);
  EXPECT_EQ(d.type, "cwd");
  EXPECT_DOUBLE_EQ(d.weight, 0.5);
  EXPECT_DOUBLE_EQ(d.as<CwdOptions>().tau, 4.0);
  EXPECT_TRUE(d.reads_features());
  EXPECT_FALSE(DistillOptions("cwd").reads_features());  // on = "logits"
  EXPECT_NO_THROW(d.validate("distill[0]"));
  EXPECT_THROW(d.as<LogitOptions>(), Error);
}

TEST(DistillOptions, ValidateNamesTheKey) {
  for (const auto& type : registered_terms()) {
    SCOPED_TRACE(type);
    EXPECT_NO_THROW(DistillOptions(type).validate());
  }
  SEGKD_EXPECT_THROW_MSG(DistillOptions("kl").validate(), "distill[0].type = \"kl\": must be one of logit|feature|");
  SEGKD_EXPECT_THROW_MSG(DistillOptions("logit").set_weight(-1).validate("distill[2]"),
                         "distill[2].weight = -1.0: must be >= 0");
  SEGKD_EXPECT_THROW_MSG(DistillOptions(LogitOptions().set_tau(0)).validate(), "distill[0].tau = 0.0: must be > 0");
  SEGKD_EXPECT_THROW_MSG(DistillOptions(LogitOptions().set_resolution("full")).validate(), "distill[0].resolution");
  SEGKD_EXPECT_THROW_MSG(DistillOptions(FeatureOptions().set_normalize("l2")).validate(), "distill[0].normalize");
  SEGKD_EXPECT_THROW_MSG(DistillOptions(FeatureOptions().set_student({"layer3", "layer4"})).validate(),
                         "distill[0].teacher = [\"layer4\"]: must list as many features as distill[0].student (2)");
  SEGKD_EXPECT_THROW_MSG(DistillOptions(AtOptions().set_student({}).set_teacher({})).validate(),
                         "distill[0].student = []: must name at least one feature");
  SEGKD_EXPECT_THROW_MSG(DistillOptions(CwdOptions().set_on("both")).validate(), "distill[0].on");
  SEGKD_EXPECT_THROW_MSG(DistillOptions(PairwiseOptions().set_pool_kernel(0)).validate(), "distill[0].pool_kernel");
  SEGKD_EXPECT_THROW_MSG(DistillOptions(IfvdOptions().set_student({"layer5"}).set_teacher({"layer5"})).validate(),
                         "distill[0].student = [\"layer5\"]: must be one of layer1|layer2|layer3|layer4|head");
  SEGKD_EXPECT_THROW_MSG(DistillOptions(DistOptions().set_beta(-1)).validate(), "distill[0].beta = -1.0: must be >= 0");
}

TEST(DistillOptions, CanonicalFormKeepsTheFormerSharedKeys) {
  // type, weight, then the 11 former shared keys in their old order: the term's value where it takes the key.
  auto texts = render_distill(DistillOptions(LogitOptions().set_tau(4)));
  std::vector<std::string> keys;
  for (const auto& [k, v] : texts) keys.push_back(k);
  EXPECT_EQ(keys, (std::vector<std::string>{"type", "weight", "tau", "resolution", "mask_ignore", "student", "teacher",
                                            "normalize", "projector", "on", "pool_kernel", "beta", "gamma"}));
  EXPECT_EQ(texts[0].second, "\"logit\"");
  EXPECT_EQ(texts[2].second, "4.0");
  EXPECT_EQ(texts[5].second, "[\"layer4\"]");  // not a logit option: the former default
  auto pairwise = render_distill(DistillOptions(PairwiseOptions().set_pool_kernel(3).set_student({"head"})));
  EXPECT_EQ(pairwise[5].second, "[\"head\"]");
  EXPECT_EQ(pairwise[10].second, "3");
}

}  // namespace
}  // namespace segkd::losses
