// Architecture tests: parameter counts, shapes, requested outputs, gradients, BN folding, FLOPs.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include "common/error.h"
#include "models/segmentor.h"
#include "tests/testing/testing.h"

namespace segkd::models {
namespace {

using segkd::testing::tensors_close;

class ModelsTest : public segkd::testing::Seeded {
 protected:
  void SetUp() override {
    Seeded::SetUp();
    torch::set_num_threads(1);
  }
};

ModelOptions config(const std::string& arch, const std::string& backbone, int64_t output_stride = 8) {
  ModelOptions cfg;
  cfg.arch = arch;
  cfg.backbone = backbone;
  cfg.output_stride = output_stride;
  return cfg;
}

/// Random BN affine parameters and running statistics, so eval-mode BN is far from the identity.
void randomize_norms(torch::nn::Module& module) {
  torch::NoGradGuard no_grad;
  for_each_norm(module, [](Norm2dImpl& norm) {
    norm.weight.uniform_(0.5, 1.5);
    norm.bias.normal_(0, 0.1);
    norm.running_mean.normal_(0, 0.1);
    norm.running_var.uniform_(0.5, 1.5);
  });
}

/// Spatial size after a 3x3 stride-2 padding-1 conv or pool: floor((n - 1) / 2) + 1.
int64_t halve(int64_t n) { return (n - 1) / 2 + 1; }

TEST_F(ModelsTest, PspR18ParameterCountMatchesMmseg) {
  Segmentor model(config("pspnet", "resnet18_v1c"), 19);
  EXPECT_EQ(count_parameters(*model), 12790086);
  EXPECT_EQ(count_parameters(*model, /*trainable_only=*/true), 12790086);
}

TEST_F(ModelsTest, PspR101ParameterCountMatchesMmseg) {
  Segmentor model(config("pspnet", "resnet101_v1c"), 19);
  EXPECT_EQ(count_parameters(*model), 67967622);
}

TEST_F(ModelsTest, EfficientNetB0BackboneMatchesTorchvisionCount) {
  // torchvision efficientnet_b0 has 5,288,548 parameters: minus the classifier (1280*1000+1000) and features.8
  // (320*1280 conv + 2*1280 norm) leaves 3,595,388 for features.0..7.
  Segmentor model(config("pspnet", "efficientnet_b0"), 19);
  EXPECT_EQ(count_parameters(*model->backbone()), 3595388);
}

TEST_F(ModelsTest, MmsegKeyNames) {
  Segmentor psp(config("pspnet", "resnet50_v1c"), 19);
  auto keys = psp->named_parameters().keys();
  auto buffers = psp->named_buffers().keys();
  keys.insert(keys.end(), buffers.begin(), buffers.end());
  std::set<std::string> names(keys.begin(), keys.end());
  for (const char* key : {"backbone.stem.0.weight", "backbone.stem.1.running_var", "backbone.stem.7.weight",
                          "backbone.layer1.0.downsample.0.weight", "backbone.layer3.5.conv3.weight",
                          "backbone.layer4.2.bn3.num_batches_tracked", "decode_head.psp_modules.3.1.conv.weight",
                          "decode_head.psp_modules.0.1.bn.bias", "decode_head.bottleneck.conv.weight",
                          "decode_head.conv_seg.bias", "auxiliary_head.convs.0.conv.weight",
                          "auxiliary_head.convs.0.bn.running_mean", "auxiliary_head.conv_seg.weight"}) {
    EXPECT_TRUE(names.count(key)) << key;
  }
  EXPECT_FALSE(names.count("backbone.stem.0.bias"));  // convs followed by a norm have no bias

  Segmentor aspp(config("deeplabv3", "resnet18_v1c"), 19);
  auto aspp_keys = aspp->named_parameters().keys();
  std::set<std::string> aspp_names(aspp_keys.begin(), aspp_keys.end());
  for (const char* key : {"decode_head.image_pool.1.conv.weight", "decode_head.aspp_modules.3.conv.weight",
                          "decode_head.bottleneck.bn.weight"}) {
    EXPECT_TRUE(aspp_names.count(key)) << key;
  }
  EXPECT_EQ(aspp->decode_head()->named_parameters()["aspp_modules.1.conv.weight"].sizes(),
            torch::IntArrayRef({128, 512, 3, 3}));

  Segmentor eff(config("pspnet", "efficientnet_b0"), 19);
  auto eff_keys = eff->named_parameters().keys();
  std::set<std::string> eff_names(eff_keys.begin(), eff_keys.end());
  for (const char* key : {"backbone.features.0.0.weight", "backbone.features.1.0.block.1.fc1.weight",
                          "backbone.features.1.0.block.2.1.weight", "backbone.features.2.0.block.0.0.weight",
                          "backbone.features.6.3.block.2.fc2.bias", "backbone.features.7.0.block.3.1.bias"}) {
    EXPECT_TRUE(eff_names.count(key)) << key;
  }
}

struct ShapeCase {
  std::string arch, backbone;
  int64_t output_stride, height, width;
};

TEST_F(ModelsTest, OutputShapesAtSeveralSizes) {
  const std::vector<ShapeCase> cases{{"pspnet", "resnet18_v1c", 8, 33, 45},
                                     {"pspnet", "resnet18_v1c", 8, 65, 97},
                                     {"pspnet", "resnet18_v1c", 8, 64, 64},
                                     {"pspnet", "resnet18_v1c", 16, 65, 97},
                                     {"deeplabv3", "resnet18_v1c", 8, 41, 30},
                                     {"pspnet", "efficientnet_b0", 8, 65, 97},
                                     {"pspnet", "efficientnet_b0", 16, 33, 45}};
  for (const auto& c : cases) {
    SCOPED_TRACE(c.arch + " " + c.backbone + " OS" + std::to_string(c.output_stride) + " " +
                 std::to_string(c.height) + "x" + std::to_string(c.width));
    Segmentor model(config(c.arch, c.backbone, c.output_stride), 5);
    model->eval();
    torch::NoGradGuard no_grad;
    OutputRequest request;
    request.features = {"layer1", "layer2", "layer3", "layer4", "head"};
    auto out = model->forward(torch::randn({2, 3, c.height, c.width}), request);
    int64_t h = halve(halve(c.height)), w = halve(halve(c.width));  // stride 4 after stem + max-pool
    const auto channels = model->feature_channels();
    EXPECT_EQ(out.features.at("layer1").sizes(), torch::IntArrayRef({2, channels.at("layer1"), h, w}));
    h = halve(h);
    w = halve(w);
    EXPECT_EQ(out.features.at("layer2").sizes(), torch::IntArrayRef({2, channels.at("layer2"), h, w}));
    if (c.output_stride == 16) {
      h = halve(h);
      w = halve(w);
    }
    EXPECT_EQ(out.features.at("layer3").sizes(), torch::IntArrayRef({2, channels.at("layer3"), h, w}));
    EXPECT_EQ(out.features.at("layer4").sizes(), torch::IntArrayRef({2, channels.at("layer4"), h, w}));
    EXPECT_EQ(out.features.at("head").sizes(), torch::IntArrayRef({2, channels.at("head"), h, w}));
    EXPECT_EQ(out.logits.sizes(), torch::IntArrayRef({2, 5, h, w}));
    EXPECT_EQ(out.aux_logits.sizes(), torch::IntArrayRef({2, 5, h, w}));
  }
}

TEST_F(ModelsTest, FeatureChannels) {
  Segmentor r50(config("pspnet", "resnet50_v1c"), 19);
  EXPECT_EQ(r50->feature_channels(),
            (std::map<std::string, int64_t>{
                {"layer1", 256}, {"layer2", 512}, {"layer3", 1024}, {"layer4", 2048}, {"head", 512}}));
  Segmentor eff(config("pspnet", "efficientnet_b0"), 19);
  EXPECT_EQ(eff->feature_channels(),
            (std::map<std::string, int64_t>{
                {"layer1", 24}, {"layer2", 40}, {"layer3", 112}, {"layer4", 320}, {"head", 128}}));
}

TEST_F(ModelsTest, RequestIsHonoured) {
  Segmentor model(config("pspnet", "resnet18_v1c"), 4);
  model->eval();
  torch::NoGradGuard no_grad;
  const auto images = torch::randn({1, 3, 33, 45});

  OutputRequest backbone_only;
  backbone_only.logits = false;
  backbone_only.aux_logits = false;
  backbone_only.features = {"layer2", "layer4"};
  ASSERT_TRUE(backbone_only.backbone_only());
  MacCounter backbone_counter;
  auto out = model->forward(images, backbone_only);
  EXPECT_FALSE(out.logits.defined());
  EXPECT_FALSE(out.aux_logits.defined());
  EXPECT_EQ(out.features.size(), 2u);
  EXPECT_TRUE(out.features.count("layer2") && out.features.count("layer4"));

  // The heads are skipped, not just dropped from the output: fewer MACs than a full forward.
  const double backbone_macs = backbone_counter.macs();
  double full_macs = 0;
  {
    MacCounter full_counter;
    model->forward(images);
    full_macs = full_counter.macs();
  }
  EXPECT_GT(full_macs - backbone_macs, 0.05 * full_macs);

  OutputRequest no_aux;
  no_aux.aux_logits = false;
  auto main_only = model->forward(images, no_aux);
  EXPECT_TRUE(main_only.logits.defined());
  EXPECT_FALSE(main_only.aux_logits.defined());
  EXPECT_TRUE(main_only.features.empty());
  EXPECT_TRUE(tensors_close(main_only.logits, model->forward(images).logits, 1e-6, 1e-7));

  OutputRequest head_feature;
  head_feature.logits = false;
  head_feature.aux_logits = false;
  head_feature.features = {"head"};
  auto head = model->forward(images, head_feature);
  EXPECT_FALSE(head.logits.defined());
  EXPECT_EQ(head.features.at("head").size(1), 128);

  OutputRequest bad;
  bad.features = {"layer5"};
  SEGKD_EXPECT_THROW_MSG(model->forward(images, bad), "unknown feature \"layer5\"");
}

TEST_F(ModelsTest, NoAuxHeadWhenDisabled) {
  auto cfg = config("pspnet", "resnet18_v1c");
  cfg.aux_head = false;
  Segmentor model(cfg, 19);
  EXPECT_FALSE(model->has_aux_head());
  EXPECT_EQ(count_parameters(*model), 12790086 - count_parameters(*Segmentor(config("pspnet", "resnet18_v1c"), 19)
                                                                       ->auxiliary_head()));
  auto out = model->forward(torch::randn({2, 3, 33, 45}));
  EXPECT_FALSE(out.aux_logits.defined());
  EXPECT_EQ(model->head_parameters().size(), model->decode_head()->parameters().size());
}

TEST_F(ModelsTest, HeadParametersAreDecodeAndAuxHeads) {
  Segmentor model(config("pspnet", "resnet18_v1c"), 19);
  int64_t head = 0;
  for (const auto& p : model->head_parameters()) head += p.numel();
  EXPECT_EQ(head, count_parameters(*model) - count_parameters(*model->backbone()));
}

TEST_F(ModelsTest, BadConfigIsRejectedByKey) {
  SEGKD_EXPECT_THROW_MSG(Segmentor(config("unet", "resnet18_v1c"), 19), "unknown architecture \"unet\"");
  SEGKD_EXPECT_THROW_MSG(Segmentor(config("pspnet", "resnet152_v1c"), 19), "unknown backbone \"resnet152_v1c\"");
  SEGKD_EXPECT_THROW_MSG(Segmentor(config("pspnet", "resnet18_v1c", 32), 19), "output_stride 32");
  EXPECT_THROW(Segmentor(config("pspnet", "resnet18_v1c"), 0), ConfigError);
}

TEST_F(ModelsTest, GradientsReachEveryTrainableParameter) {
  for (const auto& backbone : {"resnet18_v1c", "efficientnet_b0"}) {
    for (const auto& arch : {"pspnet", "deeplabv3"}) {
      SCOPED_TRACE(std::string(arch) + " " + backbone);
      if (std::string(backbone) == "efficientnet_b0" && std::string(arch) == "deeplabv3") continue;
      Segmentor model(config(arch, backbone), 3);
      model->train();
      auto out = model->forward(torch::randn({2, 3, 33, 45}));
      // Random weights: the plain sum of a batch-normalised tensor has zero gradient.
      auto loss = (out.logits * torch::randn_like(out.logits)).sum() +
                  (out.aux_logits * torch::randn_like(out.aux_logits)).sum();
      loss.backward();
      for (const auto& item : model->named_parameters()) {
        ASSERT_TRUE(item.value().grad().defined()) << item.key();
        EXPECT_GT(item.value().grad().abs().sum().item<double>(), 0.0) << item.key();
      }
    }
  }
}

TEST_F(ModelsTest, TrainModeUpdatesRunningStatistics) {
  Segmentor model(config("pspnet", "resnet18_v1c"), 3);
  model->train();
  auto before = model->backbone()->named_buffers()["stem.1.running_mean"].clone();
  model->forward(torch::randn({2, 3, 33, 45}) * 3 + 1);
  EXPECT_FALSE(torch::allclose(before, model->backbone()->named_buffers()["stem.1.running_mean"]));
}

TEST_F(ModelsTest, FoldedTeacherMatchesEvalModel) {
  for (const auto& [arch, backbone] : std::vector<std::pair<std::string, std::string>>{
           {"pspnet", "resnet18_v1c"}, {"deeplabv3", "resnet18_v1c"}, {"pspnet", "efficientnet_b0"}}) {
    SCOPED_TRACE(arch + " " + backbone);
    Segmentor model(config(arch, backbone), 7);
    randomize_norms(*model);
    model->eval();
    const auto images = torch::randn({2, 3, 33, 45});
    OutputRequest request;
    request.features = {"layer1", "layer3", "head"};
    ModelOutput reference;
    {
      torch::NoGradGuard no_grad;
      reference = model->forward(images, request);
    }
    prepare_teacher(model, /*fold_bn=*/true);
    EXPECT_FALSE(model->is_training());
    for (const auto& p : model->parameters()) EXPECT_FALSE(p.requires_grad());
    int folded = 0;
    for_each_norm(*model, [&](Norm2dImpl& norm) { folded += norm.is_folded(); });
    int norms = 0;
    for (const auto& m : model->modules()) norms += dynamic_cast<Norm2dImpl*>(m.get()) != nullptr;
    EXPECT_EQ(folded, norms);

    torch::NoGradGuard no_grad;
    auto out = model->forward(images, request);
    const double scale = reference.logits.abs().max().item<double>();
    EXPECT_TRUE(tensors_close(out.logits, reference.logits, 1e-4, 1e-4 * scale));
    EXPECT_TRUE(tensors_close(out.aux_logits, reference.aux_logits, 1e-4,
                              1e-4 * reference.aux_logits.abs().max().item<double>()));
    for (const auto& name : request.features) {
      EXPECT_TRUE(tensors_close(out.features.at(name), reference.features.at(name), 1e-4,
                                1e-4 * reference.features.at(name).abs().max().item<double>()))
          << name;
    }
  }
}

// The frozen PSP teacher takes the factored bottleneck route (no autograd); with autograd on, the same model takes the
// direct one. They must agree at every feature-map size (smaller and larger than the largest pool) and after the
// weights change (the factored constants are rebuilt).
TEST_F(ModelsTest, FactoredPspBottleneckMatchesTheDirectConvolution) {
  Segmentor model(config("pspnet", "resnet18_v1c"), 7);
  randomize_norms(*model);
  prepare_teacher(model, /*fold_bn=*/true);
  auto compare = [&](const torch::Tensor& images) {
    OutputRequest request;
    request.features = {"head"};
    const auto direct = model->forward(images, request);  // grad mode on: the direct route
    ASSERT_TRUE(torch::GradMode::is_enabled());
    torch::NoGradGuard no_grad;
    const auto factored = model->forward(images, request);
    const double scale = direct.features.at("head").abs().max().item<double>();
    ASSERT_GT(scale, 0);
    EXPECT_TRUE(tensors_close(factored.features.at("head"), direct.features.at("head"), 1e-4, 1e-5 * scale));
    EXPECT_TRUE(tensors_close(factored.logits, direct.logits, 1e-4, 1e-5 * direct.logits.abs().max().item<double>()));
  };
  compare(torch::randn({2, 3, 96, 128}));  // 12 x 16 feature map
  compare(torch::randn({1, 3, 33, 45}));   // 5 x 6: smaller than the 6 x 6 pool
  {
    torch::NoGradGuard no_grad;
    for (auto& p : model->parameters()) p.mul_(1.5);
  }
  compare(torch::randn({2, 3, 96, 128}));  // same size, new weights
}

TEST_F(ModelsTest, TeacherWithoutFoldingIsFrozenEval) {
  Segmentor model(config("pspnet", "resnet18_v1c"), 7);
  prepare_teacher(model, /*fold_bn=*/false);
  EXPECT_FALSE(model->is_training());
  EXPECT_EQ(count_parameters(*model, /*trainable_only=*/true), 0);
  for_each_norm(*model, [](Norm2dImpl& norm) { EXPECT_FALSE(norm.is_folded()); });
}

TEST_F(ModelsTest, FlopsScaleWithPixels) {
  Segmentor model(config("pspnet", "resnet18_v1c"), 19);
  model->train();
  const double small = flops_per_image(model, 64, 128);
  const double large = flops_per_image(model, 128, 256);
  EXPECT_TRUE(model->is_training());  // restored
  Segmentor eff(config("pspnet", "efficientnet_b0"), 19);
  eff->eval();
  double eff_macs = 0;
  {
    torch::NoGradGuard no_grad;
    MacCounter eff_real;
    eff->forward(torch::randn({1, 3, 65, 97}));
    eff_macs = eff_real.macs();
  }
  EXPECT_DOUBLE_EQ(flops_per_image(eff, 65, 97), 2.0 * eff_macs);
  // Convolutions over feature maps scale with the pixel count; only the pyramid-pooling 1x1 convs do not.
  EXPECT_GT(large / small, 3.9);
  EXPECT_LT(large / small, 4.0 + 1e-9);
  EXPECT_DOUBLE_EQ(flops_per_image(model, 64, 128), small);  // counters do not leak between calls
  // The dry run (zeros of the right shape) counts exactly what a real forward computes.
  model->eval();
  double real_macs = 0;
  {
    torch::NoGradGuard no_grad;
    MacCounter real;
    model->forward(torch::randn({1, 3, 64, 128}));
    real_macs = real.macs();
  }
  EXPECT_DOUBLE_EQ(small, 2.0 * real_macs);
  // The stem's first conv alone: 32 output channels x 27 MACs at 32x64 positions, x2.
  EXPECT_GT(small, 2.0 * 32 * 27 * 32 * 64);
}

}  // namespace
}  // namespace segkd::models
