#include "common/progress.h"

#include <spdlog/spdlog.h>

#include <cmath>
#include <cstdio>

namespace segkd {

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

Progress::Progress(std::string what, int64_t total, bool enabled, Style style)
    : what_(std::move(what)),
      total_(total),
      enabled_(enabled),
      style_(style),
      every_s_(style == Style::kBar ? 0.1 : 5.0),
      now_([] { return Clock::now(); }),
      start_(now_()),
      last_(start_) {
  if (style_ == Style::kBar) {
    sink_ = [](const std::string& chunk) {
      std::fputs(chunk.c_str(), stderr);
      std::fflush(stderr);
    };
  } else {
    sink_ = [](const std::string& line) { spdlog::info("{}", line); };
  }
}

Progress& Progress::every(double seconds) {
  every_s_ = seconds;
  return *this;
}

Progress& Progress::sink(Sink fn) {
  sink_ = std::move(fn);
  return *this;
}

Progress& Progress::clock(std::function<Clock::time_point()> now) {
  now_ = std::move(now);
  start_ = last_ = now_();
  return *this;
}

void Progress::update(int64_t done) {
  if (!enabled_) return;
  const auto now = now_();
  const bool end = done >= total_;
  if (!end && std::chrono::duration<double>(now - last_).count() < every_s_) return;
  last_ = now;
  sink_(render(done, std::chrono::duration<double>(now - start_).count()));
}

void Progress::abandon() {
  if (enabled_ && style_ == Style::kBar) sink_("\n");
}

std::string Progress::render(int64_t done, double elapsed_s) const {
  const double rate = elapsed_s > 0 ? done / elapsed_s : 0.0;
  if (style_ == Style::kLog) {
    const double eta = rate > 0 ? (total_ - done) / rate : NAN;
    return fmt::format("{} {}/{} ({:.0f}%) | {:.1f}/s | elapsed {} | eta {}", what_, done, total_,
                       total_ > 0 ? 100.0 * done / total_ : 100.0, rate, format_duration(elapsed_s),
                       format_duration(eta));
  }
  const int64_t eta = rate > 0 ? static_cast<int64_t>((total_ - done) / rate + 0.5) : 0;
  const int width = 30, filled = total_ > 0 ? static_cast<int>(width * done / total_) : width;
  std::string bar(filled, '#');
  bar.resize(width, '.');
  return fmt::format("\r{} [{}] {}/{}  {:.1f}/s  ETA {}:{:02d} {}", what_, bar, done, total_, rate, eta / 60, eta % 60,
                     done >= total_ ? "\n" : "");
}

}  // namespace segkd
