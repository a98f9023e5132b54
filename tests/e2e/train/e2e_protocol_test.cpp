// End-to-end tests of the comparison protocol under `mpiexec -n 2` on synthetic data: `segkd compare` (plan, dry run,
// --index, a restart after a kill between runs, the table over seeds, curves.png, TensorBoard event files) and
// `segkd sweep` (a rerun trains nothing and keeps every row, an extended grid trains only the new points, an
// interrupted point resumes).
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "tests/testing/testing.h"

namespace fs = std::filesystem;
using nlohmann::json;
using segkd::testing::read_text;
using segkd::testing::run_command;
using segkd::testing::write_text;
using segkd::testing::segkd_bin;
using segkd::testing::mpirun;

namespace {

/// Occurrences of `needle` in `text`.
int count(const std::string& text, const std::string& needle) {
  int n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) ++n;
  return n;
}

/// Lines of `text` that start with `prefix`.
int lines_starting(const std::string& text, const std::string& prefix) {
  std::istringstream in(text);
  std::string line;
  int n = 0;
  while (std::getline(in, line)) n += line.rfind(prefix, 0) == 0;
  return n;
}

/// Synthetic data, a tiny teacher, and two method configs (student alone, logit KD) sharing one base.
class Protocol : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new segkd::testing::TempDir();
    std::string out;
    ASSERT_EQ(run_command(segkd_bin() + " synth --out " + dir_->file("train.h5") +
                              " --num 16 --size 48x48 --classes 4 --seed 1",
                          &out),
              0)
        << out;
    ASSERT_EQ(run_command(segkd_bin() + " synth --out " + dir_->file("val.h5") +
                              " --num 4 --size 48x48 --classes 4 --seed 2",
                          &out),
              0)
        << out;
    write_text(dir_->file("configs/_base.toml"),
               "[run]\nseed = 7\nthreads = 1\n"
               "[data]\ntrain = [\"" + dir_->file("train.h5") + "\"]\nval = [\"" + dir_->file("val.h5") + "\"]\n"
               "num_classes = 4\ncrop = [32, 32]\nbatch_per_rank = 2\nworkers = 1\n"
               "[student]\narch = \"pspnet\"\nbackbone = \"resnet18_v1c\"\n"
               "[optimizer]\nlr = 0.01\n[schedule]\niterations = 4\n"
               "[eval]\ninterval = 2\n[checkpoint]\ninterval = 2\n[log]\ninterval = 1\n");
    write_text(dir_->file("configs/alone.toml"), "extends = [\"_base.toml\"]\n");
    ASSERT_EQ(run_command(mpirun(2) + segkd_bin() + " train " + dir_->file("configs/alone.toml") + " --work-dir " +
                              dir_->file("teacher"),
                          &out),
              0)
        << out;
    write_text(dir_->file("configs/logit.toml"),
               "extends = [\"_base.toml\"]\n[teacher]\narch = \"pspnet\"\nbackbone = \"resnet18_v1c\"\nweights = \"" +
                   dir_->file("teacher/checkpoints/iter_4.ckpt") +
                   "\"\n[[distill]]\ntype = \"logit\"\nweight = 1.0\ntau = 2.0\n");
  }
  static void TearDownTestSuite() {
    delete dir_;
    dir_ = nullptr;
  }

  static std::string compare(const std::string& work_dir, const std::string& extra) {
    return segkd_bin() + " compare " + dir_->file("configs/alone.toml") + " " + dir_->file("configs/logit.toml") +
           " --budget 3s --seeds 2 --set checkpoint.interval=0 --set eval.interval=5 --work-dir " + dir_->file(work_dir) + " " + extra;
  }

  /// Run directories under `root` holding a summary.json.
  static int finished(const std::string& root) {
    int n = 0;
    for (auto& e : fs::directory_iterator(root)) n += fs::exists(e.path() / "summary.json");
    return n;
  }

  static segkd::testing::TempDir* dir_;
};

segkd::testing::TempDir* Protocol::dir_ = nullptr;

TEST_F(Protocol, CompareTwoMethodsTwoSeedsSurvivesARestartAndTabulatesMeanAndStd) {
  std::string out;
  // --dry-run lists the 4 runs (2 methods x 2 seeds) and trains nothing.
  ASSERT_EQ(run_command(mpirun(2) + compare("cmp", "--dry-run"), &out), 0) << out;
  EXPECT_NE(out.find("plan: 4 run(s)"), std::string::npos) << out;
  EXPECT_EQ(lines_starting(out, "  ["), 4) << out;
  EXPECT_EQ(count(out, "| new |"), 4) << out;
  EXPECT_FALSE(fs::exists(dir_->file("cmp/alone-3s-x1-s7/config.toml")));

  // Killed after the first run (the test hook stops the plan between runs, as a kill would).
  EXPECT_NE(run_command("SEGKD_STOP_AFTER_RUNS=1 " + mpirun(2) + compare("cmp", ""), &out), 0) << out;
  EXPECT_NE(out.find("stopped before run 1 after 1 trained run(s)"), std::string::npos) << out;
  const std::string first = dir_->file("cmp/alone-3s-x1-s7");
  ASSERT_TRUE(fs::exists(first + "/summary.json")) << out;
  const auto first_summary = read_text(first + "/summary.json");
  const auto first_time = fs::last_write_time(first + "/summary.json");
  EXPECT_EQ(finished(dir_->file("cmp")), 1);

  // Restarted: the finished run is skipped, the other three train.
  ASSERT_EQ(run_command(mpirun(2) + compare("cmp", ""), &out), 0) << out;
  EXPECT_NE(out.find("[0] alone-3s-x1-s7: finished, skipped"), std::string::npos) << out;
  EXPECT_NE(out.find("trained 3 run(s)"), std::string::npos) << out;
  EXPECT_EQ(read_text(first + "/summary.json"), first_summary);
  EXPECT_EQ(fs::last_write_time(first + "/summary.json"), first_time);
  EXPECT_EQ(finished(dir_->file("cmp")), 4);
  for (auto run : {"alone-3s-x1-s7", "alone-3s-x1-s8", "logit-3s-x1-s7", "logit-3s-x1-s8"}) {
    auto s = json::parse(read_text(dir_->file(std::string("cmp/") + run + "/summary.json")));
    EXPECT_EQ(s["world_size"].get<int>(), 2) << run;
    EXPECT_EQ(s["name"].get<std::string>(), run);
  }
  // The seeds differ in their run.seed.
  EXPECT_NE(read_text(dir_->file("cmp/logit-3s-x1-s8/config.toml")).find("seed = 8"), std::string::npos);

  // A 2-row table: mean ± std over the two seeds, the baseline and the difference to it, the teacher's share.
  const auto md = read_text(dir_->file("cmp/compare.md"));
  EXPECT_EQ(lines_starting(md, "| alone | 3s | 1 | 7, 8 | "), 1) << md;
  EXPECT_EQ(lines_starting(md, "| logit | 3s | 1 | 7, 8 | "), 1) << md;
  EXPECT_EQ(lines_starting(md, "| "), 3) << md;  // header and two rows
  EXPECT_EQ(count(md, " ± "), 4) << md;          // the header's, two mIoU spreads and one difference's
  EXPECT_NE(md.find("| baseline |"), std::string::npos) << md;
  EXPECT_NE(md.find("teacher_forward"), std::string::npos) << md;  // the trainer's phase name
  const auto csv = read_text(dir_->file("cmp/compare.csv"));
  EXPECT_EQ(lines_starting(csv, "alone,3s,1,7;8,2,"), 1) << csv;
  EXPECT_EQ(lines_starting(csv, "logit,3s,1,7;8,2,"), 1) << csv;
  EXPECT_NE(out.find("| logit | 3s | 1 | 7, 8 |"), std::string::npos) << out;

  // curves.png: drawn, non-trivial.
  ASSERT_TRUE(fs::exists(dir_->file("cmp/curves.png")));
  EXPECT_GT(fs::file_size(dir_->file("cmp/curves.png")), 10000u);
  // Every run wrote a TensorBoard event file beside metrics.jsonl.
  int event_files = 0;
  for (auto& e : fs::directory_iterator(dir_->file("cmp/logit-3s-x1-s7"))) {
    event_files += e.path().filename().string().rfind("events.out.tfevents.", 0) == 0;
  }
  EXPECT_EQ(event_files, 1);

  // A second rerun trains nothing and keeps the table.
  ASSERT_EQ(run_command(mpirun(2) + compare("cmp", ""), &out), 0) << out;
  EXPECT_NE(out.find("trained 0 run(s)"), std::string::npos) << out;
  EXPECT_EQ(read_text(dir_->file("cmp/compare.md")), md);

  // report --curves draws the same runs from their directories; a different set gives a different picture.
  const std::string all = dir_->file("cmp/alone-3s-x1-s7") + " " + dir_->file("cmp/alone-3s-x1-s8") + " " +
                          dir_->file("cmp/logit-3s-x1-s7") + " " + dir_->file("cmp/logit-3s-x1-s8");
  ASSERT_EQ(run_command(segkd_bin() + " report " + all + " --curves " + dir_->file("all.png"), &out), 0) << out;
  ASSERT_EQ(run_command(segkd_bin() + " report " + dir_->file("cmp/alone-3s-x1-s7") + " --curves " +
                            dir_->file("one.png"),
                        &out),
            0)
      << out;
  EXPECT_GT(fs::file_size(dir_->file("all.png")), 10000u);
  EXPECT_NE(read_text(dir_->file("all.png")), read_text(dir_->file("one.png")));
}

TEST_F(Protocol, CompareIndexTrainsExactlyOneRun) {
  std::string out;
  ASSERT_EQ(run_command(mpirun(2) + compare("idx", "--index 2"), &out), 0) << out;
  EXPECT_NE(out.find("trained 1 run(s)"), std::string::npos) << out;
  EXPECT_EQ(finished(dir_->file("idx")), 1);
  // Plan order: extend, then seed, then method: run 2 is the baseline's second seed.
  EXPECT_TRUE(fs::exists(dir_->file("idx/alone-3s-x1-s8/summary.json"))) << out;
  EXPECT_NE(run_command(mpirun(2) + compare("idx", "--index 4"), &out), 0);
  EXPECT_NE(out.find("--index 4: the plan has 4 run(s), numbered 0..3"), std::string::npos) << out;
}

TEST_F(Protocol, SweepRerunKeepsRowsExtensionTrainsOnlyNewPointsInterruptedPointResumes) {
  const std::string sweep = segkd_bin() + " sweep " + dir_->file("configs/alone.toml") + " --work-dir " +
                            dir_->file("sweep") + " --grid optimizer.lr=0.01,0.02";
  std::string out;
  ASSERT_EQ(run_command(mpirun(2) + sweep, &out), 0) << out;
  EXPECT_NE(out.find("trained 2 run(s)"), std::string::npos) << out;
  const auto csv = read_text(dir_->file("sweep/sweep.csv"));
  EXPECT_EQ(lines_starting(csv, "0.0"), 2) << csv;

  // Rerun: nothing trains, every row stays.
  ASSERT_EQ(run_command(mpirun(2) + sweep, &out), 0) << out;
  EXPECT_NE(out.find("trained 0 run(s)"), std::string::npos) << out;
  EXPECT_EQ(read_text(dir_->file("sweep/sweep.csv")), csv);

  // Extended grid: only the new point trains; the table has all three, one marked best.
  ASSERT_EQ(run_command(mpirun(2) + sweep + ",0.04", &out), 0) << out;
  EXPECT_NE(out.find("trained 1 run(s)"), std::string::npos) << out;
  EXPECT_EQ(count(out, "finished, skipped"), 2) << out;
  const auto md = read_text(dir_->file("sweep/sweep.md"));
  EXPECT_EQ(lines_starting(md, "| 0.0"), 3) << md;
  EXPECT_EQ(count(md, "**best**"), 1) << md;
  EXPECT_EQ(lines_starting(read_text(dir_->file("sweep/sweep.csv")), "0.0"), 3);

  // A grid that leaves points out still tabulates every finished point in the directory.
  ASSERT_EQ(run_command(mpirun(2) + sweep.substr(0, sweep.find(",0.02")), &out), 0) << out;
  EXPECT_NE(out.find("trained 0 run(s)"), std::string::npos) << out;
  EXPECT_EQ(lines_starting(read_text(dir_->file("sweep/sweep.md")), "| 0.0"), 3);

  // --seeds 2: only the second seed of each point trains; --dry-run first shows the plan.
  ASSERT_EQ(run_command(mpirun(2) + sweep + " --seeds 2 --dry-run", &out), 0) << out;
  EXPECT_NE(out.find("plan: 4 run(s)"), std::string::npos) << out;
  EXPECT_EQ(count(out, "| finished |"), 2) << out;
  // Rank 1 fails at iteration 3 of the first new run (after its checkpoint at 2): the point is interrupted ...
  EXPECT_NE(run_command("SEGKD_FAULT_INJECT=1:3 " + mpirun(2) + sweep + " --seeds 2", &out), 0) << out;
  EXPECT_NE(out.find("injected fault at iteration 3"), std::string::npos) << out;
  ASSERT_EQ(run_command(mpirun(2) + sweep + " --seeds 2 --dry-run", &out), 0) << out;
  EXPECT_EQ(count(out, "| interrupted |"), 1) << out;
  // ... and resumes from its checkpoint on the rerun.
  ASSERT_EQ(run_command(mpirun(2) + sweep + " --seeds 2", &out), 0) << out;
  EXPECT_NE(out.find("resumed from"), std::string::npos) << out;
  EXPECT_NE(out.find("trained 2 run(s)"), std::string::npos) << out;
  const auto seeded = read_text(dir_->file("sweep/sweep.md"));
  EXPECT_EQ(lines_starting(seeded, "| 0.01 | 7, 8 | "), 1) << seeded;
  EXPECT_EQ(lines_starting(seeded, "| 0.02 | 7, 8 | "), 1) << seeded;
  EXPECT_EQ(lines_starting(seeded, "| 0.04 | 7 | "), 1) << seeded;
}

}  // namespace
