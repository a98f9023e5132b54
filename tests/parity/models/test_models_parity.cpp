// Parity with PyTorch: reference models written in plain PyTorch with mmseg key names (reference.py), saved with
// torch.save (OrderedDict state_dicts) by gen_reference.py, loaded here with read_pth; eval logits must agree
// within 1e-4 relative, and segkd's write_pth export must load back into the Python model with strict=True.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <fstream>
#include <iterator>

#include "common/error.h"

#include "models/segmentor.h"
#include "models/weights.h"
#include "tests/testing/testing.h"

namespace segkd::models {
namespace {

using segkd::testing::run_command;
using segkd::testing::tensors_close;

constexpr int64_t kNumClasses = 5;  // gen_reference.NUM_CLASSES

std::string script(const std::string& name) { return segkd::testing::source_dir() + "/tests/parity/models/" + name; }

/// Generates the reference files once for the whole suite.
class ParityTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    torch::set_num_threads(1);
    dir_ = new segkd::testing::TempDir();
    std::string output;
    status_ = run_command("/usr/bin/python3 " + script("gen_reference.py") + " " + dir_->path(), &output);
    output_ = output;
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }
  void SetUp() override { ASSERT_EQ(status_, 0) << "gen_reference.py failed:\n" << output_; }

  static std::string file(const std::string& name) { return dir_->file(name); }

  static ModelOptions config(const std::string& arch, const std::string& backbone) {
    ModelOptions cfg;
    cfg.arch = arch;
    cfg.backbone = backbone;
    return cfg;
  }

  /// Loads `<name>.pth` strictly into a fresh segkd model and checks eval logits against `<name>_io.pth`.
  void check_case(const std::string& name, const std::string& arch, const std::string& backbone, bool fold) {
    SCOPED_TRACE(name);
    Segmentor model(config(arch, backbone), kNumClasses);
    const auto report = load_state_dict(*model, read_pth(file(name + ".pth")), /*strict=*/true, name);
    EXPECT_TRUE(report.ok()) << describe(report);
    const auto io = read_pth(file(name + "_io.pth"));
    model->eval();
    if (fold) prepare_teacher(model, /*fold_bn=*/true);
    ModelOutput out;
    {
      torch::NoGradGuard no_grad;
      out = model->forward(io.at("input"));
    }
    for (const auto& [key, actual] : {std::pair{"logits", out.logits}, std::pair{"aux_logits", out.aux_logits}}) {
      const auto& expected = io.at(key);
      const double scale = expected.abs().max().item<double>();
      const double err = (actual - expected).abs().max().item<double>() / scale;
      std::cout << name << (fold ? " (folded) " : " ") << key << ": max |diff| / max |ref| = " << err << "\n";
      EXPECT_TRUE(tensors_close(actual, expected, /*rtol=*/1e-4, /*atol=*/1e-4 * scale)) << key;
    }
    if (fold) return;

    // Export and load back in Python, strictly.
    write_pth(state_dict(*model), file(name + "_export.pth"));
    std::string output;
    const int status = run_command("/usr/bin/python3 " + script("check_export.py") + " " + dir_->path() + " " + name,
                                   &output);
    std::cout << output;
    EXPECT_EQ(status, 0) << output;
  }

  static segkd::testing::TempDir* dir_;
  static int status_;
  static std::string output_;
};

segkd::testing::TempDir* ParityTest::dir_ = nullptr;
int ParityTest::status_ = -1;
std::string ParityTest::output_;

TEST_F(ParityTest, PspNetR18) { check_case("psp_r18", "pspnet", "resnet18_v1c", /*fold=*/false); }
TEST_F(ParityTest, PspNetR50) { check_case("psp_r50", "pspnet", "resnet50_v1c", /*fold=*/false); }
TEST_F(ParityTest, DeepLabV3R18) { check_case("dlv3_r18", "deeplabv3", "resnet18_v1c", /*fold=*/false); }
TEST_F(ParityTest, FoldedTeacherPspNetR50) { check_case("psp_r50", "pspnet", "resnet50_v1c", /*fold=*/true); }

TEST_F(ParityTest, TruncatedLegacyFileIsReported) {
  std::ifstream in(file("psp_r18_legacy.pth"), std::ios::binary);
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  segkd::testing::write_text(file("cut_legacy.pth"), bytes.substr(0, bytes.size() / 2));
  try {
    read_pth(file("cut_legacy.pth"));
    ADD_FAILURE() << "expected InputError";
  } catch (const InputError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find("cut_legacy.pth: "), std::string::npos) << msg;
    EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
    EXPECT_NE(msg.find("legacy (pre-1.6, non-zip)"), std::string::npos) << msg;
  }
}

TEST_F(ParityTest, MmsegCheckpointWithMetaLoads) {
  const auto plain = read_pth(file("psp_r18.pth"));
  for (const auto& name : {"psp_r18_mmseg.pth", "psp_r18_legacy.pth", "psp_r18_mmseg_legacy.pth"}) {
    SCOPED_TRACE(name);
    const auto other = read_pth(file(name));
    ASSERT_EQ(other.size(), plain.size());
    for (const auto& [key, tensor] : plain) {
      ASSERT_TRUE(other.count(key)) << key;
      EXPECT_EQ(other.at(key).dtype(), tensor.dtype()) << key;
      EXPECT_TRUE(torch::equal(other.at(key), tensor)) << key;
    }
  }
  auto cfg = config("pspnet", "resnet18_v1c");
  cfg.weights = file("psp_r18_mmseg.pth");
  auto model = build_model(cfg, kNumClasses);  // strict
  EXPECT_TRUE(torch::equal(state_dict(*model).at("decode_head.conv_seg.weight"), plain.at("decode_head.conv_seg.weight")));
  EXPECT_EQ(state_dict(*model).at("backbone.stem.1.num_batches_tracked").item<int64_t>(),
            plain.at("backbone.stem.1.num_batches_tracked").item<int64_t>());
}

}  // namespace
}  // namespace segkd::models
