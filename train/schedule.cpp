#include "train/schedule.h"

#include <algorithm>
#include <cmath>

namespace segkd::train {

LrSchedule::LrSchedule(const ScheduleOptions& cfg, double base_lr)
    : cfg_(cfg),
      base_lr_(base_lr),
      total_iters_(std::max<int64_t>(1, static_cast<int64_t>(std::llround(cfg.iterations * cfg.extend)))),
      budget_s_(cfg.budget.empty() ? 0.0 : parse_duration(cfg.budget, "schedule.budget") * cfg.extend) {}

double LrSchedule::lr(int64_t iter, double progress) const {
  progress = std::clamp(progress, 0.0, 1.0);
  double lr = base_lr_;
  if (cfg_.policy == "poly") {
    double floor = std::min(cfg_.min_lr, base_lr_);
    lr = (base_lr_ - floor) * std::pow(1.0 - progress, cfg_.power) + floor;
  } else {  // step
    int64_t passed = std::count_if(cfg_.steps.begin(), cfg_.steps.end(),
                                   [&](int64_t s) { return static_cast<int64_t>(std::llround(s * cfg_.extend)) <= iter; });
    lr = base_lr_ * std::pow(cfg_.gamma, static_cast<double>(passed));
  }
  if (cfg_.warmup_iters > 0 && iter < cfg_.warmup_iters) {
    double k = static_cast<double>(iter) / static_cast<double>(cfg_.warmup_iters);
    lr *= cfg_.warmup_ratio + (1.0 - cfg_.warmup_ratio) * k;
  }
  return lr;
}

}  // namespace segkd::train
