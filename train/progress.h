#pragma once
/// A progress line with rate and ETA for long loops (evaluation, conversion), throttled to one line per few seconds.
#include <chrono>
#include <cstdint>
#include <string>

namespace segkd::train {

/// "H:MM:SS" (or "MM:SS") for a duration in seconds.
std::string format_duration(double seconds);

class Progress {
 public:
  Progress(std::string what, int64_t total, bool enabled, double every_s = 5.0);
  /// Reports `done` of `total`; logs when `every_s` passed since the last line, and at the end.
  void update(int64_t done);

 private:
  std::string what_;
  int64_t total_;
  bool enabled_;
  double every_s_;
  std::chrono::steady_clock::time_point start_, last_;
};

}  // namespace segkd::train
