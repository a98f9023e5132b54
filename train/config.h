#pragma once
/// The whole segkd configuration: each library's options (models/, data/, losses/, distributed/, train/options.h)
/// assembled into one `Config`, read from TOML once at start-up and validated there. Nothing deeper in the code
/// reads raw TOML.
///
/// Files may `extends = ["base.toml", ...]` (paths relative to the file, deep merge, later wins, cycles are an
/// error); `--set a.b.c=value` overrides are type-checked against the schema. An unknown key is an error naming
/// the file, the key and the nearest valid key; a `[[distill]]` key the table's KD term does not take is an error
/// naming the term and the option (docs/design.md, "Configuration", has the one exception).
#include <optional>
#include <string>
#include <vector>

#include "data/options.h"
#include "distributed/options.h"
#include "losses/options.h"
#include "models/options.h"
#include "train/options.h"

namespace segkd {

/// The whole resolved configuration.
struct Config {
  train::RunOptions run;
  data::DataOptions data;
  models::ModelOptions student;
  std::optional<models::ModelOptions> teacher;  ///< absent = supervised training
  losses::LossOptions loss;
  std::vector<losses::DistillOptions> distill;
  train::OptimizerOptions optimizer;
  train::ScheduleOptions schedule;
  train::EvalOptions eval;
  train::CheckpointOptions checkpoint;
  dist::DistributedOptions distributed;
  train::LogOptions log;

  std::string source_path;    ///< the top-level file it was loaded from
  std::string resolved_toml;  ///< canonical TOML of the resolved config (written to the run directory)
  std::string hash;           ///< 16 hex digits of a stable hash of resolved_toml

  /// Every table's own rules, then the rules across tables (class_weights vs num_classes, KD terms need a
  /// teacher, the student follows run.precision). Throws ConfigError naming the key.
  void validate() const;
};

/// Loads `path`, resolves `extends`, applies `overrides` ("a.b.c=value", "distill.0.tau=2"), validates and
/// returns the typed config. Throws ConfigError with file, key (and line where known) on any problem.
Config load_config(const std::string& path, const std::vector<std::string>& overrides = {});

/// Parses a TOML string as if it were the file `virtual_path` (tests, `--config-string`).
Config load_config_from_string(const std::string& toml, const std::string& virtual_path,
                               const std::vector<std::string>& overrides = {});

}  // namespace segkd
