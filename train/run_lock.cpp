// Run-directory ownership: run.lock and the start-up rules of segkd train (see run_lock.h).
#include "train/run_lock.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>

#include "common/atomic_file.h"
#include "common/error.h"
#include "common/run_dir.h"
#include "distributed/communicator.h"
#include "train/checkpoint.h"

namespace fs = std::filesystem;

namespace segkd::train {
namespace {

std::string host_name() {
  char buf[256] = {0};
  if (::gethostname(buf, sizeof(buf) - 1) != 0) return "unknown-host";
  return buf;
}

/// The holder recorded in an open lock file ("host H pid P"), or "" when empty.
std::string read_holder(int fd) {
  char buf[512] = {0};
  ssize_t n = ::pread(fd, buf, sizeof(buf) - 1, 0);
  if (n <= 0) return "";
  std::string s(buf, static_cast<size_t>(n));
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
  return s;
}

/// True when `fd` still is the file at `path` (not unlinked by a releasing holder between open and flock).
bool same_file(int fd, const std::string& path) {
  struct stat a {}, b {};
  return ::fstat(fd, &a) == 0 && ::stat(path.c_str(), &b) == 0 && a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

}  // namespace

RunLock::RunLock(const std::string& work_dir) : path_((fs::path(work_dir) / "run.lock").string()) {
  for (int attempt = 0; attempt < 10; ++attempt) {
    fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) throw ConfigError(str_cat("run.work_dir: cannot open ", path_, ": ", errno_reason(errno)));
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
      const int err = errno;
      const std::string holder = read_holder(fd_);
      ::close(fd_);
      fd_ = -1;
      if (err != EWOULDBLOCK) throw ConfigError(str_cat("run.work_dir: cannot lock ", path_, ": ", errno_reason(err)));
      throw ConfigError(str_cat("run.work_dir ", work_dir, " is in use by another segkd run (",
                                holder.empty() ? std::string("holder unknown") : holder, "; lock file ", path_,
                                "): wait for it to finish or choose another --work-dir"));
    }
    if (same_file(fd_, path_)) break;
    ::close(fd_);  // the previous holder removed the file while we opened it: try the new one
    fd_ = -1;
  }
  if (fd_ < 0) throw ConfigError(str_cat("run.work_dir: cannot take ", path_, " (it keeps being replaced)"));
  const std::string stale = read_holder(fd_);
  if (!stale.empty()) {
    spdlog::warn("taking over the stale lock {} of {} (that process is gone)", path_, stale);
  }
  const std::string me = str_cat("host ", host_name(), " pid ", ::getpid(), "\n");
  if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, me.data(), me.size(), 0) != static_cast<ssize_t>(me.size())) {
    const int err = errno;
    ::close(fd_);
    fd_ = -1;
    throw ConfigError(str_cat("run.work_dir: cannot write ", path_, ": ", errno_reason(err)));
  }
}

RunLock::~RunLock() {
  if (fd_ < 0) return;
  ::unlink(path_.c_str());  // while still holding the lock: a waiting opener re-checks same_file()
  ::close(fd_);
}

RunDirClaim::RunDirClaim(const std::string& work_dir, const std::string& resume, bool overwrite)
    : work_dir_(work_dir), overwrite_(overwrite) {
  if (!resume.empty() && overwrite) {
    throw ConfigError("--resume and --overwrite exclude each other: continue the run or start it afresh");
  }
  prepare_run_dir(work_dir);
  lock_ = std::make_unique<RunLock>(work_dir);
  if (!resume.empty()) return;
  auto existing = list_checkpoints(work_dir);
  if (existing.empty() || overwrite) return;
  throw ConfigError(str_cat("run.work_dir ", work_dir, " already holds checkpoints of another run (",
                            existing.size(), ", newest ", fs::path(existing.front().second).filename().string(),
                            "): continue it with --resume auto, start afresh with --overwrite (deletes them), or "
                            "choose another --work-dir"));
}

void RunDirClaim::commit(const std::string& resolved_toml) {
  if (overwrite_) {
    std::error_code ec;
    size_t removed = 0;
    for (const auto& [iter, path] : list_checkpoints(work_dir_)) removed += fs::remove(path, ec) ? 1 : 0;
    for (const char* name : {"checkpoints/latest", "metrics.jsonl", "summary.json"}) {
      fs::remove(fs::path(work_dir_) / name, ec);
    }
    if (removed > 0) spdlog::warn("--overwrite: removed {} checkpoint(s) of the earlier run in {}", removed, work_dir_);
  }
  write_file_atomic((fs::path(work_dir_) / "config.toml").string(), resolved_toml);
}

std::unique_ptr<RunDirClaim> claim_run_dir(dist::Communicator& comm, const std::string& work_dir,
                                           const std::string& resume, bool overwrite) {
  std::unique_ptr<RunDirClaim> claim;
  std::string refusal;
  if (comm.rank() == 0) {
    try {
      claim = std::make_unique<RunDirClaim>(work_dir, resume, overwrite);
    } catch (const Error& e) {
      refusal = e.what();
    }
  }
  refusal = comm.all_gather_string(refusal).front();
  if (!refusal.empty()) throw ConfigError(refusal);
  return claim;
}

}  // namespace segkd::train
