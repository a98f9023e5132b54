// train/options.h on its own: RunOptions, OptimizerOptions, ScheduleOptions, EvalOptions, CheckpointOptions,
// LogOptions — defaults, chained setters, validate() naming the key.
#include <gtest/gtest.h>

#include "common/error.h"
#include "tests/testing/testing.h"
#include "train/options.h"

namespace segkd::train {
namespace {

TEST(TrainOptions, DefaultsAndChainedSettersValidate) {
  EXPECT_NO_THROW(RunOptions().validate());
  EXPECT_NO_THROW(OptimizerOptions().validate());
  EXPECT_NO_THROW(ScheduleOptions().validate());
  EXPECT_NO_THROW(EvalOptions().validate());
  EXPECT_NO_THROW(CheckpointOptions().validate());
  EXPECT_NO_THROW(LogOptions().validate());
  ScheduleOptions s = ScheduleOptions().set_policy("step").set_steps({100, 200}).set_budget("1h30m");
  EXPECT_EQ(s.steps, (std::vector<int64_t>{100, 200}));
  EXPECT_NO_THROW(s.validate());
  EXPECT_DOUBLE_EQ(OptimizerOptions().set_lr(0.02).set_nesterov(true).lr, 0.02);
}

TEST(TrainOptions, BadValuesAreRefusedNamingTheKey) {
  SEGKD_EXPECT_THROW_MSG(RunOptions().set_work_dir("").validate(), "run.work_dir = \"\": must not be empty");
  SEGKD_EXPECT_THROW_MSG(RunOptions().set_precision("fp8").validate(), "run.precision = \"fp8\": must be one of");
  SEGKD_EXPECT_THROW_MSG(OptimizerOptions().set_lr(0).validate(), "optimizer.lr = 0.0: must be > 0");
  SEGKD_EXPECT_THROW_MSG(OptimizerOptions().set_momentum(1).validate(), "optimizer.momentum");
  SEGKD_EXPECT_THROW_MSG(ScheduleOptions().set_steps({200, 100}).validate(),
                         "schedule.steps = [200, 100]: must be positive and strictly increasing");
  SEGKD_EXPECT_THROW_MSG(ScheduleOptions().set_budget("soon").validate(), "schedule.budget = \"soon\": not a duration");
  SEGKD_EXPECT_THROW_MSG(ScheduleOptions().set_warmup_ratio(0).validate(), "schedule.warmup_ratio");
  SEGKD_EXPECT_THROW_MSG(EvalOptions().set_mode("tiles").validate(), "eval.mode = \"tiles\": must be one of whole|slide");
  SEGKD_EXPECT_THROW_MSG(EvalOptions().set_slide_stride({0, 8}).validate(), "eval.slide_stride");
  SEGKD_EXPECT_THROW_MSG(CheckpointOptions().set_keep(0).validate(), "checkpoint.keep = 0: must be >= 1");
  SEGKD_EXPECT_THROW_MSG(LogOptions().set_level("loud").validate(), "log.level = \"loud\": must be one of");
  SEGKD_EXPECT_THROW_MSG(LogOptions().set_interval(0).validate("logging"), "logging.interval");
}

}  // namespace
}  // namespace segkd::train
