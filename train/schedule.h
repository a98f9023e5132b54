#pragma once
/// Learning-rate schedules over training progress.
///
/// Progress is iteration-based (`schedule.iterations × extend`) or, with `schedule.budget`, wall-clock-based: the
/// poly curve then runs over elapsed training time so it reaches its end exactly when the budget is spent.
#include <cstdint>

#include "train/config.h"

namespace segkd::train {

class LrSchedule {
 public:
  LrSchedule(const ScheduleOptions& cfg, double base_lr);

  /// Learning rate at iteration `iter` (0-based) with `progress` in [0,1] (iter/total or elapsed/budget).
  ///   poly: (base - min_lr) · (1 - progress)^power + min_lr
  ///   step: base · gamma^(number of steps ≤ iter)
  /// Linear warm-up over the first warmup_iters: factor from warmup_ratio to 1.
  double lr(int64_t iter, double progress) const;

  /// Total iterations after `extend` (iteration-based schedules).
  int64_t total_iterations() const { return total_iters_; }
  /// Budget in seconds after `extend` (0 = iteration-based).
  double budget_s() const { return budget_s_; }
  bool budget_based() const { return budget_s_ > 0; }

 private:
  ScheduleOptions cfg_;
  double base_lr_;
  int64_t total_iters_;
  double budget_s_;
};

}  // namespace segkd::train
