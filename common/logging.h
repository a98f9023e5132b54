#pragma once
/// Logging setup (spdlog). Rank 0 logs to the console; every rank logs to its own file in the run directory
/// (`log.txt` for rank 0, `log.rank<N>.txt` for the others). Code logs through spdlog's default logger
/// (`spdlog::info(...)`), which this configures.
#include <string>
#include <vector>

namespace segkd {

/// The values `log.level` accepts, most verbose first: trace, debug, info, warn, error, off. The one rule for both
/// the config validation and setup_logging().
const std::vector<std::string>& log_level_names();

/// Configures the default logger. `run_dir` empty = console only. `level`: one of log_level_names().
/// Throws ConfigError for an unknown level.
void setup_logging(const std::string& run_dir, int rank, const std::string& level);

/// Flushes every sink (before an abort).
void flush_logs();

}  // namespace segkd
