#pragma once
/// The `segkd` subcommands: each file registers one with CLI11 and returns how to run it.
#include <CLI/CLI.hpp>

#include <functional>
#include <string>
#include <vector>

namespace segkd::launch {

struct Command {
  CLI::App* app = nullptr;
  std::function<int()> run;
  bool uses_mpi = false;  ///< initialise the distributed runtime before run()
};

/// Adds `CONFIG` and `--set key=value` (repeatable) to `app`.
void add_config_options(CLI::App& app, std::string& config, std::vector<std::string>& overrides);

Command add_train(CLI::App& root);
Command add_eval(CLI::App& root);
Command add_predict(CLI::App& root);
Command add_preprocess(CLI::App& root);
Command add_synth(CLI::App& root);
Command add_export(CLI::App& root);
Command add_sweep(CLI::App& root);
Command add_compare(CLI::App& root);
Command add_info(CLI::App& root);
Command add_report(CLI::App& root);

}  // namespace segkd::launch
