// Config loading (train/config.h): inheritance, cycles, overrides, every validation error, round-trip and hashing,
// the KD terms' own keys, and configs written before the options moved to their libraries.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <regex>
#include <string>
#include <vector>

#include "train/config.h"

#include "common/error.h"
#include "common/hash.h"
#include "common/logging.h"
#include "tests/testing/testing.h"
#include "train/config_diff.h"

namespace segkd {
namespace {

using segkd::testing::TempDir;
using segkd::testing::write_text;

/// A full Cityscapes logit-KD experiment (abridged where the defaults are the same).
const char* kDesignExample = R"(
[run]
name = "psp_r18_logit_kd"
work_dir = "runs/psp_r18_logit_kd"
seed = 42

[data]
train = ["data/cityscapes/train.h5"]
val = ["data/cityscapes/val.h5"]
num_classes = 19
crop = [512, 1024]
scale_range = [0.5, 2.0]
flip = true
batch_per_rank = 2
workers = 2

[student]
arch = "pspnet"
backbone = "resnet18_v1c"
aux_head = true
dropout = 0.1

[teacher]
arch = "pspnet"
backbone = "resnet101_v1c"
weights = "weights/pspnet_r101-d8_cityscapes.pth"
concurrent = true
fold_bn = true

[loss]
aux_weight = 0.4

[[distill]]
type = "logit"
weight = 1.0
tau = 1.0

[optimizer]
lr = 0.01
momentum = 0.9
weight_decay = 5e-4

[schedule]
iterations = 80000
power = 0.9

[eval]
interval = 8000
mode = "whole"

[distributed]
backend = "auto"
bucket_mb = 25

[log]
interval = 50
)";

/// The message of the ConfigError thrown by `fn` ("" and a test failure if none is thrown).
template <typename Fn>
std::string config_error(Fn&& fn) {
  try {
    fn();
  } catch (const ConfigError& e) {
    return e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "expected ConfigError, got other exception: " << e.what();
    return e.what();
  }
  ADD_FAILURE() << "expected a ConfigError";
  return "";
}

TEST(Config, DefaultsFromEmptyFile) {
  Config cfg = load_config_from_string("", "empty.toml");
  EXPECT_DOUBLE_EQ(cfg.optimizer.lr, 0.01);
  EXPECT_EQ(cfg.data.crop[0], 512);
  EXPECT_EQ(cfg.data.crop[1], 1024);
  EXPECT_FALSE(cfg.teacher.has_value());
  EXPECT_TRUE(cfg.distill.empty());
  EXPECT_EQ(cfg.source_path, "empty.toml");
  EXPECT_TRUE(std::regex_match(cfg.hash, std::regex("[0-9a-f]{16}"))) << cfg.hash;
  EXPECT_EQ(cfg.hash, stable_hash(cfg.resolved_toml));
}

TEST(Config, DesignExampleParsesIntoTypedStructs) {
  Config cfg = load_config_from_string(kDesignExample, "design.toml");
  EXPECT_EQ(cfg.run.name, "psp_r18_logit_kd");
  EXPECT_EQ(cfg.data.train, std::vector<std::string>{"data/cityscapes/train.h5"});
  EXPECT_DOUBLE_EQ(cfg.data.scale_range[1], 2.0);
  ASSERT_TRUE(cfg.teacher.has_value());
  EXPECT_EQ(cfg.teacher->backbone, "resnet101_v1c");
  EXPECT_EQ(cfg.teacher->weights, "weights/pspnet_r101-d8_cityscapes.pth");
  ASSERT_EQ(cfg.distill.size(), 1u);
  EXPECT_EQ(cfg.distill[0].type, "logit");
  EXPECT_DOUBLE_EQ(cfg.optimizer.weight_decay, 5e-4);
  EXPECT_DOUBLE_EQ(cfg.distributed.bucket_mb, 25.0);  // integer accepted for a float key
  EXPECT_EQ(cfg.schedule.iterations, 80000);
}

TEST(Config, MultiLevelExtendsWithRelativePathsDeepMergeAndLaterWins) {
  TempDir dir;
  write_text(dir.file("_base/data.toml"), R"(
[data]
train = ["a.h5", "b.h5"]
num_classes = 150
crop = [512, 512]
[schedule]
iterations = 1000
[optimizer]
lr = 0.01
momentum = 0.9
)");
  write_text(dir.file("_base/model.toml"), R"(
extends = ["data.toml"]
[optimizer]
lr = 0.02
[schedule]
iterations = 2000
[student]
backbone = "resnet50_v1c"
)");
  write_text(dir.file("_base/sched.toml"), R"(
[schedule]
iterations = 3000
)");
  write_text(dir.file("exp/run.toml"), R"(
extends = ["../_base/model.toml", "../_base/sched.toml"]
[data]
train = ["z.h5"]
[optimizer]
momentum = 0.8
)");
  Config cfg = load_config(dir.file("exp/run.toml"));
  EXPECT_EQ(cfg.data.num_classes, 150);                          // from the grand-base, kept by deep merge
  EXPECT_EQ(cfg.data.crop[1], 512);
  EXPECT_EQ(cfg.data.train, std::vector<std::string>{"z.h5"});  // arrays replace
  EXPECT_DOUBLE_EQ(cfg.optimizer.lr, 0.02);                       // base over its own base
  EXPECT_DOUBLE_EQ(cfg.optimizer.momentum, 0.8);                  // including file over its bases
  EXPECT_EQ(cfg.schedule.iterations, 3000);                       // later base wins
  EXPECT_EQ(cfg.student.backbone, "resnet50_v1c");
  EXPECT_EQ(cfg.source_path, dir.file("exp/run.toml"));
  EXPECT_EQ(cfg.resolved_toml.find("extends"), std::string::npos);
}

TEST(Config, TeacherCanBeDroppedByDerivedFile) {
  TempDir dir;
  write_text(dir.file("kd.toml"), kDesignExample);
  write_text(dir.file("baseline.toml"), "extends = [\"kd.toml\"]\nteacher = \"none\"\ndistill = []\n");
  Config cfg = load_config(dir.file("baseline.toml"));
  EXPECT_FALSE(cfg.teacher.has_value());
  EXPECT_TRUE(cfg.distill.empty());
  EXPECT_EQ(cfg.resolved_toml.find("[teacher]"), std::string::npos);
}

TEST(Config, ExtendsCycleNamesTheChain) {
  TempDir dir;
  write_text(dir.file("a.toml"), "extends = [\"b.toml\"]\n");
  write_text(dir.file("b.toml"), "extends = [\"c.toml\"]\n");
  write_text(dir.file("c.toml"), "extends = [\"a.toml\"]\n");
  std::string msg = config_error([&] { load_config(dir.file("a.toml")); });
  EXPECT_NE(msg.find("extends cycle"), std::string::npos) << msg;
  EXPECT_TRUE(std::regex_search(msg, std::regex("a\\.toml -> .*b\\.toml -> .*c\\.toml -> .*a\\.toml"))) << msg;
  EXPECT_NE(msg.find("c.toml:1:"), std::string::npos) << msg;  // where the closing `extends` was written
}

TEST(Config, SelfExtendIsACycle) {
  TempDir dir;
  write_text(dir.file("self.toml"), "extends = [\"./self.toml\"]\n");
  SEGKD_EXPECT_THROW_MSG(load_config(dir.file("self.toml")), "extends cycle");
}

TEST(Config, MissingFiles) {
  TempDir dir;
  std::string missing = dir.file("nope.toml");
  SEGKD_EXPECT_THROW_MSG(load_config(missing), "config file not found: " + missing);
  write_text(dir.file("a.toml"), "\nextends = [\"gone.toml\"]\n");
  std::string msg = config_error([&] { load_config(dir.file("a.toml")); });
  EXPECT_NE(msg.find("config file not found: " + dir.file("gone.toml")), std::string::npos) << msg;
  EXPECT_NE(msg.find("a.toml:2:"), std::string::npos) << msg;
}

TEST(Config, MalformedTomlNamesFileLineAndColumn) {
  std::string msg = config_error([] { load_config_from_string("[run]\nseed = 1\nname = \"x\nx = 2\n", "bad.toml"); });
  EXPECT_TRUE(std::regex_search(msg, std::regex("^bad\\.toml:3:[0-9]+: malformed TOML: .+"))) << msg;

  TempDir dir;
  write_text(dir.file("base.toml"), "[optimizer]\nlr = = 1\n");
  write_text(dir.file("top.toml"), "extends = [\"base.toml\"]\n");
  msg = config_error([&] { load_config(dir.file("top.toml")); });
  EXPECT_NE(msg.find(dir.file("base.toml") + ":2:"), std::string::npos) << msg;
}

TEST(Config, UnknownKeyNamesFileLineAndSuggestion) {
  TempDir dir;
  write_text(dir.file("base.toml"), "[student]\nbackbon = \"resnet18_v1c\"\n");
  write_text(dir.file("top.toml"), "extends = [\"base.toml\"]\n[optimizer]\nlr = 0.1\n");
  std::string msg = config_error([&] { load_config(dir.file("top.toml")); });
  EXPECT_NE(msg.find(dir.file("base.toml") + ":2:"), std::string::npos) << msg;  // where it was written
  EXPECT_NE(msg.find("unknown key 'student.backbon' (did you mean 'student.backbone'?)"), std::string::npos) << msg;

  msg = config_error([] { load_config_from_string("[studnt]\narch = \"pspnet\"\n", "x.toml"); });
  EXPECT_NE(msg.find("x.toml:1:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("unknown key 'studnt' (did you mean 'student'?)"), std::string::npos) << msg;

  msg = config_error([] { load_config_from_string("lr = 0.1\n", "x.toml"); });
  EXPECT_NE(msg.find("unknown key 'lr' (did you mean 'optimizer.lr'?)"), std::string::npos) << msg;

  msg = config_error([] {
    load_config_from_string("[teacher]\n[[distill]]\ntype = \"logit\"\n[[distill]]\ntype = \"logit\"\ntua = 2\n",
                            "x.toml");
  });
  EXPECT_NE(msg.find("x.toml:6:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("unknown key 'distill[1].tua' (did you mean 'distill[1].tau'?)"), std::string::npos) << msg;
}

TEST(Config, WrongTypesInFiles) {
  SEGKD_EXPECT_THROW_MSG(load_config_from_string("[data]\ncrop = 512\n", "x.toml"),
                         "x.toml:2:8: wrong type for data.crop: expected array of 2 integers, got integer");
  SEGKD_EXPECT_THROW_MSG(load_config_from_string("[data]\ncrop = [512, 512, 3]\n", "x.toml"),
                         "wrong type for data.crop: expected array of 2 integers, got array of 3 integers");
  SEGKD_EXPECT_THROW_MSG(load_config_from_string("[schedule]\niterations = 1.5\n", "x.toml"),
                         "wrong type for schedule.iterations: expected integer, got float");
  SEGKD_EXPECT_THROW_MSG(load_config_from_string("[distill]\ntype = \"logit\"\n", "x.toml"),
                         "wrong type for distill: expected array of tables ([[distill]]), got table");
  SEGKD_EXPECT_THROW_MSG(load_config_from_string("student = 3\n", "x.toml"),
                         "wrong type for student: expected table, got integer");
  SEGKD_EXPECT_THROW_MSG(load_config_from_string("extends = 3\n", "x.toml"), "wrong type for extends");
}

TEST(Config, OverridesAreTypedAndAddressArrayItems) {
  Config cfg = load_config_from_string(
      kDesignExample, "x.toml",
      {"optimizer.lr=0.02", "data.crop=[256,512]", "run.name=\"x\"", "student.arch=deeplabv3", "distill.0.tau=2",
       "distill[0].weight = 0.5", "run.work_dir=123", "data.train=foo.h5", "schedule.budget=1h30m"});
  EXPECT_DOUBLE_EQ(cfg.optimizer.lr, 0.02);
  EXPECT_EQ(cfg.data.crop[0], 256);
  EXPECT_EQ(cfg.data.crop[1], 512);
  EXPECT_EQ(cfg.run.name, "x");
  EXPECT_EQ(cfg.student.arch, "deeplabv3");
  EXPECT_DOUBLE_EQ(cfg.distill[0].as<losses::LogitOptions>().tau, 2.0);
  EXPECT_DOUBLE_EQ(cfg.distill[0].weight, 0.5);
  EXPECT_EQ(cfg.run.work_dir, "123");  // a string key takes the text as written
  EXPECT_EQ(cfg.data.train, std::vector<std::string>{"foo.h5"});
  EXPECT_EQ(cfg.schedule.budget, "1h30m");
  EXPECT_NE(cfg.resolved_toml.find("lr = 0.02\n"), std::string::npos);

  Config plain = load_config_from_string(kDesignExample, "x.toml");
  EXPECT_NE(plain.hash, cfg.hash);

  Config replaced = load_config_from_string(kDesignExample, "x.toml", {"distill.0.weight=0.5", "distill[0]={type=\"cwd\", tau=4}"});
  ASSERT_EQ(replaced.distill.size(), 1u);
  EXPECT_EQ(replaced.distill[0].type, "cwd");
  EXPECT_DOUBLE_EQ(replaced.distill[0].as<losses::CwdOptions>().tau, 4.0);
  EXPECT_DOUBLE_EQ(replaced.distill[0].weight, 1.0);  // the whole item was replaced: 0.5 is gone

  Config no_teacher = load_config_from_string(kDesignExample, "x.toml", {"teacher=none", "distill=[]"});
  EXPECT_FALSE(no_teacher.teacher.has_value());
  EXPECT_TRUE(no_teacher.distill.empty());

  Config revived = load_config_from_string("teacher = \"none\"\n", "x.toml", {"teacher.fold_bn=false"});
  ASSERT_TRUE(revived.teacher.has_value());
  EXPECT_FALSE(revived.teacher->fold_bn);

  Config new_table = load_config_from_string("", "x.toml", {"teacher.backbone=resnet101_v1c"});
  ASSERT_TRUE(new_table.teacher.has_value());
  EXPECT_EQ(new_table.teacher->backbone, "resnet101_v1c");
}

TEST(Config, OverrideErrors) {
  SEGKD_EXPECT_THROW_MSG(load_config_from_string(kDesignExample, "x.toml", {"student.backbon=resnet18_v1c"}),
                         "--set student.backbon=resnet18_v1c: unknown key 'student.backbon' (did you mean "
                         "'student.backbone'?)");
  SEGKD_EXPECT_THROW_MSG(load_config_from_string(kDesignExample, "x.toml", {"distill[0].tua=3"}),
                         "unknown key 'distill[0].tua' (did you mean 'distill[0].tau'?)");
  SEGKD_EXPECT_THROW_MSG(load_config_from_string(kDesignExample, "x.toml", {"student.dropout=abc"}),
                         "--set student.dropout=abc: wrong type for student.dropout: expected float, got string");
  SEGKD_EXPECT_THROW_MSG(load_config_from_string(kDesignExample, "x.toml", {"schedule.iterations=2.5"}),
                         "wrong type for schedule.iterations: expected integer, got float");
  SEGKD_EXPECT_THROW_MSG(load_config_from_string(kDesignExample, "x.toml", {"distill.3.tau=2"}),
                         "--set distill.3.tau=2: index 3 out of range: distill has 1 entries");
  SEGKD_EXPECT_THROW_MSG(load_config_from_string("", "x.toml", {"distill.0.tau=2"}),
                         "--set distill.0.tau=2: index 0 out of range: distill has 0 entries");
  SEGKD_EXPECT_THROW_MSG(load_config_from_string("", "x.toml", {"data.crop=[256, \"a\"]"}),
                         "wrong type for data.crop: expected array of 2 integers, got array of 2 mixed values "
                         "(integer, string)");
  SEGKD_EXPECT_THROW_MSG(load_config_from_string(kDesignExample, "x.toml", {"optimizer.lr"}),
                         "--set optimizer.lr: expected KEY=VALUE");
  // Range checks apply to overridden values and say where the value came from.
  SEGKD_EXPECT_THROW_MSG(load_config_from_string(kDesignExample, "x.toml", {"optimizer.lr=-1"}),
                         "--set optimizer.lr=-1: optimizer.lr = -1.0: must be > 0");
}

struct BadValue {
  const char* toml;
  const char* expected;
};

TEST(Config, OutOfRangeValuesNameKeyFileAndLine) {
  const std::vector<BadValue> cases = {
      {"[optimizer]\nlr = -0.1\n", "x.toml:2:6: optimizer.lr = -0.1: must be > 0"},
      {"[optimizer]\nlr = 0\n", "optimizer.lr = 0.0: must be > 0"},
      {"[data]\ncrop = [500, 1024]\n", "x.toml:2:8: data.crop = [500, 1024]: each must be a positive multiple of 8"},
      {"[data]\nbatch_per_rank = 0\n", "data.batch_per_rank = 0: must be >= 1"},
      {"[data]\nnum_classes = 0\n", "data.num_classes = 0: must be >= 1"},
      {"[data]\nscale_range = [2.0, 0.5]\n", "data.scale_range = [2.0, 0.5]: must be positive and increasing"},
      {"[student]\narch = \"pspnett\"\n", "student.arch = \"pspnett\": must be one of pspnet|deeplabv3"},
      {"[student]\nbackbone = \"resnet152_v1c\"\n", "student.backbone = \"resnet152_v1c\": must be one of"},
      {"[student]\ndropout = 1.0\n", "student.dropout = 1.0: must be in [0, 1)"},
      {"[student]\noutput_stride = 32\n", "student.output_stride = 32: must be 8 or 16"},
      {"[teacher]\narch = \"fcn\"\n", "teacher.arch = \"fcn\": must be one of"},
      {"[teacher]\n[[distill]]\ntype = \"logits\"\n", "x.toml:3:8: distill[0].type = \"logits\": must be one of"},
      {"[teacher]\n[[distill]]\ntype = \"logit\"\ntau = 0\n", "distill[0].tau = 0.0: must be > 0"},
      {"[teacher]\n[[distill]]\ntype = \"logit\"\n[[distill]]\ntype = \"feature\"\nweight = -1\n",
       "x.toml:6:10: distill[1].weight = -1.0: must be >= 0"},
      {"[teacher]\n[[distill]]\ntype = \"feature\"\nstudent = [\"layer3\", \"layer4\"]\nteacher = [\"layer4\"]\n",
       "distill[0].teacher = [\"layer4\"]: must list as many features as distill[0].student (2)"},
      {"[teacher]\n[[distill]]\ntype = \"feature\"\nstudent = [\"layer5\"]\n",
       "distill[0].student = [\"layer5\"]: must be one of layer1|layer2|layer3|layer4|head"},
      {"[teacher]\n[[distill]]\ntype = \"feature\"\nnormalize = \"l2\"\n", "distill[0].normalize"},
      {"[teacher]\n[[distill]]\ntype = \"feature\"\nprojector = \"mlp\"\n", "distill[0].projector"},
      {"[teacher]\n[[distill]]\ntype = \"logit\"\nresolution = \"full\"\n", "distill[0].resolution"},
      {"[teacher]\n[[distill]]\ntype = \"cwd\"\non = \"both\"\n", "distill[0].on"},
      {"[[distill]]\ntype = \"logit\"\n", "x.toml:1:1: distill[0]: KD terms need a [teacher] table"},
      {"[schedule]\nbudget = \"2x\"\n", "schedule.budget = \"2x\": not a duration"},
      {"[schedule]\nbudget = \"0s\"\n", "schedule.budget = \"0s\": must be > 0"},
      {"[schedule]\niterations = 0\n", "schedule.iterations = 0: must be >= 1"},
      {"[schedule]\nextend = 0\n", "schedule.extend = 0.0: must be > 0"},
      {"[schedule]\npolicy = \"cosine\"\n", "schedule.policy = \"cosine\": must be one of poly|step"},
      {"[run]\nprecision = \"fp8\"\n", "run.precision = \"fp8\": must be one of fp32|fp16|bf16"},
      {"[schedule]\nsteps = [100, 50]\n", "schedule.steps = [100, 50]: must be positive and strictly increasing"},
      {"[optimizer]\nmomentum = 1.0\n", "optimizer.momentum = 1.0: must be in [0, 1)"},
      {"[optimizer]\nweight_decay = -1e-4\n", "optimizer.weight_decay = -0.0001: must be >= 0"},
      {"[eval]\ninterval = -1\n", "eval.interval = -1: must be >= 0"},
      {"[eval]\nmode = \"tiles\"\n", "eval.mode = \"tiles\": must be one of whole|slide"},
      {"[eval]\nslide_crop = [0, 512]\n", "eval.slide_crop = [0, 512]: each must be > 0"},
      {"[eval]\nslide_stride = [341, -1]\n", "eval.slide_stride = [341, -1]: each must be > 0"},
      {"[checkpoint]\ninterval = -5\n", "checkpoint.interval = -5: must be >= 0"},
      {"[distributed]\nbackend = \"gloo\"\n", "distributed.backend = \"gloo\": must be one of auto|mpi|nccl"},
      {"[log]\nlevel = \"verbose\"\n", "log.level = \"verbose\": must be one of"},
      {"[log]\ninterval = 0\n", "log.interval = 0: must be >= 1"},
      {"[loss]\nclass_weights = [1.0, 2.0]\n", "loss.class_weights = [1.0, 2.0]: must have data.num_classes (19)"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.toml);
    std::string msg = config_error([&] { load_config_from_string(c.toml, "x.toml"); });
    EXPECT_NE(msg.find(c.expected), std::string::npos) << "message: " << msg << "\nexpected: " << c.expected;
  }
}

TEST(Config, ResolvedTomlRoundTrips) {
  TempDir dir;
  write_text(dir.file("base.toml"), kDesignExample);
  write_text(dir.file("exp.toml"),
             "extends = [\"base.toml\"]\n[run]\nname = \"quote\\\" and \\\\ back\\tslash\"\n"
             "[[distill]]\ntype = \"feature\"\nstudent = [\"layer3\", \"head\"]\nteacher = [\"layer3\", \"head\"]\n"
             "weight = 0.3333333333333333\n[optimizer]\nlr = 1e-7\n[loss]\nclass_weights = []\n");
  Config cfg = load_config(dir.file("exp.toml"), {"schedule.budget=2h"});
  Config again = load_config_from_string(cfg.resolved_toml, "resolved.toml");
  EXPECT_EQ(again.resolved_toml, cfg.resolved_toml);
  EXPECT_EQ(again.hash, cfg.hash);
  EXPECT_EQ(again.run.name, "quote\" and \\ back\tslash");
  EXPECT_DOUBLE_EQ(again.distill[0].weight, 0.3333333333333333);
  EXPECT_DOUBLE_EQ(again.optimizer.lr, 1e-7);
  EXPECT_EQ(again.schedule.budget, "2h");
  ASSERT_TRUE(again.teacher.has_value());
  // Defaults appear explicitly; sections in the fixed order.
  EXPECT_NE(cfg.resolved_toml.find("warmup_ratio = 0.1\n"), std::string::npos);
  EXPECT_NE(cfg.resolved_toml.find("timeout_s = 600.0\n"), std::string::npos) << cfg.resolved_toml;
  EXPECT_NE(cfg.resolved_toml.find("weight_decay = 0.0005\n"), std::string::npos);
  EXPECT_NE(cfg.resolved_toml.find("lr = 1e-07\n"), std::string::npos);
  EXPECT_LT(cfg.resolved_toml.find("[run]"), cfg.resolved_toml.find("[data]"));
  EXPECT_LT(cfg.resolved_toml.find("[teacher]"), cfg.resolved_toml.find("[[distill]]"));
  EXPECT_LT(cfg.resolved_toml.find("[[distill]]"), cfg.resolved_toml.find("[log]"));
}

TEST(Config, HashFollowsValuesNotFormatting) {
  Config a = load_config_from_string("[optimizer]\nlr = 0.02\nmomentum = 0.9\n[run]\nseed = 1\n", "a.toml");
  Config b = load_config_from_string(
      "# same values, other order and layout\n[run]\n  seed=1\n\n[optimizer]\nmomentum   = 0.90\nlr = 2e-2 # c\n",
      "b.toml");
  Config c = load_config_from_string("[optimizer]\nlr = 0.03\nmomentum = 0.9\n[run]\nseed = 1\n", "a.toml");
  EXPECT_EQ(a.resolved_toml, b.resolved_toml);
  EXPECT_EQ(a.hash, b.hash);
  EXPECT_NE(a.hash, c.hash);
}

TEST(Config, ResolvedFileInRunDirectoryReloadsToTheSameHash) {
  TempDir dir;
  Config cfg = load_config_from_string(kDesignExample, "x.toml", {"optimizer.lr=0.03"});
  write_text(dir.file("run/config.toml"), cfg.resolved_toml);
  Config again = load_config(dir.file("run/config.toml"));
  EXPECT_EQ(again.hash, cfg.hash);
  EXPECT_DOUBLE_EQ(again.optimizer.lr, 0.03);
}

TEST(Config, EveryShippedConfigLoads) {
  namespace fs = std::filesystem;
  fs::path root = fs::path(segkd::testing::source_dir()) / "configs";
  if (!fs::is_directory(root)) GTEST_SKIP() << "no configs/ under SEGKD_SOURCE_DIR";
  size_t loaded = 0;
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    if (entry.path().extension() != ".toml") continue;
    SCOPED_TRACE(entry.path().string());
    try {
      Config cfg = load_config(entry.path().string());
      EXPECT_EQ(load_config_from_string(cfg.resolved_toml, "resolved.toml").hash, cfg.hash);
      ++loaded;
    } catch (const std::exception& e) {
      ADD_FAILURE() << e.what();
    }
  }
  EXPECT_GT(loaded, 0u);
}

// One rule for log.level: the config accepts exactly the names setup_logging accepts, and both refuse the rest.
TEST(Config, LogLevelsAreTheLoggersLevels) {
  EXPECT_EQ(log_level_names(), (std::vector<std::string>{"trace", "debug", "info", "warn", "error", "off"}));
  for (const auto& level : log_level_names()) {
    SCOPED_TRACE(level);
    EXPECT_NO_THROW(setup_logging("", 0, level));
    Config cfg;
    EXPECT_NO_THROW(cfg = load_config_from_string("[log]\nlevel = \"" + level + "\"\n", "x.toml"));
    EXPECT_EQ(cfg.log.level, level);
  }
  for (const char* level : {"warning", "critical", "WARN", ""}) {
    SCOPED_TRACE(level);
    EXPECT_THROW(setup_logging("", 0, level), ConfigError);
    EXPECT_THROW(load_config_from_string(std::string("[log]\nlevel = \"") + level + "\"\n", "x.toml"),
                 ConfigError);
  }  setup_logging("", 0, "info");  // the console logger at its default level again
}

// ------------------------------------------------------------------------------------------ KD terms' own keys

TEST(Config, AnOptionTheKdTermDoesNotTakeIsRefusedNamingBoth) {
  std::string msg = config_error([] {
    load_config_from_string("[teacher]\n[[distill]]\ntype = \"logit\"\ntau = 2\nstudent = [\"layer3\"]\n", "x.toml");
  });
  EXPECT_NE(msg.find("x.toml:5:"), std::string::npos) << msg;
  EXPECT_NE(msg.find("distill[0].student: KD term 'logit' does not take option 'student' (it takes: weight, tau, "
                     "resolution, mask_ignore)"),
            std::string::npos)
      << msg;
  // Every term refuses every key it does not take, also at its default value.
  for (const auto& type : losses::registered_terms()) {
    const auto takes = losses::DistillOptions(type).keys();
    for (const auto& key : losses::former_shared_keys()) {
      if (std::find(takes.begin(), takes.end(), key.name) != takes.end()) continue;
      SCOPED_TRACE(type + " " + key.name);
      std::string m = config_error([&] {
        load_config_from_string(str_cat("[teacher]\n[[distill]]\ntype = \"", type, "\"\n", key.name, " = ", key.text,
                                        "\n"),
                                "x.toml");
      });
      EXPECT_NE(m.find(str_cat("KD term '", type, "' does not take option '", key.name, "'")), std::string::npos) << m;
    }
  }
  // With --set, and in a table written in resolved form.
  SEGKD_EXPECT_THROW_MSG(load_config_from_string(kDesignExample, "x.toml", {"distill.0.pool_kernel=3"}),
                         "--set distill.0.pool_kernel=3: distill[0].pool_kernel: KD term 'logit' does not take option "
                         "'pool_kernel'");
  Config cfg = load_config_from_string(kDesignExample, "x.toml");
  SEGKD_EXPECT_THROW_MSG(load_config_from_string(cfg.resolved_toml, "resolved.toml", {"distill[0].beta=2"}),
                         "KD term 'logit' does not take option 'beta'");
  // A typo is still an unknown key, with a suggestion among the term's own keys.
  SEGKD_EXPECT_THROW_MSG(
      load_config_from_string("[teacher]\n[[distill]]\ntype = \"feature\"\nprojektor = \"conv1x1\"\n", "x.toml"),
      "unknown key 'distill[0].projektor' (did you mean 'distill[0].projector'?)");
}

TEST(Config, KdTermOptionsReadIntoTheTermsOwnType) {
  Config cfg = load_config_from_string(
      "[teacher]\n[[distill]]\ntype = \"cwd\"\ntau = 4\non = \"feature\"\nstudent = [\"head\"]\nteacher = [\"head\"]\n"
      "[[distill]]\ntype = \"pairwise\"\nweight = 0.5\npool_kernel = 3\n",
      "x.toml");
  ASSERT_EQ(cfg.distill.size(), 2u);
  const auto& cwd = cfg.distill[0].as<losses::CwdOptions>();
  EXPECT_DOUBLE_EQ(cwd.tau, 4.0);
  EXPECT_EQ(cwd.on, "feature");
  EXPECT_EQ(cwd.student, std::vector<std::string>{"head"});
  EXPECT_EQ(cfg.distill[1].as<losses::PairwiseOptions>().pool_kernel, 3);
  EXPECT_DOUBLE_EQ(cfg.distill[1].weight, 0.5);
}

// ------------------------------------------------------------------------- configs written before the change

std::string fixture(const std::string& name) {
  return segkd::testing::read_text(std::string(segkd::testing::source_dir()) + "/tests/unit/train/fixtures/" + name);
}

TEST(Config, ResolvedConfigOfAnOlderSegkdKeepsItsTextAndHash) {
  const std::string before = fixture("kd_all_terms.resolved-1b4e39b.toml");
  Config resolved = load_config_from_string(before, "runs/fixture/config.toml");
  EXPECT_EQ(resolved.resolved_toml, before);
  EXPECT_EQ(resolved.hash, "eb9d70d6e7c5d6c3");
  EXPECT_TRUE(train::diff_resolved_toml(before, resolved.resolved_toml).empty());  // resume lists no changed key
  // The source config resolves to the same text and hash as segkd 1b4e39b resolved it.
  Config source = load_config(std::string(segkd::testing::source_dir()) + "/tests/unit/train/fixtures/kd_all_terms.toml");
  EXPECT_EQ(source.hash, "eb9d70d6e7c5d6c3");
  EXPECT_EQ(source.resolved_toml, before);
  EXPECT_DOUBLE_EQ(source.distill[6].as<losses::DistOptions>().beta, 2.0);
}

TEST(Config, ResolvedConfigWithOptionsItsTermsIgnoredStillLoads) {
  // Written by segkd 1b4e39b from kd_ignored_keys.toml, which gave terms options they do not take (then ignored).
  const std::string before = fixture("kd_ignored_keys.resolved-1b4e39b.toml");
  Config cfg = load_config_from_string(before, "runs/old/config.toml");
  ASSERT_EQ(cfg.distill.size(), 2u);
  EXPECT_EQ(cfg.distill[0].type, "feature");
  EXPECT_EQ(cfg.distill[1].type, "logit");
  // What changes is only the ignored values, now shown at their former defaults (what the terms always used).
  std::vector<std::string> changed;
  for (const auto& c : train::diff_resolved_toml(before, cfg.resolved_toml)) changed.push_back(c.key);
  EXPECT_EQ(changed, (std::vector<std::string>{"distill.0.tau", "distill.0.on", "distill.0.beta", "distill.1.student",
                                               "distill.1.teacher", "distill.1.projector", "distill.1.pool_kernel"}));
  // The source itself is refused now, naming the term and the option (keys are read in name order: beta first).
  SEGKD_EXPECT_THROW_MSG(
      load_config(std::string(segkd::testing::source_dir()) + "/tests/unit/train/fixtures/kd_ignored_keys.toml"),
      "kd_ignored_keys.toml:12:8: distill[0].beta: KD term 'feature' does not take option 'beta' (it takes: weight, "
      "student, teacher, normalize, projector)");
}

TEST(Config, ValidateChecksEveryTableAndTheRulesAcrossThem) {
  Config cfg = load_config_from_string(kDesignExample, "x.toml");
  EXPECT_NO_THROW(cfg.validate());
  cfg.teacher.reset();
  SEGKD_EXPECT_THROW_MSG(cfg.validate(), "distill[0]: KD terms need a [teacher] table");
  cfg = load_config_from_string(kDesignExample, "x.toml");
  cfg.student.precision = "int8";
  SEGKD_EXPECT_THROW_MSG(cfg.validate(), "student.precision = \"int8\": applies to the teacher only");
  cfg.student.precision = "";
  cfg.loss.class_weights = {1.0, 2.0};
  SEGKD_EXPECT_THROW_MSG(cfg.validate(), "loss.class_weights = [1.0, 2.0]: must have data.num_classes (19) entries");
}

}  // namespace
}  // namespace segkd
