// The segkd command line: help texts, unknown subcommands, missing and malformed config files, info.
#include <gtest/gtest.h>

#include "tests/testing/testing.h"

namespace {

using segkd::testing::run_command;
using segkd::testing::write_text;
using segkd::testing::segkd_bin;

TEST(Cli, HelpListsEverySubcommand) {
  std::string out;
  ASSERT_EQ(run_command(segkd_bin() + " --help", &out), 0) << out;
  for (auto sub : {"train", "eval", "predict", "preprocess", "synth", "export", "sweep", "compare", "info", "report"}) {
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
      {"sweep", {"--grid", "--set", "--seeds", "--index", "--dry-run", "--work-dir"}},
      {"compare", {"--budget", "--iterations", "--seeds", "--extend", "--work-dir", "--index", "--dry-run", "--set"}},
      {"report", {"--out", "--panel", "--curves"}},
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
  // Every file but the shared bases (configs/_base/ and the _base.toml of a protocol directory).
  ASSERT_EQ(run_command("find " + segkd::testing::source_dir() +
                            "/configs -name '*.toml' -not -path '*/_base/*' -not -name '_base*.toml'",
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
  EXPECT_GE(n, 40);  // demo, demo/compare, and the Cityscapes and ADE20K protocols
}

/// Runs a launch script with SEGKD_DRY_RUN=1 and `env`, returns its output (the command line it would run).
std::string dry_run(const std::string& env, const std::string& script, const std::string& args) {
  std::string out;
  EXPECT_EQ(run_command("cd " + segkd::testing::source_dir() + " && env SEGKD_DRY_RUN=1 " + env + " bash " + script +
                            " " + args,
                        &out),
            0)
      << script << ": " << out;
  return out;
}

TEST(LaunchScripts, ParseAndTheirDryRunPrintsTheLauncherLine) {
  for (auto script : {"launch/slurm/train.sbatch", "launch/slurm/compare_array.sbatch",
                      "launch/slurm/sweep_array.sbatch", "launch/slurm/common.sh", "launch/mpirun.sh",
                      "launch/debug.sh"}) {
    std::string out;
    EXPECT_EQ(run_command("bash -n " + segkd::testing::source_dir() + "/" + script, &out), 0) << script << ": " << out;
  }
  EXPECT_EQ(dry_run("", "launch/slurm/train.sbatch", "configs/demo/student.toml --set optimizer.lr=0.02"),
            "srun --mpi=pmix --kill-on-bad-exit=1 --gpus-per-task=1 --gpu-bind=closest build/segkd train "
            "configs/demo/student.toml --resume auto --set optimizer.lr=0.02\n");
  EXPECT_EQ(dry_run("SEGKD_MPI=pmi2 SLURM_ARRAY_TASK_ID=3", "launch/slurm/compare_array.sbatch",
                    "a.toml b.toml --seeds 3"),
            "srun --mpi=pmi2 --kill-on-bad-exit=1 --gpus-per-task=1 --gpu-bind=closest build/segkd compare a.toml "
            "b.toml --seeds 3 --index 3\n");
  EXPECT_EQ(dry_run("SEGKD_GPU_BIND=none SLURM_ARRAY_TASK_ID=0 SEGKD=/opt/segkd", "launch/slurm/sweep_array.sbatch",
                    "a.toml --grid optimizer.lr=0.01,0.02"),
            "srun --mpi=pmix --kill-on-bad-exit=1 /opt/segkd sweep a.toml --grid optimizer.lr=0.01,0.02 --index 0\n");
  segkd::testing::TempDir dir;
  write_text(dir.file("hosts"), "node1 slots=4\nnode2 slots=4\n");
  EXPECT_EQ(dry_run("SEGKD=segkd OMP_NUM_THREADS=2 OPENBLAS_NUM_THREADS=2", "launch/mpirun.sh",
                    "--hostfile " + dir.file("hosts") + " 8 compare a.toml"),
            "mpirun -n 8 --bind-to none --mca odls_base_sigkill_timeout 20 --hostfile " + dir.file("hosts") +
                " -x OMP_NUM_THREADS -x OPENBLAS_NUM_THREADS segkd compare a.toml\n");
  // Submitted without --array: a one-line error, no srun.
  std::string out;
  EXPECT_NE(run_command("cd " + segkd::testing::source_dir() +
                            " && env -u SLURM_ARRAY_TASK_ID SEGKD_DRY_RUN=1 bash launch/slurm/sweep_array.sbatch a.toml",
                        &out),
            0);
  EXPECT_NE(out.find("SLURM_ARRAY_TASK_ID is not set"), std::string::npos) << out;
  EXPECT_EQ(out.find("srun"), std::string::npos) << out;
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
