// Int8Segmentor: the quantised teacher tracks its fp32 folded model, has the closed-form number of quantisation
// points, and refuses what it cannot run.
#include <gtest/gtest.h>

#include "models/int8.h"
#include "models/segmentor.h"
#include "tests/testing/testing.h"

namespace segkd::models {
namespace {

/// A folded teacher with non-trivial BatchNorm statistics (random running mean/var, weight, bias), so folding changes
/// every convolution.
Segmentor folded(const std::string& arch, const std::string& backbone, int64_t classes = 5) {
  ModelOptions mc;
  mc.arch = arch;
  mc.backbone = backbone;
  auto model = build_model(mc, classes);
  torch::NoGradGuard no_grad;
  for_each_norm(*model, [](Norm2dImpl& n) {
    n.running_mean.uniform_(-0.2, 0.2);
    n.running_var.uniform_(0.5, 1.5);
    n.weight.uniform_(0.5, 1.5);
    n.bias.uniform_(-0.1, 0.1);
  });
  prepare_teacher(model, /*fold_bn=*/true);
  return model;
}

/// ||a - b|| / ||b||.
double relative_error(const torch::Tensor& a, const torch::Tensor& b) {
  return ((a - b).norm() / b.norm()).item<double>();
}

class Int8 : public segkd::testing::Seeded {};

void expect_tracks_fp32(const std::string& arch) {
  auto model = folded(arch, "resnet18_v1c");
  Int8Segmentor q(model);
  // Calibrate on three batches, evaluate on a fourth from the same distribution.
  for (int i = 0; i < 3; ++i) q.observe(torch::randn({2, 3, 64, 64}));
  q.set_ranges(q.ranges());
  ASSERT_TRUE(q.ready());
  auto x = torch::randn({2, 3, 64, 64});
  OutputRequest req;
  req.features = {"layer1", "layer4", "head"};
  ModelOutput ref;
  {
    torch::NoGradGuard no_grad;
    ref = model->forward(x, req);
  }
  auto out = q.forward(x, req);
  // Measured here: 1.5-2.1% (layer1), 2.2-2.3% (layer4), 1.0-1.3% (head), 0.6-1.0% (logits), argmax agreement 100%.
  // Ranges off by a factor of four exceed 5% (RangesThatAreOffByFourFailTheTolerance).
  for (const auto& name : {"layer1", "layer4", "head"}) {
    ASSERT_EQ(out.features.at(name).sizes(), ref.features.at(name).sizes()) << name;
    EXPECT_EQ(out.features.at(name).scalar_type(), torch::kFloat) << name;
    const double err = relative_error(out.features.at(name), ref.features.at(name));
    std::cout << arch << " " << name << " relative error " << err << "\n";
    EXPECT_LT(err, 0.05) << name;
  }
  ASSERT_EQ(out.logits.sizes(), ref.logits.sizes());
  const double err = relative_error(out.logits, ref.logits);
  const double agree = (out.logits.argmax(1) == ref.logits.argmax(1)).to(torch::kDouble).mean().item<double>();
  std::cout << arch << " logits relative error " << err << ", argmax agreement " << agree << "\n";
  EXPECT_LT(err, 0.05);
  EXPECT_LT(relative_error(out.aux_logits, ref.aux_logits), 0.05);
  EXPECT_GT(agree, 0.9);
}

TEST_F(Int8, PSPNetOutputsTrackTheFp32FoldedModel) { expect_tracks_fp32("pspnet"); }
TEST_F(Int8, DeepLabV3OutputsTrackTheFp32FoldedModel) { expect_tracks_fp32("deeplabv3"); }

TEST_F(Int8, RangesThatAreOffByFourFailTheTolerance) {
  // The tolerance of the tests above can fail: too narrow ranges clip activations, too wide ones lose resolution.
  auto model = folded("pspnet", "resnet18_v1c");
  Int8Segmentor q(model);
  for (int i = 0; i < 3; ++i) q.observe(torch::randn({2, 3, 64, 64}));
  const auto good = q.ranges();
  auto x = torch::randn({2, 3, 64, 64});
  OutputRequest req;
  req.features = {"layer4"};
  torch::Tensor ref;
  {
    torch::NoGradGuard no_grad;
    ref = model->forward(x, req).features.at("layer4");
  }
  // Measured: x0.25 -> 25%, x4 -> 8.5% (x0.5 -> 2.1%, x2 -> 4.3%: min/max ranges have room to clip).
  for (double factor : {0.25, 4.0}) {
    q.set_ranges(good * factor);
    EXPECT_GT(relative_error(q.forward(x, req).features.at("layer4"), ref), 0.05) << "ranges x" << factor;
  }
  q.set_ranges(good);
  EXPECT_LT(relative_error(q.forward(x, req).features.at("layer4"), ref), 0.05);
}

TEST_F(Int8, PointsAreTheInputEveryConvolutionEveryResidualSumAndTheHeadConcatenation) {
  auto model = folded("pspnet", "resnet18_v1c");
  Int8Segmentor q(model);
  // input 1 + stem 3 + 8 basic blocks x (conv1, conv2, sum) 24 + downsample in layer2..4 3 + PSP branches 4 +
  // concatenation 1 + bottleneck 1 + auxiliary conv 1.
  EXPECT_EQ(q.point_names().size(), 38u);
  EXPECT_EQ(q.point_names().front(), "input");
  EXPECT_EQ(q.ranges().sizes(), (std::vector<int64_t>{38, 2}));
  // Not calibrated yet: the ranges are empty ([+inf, -inf]) and forward refuses.
  EXPECT_TRUE(std::isinf(q.ranges()[0][0].item<double>()));
  SEGKD_EXPECT_THROW_MSG(q.forward(torch::randn({1, 3, 32, 32}), {}), "before calibration");
  SEGKD_EXPECT_THROW_MSG(q.set_ranges(q.ranges()), "calibration range of input");
  SEGKD_EXPECT_THROW_MSG(q.set_ranges(torch::zeros({3, 2}, torch::kDouble)), "expected ranges of shape [38, 2]");
}

TEST_F(Int8, RangesAreTheMinAndMaxSeenOverEveryBatch) {
  auto model = folded("pspnet", "resnet18_v1c");
  Int8Segmentor q(model);
  auto a = torch::randn({1, 3, 32, 32}), b = torch::randn({1, 3, 32, 32}) * 3;
  q.observe(a);
  q.observe(b);
  auto both = torch::cat({a, b});
  EXPECT_DOUBLE_EQ(q.ranges()[0][0].item<double>(), both.min().item<double>());
  EXPECT_DOUBLE_EQ(q.ranges()[0][1].item<double>(), both.max().item<double>());
}

TEST_F(Int8, RefusesUnfoldedModelsAndOtherBackbones) {
  ModelOptions mc;
  auto model = build_model(mc, 5);
  prepare_teacher(model, /*fold_bn=*/false);
  SEGKD_EXPECT_THROW_MSG(Int8Segmentor q(model), "BatchNorm must be folded");
  SEGKD_EXPECT_THROW_MSG(check_int8_supported("efficientnet_b0", "teacher.precision"),
                         "teacher.precision: int8 runs ResNetV1c backbones");
  EXPECT_NO_THROW(check_int8_supported("resnet101_v1c", "teacher.precision"));
}

}  // namespace
}  // namespace segkd::models
