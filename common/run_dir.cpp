// The run directory: created and probed for writability at start-up; files replaced atomically.
#include "common/run_dir.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "common/error.h"

namespace fs = std::filesystem;

namespace segkd {
namespace {

std::string errno_text() { return std::strerror(errno); }

/// Writes all of `data` to `fd`, retrying short writes and EINTR.
bool write_all(int fd, const char* data, size_t size) {
  while (size > 0) {
    ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

std::atomic<unsigned> g_tmp_counter{0};

}  // namespace

void prepare_run_dir(const std::string& dir, const std::string& key) {
  if (dir.empty()) throw ConfigError(key + ": the run directory must not be empty");
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) throw ConfigError(key + ": cannot create " + dir + ": " + ec.message());
  if (!fs::is_directory(dir, ec)) throw ConfigError(key + ": " + dir + " is not a directory");
  // Probe by writing: permission bits say nothing about read-only mounts, quotas or ACLs.
  const std::string probe = dir + "/.segkd-write-probe-" + std::to_string(::getpid());
  int fd = ::open(probe.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0) throw ConfigError(key + ": cannot write to " + dir + ": " + errno_text());
  bool ok = write_all(fd, "ok", 2);
  int saved = errno;
  ::close(fd);
  ::unlink(probe.c_str());
  if (!ok) throw ConfigError(key + ": cannot write to " + dir + ": " + std::strerror(saved));
}

void write_file_atomic(const std::string& path, const std::string& contents) {
  fs::path target(path);
  fs::path dir = target.parent_path();
  if (dir.empty()) dir = ".";
  // Same directory as the target so rename() stays on one file system and is atomic.
  const std::string tmp = (dir / ("." + target.filename().string() + ".tmp." + std::to_string(::getpid()) + "." +
                                  std::to_string(g_tmp_counter.fetch_add(1))))
                              .string();
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw Error("cannot write " + path + ": cannot create " + tmp + ": " + errno_text());
  if (!write_all(fd, contents.data(), contents.size()) || ::fsync(fd) != 0) {
    std::string reason = errno_text();
    ::close(fd);
    ::unlink(tmp.c_str());
    throw Error("cannot write " + path + ": " + reason);
  }
  if (::close(fd) != 0 || ::rename(tmp.c_str(), path.c_str()) != 0) {
    std::string reason = errno_text();
    ::unlink(tmp.c_str());
    throw Error("cannot write " + path + ": " + reason);
  }
  // Make the rename itself durable.
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
}

}  // namespace segkd
