// train/: schedules, metrics from a confusion matrix, sliding-window inference, checkpoints, loss scaling, the
// teacher's precision rules and its int8 runner.
#include <ATen/autocast_mode.h>
#include <c10/core/impl/DeviceGuardImplInterface.h>
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <thread>

#include <unistd.h>

#include "train/config.h"
#include "common/error.h"
#include "losses/objective.h"
#include "models/segmentor.h"
#include "tests/testing/testing.h"
#include "train/checkpoint.h"
#include "train/config_diff.h"
#include "train/run_lock.h"
#include "train/evaluator.h"
#include "train/precision.h"
#include "train/progress.h"
#include "train/schedule.h"
#include "train/teacher.h"
#include "train/teacher_runner.h"
#include "train/teacher_stream.h"

namespace fs = std::filesystem;
using segkd::testing::tensors_close;

namespace segkd::train {
namespace {

TEST(Schedule, PolyRunsFromBaseToFloor) {
  ScheduleOptions s;
  s.iterations = 100;
  s.min_lr = 1e-4;
  LrSchedule lr(s, 0.01);
  EXPECT_DOUBLE_EQ(lr.lr(0, 0.0), 0.01);
  EXPECT_NEAR(lr.lr(50, 0.5), (0.01 - 1e-4) * std::pow(0.5, 0.9) + 1e-4, 1e-15);
  EXPECT_DOUBLE_EQ(lr.lr(100, 1.0), 1e-4);
  EXPECT_EQ(lr.total_iterations(), 100);
  EXPECT_FALSE(lr.budget_based());
}

TEST(Schedule, WarmupRampsLinearlyFromRatio) {
  ScheduleOptions s;
  s.iterations = 100;
  s.warmup_iters = 10;
  s.warmup_ratio = 0.1;
  s.power = 0.0;  // flat after warm-up
  LrSchedule lr(s, 1.0);
  EXPECT_DOUBLE_EQ(lr.lr(0, 0.0), 0.1);
  EXPECT_DOUBLE_EQ(lr.lr(5, 0.05), 0.55);
  EXPECT_DOUBLE_EQ(lr.lr(10, 0.1), 1.0);
}

TEST(Schedule, StepAndExtendScaleTogether) {
  ScheduleOptions s;
  s.policy = "step";
  s.iterations = 100;
  s.steps = {50, 80};
  s.gamma = 0.1;
  s.extend = 2.0;
  LrSchedule lr(s, 1.0);
  EXPECT_EQ(lr.total_iterations(), 200);
  EXPECT_DOUBLE_EQ(lr.lr(99, 0.0), 1.0);
  EXPECT_DOUBLE_EQ(lr.lr(100, 0.0), 0.1);
  EXPECT_NEAR(lr.lr(160, 0.0), 0.01, 1e-15);
}

TEST(Schedule, BudgetIsExtendedAndDrivesProgress) {
  ScheduleOptions s;
  s.budget = "1h30m";
  s.extend = 2.0;
  LrSchedule lr(s, 0.01);
  EXPECT_TRUE(lr.budget_based());
  EXPECT_DOUBLE_EQ(lr.budget_s(), 2 * 5400.0);
}

TEST(Metrics, IoUFromConfusion) {
  // rows = ground truth, columns = prediction
  auto cm = torch::tensor({{3, 1, 0}, {0, 2, 0}, {0, 0, 0}}, torch::kLong);
  auto r = metrics_from_confusion(cm);
  EXPECT_DOUBLE_EQ(r.per_class_iou[0], 3.0 / 4.0);
  EXPECT_DOUBLE_EQ(r.per_class_iou[1], 2.0 / 3.0);
  EXPECT_TRUE(std::isnan(r.per_class_iou[2]));  // absent everywhere: left out of the mean
  EXPECT_DOUBLE_EQ(r.miou, (0.75 + 2.0 / 3.0) / 2);
  EXPECT_DOUBLE_EQ(r.pixel_acc, 5.0 / 6.0);
  EXPECT_DOUBLE_EQ(r.mean_acc, (0.75 + 1.0) / 2);
}

TEST(Progress, FormatsDurations) {
  EXPECT_EQ(format_duration(0), "00:00");
  EXPECT_EQ(format_duration(75), "01:15");
  EXPECT_EQ(format_duration(3725), "1:02:05");
  EXPECT_EQ(format_duration(NAN), "--:--");
}

class Inference : public segkd::testing::Seeded {};

TEST_F(Inference, SlideWithOneWindowEqualsWhole) {
  models::ModelOptions mc;
  mc.aux_head = false;
  auto model = models::build_model(mc, 4);
  model->eval();
  torch::NoGradGuard no_grad;
  auto image = torch::randn({1, 3, 40, 56});
  EvalOptions whole, slide;
  slide.mode = "slide";
  slide.slide_crop = {40, 56};
  slide.slide_stride = {20, 28};
  auto a = infer_logits(model, image, whole);
  auto b = infer_logits(model, image, slide);
  EXPECT_EQ(a.sizes(), (std::vector<int64_t>{1, 4, 40, 56}));
  EXPECT_TRUE(tensors_close(b, a, 1e-5, 1e-6));
}

TEST_F(Inference, SlideCoversEveryPixelOfOddSizes) {
  models::ModelOptions mc;
  mc.aux_head = false;
  auto model = models::build_model(mc, 3);
  model->eval();
  torch::NoGradGuard no_grad;
  EvalOptions slide;
  slide.mode = "slide";
  slide.slide_crop = {32, 32};
  slide.slide_stride = {21, 21};
  auto out = infer_logits(model, torch::randn({1, 3, 45, 70}), slide);
  EXPECT_EQ(out.sizes(), (std::vector<int64_t>{1, 3, 45, 70}));
  EXPECT_TRUE(torch::isfinite(out).all().item<bool>());
}

TEST_F(Inference, CheckpointRoundTripAndDamage) {
  segkd::testing::TempDir dir;
  models::ModelOptions mc;
  auto student = models::build_model(mc, 3);
  losses::DistillOptions d("feature");
  losses::Objective objective(losses::LossOptions{}, std::vector<losses::DistillOptions>{d}, 3, 255, student->feature_channels(), student->feature_channels());
  std::vector<torch::Tensor> params = student->parameters();
  for (auto& p : objective->parameters()) params.push_back(p);
  torch::optim::SGD sgd(params, torch::optim::SGDOptions(0.1).momentum(0.9));
  // One step so the optimizer has momentum state.
  auto out = student->forward(torch::randn({2, 3, 32, 32}));
  out.logits.sum().backward();
  sgd.step();
  save_checkpoint(dir.path(), CheckpointMeta{7, 12.5, "abc", 512.0, 17}, *student, *objective, sgd, KeepPolicy{/*keep=*/2, /*resumed_from=*/""});
  EXPECT_EQ(segkd::testing::read_text(dir.file("checkpoints/latest")), "iter_7.ckpt\n");

  auto student2 = models::build_model(mc, 3);
  losses::Objective objective2(losses::LossOptions{}, std::vector<losses::DistillOptions>{d}, 3, 255, student2->feature_channels(), student2->feature_channels());
  std::vector<torch::Tensor> params2 = student2->parameters();
  for (auto& p : objective2->parameters()) params2.push_back(p);
  torch::optim::SGD sgd2(params2, torch::optim::SGDOptions(0.1).momentum(0.9));
  auto meta = load_checkpoint(checkpoint_path(dir.path(), 7), *student2, *objective2, sgd2);
  EXPECT_EQ(meta.iteration, 7);
  EXPECT_DOUBLE_EQ(meta.train_seconds, 12.5);
  EXPECT_EQ(meta.config_hash, "abc");
  EXPECT_DOUBLE_EQ(meta.loss_scale, 512.0);
  EXPECT_EQ(meta.loss_scale_clean_steps, 17);
  auto a = student->named_parameters(), b = student2->named_parameters();
  for (auto& kv : a) EXPECT_TRUE(torch::equal(kv.value(), b[kv.key()])) << kv.key();
  auto oa = objective->named_parameters(), ob = objective2->named_parameters();
  for (auto& kv : oa) EXPECT_TRUE(torch::equal(kv.value(), ob[kv.key()])) << kv.key();
  // Momentum restored: the same gradient gives the same next step.
  for (size_t i = 0; i < params.size(); ++i) {
    if (!params[i].grad().defined()) continue;
    params2[i].mutable_grad() = params[i].grad().clone();
  }
  sgd.step();
  sgd2.step();
  for (auto& kv : student->named_parameters()) EXPECT_TRUE(torch::equal(kv.value(), b[kv.key()])) << kv.key();

  // A truncated newer checkpoint is skipped by find_latest_checkpoint; keep=2 removed nothing yet.
  segkd::testing::write_text(checkpoint_path(dir.path(), 9), "not a zip");
  EXPECT_EQ(find_latest_checkpoint(dir.path()).value(), checkpoint_path(dir.path(), 7));
  SEGKD_EXPECT_THROW_MSG(load_checkpoint(checkpoint_path(dir.path(), 9), *student2, *objective2, sgd2),
                         "is damaged or not a segkd checkpoint");
  SEGKD_EXPECT_THROW_MSG(load_checkpoint(dir.file("nope.ckpt"), *student2, *objective2, sgd2), "checkpoint not found");
  // A checkpoint of another architecture names the mismatching tensor.
  models::ModelOptions other;
  other.backbone = "resnet34_v1c";
  auto student3 = models::build_model(other, 3);
  torch::optim::SGD sgd3(student3->parameters(), torch::optim::SGDOptions(0.1));
  SEGKD_EXPECT_THROW_MSG(load_checkpoint(checkpoint_path(dir.path(), 7), *student3, *objective2, sgd3), "student.");
  // Student weights alone (for eval/export) come back with mmseg names.
  auto state = read_checkpoint_student(checkpoint_path(dir.path(), 7));
  EXPECT_TRUE(state.count("decode_head.conv_seg.weight"));
  EXPECT_TRUE(state.count("backbone.layer1.0.bn1.running_mean"));
  EXPECT_FALSE(state.count("terms.0.proj.0.0.weight"));
}

/// A small stand-in for student + objective + optimizer (checkpoint bookkeeping does not depend on the model).
struct TinyRun {
  torch::nn::Linear student{torch::nn::LinearOptions(64, 32)};
  torch::nn::Module objective;
  torch::optim::SGD sgd{student->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9)};

  void save(const std::string& dir, int64_t iter, const std::string& run_id, int64_t keep,
            const std::string& resumed_from = "") {
    CheckpointMeta meta;
    meta.iteration = iter;
    meta.run_id = run_id;
    meta.config_toml = "[run]\nseed = 1\n";
    save_checkpoint(dir, meta, *student, objective, sgd, KeepPolicy{keep, resumed_from});
  }
};

/// Flips one byte in the middle of `path` (bit rot inside the archive).
void flip_middle_byte(const std::string& path) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(0, std::ios::end);
  const auto size = static_cast<std::streamoff>(f.tellg());
  f.seekg(size / 2);
  char c = 0;
  f.read(&c, 1);
  c = static_cast<char>(c ^ 0x5A);
  f.seekp(size / 2);
  f.write(&c, 1);
}

TEST(CheckpointChecksum, BitRotIsNamedOnLoadAndSkippedByResumeAuto) {
  segkd::testing::TempDir dir;
  TinyRun run;
  run.save(dir.path(), 2, "aaaaaaaaaaaaaaaa", 10);
  run.save(dir.path(), 4, "aaaaaaaaaaaaaaaa", 10);
  EXPECT_EQ(verify_checkpoint(checkpoint_path(dir.path(), 4)), "");
  flip_middle_byte(checkpoint_path(dir.path(), 4));
  EXPECT_NE(verify_checkpoint(checkpoint_path(dir.path(), 4)).find("CRC-32"), std::string::npos);
  // The zip itself still opens (LibTorch does not check CRCs): only the checksum catches it.
  EXPECT_EQ(find_latest_checkpoint(dir.path()).value(), checkpoint_path(dir.path(), 2));
  torch::nn::Linear other(torch::nn::LinearOptions(64, 32));
  torch::nn::Module obj;
  torch::optim::SGD sgd(other->parameters(), torch::optim::SGDOptions(0.1));
  SEGKD_EXPECT_THROW_MSG(load_checkpoint(checkpoint_path(dir.path(), 4), *other, obj, sgd),
                         "checkpoint " + checkpoint_path(dir.path(), 4) + " is damaged: CRC-32");
  SEGKD_EXPECT_THROW_MSG(read_checkpoint_student(checkpoint_path(dir.path(), 4)), "is damaged");
}

TEST(CheckpointChecksum, CheckpointsWithoutTrailerStillLoad) {
  segkd::testing::TempDir dir;
  TinyRun run;
  run.save(dir.path(), 3, "bbbbbbbbbbbbbbbb", 10);
  const std::string path = checkpoint_path(dir.path(), 3);
  fs::resize_file(path, fs::file_size(path) - 36);  // what segkd wrote before the trailer existed
  torch::nn::Linear other(torch::nn::LinearOptions(64, 32));
  torch::nn::Module obj;
  torch::optim::SGD sgd(other->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
  auto meta = load_checkpoint(path, *other, obj, sgd);
  EXPECT_EQ(meta.iteration, 3);
  EXPECT_EQ(meta.run_id, "");
  EXPECT_TRUE(torch::equal(other->weight, run.student->weight));
  EXPECT_EQ(find_latest_checkpoint(dir.path()).value(), path);
}

TEST(CheckpointKeep, PrunesOnlyThisRunsIntactOlderCheckpointsNeverTheResumedOne) {
  segkd::testing::TempDir dir;
  TinyRun run;
  const std::string a = "aaaaaaaaaaaaaaaa", b = "bbbbbbbbbbbbbbbb";
  run.save(dir.path(), 1, b, 10);  // an earlier run's file (another run id)
  for (int64_t it : {2, 4, 6}) run.save(dir.path(), it, a, 10);
  flip_middle_byte(checkpoint_path(dir.path(), 4));
  flip_middle_byte(checkpoint_path(dir.path(), 6));
  // The case of the bug report: resumed from iter_2 after iter_4 / iter_6 were damaged, keep = 1.
  const std::string resumed = checkpoint_path(dir.path(), 2);
  run.save(dir.path(), 3, a, 1, resumed);
  EXPECT_TRUE(fs::exists(resumed));
  EXPECT_TRUE(fs::exists(checkpoint_path(dir.path(), 3)));
  EXPECT_EQ(segkd::testing::read_text(dir.file("checkpoints/latest")), "iter_3.ckpt\n");
  run.save(dir.path(), 4, a, 1, resumed);  // replaces the damaged iter_4
  EXPECT_FALSE(fs::exists(checkpoint_path(dir.path(), 3))) << "own intact older checkpoint beyond keep";
  EXPECT_TRUE(fs::exists(resumed)) << "the checkpoint resumed from is never deleted";
  EXPECT_TRUE(fs::exists(checkpoint_path(dir.path(), 1))) << "another run's checkpoint is never deleted";
  EXPECT_TRUE(fs::exists(checkpoint_path(dir.path(), 6))) << "a higher-numbered file is never deleted";
  EXPECT_EQ(segkd::testing::read_text(dir.file("checkpoints/latest")), "iter_4.ckpt\n");
  EXPECT_TRUE(fs::exists(dir.file("checkpoints/iter_4.ckpt")));
}

TEST(CheckpointKeep, KeepsTheNewestKOfThisRun) {
  segkd::testing::TempDir dir;
  TinyRun run;
  for (int64_t it = 1; it <= 4; ++it) run.save(dir.path(), it, "cccccccccccccccc", 2);
  EXPECT_EQ(segkd::testing::list_dir(dir.file("checkpoints")),
            (std::vector<std::string>{"iter_3.ckpt", "iter_4.ckpt", "latest"}));
}

TEST(CheckpointDiskFull, ClearErrorNoTemporaryPreviousCheckpointIntact) {
  segkd::testing::SmallTmpfs disk("2m");
  if (!disk.mounted()) GTEST_SKIP() << disk.error();
  TinyRun small;
  small.save(disk.path(), 5, "dddddddddddddddd", 10);
  const std::string path = checkpoint_path(disk.path(), 5);
  const std::string before = segkd::testing::read_text(path);
  // 3 MB of weights into a 2 MB file system, at the same iteration (the file that is there must survive).
  torch::nn::Linear big(torch::nn::LinearOptions(1024, 768));
  torch::nn::Module obj;
  torch::optim::SGD sgd(big->parameters(), torch::optim::SGDOptions(0.1));
  CheckpointMeta meta;
  meta.iteration = 5;
  SEGKD_EXPECT_THROW_MSG(save_checkpoint(disk.path(), meta, *big, obj, sgd, KeepPolicy{1, ""}),
                         "disk full (ENOSPC) writing " + path);
  EXPECT_EQ(segkd::testing::read_text(path), before);
  EXPECT_EQ(segkd::testing::list_dir(disk.file("checkpoints")),
            (std::vector<std::string>{"iter_5.ckpt", "latest"}));
  EXPECT_EQ(verify_checkpoint(path), "");
}

TEST(RunLock, SecondHolderIsRefusedNamingHostAndPid) {
  segkd::testing::TempDir dir;
  {
    RunLock first(dir.path());
    EXPECT_NE(segkd::testing::read_text(dir.file("run.lock")).find("pid " + std::to_string(::getpid())),
              std::string::npos);
    SEGKD_EXPECT_THROW_MSG(RunLock second(dir.path()),
                           "is in use by another segkd run (host ");
    SEGKD_EXPECT_THROW_MSG(RunLock second(dir.path()), " pid " + std::to_string(::getpid()) + "; lock file");
  }
  EXPECT_FALSE(fs::exists(dir.file("run.lock"))) << "released on destruction";
  RunLock again(dir.path());
}

TEST(RunLock, StaleLockOfADeadProcessIsTakenOver) {
  segkd::testing::TempDir dir;
  segkd::testing::write_text(dir.file("run.lock"), "host ghost pid 999999\n");  // no flock held: holder gone
  RunLock lock(dir.path());
  EXPECT_EQ(segkd::testing::read_text(dir.file("run.lock")).find("ghost"), std::string::npos);
}

TEST(RunDirClaim, AnotherRunsCheckpointsNeedResumeOrOverwriteAndNothingChangesBeforeCommit) {
  segkd::testing::TempDir dir;
  TinyRun earlier;
  earlier.save(dir.path(), 6, "eeeeeeeeeeeeeeee", 10);
  segkd::testing::write_text(dir.file("config.toml"), "earlier run\n");
  SEGKD_EXPECT_THROW_MSG(RunDirClaim(dir.path(), "", /*overwrite=*/false),
                         "already holds checkpoints of another run (1, newest iter_6.ckpt)");
  EXPECT_EQ(segkd::testing::read_text(dir.file("config.toml")), "earlier run\n");
  EXPECT_FALSE(fs::exists(dir.file("run.lock")));
  SEGKD_EXPECT_THROW_MSG(RunDirClaim(dir.path(), "auto", /*overwrite=*/true), "exclude each other");
  { RunDirClaim resume(dir.path(), "auto", /*overwrite=*/false); }
  {
    RunDirClaim fresh(dir.path(), "", /*overwrite=*/true);
    EXPECT_TRUE(fs::exists(checkpoint_path(dir.path(), 6))) << "nothing deleted before commit()";
    EXPECT_EQ(segkd::testing::read_text(dir.file("config.toml")), "earlier run\n");
    fresh.commit("new run\n");
  }
  EXPECT_FALSE(fs::exists(checkpoint_path(dir.path(), 6)));
  EXPECT_FALSE(fs::exists(dir.file("checkpoints/latest")));
  EXPECT_EQ(segkd::testing::read_text(dir.file("config.toml")), "new run\n");
}

TEST(ConfigDiff, ListsChangedKeysOldToNewAndRefusesModelChanges) {
  const std::string before =
      "[run]\nseed = 1\n\n[student]\narch = \"pspnet\"\noutput_stride = 8\n\n[optimizer]\nlr = 0.01\n\n"
      "[[distill]]\ntau = 1.0\n";
  const std::string after =
      "[run]\nseed = 1\n\n[student]\narch = \"pspnet\"\noutput_stride = 8\n\n[optimizer]\nlr = 0.02\n\n"
      "[[distill]]\ntau = 4.0\n";
  auto changes = diff_resolved_toml(before, after);
  ASSERT_EQ(changes.size(), 2u);
  EXPECT_EQ(changes[0].key, "optimizer.lr");
  EXPECT_EQ(changes[0].before, "0.01");
  EXPECT_EQ(changes[0].after, "0.02");
  EXPECT_EQ(changes[1].key, "distill.0.tau");
  check_resume_config("x.ckpt", before, after);  // a warning, not an error
  std::string stride16 = after;
  stride16.replace(stride16.find("output_stride = 8"), 17, "output_stride = 16");
  SEGKD_EXPECT_THROW_MSG(check_resume_config("x.ckpt", before, stride16),
                         "cannot resume x.ckpt: the config changes the model (student.output_stride: 8 -> 16)");
}

TEST(TeacherRunner, ConcurrentEqualsInlineAndReturnsOnlyWhatIsRequested) {
  torch::manual_seed(5);
  models::ModelOptions mc;
  auto teacher = models::build_model(mc, 4);
  models::prepare_teacher(teacher, /*fold_bn=*/true);
  OutputRequest request;
  request.logits = true;
  request.aux_logits = false;
  request.features = {"layer4"};
  TeacherRunner inline_runner(teacher, request, /*concurrent=*/false, 1);
  TeacherRunner worker_runner(teacher, request, /*concurrent=*/true, 1);
  for (int step = 0; step < 3; ++step) {
    auto images = torch::randn({2, 3, 32, 32});
    inline_runner.start(images);
    worker_runner.start(images);
    auto a = inline_runner.wait(), b = worker_runner.wait();
    ASSERT_TRUE(a.logits.defined());
    EXPECT_FALSE(a.aux_logits.defined());  // not requested, not computed
    EXPECT_TRUE(torch::equal(a.logits, b.logits)) << "step " << step;
    EXPECT_TRUE(torch::equal(a.features.at("layer4"), b.features.at("layer4"))) << "step " << step;
    EXPECT_FALSE(b.logits.is_inference());  // usable in the KD terms' autograd graph
  }
  // A failure on the worker thread reaches the trainer's thread.
  worker_runner.start(torch::randn({2, 5, 32, 32}));
  EXPECT_ANY_THROW(worker_runner.wait());
}

/// A stream backend that only writes down what it is asked to do, registered for PrivateUse1 so TeacherStream's
/// ordering of streams and events is checked without a GPU (CUDA goes through the same c10 interface).
std::vector<std::string>& stream_log() {
  static std::vector<std::string> log;
  return log;
}
thread_local c10::StreamId current_stream = 0;

struct LoggingStreamBackend final : c10::impl::DeviceGuardImplInterface {
  static constexpr c10::DeviceType kType = c10::DeviceType::PrivateUse1;
  c10::DeviceType type() const override { return kType; }
  c10::Device exchangeDevice(c10::Device d) const override { return d; }
  c10::Device getDevice() const override { return {kType, 0}; }
  void setDevice(c10::Device) const override {}
  void uncheckedSetDevice(c10::Device) const noexcept override {}
  c10::Stream getStream(c10::Device d) const noexcept override {
    return c10::Stream(c10::Stream::UNSAFE, d, current_stream);
  }
  c10::Stream getStreamFromGlobalPool(c10::Device d, bool) const override {
    return c10::Stream(c10::Stream::UNSAFE, d, /*id=*/7);
  }
  c10::Stream exchangeStream(c10::Stream s) const noexcept override {
    auto old = getStream(s.device());
    current_stream = s.id();
    return old;
  }
  void record(void** event, const c10::Stream& s, const c10::DeviceIndex, const c10::EventFlag) const override {
    static int next = 0;
    if (*event == nullptr) *event = new int(++next);
    stream_log().push_back(str_cat("record e", *static_cast<int*>(*event), " on s", s.id()));
  }
  void block(void* event, const c10::Stream& s) const override {
    stream_log().push_back(str_cat("wait e", *static_cast<int*>(event), " on s", s.id()));
  }
  void destroyEvent(void* event, const c10::DeviceIndex) const noexcept override { delete static_cast<int*>(event); }
  void recordDataPtrOnStream(const c10::DataPtr& p, const c10::Stream& s) const override {
    stream_log().push_back(str_cat("use ", p.get(), " on s", s.id()));
  }
  c10::DeviceIndex deviceCount() const noexcept override { return 1; }
};
C10_REGISTER_GUARD_IMPL(PrivateUse1, LoggingStreamBackend);

TEST(TeacherStream, TeacherWaitsForTheBatchAndTrainerWaitsForTheTeacher) {
  TeacherStream stream(c10::Device(c10::DeviceType::PrivateUse1, 0));
  EXPECT_EQ(stream.stream().id(), 7);
  for (int step = 0; step < 2; ++step) {
    stream_log().clear();
    stream.fork();  // trainer thread, on its current stream 0
    ModelOutput out;
    std::thread worker([&] {
      out = stream.run([&] {
        stream_log().push_back(str_cat("forward on s", current_stream));
        ModelOutput o;
        o.logits = torch::zeros({2, 3});
        o.features["layer4"] = torch::ones({4});
        return o;
      });
      stream_log().push_back(str_cat("worker back on s", current_stream));
    });
    worker.join();
    stream.join(out);
    const std::vector<std::string> expected{
        "record e1 on s0",  // after the batch copy queued on the trainer's stream
        "wait e1 on s7",    // the teacher's stream waits for it
        "forward on s7",    // the teacher's kernels go to the side stream
        "record e2 on s7",
        "worker back on s0",  // the side stream was current only for the call
        "wait e2 on s0",      // the student's loss waits for the teacher
        str_cat("use ", out.logits.data_ptr(), " on s0"),
        str_cat("use ", out.features.at("layer4").data_ptr(), " on s0"),
    };
    EXPECT_EQ(stream_log(), expected) << "step " << step;
  }
}

TEST(Precision, ParsesNamesAndAutocastIsCudaOnly) {
  EXPECT_EQ(parse_precision("fp32"), Precision::kFp32);
  EXPECT_EQ(parse_precision("fp16"), Precision::kFp16);
  EXPECT_EQ(parse_precision("bf16"), Precision::kBf16);
  SEGKD_EXPECT_THROW_MSG(parse_precision("fp8"), "run.precision: must be one of fp32, fp16, bf16, got 'fp8'");
  {
    AutocastRegion region(Precision::kFp16, torch::kCPU);  // CPU stays fp32
    EXPECT_FALSE(at::autocast::is_enabled());
    EXPECT_FALSE(at::autocast::is_cpu_enabled());
    auto y = torch::matmul(torch::randn({2, 3}), torch::randn({3, 2}));
    EXPECT_EQ(y.scalar_type(), torch::kFloat);
  }
}

TEST(Precision, WidenOutputsCastsHalfAndCopiesOnRequest) {
  ModelOutput out;
  out.logits = torch::randn({1, 2, 3, 3}).to(torch::kHalf);
  out.features["layer4"] = torch::randn({1, 4, 2, 2}).to(torch::kBFloat16);
  out.aux_logits = torch::randn({1, 2, 3, 3});
  const auto aux = out.aux_logits;
  const auto logits_half = out.logits;
  widen_outputs(out, /*copy=*/false);
  EXPECT_EQ(out.logits.scalar_type(), torch::kFloat);
  EXPECT_EQ(out.features["layer4"].scalar_type(), torch::kFloat);
  EXPECT_TRUE(torch::equal(out.logits, logits_half.to(torch::kFloat)));
  EXPECT_TRUE(out.aux_logits.is_same(aux));  // fp32 kept as is
  widen_outputs(out, /*copy=*/true);
  EXPECT_FALSE(out.aux_logits.is_same(aux));  // copied (leaves inference mode for the teacher)
  EXPECT_TRUE(torch::equal(out.aux_logits, aux));
}

TEST(LossScaler, DisabledIsTheIdentity) {
  LossScaler s(false);
  auto loss = torch::tensor(3.0);
  EXPECT_TRUE(s.scale_loss(loss).is_same(loss));
  auto p = torch::ones({2}).requires_grad_();
  p.mutable_grad() = torch::full({2}, std::numeric_limits<float>::infinity());
  EXPECT_FALSE(s.unscale({p}));  // fp32/bf16: no overflow handling, the non-finite-loss check applies instead
  s.update(true);
  EXPECT_EQ(s.scale(), 1.0);
}

TEST(LossScaler, ScaledStepEqualsUnscaledStepAndOverflowBacksOff) {
  // Power-of-two scales are exact in floating point: one SGD step with the scaler gives the very same weights.
  torch::manual_seed(3);
  auto make = [] { return torch::nn::Sequential(torch::nn::Linear(5, 4), torch::nn::ReLU(), torch::nn::Linear(4, 3)); };
  auto a = make(), b = make();
  for (size_t i = 0; i < a->parameters().size(); ++i) {
    torch::NoGradGuard ng;
    b->parameters()[i].copy_(a->parameters()[i]);
  }
  auto x = torch::randn({8, 5});
  torch::optim::SGD sa(a->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
  torch::optim::SGD sb(b->parameters(), torch::optim::SGDOptions(0.1).momentum(0.9));
  LossScaler scaler(true, LossScalerOptions{1024.0, 2.0, 0.5, 2});
  a->forward(x).pow(2).mean().backward();
  sa.step();
  scaler.scale_loss(b->forward(x).pow(2).mean()).backward();
  EXPECT_DOUBLE_EQ(b->parameters()[0].grad().abs().max().item<double>() / 1024.0,
                   a->parameters()[0].grad().abs().max().item<double>());
  const bool overflow = scaler.unscale(b->parameters());
  EXPECT_FALSE(overflow);
  scaler.update(overflow);
  sb.step();
  for (size_t i = 0; i < a->parameters().size(); ++i) {
    EXPECT_TRUE(torch::equal(a->parameters()[i], b->parameters()[i])) << "parameter " << i;
  }
  EXPECT_EQ(scaler.scale(), 1024.0);
  EXPECT_EQ(scaler.clean_steps(), 1);

  // A NaN anywhere: overflow reported, scale halved, counter reset; two clean steps then double it.
  b->parameters()[1].mutable_grad()[0] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_TRUE(scaler.unscale(b->parameters()));
  scaler.update(true);
  EXPECT_EQ(scaler.scale(), 512.0);
  EXPECT_EQ(scaler.clean_steps(), 0);
  scaler.update(false);
  scaler.update(false);
  EXPECT_EQ(scaler.scale(), 1024.0);
  scaler.restore(256.0, 1);
  EXPECT_EQ(scaler.scale(), 256.0);
  EXPECT_EQ(scaler.clean_steps(), 1);
}


TEST(TeacherPrecision, CpuRunsFp32OrInt8AndRefusesAutocastPrecisions) {
  models::ModelOptions t;
  t.backbone = "resnet101_v1c";
  const torch::Device cpu(torch::kCPU);
  // Unset: int8 on the CPU for a ResNetV1c teacher with folded BatchNorm, fp32 otherwise.
  EXPECT_EQ(teacher_precision(t, Precision::kFp32, cpu), Precision::kInt8);
  t.fold_bn = false;
  EXPECT_EQ(teacher_precision(t, Precision::kFp32, cpu), Precision::kFp32);
  t.fold_bn = true;
  t.backbone = "efficientnet_b0";
  EXPECT_EQ(teacher_precision(t, Precision::kFp32, cpu), Precision::kFp32);
  t.precision = "int8";
  SEGKD_EXPECT_THROW_MSG(teacher_precision(t, Precision::kFp32, cpu), "int8 runs ResNetV1c backbones");
  t.backbone = "resnet18_v1c";
  EXPECT_EQ(teacher_precision(t, Precision::kFp32, cpu), Precision::kInt8);
  t.precision = "fp32";
  EXPECT_EQ(teacher_precision(t, Precision::kFp32, cpu), Precision::kFp32);
  for (const char* name : {"fp16", "bf16"}) {
    t.precision = name;
    SEGKD_EXPECT_THROW_MSG(teacher_precision(t, Precision::kFp32, cpu), "the teacher supports fp32 and int8");
  }
  t.precision = "int8";
  t.fold_bn = false;
  SEGKD_EXPECT_THROW_MSG(teacher_precision(t, Precision::kFp32, cpu), "needs teacher.fold_bn = true");
}

TEST(TeacherPrecision, ConfigRefusesUnknownNamesAndAStudentPrecision) {
  const std::string base = "[student]\narch = \"pspnet\"\n[teacher]\nweights = \"t.pth\"\n";
  EXPECT_EQ(load_config_from_string(base + "precision = \"int8\"\n", "t.toml").teacher->precision, "int8");
  SEGKD_EXPECT_THROW_MSG(load_config_from_string(base + "precision = \"int4\"\n", "t.toml"), "teacher.precision");
  SEGKD_EXPECT_THROW_MSG(load_config_from_string(base, "t.toml", {"student.precision=\"int8\""}),
                         "applies to the teacher only");
  SEGKD_EXPECT_THROW_MSG(load_config_from_string(base + "calibration_batches = 0\n", "t.toml"),
                         "teacher.calibration_batches");
}

TEST(TeacherRunner, Int8RunnerReturnsFloatOutputsThatCanBeSavedForBackward) {
  torch::manual_seed(3);
  models::ModelOptions mc;
  auto teacher = models::build_model(mc, 4);
  models::prepare_teacher(teacher, /*fold_bn=*/true);
  auto int8 = std::make_shared<models::Int8Segmentor>(teacher);
  int8->observe(torch::randn({2, 3, 32, 32}));
  int8->set_ranges(int8->ranges());
  OutputRequest req;
  req.aux_logits = false;
  req.features = {"layer4"};
  SEGKD_EXPECT_THROW_MSG(TeacherRunner(teacher, req, false, 1, Precision::kInt8), "needs its calibrated");
  for (bool concurrent : {false, true}) {
    TeacherRunner runner(teacher, req, concurrent, 1, Precision::kInt8, torch::kCPU, int8);
    auto x = torch::randn({2, 3, 32, 32});
    runner.start(x);
    auto out = runner.wait();
    EXPECT_TRUE(torch::equal(out.logits, int8->forward(x, req).logits)) << "concurrent " << concurrent;
    EXPECT_FALSE(out.logits.is_inference());
    EXPECT_EQ(out.features.at("layer4").scalar_type(), torch::kFloat);
    EXPECT_FALSE(out.aux_logits.defined());
    // A KD term multiplies it with something that needs grad: that saves it for backward.
    auto w = torch::ones({1}, torch::requires_grad());
    (out.logits * w).sum().backward();
    EXPECT_TRUE(w.grad().defined());
  }
}

TEST_F(Inference, CheckpointKeepsTheInt8TeacherRanges) {
  segkd::testing::TempDir dir;
  models::ModelOptions mc;
  auto student = models::build_model(mc, 3);
  losses::Objective objective(losses::LossOptions{}, std::vector<losses::DistillOptions>{}, 3, 255, student->feature_channels(),
                              losses::Channels{});
  torch::optim::SGD sgd(student->parameters(), torch::optim::SGDOptions(0.1));
  CheckpointMeta meta{3, 1.0, "h", 1.0, 0};
  meta.teacher_int8_ranges = torch::randn({38, 2}, torch::kDouble);
  save_checkpoint(dir.path(), meta, *student, *objective, sgd, KeepPolicy{2, ""});
  auto back = load_checkpoint(checkpoint_path(dir.path(), 3), *student, *objective, sgd);
  ASSERT_TRUE(back.teacher_int8_ranges.defined());
  EXPECT_TRUE(torch::equal(back.teacher_int8_ranges, meta.teacher_int8_ranges));
  // A run without an int8 teacher stores none.
  save_checkpoint(dir.path(), CheckpointMeta{4, 1.0, "h", 1.0, 0}, *student, *objective, sgd, KeepPolicy{2, ""});
  EXPECT_FALSE(load_checkpoint(checkpoint_path(dir.path(), 4), *student, *objective, sgd).teacher_int8_ranges.defined());
}

}  // namespace
}  // namespace segkd::train
