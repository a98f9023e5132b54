#pragma once
/// One path for every file segkd replaces: write to a temporary name in the target's directory, check every
/// write/fsync/close, rename over the target, fsync the directory. On any failure the temporary file is removed, the
/// previous file at the target is untouched, and an Error names the file and the errno ("disk full (ENOSPC)
/// writing FILE"). Nothing here throws from a destructor.
#include <cstddef>
#include <string>

namespace segkd {

/// Atomically replaces `path` with `size` bytes at `data`. Throws segkd::Error naming `path` and the errno.
void write_file_atomic(const std::string& path, const void* data, size_t size);

/// Atomically replaces `path` with `contents` (see above).
void write_file_atomic(const std::string& path, const std::string& contents);

/// The temporary name write_file_atomic() uses for `path`: `.NAME.tmp.PID.COUNTER` in the same directory, unique per
/// writer (process and call). Files matching `.NAME.tmp.*` are safe to remove once their writer is gone.
std::string atomic_temp_name(const std::string& path);

/// "disk full (ENOSPC)", "permission denied (EACCES)", ...: a readable reason for `err` with its symbolic name.
std::string errno_reason(int err);

/// Writes all `size` bytes at `data` to `fd`, retrying short writes and EINTR; a write that accepts no byte is
/// reported as ENOSPC. Returns false with errno set on failure.
bool write_fully(int fd, const void* data, size_t size);

/// fsyncs directory `dir` so a rename or unlink in it is durable. Returns false (errno set) on failure.
bool fsync_directory(const std::string& dir);

}  // namespace segkd
