#pragma once
/// The run directory (`work_dir`): created and checked for writability at start-up; files written atomically.
#include <string>

#include "common/atomic_file.h"  // write_file_atomic(): every file in the run directory is replaced through it

namespace segkd {

/// Creates `dir` (and parents) and checks it is writable. Throws ConfigError naming `key` and the directory.
void prepare_run_dir(const std::string& dir, const std::string& key = "run.work_dir");


}  // namespace segkd
