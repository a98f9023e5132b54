// The run directory: created and probed for writability at start-up.
#include "common/run_dir.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "common/atomic_file.h"
#include "common/error.h"

namespace fs = std::filesystem;

namespace segkd {
namespace {

std::string errno_text() { return std::strerror(errno); }

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
  bool ok = write_fully(fd, "ok", 2);
  int saved = errno;
  ::close(fd);
  ::unlink(probe.c_str());
  if (!ok) throw ConfigError(key + ": cannot write to " + dir + ": " + std::strerror(saved));
}

}  // namespace segkd
