// Atomic file replacement with every step checked (see atomic_file.h).
#include "common/atomic_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "common/error.h"

namespace fs = std::filesystem;

namespace segkd {
namespace {

std::atomic<unsigned> g_tmp_counter{0};

const char* errno_name(int err) {
  switch (err) {
    case ENOSPC: return "ENOSPC";
    case EDQUOT: return "EDQUOT";
    case EACCES: return "EACCES";
    case EPERM: return "EPERM";
    case EROFS: return "EROFS";
    case EIO: return "EIO";
    case ENOENT: return "ENOENT";
    case ENOTDIR: return "ENOTDIR";
    case EISDIR: return "EISDIR";
    case EFBIG: return "EFBIG";
    case EXDEV: return "EXDEV";
    case EMFILE: return "EMFILE";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    default: return nullptr;
  }
}

/// Removes the temporary file and throws the error of `step` with the errno captured before the cleanup.
[[noreturn]] void fail(const std::string& path, const std::string& tmp, const char* step, int err) {
  if (!tmp.empty()) ::unlink(tmp.c_str());
  throw Error(str_cat(errno_reason(err), " ", step, " ", path));
}

}  // namespace

bool write_fully(int fd, const void* data, size_t size) {
  auto p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::write(fd, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    if (n == 0) {
      errno = ENOSPC;  // a regular file that accepts no byte is full
      return false;
    }
    p += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

std::string errno_reason(int err) {
  if (err == ENOSPC || err == EDQUOT) return str_cat("disk full (", errno_name(err), ")");
  const char* name = errno_name(err);
  std::string text = std::strerror(err);
  if (!text.empty()) text[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(text[0])));
  return name ? str_cat(text, " (", name, ")") : str_cat(text, " (errno ", err, ")");
}

std::string atomic_temp_name(const std::string& path) {
  fs::path target(path);
  fs::path dir = target.parent_path();
  return (dir / ("." + target.filename().string() + ".tmp." + std::to_string(::getpid()) + "." +
                 std::to_string(g_tmp_counter.fetch_add(1))))
      .string();
}

bool fsync_directory(const std::string& dir) {
  int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return false;
  bool ok = ::fsync(dfd) == 0;
  int saved = errno;
  ::close(dfd);
  errno = saved;
  return ok;
}

void write_file_atomic(const std::string& path, const void* data, size_t size) {
  if (fs::is_directory(path)) throw Error(str_cat("cannot write ", path, ": is a directory"));
  // Same directory as the target so rename() stays on one file system and is atomic.
  const std::string tmp = atomic_temp_name(path);
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) fail(path, "", "creating a temporary file to write", errno);
  if (!write_fully(fd, data, size) || ::fsync(fd) != 0) {
    int err = errno;
    ::close(fd);
    fail(path, tmp, "writing", err);
  }
  // close() may report a deferred write error (NFS, some FUSE file systems).
  if (::close(fd) != 0) fail(path, tmp, "closing", errno);
  if (::rename(tmp.c_str(), path.c_str()) != 0) fail(path, tmp, "renaming into", errno);
  // Make the rename itself durable; the data is already in place, so a failure here is not worth losing a run for.
  fsync_directory(fs::path(path).parent_path().string());
}

void write_file_atomic(const std::string& path, const std::string& contents) {
  write_file_atomic(path, contents.data(), contents.size());
}

}  // namespace segkd
