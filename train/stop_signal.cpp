// SIGTERM / SIGINT handling for the training loop (see stop_signal.h).
#include "train/stop_signal.h"

#include <csignal>

#include "common/error.h"
#include "distributed/communicator.h"

namespace segkd::train {
namespace {

volatile std::sig_atomic_t g_signal = 0;
struct sigaction g_old_term {}, g_old_int {};

void record_signal(int sig) {
  if (g_signal == 0) g_signal = sig;
}

}  // namespace

StopSignals::StopSignals() {
  struct sigaction sa {};
  sa.sa_handler = record_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;  // a blocking read or MPI progress call resumes; the loop checks at the step boundary
  sigaction(SIGTERM, &sa, &g_old_term);
  sigaction(SIGINT, &sa, &g_old_int);
}

StopSignals::~StopSignals() {
  sigaction(SIGTERM, &g_old_term, nullptr);
  sigaction(SIGINT, &g_old_int, nullptr);
}

int StopSignals::received() { return static_cast<int>(g_signal); }

void StopSignals::reset() { g_signal = 0; }

int agree_stop_signal(dist::Communicator& comm, const torch::Device& device) {
  auto flag = torch::tensor({static_cast<double>(StopSignals::received())}, torch::kDouble).to(device);
  comm.all_reduce(flag, dist::ReduceOp::kMax);
  return static_cast<int>(flag.item<double>());
}

std::string stop_message(int sig, int64_t iteration, const std::string& checkpoint, bool on_signal) {
  std::string saved = !checkpoint.empty() ? str_cat("checkpoint ", checkpoint, " written")
                      : on_signal         ? std::string("no checkpoint written (no step since the start)")
                                          : std::string("no checkpoint written (checkpoint.on_signal = false)");
  return str_cat("stopped by ", signal_name(sig), " at iteration ", iteration, "; ", saved);
}

std::string signal_name(int sig) {
  if (sig == SIGTERM) return "SIGTERM";
  if (sig == SIGINT) return "SIGINT";
  return str_cat("signal ", sig);
}

}  // namespace segkd::train
