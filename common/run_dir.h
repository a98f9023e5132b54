#pragma once
/// The run directory (`work_dir`): created and checked for writability at start-up; files written atomically.
#include <string>

namespace segkd {

/// Creates `dir` (and parents) and checks it is writable. Throws ConfigError naming `key` and the directory.
void prepare_run_dir(const std::string& dir, const std::string& key = "run.work_dir");

/// Writes `contents` to `path` atomically: temporary file in the same directory, flush + fsync, rename.
void write_file_atomic(const std::string& path, const std::string& contents);

}  // namespace segkd
