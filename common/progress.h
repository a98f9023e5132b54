#pragma once
/// Progress: the one progress reporter for long loops (evaluation, prediction, dataset conversion). It counts items,
/// computes rate and ETA, throttles its output and renders it in one of two styles.
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

namespace segkd {

/// "H:MM:SS" (or "MM:SS") for a duration in seconds; "--:--" when not finite or negative.
std::string format_duration(double seconds);

/// Reports `done` of `total` items. A line is emitted at most once per interval and always when done reaches total.
/// Rate = done / seconds since construction; ETA = (total − done) / rate.
class Progress {
 public:
  enum class Style {
    /// A log line through spdlog::info every 5 s: "eval 37/100 (37%) | 12.3/s | elapsed 00:03 | eta 00:05".
    /// For work that runs inside a job, where the console is a log.
    kLog,
    /// A bar redrawn in place on stderr up to 10 times a second, with a newline at the end:
    /// "\r<what> [#########.....................] 37/100  12.3/s  ETA 0:05 ". For interactive tools.
    kBar,
  };
  using Clock = std::chrono::steady_clock;
  /// Receives each rendered chunk (kBar: with its leading "\r" and, at the end, "\n"; kLog: the line).
  using Sink = std::function<void(const std::string&)>;

  /// `enabled` false: update() does nothing (e.g. every rank but 0).
  Progress(std::string what, int64_t total, bool enabled, Style style = Style::kLog);

  /// Minimum seconds between two lines (default 5 for kLog, 0.1 for kBar).
  Progress& every(double seconds);
  /// Where rendered chunks go (default: spdlog::info for kLog, stderr for kBar).
  Progress& sink(Sink fn);
  /// The clock (default steady_clock::now); restarts the rate measurement at the clock's current time.
  Progress& clock(std::function<Clock::time_point()> now);

  /// Reports `done` of `total`.
  void update(int64_t done);
  /// A loop that stops before `total` (an error): ends an in-place bar with a newline so the next message starts
  /// on a fresh line. No-op for kLog or when disabled.
  void abandon();

 private:
  std::string render(int64_t done, double elapsed_s) const;

  std::string what_;
  int64_t total_;
  bool enabled_;
  Style style_;
  double every_s_;
  Sink sink_;
  std::function<Clock::time_point()> now_;
  Clock::time_point start_, last_;
};

}  // namespace segkd
