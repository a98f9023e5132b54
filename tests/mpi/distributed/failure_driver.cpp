// A small MPI program that misbehaves on purpose, for the fail-together tests (expect_failure.sh checks exit
// status, time and message). Modes:
//   throw K     : every rank all-reduces once per step; rank 1 throws at step K inside run_guarded.
//   skip        : rank 1 skips an all-reduce and stays busy elsewhere; the peers' watchdog (3 s) must abort.
//   skip_async  : like skip, but the peers wait on an asynchronous all-reduce (a gradient bucket).
//   mismatch    : the last rank has a different config hash; check_agreement fails on every rank.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>

#include "common/error.h"
#include "distributed/communicator.h"
#include "distributed/grad_reducer.h"
#include "distributed/runtime.h"

namespace {

using namespace segkd::dist;
using segkd::dist::DistributedOptions;

/// Stands in for a rank that is alive but busy elsewhere (data loading, a long evaluation): it never reaches the
/// collective its peers wait in. Bounded so a broken watchdog fails the test by timeout instead of hanging.
void stay_busy_elsewhere(double seconds) {
  auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) std::this_thread::sleep_for(std::chrono::milliseconds(100));
}

int run(const std::string& mode, int arg) {
  DistributedOptions cfg;
  cfg.backend = "mpi";
  cfg.timeout_s = mode.rfind("skip", 0) == 0 ? 3 : 60;
  auto comm = make_communicator(cfg, torch::kCPU);
  const int rank = comm->rank();
  if (mode == "throw") {
    for (int step = 0; step < 1000000; ++step) {
      if (rank == 1 && step == arg) throw segkd::Error("injected failure at step " + std::to_string(step));
      auto t = torch::ones({1024});
      comm->all_reduce(t, ReduceOp::kSum);
    }
    return 0;
  }
  if (mode == "skip" || mode == "skip_async") {
    auto t = torch::ones({4096});
    comm->all_reduce(t, ReduceOp::kSum);  // everyone takes part once
    if (rank == 1) {
      stay_busy_elsewhere(60);
      return 0;
    }
    if (mode == "skip")
      comm->all_reduce(t, ReduceOp::kSum);
    else
      comm->all_reduce_async(t, ReduceOp::kAverage, "gradient bucket 2")->wait();
    return 0;
  }
  if (mode == "mismatch") {
    torch::nn::Linear lin(3, 2);
    broadcast_module(*lin, *comm);
    check_agreement(*comm, rank == comm->size() - 1 ? "ffffffffffffffff" : "0123456789abcdef", *lin);
    return 0;
  }
  throw segkd::ConfigError("failure_driver: unknown mode '" + mode + "'");
}

}  // namespace

int main(int argc, char** argv) {
  segkd::dist::init(&argc, &argv);
  std::string mode = argc > 1 ? argv[1] : "";
  int arg = argc > 2 ? std::atoi(argv[2]) : 0;
  int rc = segkd::dist::run_guarded([&] { return run(mode, arg); });
  segkd::dist::finalize();
  return rc;
}
