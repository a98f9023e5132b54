#pragma once
/// train/ options: the tables the training loop itself reads ([run], [optimizer], [schedule], [eval], [checkpoint],
/// [log]). The whole config, which also holds the other libraries' tables, is train/config.h.
#include <cstdint>
#include <string>
#include <vector>

#include "common/config_schema.h"

namespace segkd::train {

struct RunOptions {
  using Self = RunOptions;
  SEGKD_OPTION(std::string, name, "segkd");
  SEGKD_OPTION(std::string, work_dir, "runs/segkd");
  SEGKD_OPTION(int64_t, seed, 42);
  SEGKD_OPTION(int64_t, threads, 0);  ///< intra-op threads per rank; 0 = cores per node / ranks per node
  SEGKD_OPTION(std::string, precision, "fp32");  ///< fp32 | fp16 (autocast + loss scaling) | bf16 (autocast); CUDA only

  static const std::vector<Field<RunOptions>>& fields();
  void validate(const std::string& prefix = "run") const;
  void validate(const std::string& prefix, const Checker& check) const;
};

struct OptimizerOptions {
  using Self = OptimizerOptions;
  SEGKD_OPTION(double, lr, 0.01);
  SEGKD_OPTION(double, momentum, 0.9);
  SEGKD_OPTION(bool, nesterov, false);
  SEGKD_OPTION(double, weight_decay, 5e-4);
  SEGKD_OPTION(bool, no_decay_norm_bias, false);  ///< no weight decay on normalisation weights and biases
  SEGKD_OPTION(double, head_lr_mult, 1.0);        ///< learning-rate multiplier for decode/aux heads and KD projectors

  static const std::vector<Field<OptimizerOptions>>& fields();
  void validate(const std::string& prefix = "optimizer") const;
  void validate(const std::string& prefix, const Checker& check) const;
};

struct ScheduleOptions {
  using Self = ScheduleOptions;
  SEGKD_OPTION(std::string, policy, "poly");  ///< poly | step
  SEGKD_OPTION(int64_t, iterations, 80000);   ///< used when budget is empty
  SEGKD_OPTION(std::string, budget);          ///< training wall-clock budget ("45m", "2h", "90s"); empty = iteration-based
  SEGKD_OPTION(double, power, 0.9);
  SEGKD_OPTION(int64_t, warmup_iters, 0);
  SEGKD_OPTION(double, warmup_ratio, 0.1);    ///< warm-up starts at lr * warmup_ratio
  SEGKD_OPTION(std::vector<int64_t>, steps);  ///< step policy: iterations where lr *= gamma
  SEGKD_OPTION(double, gamma, 0.1);
  SEGKD_OPTION(double, extend, 1.0);          ///< multiplies iterations or budget
  SEGKD_OPTION(double, min_lr, 1e-4);         ///< poly floor

  static const std::vector<Field<ScheduleOptions>>& fields();
  void validate(const std::string& prefix = "schedule") const;
  void validate(const std::string& prefix, const Checker& check) const;
};

struct EvalOptions {
  using Self = EvalOptions;
  SEGKD_OPTION(int64_t, interval, 8000);  ///< iterations (0 = only at the end)
  SEGKD_OPTION(std::string, mode, "whole");  ///< whole | slide
  SEGKD_OPTION(IntPair, slide_crop, 512, 1024);
  SEGKD_OPTION(IntPair, slide_stride, 341, 683);

  static const std::vector<Field<EvalOptions>>& fields();
  void validate(const std::string& prefix = "eval") const;
  void validate(const std::string& prefix, const Checker& check) const;
};

struct CheckpointOptions {
  using Self = CheckpointOptions;
  SEGKD_OPTION(int64_t, interval, 8000);  ///< iterations (0 = only at the end)
  SEGKD_OPTION(int64_t, keep, 3);         ///< newest checkpoints of this run kept (docs/run-directory.md)
  SEGKD_OPTION(bool, on_signal, true);    ///< SIGTERM/SIGINT: write a checkpoint at the step boundary where training stops

  static const std::vector<Field<CheckpointOptions>>& fields();
  void validate(const std::string& prefix = "checkpoint") const;
  void validate(const std::string& prefix, const Checker& check) const;
};

struct LogOptions {
  using Self = LogOptions;
  SEGKD_OPTION(int64_t, interval, 50);
  SEGKD_OPTION(std::string, level, "info");  ///< trace | debug | info | warn | error | off (log_level_names())

  static const std::vector<Field<LogOptions>>& fields();
  void validate(const std::string& prefix = "log") const;
  void validate(const std::string& prefix, const Checker& check) const;
};

}  // namespace segkd::train
