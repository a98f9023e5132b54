#pragma once
/// The process-wide distributed runtime: MPI start-up and shut-down, the job's topology, and the two ways a job
/// ends early without leaving a peer hanging in a collective (`abort_job`, `run_guarded`).
#include <mpi.h>

#include <functional>
#include <string>

namespace segkd::dist {

/// Where this process sits in the job.
struct Topology {
  int rank = 0, size = 1;              ///< world rank and size
  int local_rank = 0, local_size = 1;  ///< rank and size among the processes sharing this node's memory
  int nodes = 1;                       ///< number of distinct nodes (shared-memory domains)
  std::string host;                    ///< this process's host name
  std::string launcher;                ///< "mpirun" | "srun" | "singleton"
};

/// MPI_Init_thread (idempotent; asks for MPI_THREAD_MULTIPLE because each communicator owns a progress thread),
/// topology (MPI_Comm_split_type shared), private dup of COMM_WORLD, sets segkd::set_error_context_rank.
/// Works under mpirun, srun and as a singleton without launcher.
const Topology& init(int* argc, char*** argv);
/// True between init() and finalize().
bool initialized();
/// The topology from init(); a one-process default (rank 0 of 1) before init().
const Topology& topology();
/// The runtime's private duplicate of MPI_COMM_WORLD (errors return codes). Throws DistributedError before init().
MPI_Comm world_comm();
/// Frees the private communicator and calls MPI_Finalize; idempotent; no-op if not initialised.
void finalize();
/// Logs `why` (rank, host) to stderr, flushes the log sinks and aborts every rank (MPI_Abort) with `code`; exits if
/// MPI not initialised.
/// Safe to call from several threads at once: only the first caller prints and aborts.
[[noreturn]] void abort_job(int code, const std::string& why);
/// Runs `body`; on exception prints "segkd: error on rank R (host): what()" to stderr (one line) and, when
/// size > 1, MPI_Abort so no peer waits in a collective; returns body's exit code, or 1 (size 1) on exception.
int run_guarded(const std::function<int()>& body);

}  // namespace segkd::dist
