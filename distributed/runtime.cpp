#include "distributed/runtime.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>

#include "common/env.h"
#include "common/error.h"
#include "common/logging.h"
#include "distributed/checks.h"

namespace segkd::dist {
namespace {

struct State {
  std::mutex mutex;
  bool initialized = false;
  bool we_initialized_mpi = false;
  MPI_Comm world = MPI_COMM_NULL;
  Topology topology;
};

State& state() {
  static State s;
  return s;
}

/// Open MPI's mpirun sets OMPI_COMM_WORLD_RANK (also inside an sbatch allocation, where SLURM_PROCID is inherited
/// from the batch step); srun sets SLURM_PROCID per task and, with PMI-2, PMI_RANK as well — so check in this order.
std::string detect_launcher() {
  if (std::getenv(env::kOmpiRank) != nullptr) return "mpirun";
  if (std::getenv(env::kSlurmProcId) != nullptr) return "srun";
  if (std::getenv(env::kPmiRank) != nullptr) return "mpirun";
  return "singleton";
}

std::string host_name() {
  char buf[256] = {0};
  if (gethostname(buf, sizeof(buf) - 1) != 0) return "unknown-host";
  return buf;
}

std::atomic<bool> g_aborting{false};

}  // namespace

const Topology& init(int* argc, char*** argv) {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.initialized) return s.topology;

  int already = 0;
  SEGKD_MPI_CHECK(MPI_Initialized(&already));
  if (!already) {
    int provided = MPI_THREAD_SINGLE;
    SEGKD_MPI_CHECK(MPI_Init_thread(argc, argv, MPI_THREAD_MULTIPLE, &provided));
    s.we_initialized_mpi = true;
  }

  SEGKD_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &s.world));
  SEGKD_MPI_CHECK(MPI_Comm_set_errhandler(s.world, MPI_ERRORS_RETURN));

  Topology t;
  SEGKD_MPI_CHECK(MPI_Comm_rank(s.world, &t.rank));
  SEGKD_MPI_CHECK(MPI_Comm_size(s.world, &t.size));
  set_error_context_rank(t.rank);

  MPI_Comm local = MPI_COMM_NULL;
  SEGKD_MPI_CHECK(MPI_Comm_split_type(s.world, MPI_COMM_TYPE_SHARED, t.rank, MPI_INFO_NULL, &local));
  SEGKD_MPI_CHECK(MPI_Comm_rank(local, &t.local_rank));
  SEGKD_MPI_CHECK(MPI_Comm_size(local, &t.local_size));
  SEGKD_MPI_CHECK(MPI_Comm_free(&local));
  int leader = t.local_rank == 0 ? 1 : 0;
  SEGKD_MPI_CHECK(MPI_Allreduce(&leader, &t.nodes, 1, MPI_INT, MPI_SUM, s.world));

  t.host = host_name();
  t.launcher = detect_launcher();
  s.topology = t;
  s.initialized = true;
  return s.topology;
}

bool initialized() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  return s.initialized;
}

const Topology& topology() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (s.topology.host.empty()) {
    s.topology.host = host_name();
    s.topology.launcher = detect_launcher();
  }
  return s.topology;
}

MPI_Comm world_comm() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (!s.initialized) throw DistributedError("distributed runtime used before segkd::dist::init()");
  return s.world;
}

void finalize() {
  State& s = state();
  std::lock_guard<std::mutex> lock(s.mutex);
  if (!s.initialized) return;
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) {
    if (s.world != MPI_COMM_NULL) MPI_Comm_free(&s.world);
    if (s.we_initialized_mpi) MPI_Finalize();
  }
  s.world = MPI_COMM_NULL;
  s.initialized = false;
}

void abort_job(int code, const std::string& why) {
  if (g_aborting.exchange(true)) {
    // Another thread is already aborting; it will end the process.
    for (;;) pause();
  }
  const Topology& t = topology();
  std::fprintf(stderr, "segkd: aborting job from rank %d (%s): %s\n", t.rank, t.host.c_str(), why.c_str());
  std::fflush(stderr);
  flush_logs();  // MPI_Abort and _Exit skip destructors: whatever a log sink still buffers is written now
  int mpi_up = 0, mpi_down = 0;
  MPI_Initialized(&mpi_up);
  MPI_Finalized(&mpi_down);
  if (mpi_up && !mpi_down) MPI_Abort(MPI_COMM_WORLD, code == 0 ? 1 : code);
  std::_Exit(code == 0 ? 1 : code);
}

int run_guarded(const std::function<int()>& body) {
  try {
    return body();
  } catch (const std::exception& e) {
    const Topology& t = topology();
    std::fprintf(stderr, "segkd: error on rank %d (%s): %s\n", t.rank, t.host.c_str(), one_line_what(e).c_str());
    std::fflush(stderr);
    if (t.size > 1) abort_job(1, "an exception ended rank " + std::to_string(t.rank));
    return 1;
  } catch (...) {
    const Topology& t = topology();
    std::fprintf(stderr, "segkd: error on rank %d (%s): unknown exception\n", t.rank, t.host.c_str());
    std::fflush(stderr);
    if (t.size > 1) abort_job(1, "an exception ended rank " + std::to_string(t.rank));
    return 1;
  }
}

}  // namespace segkd::dist
