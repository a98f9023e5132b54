#pragma once
/// Stopping on SIGTERM / SIGINT (a scheduler's time limit, Ctrl-C): the handler only records the signal; the
/// training loop asks at every step boundary, all ranks agree (one all-reduce), and every rank stops at the same
/// iteration, optionally after a final checkpoint (`checkpoint.on_signal`).
#include <torch/torch.h>

#include <string>

namespace segkd::dist {
class Communicator;
}

namespace segkd::train {

/// Installs SIGTERM and SIGINT handlers for its lifetime (the previous handlers come back on destruction).
class StopSignals {
 public:
  StopSignals();
  ~StopSignals();
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;
  /// The first signal received since construction, 0 if none (async-signal-safe read).
  static int received();
  /// Forgets a received signal (tests).
  static void reset();
};

/// Collective: the signal any rank received (the highest number if several), 0 when none. Every rank gets the same
/// answer, so all stop at the same step.
int agree_stop_signal(dist::Communicator& comm, const torch::Device& device);

/// "stopped by SIGTERM at iteration N; checkpoint PATH written" (or why none was written: `checkpoint` is "").
std::string stop_message(int sig, int64_t iteration, const std::string& checkpoint, bool on_signal);

/// "SIGTERM", "SIGINT", or "signal N".
std::string signal_name(int sig);

}  // namespace segkd::train
