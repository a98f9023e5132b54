// Parity of every loss against an independent PyTorch implementation (tests/parity/losses/losses_ref.py, run with
// Debian's torch as /usr/bin/python3). For each case this program writes the random inputs, the term's options,
// its projector parameters, and segkd's value and gradients w.r.t. the student inputs; the Python script recomputes
// value and gradients from the same inputs and compares (value: 1e-5 relative; gradient: 1e-4 of its scale).
#include <fstream>
#include <sstream>

#include "losses/objective.h"
#include "tests/testing/testing.h"

namespace segkd::losses {
namespace {

constexpr int64_t kIgnore = 255;

std::string json_list(const std::vector<std::string>& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) out += (i ? ", \"" : "\"") + items[i] + "\"";
  return out + "]";
}

/// Every option of the term as JSON, in the form of the resolved TOML (losses::render_distill: the former shared keys
/// included, so the Python side reads each key it needs whatever the term).
std::string to_json(const DistillOptions& c) {
  std::string out = "{";
  for (const auto& [key, text] : render_distill(c)) out += "\"" + key + "\": " + text + ", ";
  return out + "\"ignore_index\": " + std::to_string(kIgnore) + "}";
}

torch::Tensor random_label(std::vector<int64_t> shape, int64_t classes) {
  auto lab = torch::randint(classes, shape, torch::kLong);
  return lab.masked_fill(torch::rand(shape) < 0.2, kIgnore);
}

/// One parity case: inputs, what to run, and where to write it.
struct Case {
  std::string name;
  DistillOptions cfg;                                // type "ce" = segmentation_ce
  std::map<std::string, torch::Tensor> student;     // "logits" or feature name -> tensor
  std::map<std::string, torch::Tensor> teacher;
  torch::Tensor label;
  torch::Tensor class_weights;
};

ModelOutput to_output(const std::map<std::string, torch::Tensor>& m) {
  ModelOutput out;
  for (const auto& [k, v] : m) {
    if (k == "logits") {
      out.logits = v;
    } else {
      out.features[k] = v;
    }
  }
  return out;
}

Channels channels_of(const std::map<std::string, torch::Tensor>& m) {
  Channels c;
  for (const auto& [k, v] : m) c[k] = v.size(1);
  return c;
}

/// Runs the case in C++ and writes <dir>/<name>.pt (tensors) and <dir>/<name>.json (options).
void write_case(const Case& cs, const std::string& dir) {
  c10::Dict<std::string, torch::Tensor> out;
  std::map<std::string, torch::Tensor> student;
  for (const auto& [k, v] : cs.student) student[k] = v.clone().requires_grad_(true);
  torch::Tensor value;
  std::shared_ptr<DistillTerm> term;
  if (cs.cfg.type == "ce") {
    value = segmentation_ce(student.at("logits"), cs.label, kIgnore, cs.class_weights);
    if (cs.class_weights.defined()) out.insert("class_weights", cs.class_weights);
  } else {
    term = make_term(cs.cfg, 0, channels_of(cs.student), channels_of(cs.teacher), kIgnore);
    torch::NoGradGuard no_grad;
    for (auto& p : term->named_parameters()) {
      if (p.value().dim() == 1) p.value().uniform_(0.5, 1.5);  // non-trivial norm affine parameters
    }
  }
  if (term) value = term->forward(to_output(student), to_output(cs.teacher), cs.label);
  std::vector<torch::Tensor> inputs;
  for (const auto& [k, v] : student) inputs.push_back(v);
  auto grads = torch::autograd::grad({value}, inputs);
  size_t i = 0;
  for (const auto& [k, v] : student) {
    out.insert("s." + k, v.detach());
    out.insert("grad." + k, grads[i++]);
  }
  for (const auto& [k, v] : cs.teacher) out.insert("t." + k, v);
  if (cs.label.defined()) out.insert("label", cs.label);
  out.insert("value", value.detach().reshape({1}));
  if (term) {
    for (const auto& p : term->named_parameters()) out.insert("param." + p.key(), p.value().detach());
  }
  auto bytes = torch::pickle_save(c10::IValue(out));
  std::ofstream f(dir + "/" + cs.name + ".pt", std::ios::binary);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  DistillOptions cfg = cs.cfg;
  segkd::testing::write_text(dir + "/" + cs.name + ".json", to_json(cfg));
}

DistillOptions cfg(const std::string& type) { return DistillOptions(type); }

std::vector<Case> cases() {
  torch::manual_seed(20261122);
  auto r = [](std::vector<int64_t> shape) { return torch::randn(shape); };
  std::vector<Case> v;
  // Odd spatial sizes throughout (13×17 and 7×9), labels with ~20% ignore pixels.
  v.push_back({"ce", cfg("ce"), {{"logits", r({2, 5, 7, 9})}}, {}, random_label({2, 13, 17}, 5), {}});
  v.push_back({"ce_weighted", cfg("ce"), {{"logits", r({2, 5, 13, 17})}}, {}, random_label({2, 13, 17}, 5),
               torch::tensor({0.5f, 1.0f, 2.0f, 0.25f, 1.5f})});
  auto logit = cfg("logit");
  logit.as<LogitOptions>().tau = 2.0;
  v.push_back({"logit_tau2", logit, {{"logits", r({2, 5, 13, 17}) * 2}}, {{"logits", r({2, 5, 13, 17}) * 2}}, {}});
  auto logit_mask = cfg("logit");
  logit_mask.as<LogitOptions>().tau = 4.0;
  logit_mask.as<LogitOptions>().mask_ignore = true;
  v.push_back({"logit_mask_resized", logit_mask, {{"logits", r({2, 5, 7, 9})}}, {{"logits", r({2, 5, 13, 17})}},
               random_label({2, 27, 35}, 5)});
  auto logit_label = cfg("logit");
  logit_label.as<LogitOptions>().resolution = "label";
  logit_label.as<LogitOptions>().mask_ignore = true;
  v.push_back({"logit_label_mask", logit_label, {{"logits", r({2, 5, 7, 9})}}, {{"logits", r({2, 5, 7, 9})}},
               random_label({2, 13, 17}, 5)});
  auto feature = cfg("feature");
  feature.as<FeatureOptions>().student = {"layer3", "layer4"};
  feature.as<FeatureOptions>().teacher = {"layer3", "layer4"};
  v.push_back({"feature_conv1x1",
               feature,
               {{"layer3", r({2, 6, 13, 17})}, {"layer4", r({2, 8, 7, 9})}},
               {{"layer3", r({2, 10, 13, 17})}, {"layer4", r({2, 12, 13, 17})}},
               {}});
  auto feature_bn = cfg("feature");
  feature_bn.as<FeatureOptions>().student = {"head"};
  feature_bn.as<FeatureOptions>().teacher = {"head"};
  feature_bn.as<FeatureOptions>().projector = "conv1x1_bn";
  feature_bn.as<FeatureOptions>().normalize = "channel";
  v.push_back({"feature_bn_channel", feature_bn, {{"head", r({2, 6, 13, 17})}}, {{"head", r({2, 10, 13, 17}) * 3 + 1}},
               {}});
  auto cwd = cfg("cwd");
  cwd.as<CwdOptions>().tau = 4.0;
  v.push_back({"cwd_logits", cwd, {{"logits", r({2, 5, 13, 17}) * 3}}, {{"logits", r({2, 5, 13, 17}) * 3}}, {}});
  auto cwd_feat = cfg("cwd");
  cwd_feat.as<CwdOptions>().on = "feature";
  cwd_feat.as<CwdOptions>().tau = 2.0;
  cwd_feat.as<CwdOptions>().student = {"head"};
  cwd_feat.as<CwdOptions>().teacher = {"head"};
  v.push_back({"cwd_feature_proj", cwd_feat, {{"head", r({2, 6, 13, 17})}}, {{"head", r({2, 10, 13, 17})}}, {}});
  auto pairwise = cfg("pairwise");
  pairwise.as<PairwiseOptions>().student = {"head"};
  pairwise.as<PairwiseOptions>().teacher = {"head"};
  v.push_back({"pairwise_k2", pairwise, {{"head", r({2, 6, 13, 17})}}, {{"head", r({2, 10, 13, 17})}}, {}});
  auto pairwise3 = pairwise;
  pairwise3.as<PairwiseOptions>().pool_kernel = 3;
  v.push_back({"pairwise_k3_resized", pairwise3, {{"head", r({2, 6, 7, 9})}}, {{"head", r({2, 10, 13, 17})}}, {}});
  auto ifvd = cfg("ifvd");
  ifvd.as<IfvdOptions>().student = {"head"};
  ifvd.as<IfvdOptions>().teacher = {"head"};
  v.push_back({"ifvd", ifvd, {{"head", r({2, 6, 13, 17})}}, {{"head", r({2, 10, 13, 17})}},
               random_label({2, 27, 35}, 5)});
  auto at = cfg("at");
  at.as<AtOptions>().student = {"layer2", "layer4"};
  at.as<AtOptions>().teacher = {"layer2", "layer4"};
  v.push_back({"at_two_layers",
               at,
               {{"layer2", r({2, 6, 13, 17})}, {"layer4", r({2, 8, 7, 9})}},
               {{"layer2", r({2, 10, 13, 17})}, {"layer4", r({2, 12, 13, 17})}},
               {}});
  auto dist = cfg("dist");
  dist.as<DistOptions>().tau = 2.0;
  dist.as<DistOptions>().gamma = 2.0;
  v.push_back({"dist", dist, {{"logits", r({2, 5, 13, 17}) * 2}}, {{"logits", r({2, 5, 13, 17}) * 2}}, {}});
  return v;
}

TEST(LossesParity, EveryTermMatchesPyTorch) {
  segkd::testing::TempDir dir;
  auto all = cases();
  for (const auto& c : all) write_case(c, dir.path());
  std::string output;
  std::string script = segkd::testing::source_dir() + "/tests/parity/losses/losses_ref.py";
  int rc = segkd::testing::run_command("/usr/bin/python3 " + script + " " + dir.path(), &output);
  EXPECT_EQ(rc, 0) << output;
  for (const auto& c : all) {
    EXPECT_NE(output.find("OK " + c.name + " "), std::string::npos) << "case " << c.name << " not confirmed:\n"
                                                                   << output;
  }
  std::cout << output;
}

}  // namespace
}  // namespace segkd::losses
