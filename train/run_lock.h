#pragma once
/// Ownership of a run directory (docs/run-directory.md): one run at a time holds `run.lock`, a directory that holds
/// another run's checkpoints is not trained into without `--resume` or `--overwrite`, and a start that fails leaves
/// the directory as it was (config.toml and the `--overwrite` clean-up happen only once every check has passed).
#include <memory>
#include <string>

namespace segkd::dist {
class Communicator;
}

namespace segkd::train {

/// `work_dir/run.lock`, held (flock) for the lifetime of the object and naming the holder ("host H pid P").
/// A lock whose holder has died (the kernel released its flock) is taken over with a warning.
class RunLock {
 public:
  /// Takes the lock. Throws ConfigError naming the holder's host and pid when another process holds it.
  explicit RunLock(const std::string& work_dir);
  /// Releases the lock and removes the file; never throws.
  ~RunLock();
  RunLock(const RunLock&) = delete;
  RunLock& operator=(const RunLock&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
};

/// Rank 0's claim on the run directory for `segkd train`: creates it, takes run.lock, and refuses a directory holding
/// checkpoints unless `resume` is set or `overwrite` says to start afresh. Nothing in the directory is changed until
/// commit().
class RunDirClaim {
 public:
  /// Throws ConfigError (another run holds the lock; checkpoints of another run without --resume / --overwrite).
  RunDirClaim(const std::string& work_dir, const std::string& resume, bool overwrite);
  /// Called once the run has passed every start-up check: with `--overwrite` removes the earlier run's checkpoints,
  /// metrics.jsonl and summary.json; then writes `config.toml` (atomically).
  void commit(const std::string& resolved_toml);

 private:
  std::string work_dir_;
  bool overwrite_ = false;
  std::unique_ptr<RunLock> lock_;
};

/// Every rank's side of the claim: rank 0 constructs the RunDirClaim, its refusal (if any) is shared so that every
/// rank throws the same ConfigError. Returns the claim on rank 0, nullptr elsewhere.
std::unique_ptr<RunDirClaim> claim_run_dir(dist::Communicator& comm, const std::string& work_dir,
                                           const std::string& resume, bool overwrite);

}  // namespace segkd::train
