// train/ options: keys and validation (options.h).
#include "train/options.h"

#include "common/logging.h"

namespace segkd::train {

void RunOptions::validate(const std::string& prefix) const { validate_standalone(*this, prefix); }
void OptimizerOptions::validate(const std::string& prefix) const { validate_standalone(*this, prefix); }
void ScheduleOptions::validate(const std::string& prefix) const { validate_standalone(*this, prefix); }
void EvalOptions::validate(const std::string& prefix) const { validate_standalone(*this, prefix); }
void CheckpointOptions::validate(const std::string& prefix) const { validate_standalone(*this, prefix); }
void LogOptions::validate(const std::string& prefix) const { validate_standalone(*this, prefix); }

const std::vector<Field<RunOptions>>& RunOptions::fields() {
  using S = RunOptions;
  static const std::vector<Field<S>> f{{"name", &S::name},       {"work_dir", &S::work_dir},
                                       {"seed", &S::seed},       {"threads", &S::threads},
                                       {"precision", &S::precision}};
  return f;
}
void RunOptions::validate(const std::string& p, const Checker& check) const {
  check(!work_dir.empty(), p + ".work_dir", "must not be empty");
  check(threads >= 0, p + ".threads", "must be >= 0");
  check.one_of(precision, {"fp32", "fp16", "bf16"}, p + ".precision");
}

const std::vector<Field<OptimizerOptions>>& OptimizerOptions::fields() {
  using S = OptimizerOptions;
  static const std::vector<Field<S>> f{
      {"lr", &S::lr},           {"momentum", &S::momentum},
      {"nesterov", &S::nesterov}, {"weight_decay", &S::weight_decay},
      {"no_decay_norm_bias", &S::no_decay_norm_bias}, {"head_lr_mult", &S::head_lr_mult}};
  return f;
}
void OptimizerOptions::validate(const std::string& p, const Checker& check) const {
  check(lr > 0, p + ".lr", "must be > 0");
  check(momentum >= 0 && momentum < 1, p + ".momentum", "must be in [0, 1)");
  check(weight_decay >= 0, p + ".weight_decay", "must be >= 0");
  check(head_lr_mult > 0, p + ".head_lr_mult", "must be > 0");
}

const std::vector<Field<ScheduleOptions>>& ScheduleOptions::fields() {
  using S = ScheduleOptions;
  static const std::vector<Field<S>> f{
      {"policy", &S::policy}, {"iterations", &S::iterations}, {"budget", &S::budget},
      {"power", &S::power},   {"warmup_iters", &S::warmup_iters}, {"warmup_ratio", &S::warmup_ratio},
      {"steps", &S::steps},   {"gamma", &S::gamma},           {"extend", &S::extend},
      {"min_lr", &S::min_lr}};
  return f;
}
void ScheduleOptions::validate(const std::string& p, const Checker& check) const {
  check.one_of(policy, {"poly", "step"}, p + ".policy");
  check(iterations >= 1, p + ".iterations", "must be >= 1");
  if (!budget.empty()) {
    double seconds = 0;
    try {
      seconds = parse_duration(budget, p + ".budget");
    } catch (const ConfigError&) {
      check(false, p + ".budget", "not a duration (expected e.g. \"90s\", \"45m\", \"2h\", \"1h30m\" or seconds)");
    }
    check(seconds > 0, p + ".budget", "must be > 0");
  }
  check(power >= 0, p + ".power", "must be >= 0");
  check(warmup_iters >= 0, p + ".warmup_iters", "must be >= 0");
  check(warmup_ratio > 0 && warmup_ratio <= 1, p + ".warmup_ratio", "must be in (0, 1]");
  for (size_t i = 0; i < steps.size(); ++i) {
    check(steps[i] >= 1 && (i == 0 || steps[i] > steps[i - 1]), p + ".steps",
          "must be positive and strictly increasing");
  }
  check(gamma > 0, p + ".gamma", "must be > 0");
  check(extend > 0, p + ".extend", "must be > 0");
  check(min_lr >= 0, p + ".min_lr", "must be >= 0");
}

const std::vector<Field<EvalOptions>>& EvalOptions::fields() {
  using S = EvalOptions;
  static const std::vector<Field<S>> f{
      {"interval", &S::interval}, {"mode", &S::mode}, {"slide_crop", &S::slide_crop},
      {"slide_stride", &S::slide_stride}};
  return f;
}
void EvalOptions::validate(const std::string& p, const Checker& check) const {
  check(interval >= 0, p + ".interval", "must be >= 0");
  check.one_of(mode, {"whole", "slide"}, p + ".mode");
  check(slide_crop[0] > 0 && slide_crop[1] > 0, p + ".slide_crop", "each must be > 0");
  check(slide_stride[0] > 0 && slide_stride[1] > 0, p + ".slide_stride", "each must be > 0");
}

const std::vector<Field<CheckpointOptions>>& CheckpointOptions::fields() {
  using S = CheckpointOptions;
  static const std::vector<Field<S>> f{{"interval", &S::interval}, {"keep", &S::keep}, {"on_signal", &S::on_signal}};
  return f;
}
void CheckpointOptions::validate(const std::string& p, const Checker& check) const {
  check(interval >= 0, p + ".interval", "must be >= 0");
  check(keep >= 1, p + ".keep", "must be >= 1");
}

const std::vector<Field<LogOptions>>& LogOptions::fields() {
  using S = LogOptions;
  static const std::vector<Field<S>> f{{"interval", &S::interval}, {"level", &S::level}};
  return f;
}
void LogOptions::validate(const std::string& p, const Checker& check) const {
  check(interval >= 1, p + ".interval", "must be >= 1");
  check.one_of(level, log_level_names(), p + ".level");
}

}  // namespace segkd::train
