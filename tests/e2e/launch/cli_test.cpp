// The segkd command line: help texts, unknown subcommands, missing and malformed config files, info.
#include <gtest/gtest.h>

#include "tests/testing/testing.h"

namespace {

using segkd::testing::run_command;

std::string segkd_bin() { return segkd::testing::binary_dir() + "/segkd"; }

TEST(Cli, HelpListsEverySubcommand) {
  std::string out;
  ASSERT_EQ(run_command(segkd_bin() + " --help", &out), 0) << out;
  for (auto sub : {"train", "eval", "predict", "preprocess", "synth", "export", "sweep", "info", "report"}) {
    EXPECT_NE(out.find(sub), std::string::npos) << sub << " missing from --help:\n" << out;
  }
}

TEST(Cli, SubcommandHelpDocumentsItsOptions) {
  const std::vector<std::pair<std::string, std::vector<std::string>>> expected{
      {"train", {"--set", "--work-dir", "--resume", "--overwrite"}},
      {"eval", {"--weights", "--set", "--out"}},
      {"predict", {"--weights", "--input", "--out"}},
      {"preprocess", {"--format", "--root", "--split", "--out", "--shards", "--workers", "--classes"}},
      {"synth", {"--out", "--num", "--size", "--classes", "--seed"}},
      {"export", {"--out"}},
      {"sweep", {"--grid", "--set"}},
      {"info", {"--set"}},
  };
  for (const auto& [sub, options] : expected) {
    std::string out;
    ASSERT_EQ(run_command(segkd_bin() + " " + sub + " --help", &out), 0) << sub << ": " << out;
    for (const auto& opt : options) EXPECT_NE(out.find(opt), std::string::npos) << sub << " lacks " << opt;
  }
}

TEST(Cli, UnknownSubcommandIsAnError) {
  std::string out;
  EXPECT_EQ(run_command(segkd_bin() + " trian configs/x.toml", &out), 2) << out;
  EXPECT_NE(out.find("trian"), std::string::npos) << out;
}

TEST(Cli, MissingConfigFileIsNamed) {
  std::string out;
  EXPECT_NE(run_command(segkd_bin() + " info /nonexistent/exp.toml", &out), 0);
  EXPECT_NE(out.find("/nonexistent/exp.toml"), std::string::npos) << out;
}

TEST(Cli, MalformedTomlNamesLineAndColumn) {
  segkd::testing::TempDir dir;
  segkd::testing::write_text(dir.file("bad.toml"), "[run]\nname = \"x\"\nseed = = 3\n");
  std::string out;
  EXPECT_EQ(run_command(segkd_bin() + " info " + dir.file("bad.toml"), &out), 1);
  EXPECT_NE(out.find("bad.toml"), std::string::npos) << out;
  EXPECT_NE(out.find("3"), std::string::npos) << out;  // line 3
  EXPECT_NE(out.find("segkd: error:"), std::string::npos) << out;
}

TEST(Cli, UnknownKeySuggestsTheNearestOne) {
  segkd::testing::TempDir dir;
  segkd::testing::write_text(dir.file("typo.toml"), "[student]\nbackbon = \"resnet18_v1c\"\n");
  std::string out;
  EXPECT_EQ(run_command(segkd_bin() + " info " + dir.file("typo.toml"), &out), 1);
  EXPECT_NE(out.find("student.backbon"), std::string::npos) << out;
  EXPECT_NE(out.find("student.backbone"), std::string::npos) << out;
}

TEST(Cli, InfoPrintsResolvedConfigAndParameterCount) {
  std::string out;
  ASSERT_EQ(run_command(segkd_bin() + " info " + segkd::testing::source_dir() +
                            "/configs/cityscapes/pspnet_r18_logit_kd.toml",
                        &out),
            0)
      << out;
  EXPECT_NE(out.find("12,790,086 parameters"), std::string::npos) << out;  // PSPNet-R18-D8, 19 classes
  EXPECT_NE(out.find("67,967,622 parameters"), std::string::npos) << out;  // PSPNet-R101-D8 teacher
  EXPECT_NE(out.find("[optimizer]"), std::string::npos) << out;
}

TEST(Cli, EveryShippedConfigResolves) {
  std::string out;
  ASSERT_EQ(run_command("find " + segkd::testing::source_dir() + "/configs -name '*.toml' -not -path '*/_base/*'",
                        &out),
            0);
  std::istringstream files(out);
  std::string file;
  int n = 0;
  while (std::getline(files, file)) {
    std::string info;
    EXPECT_EQ(run_command(segkd_bin() + " info " + file + " > /dev/null", &info), 0) << file << ": " << info;
    ++n;
  }
  EXPECT_GE(n, 5);
}

TEST(Cli, RanksWithDifferentCommandLinesFailWithinSecondsNamingTheDifference) {
  // MPMD launch: rank 0 and rank 1 run different subcommands, then the same one with and without --resume auto.
  // `timeout` turns a hang into a failure of this test instead of a stuck suite.
  const std::string cfg = segkd::testing::source_dir() + "/configs/demo/student.toml";
  const std::string mpi = "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 120 mpiexec --oversubscribe "
                          "--bind-to none ";
  std::string out;
  int status = run_command(mpi + "-n 1 " + segkd_bin() + " train " + cfg + " : -n 1 " + segkd_bin() + " eval " + cfg +
                               " --weights /nonexistent.ckpt",
                           &out);
  EXPECT_NE(status, 0) << out;
  EXPECT_NE(status, 124) << "timed out (hang):\n" << out;
  EXPECT_NE(out.find("ranks were started with different command lines (argument 1: 'train' on rank 0, 'eval' on "
                     "rank 1)"),
            std::string::npos)
      << out;
  status = run_command(mpi + "-n 1 " + segkd_bin() + " train " + cfg + " --resume auto : -n 1 " + segkd_bin() +
                           " train " + cfg,
                       &out);
  EXPECT_NE(status, 0) << out;
  EXPECT_NE(status, 124) << "timed out (hang):\n" << out;
  EXPECT_NE(out.find("argument 3: '--resume' on rank 0, nothing on rank 1"), std::string::npos) << out;
}

}  // namespace
