// Logging setup: one spdlog default logger per process, rebuilt on every call so a console-only logger set up
// before the run directory exists can later be replaced by one that also writes the per-rank file.
#include "common/logging.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <filesystem>
#include <memory>
#include <vector>

#include "common/error.h"

namespace segkd {
namespace {

/// "[2026-11-22 03:30:01.123] [info] message"
constexpr const char* kPattern = "[%Y-%m-%d %H:%M:%S.%e] [%l] %v";

/// log_level_names() and the spdlog level of each, in the same order.
constexpr spdlog::level::level_enum kLevels[] = {spdlog::level::trace, spdlog::level::debug, spdlog::level::info,
                                                 spdlog::level::warn,  spdlog::level::err,   spdlog::level::off};

spdlog::level::level_enum parse_level(const std::string& level) {
  // spdlog::level::from_str maps unknown names to `off`; a typo must not silence the logs.
  const auto& names = log_level_names();
  std::string list;
  for (size_t i = 0; i < names.size(); ++i) {
    if (level == names[i]) return kLevels[i];
    list += (i == 0 ? "" : "|") + names[i];
  }
  throw ConfigError("log.level = \"" + level + "\": must be one of " + list);
}

}  // namespace

const std::vector<std::string>& log_level_names() {
  static const std::vector<std::string> names{"trace", "debug", "info", "warn", "error", "off"};
  return names;
}

void setup_logging(const std::string& run_dir, int rank, const std::string& level) {
  const auto lvl = parse_level(level);
  std::vector<spdlog::sink_ptr> sinks;
  // Console on stderr so stdout stays clean for command output (`segkd info` prints the config there).
  if (rank == 0) sinks.push_back(std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
  if (!run_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(run_dir, ec);
    const std::string file =
        run_dir + (rank == 0 ? std::string("/log.txt") : "/log.rank" + std::to_string(rank) + ".txt");
    try {
      // Append: a resumed run continues the same log.
      sinks.push_back(std::make_shared<spdlog::sinks::basic_file_sink_mt>(file, /*truncate=*/false));
    } catch (const spdlog::spdlog_ex& e) {
      throw ConfigError("run.work_dir: cannot open log file " + file + ": " + e.what());
    }
  }
  auto logger = std::make_shared<spdlog::logger>("segkd", sinks.begin(), sinks.end());
  logger->set_pattern(kPattern);
  logger->set_level(lvl);
  logger->flush_on(spdlog::level::trace);  // few lines per minute: flush each so a crash loses nothing
  spdlog::set_default_logger(logger);
}

void flush_logs() {
  if (auto logger = spdlog::default_logger()) logger->flush();
  spdlog::apply_all([](const std::shared_ptr<spdlog::logger>& l) { l->flush(); });
}

}  // namespace segkd
