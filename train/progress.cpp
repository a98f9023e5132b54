#include "train/progress.h"

#include <spdlog/spdlog.h>

#include <cmath>
#include <cstdio>

namespace segkd::train {

std::string format_duration(double seconds) {
  if (!std::isfinite(seconds) || seconds < 0) return "--:--";
  auto s = static_cast<int64_t>(std::llround(seconds));
  char buf[32];
  if (s >= 3600) {
    std::snprintf(buf, sizeof(buf), "%lld:%02lld:%02lld", static_cast<long long>(s / 3600),
                  static_cast<long long>((s / 60) % 60), static_cast<long long>(s % 60));
  } else {
    std::snprintf(buf, sizeof(buf), "%02lld:%02lld", static_cast<long long>(s / 60), static_cast<long long>(s % 60));
  }
  return buf;
}

Progress::Progress(std::string what, int64_t total, bool enabled, double every_s)
    : what_(std::move(what)), total_(total), enabled_(enabled), every_s_(every_s),
      start_(std::chrono::steady_clock::now()), last_(start_) {}

void Progress::update(int64_t done) {
  if (!enabled_) return;
  auto now = std::chrono::steady_clock::now();
  bool end = done >= total_;
  if (!end && std::chrono::duration<double>(now - last_).count() < every_s_) return;
  last_ = now;
  double elapsed = std::chrono::duration<double>(now - start_).count();
  double rate = elapsed > 0 ? done / elapsed : 0.0;
  double eta = rate > 0 ? (total_ - done) / rate : NAN;
  spdlog::info("{} {}/{} ({:.0f}%) | {:.1f}/s | elapsed {} | eta {}", what_, done, total_,
               total_ > 0 ? 100.0 * done / total_ : 100.0, rate, format_duration(elapsed), format_duration(eta));
}

}  // namespace segkd::train
