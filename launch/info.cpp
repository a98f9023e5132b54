#include "launch/commands.h"
#include "train/commands.h"

namespace segkd::launch {

Command add_info(CLI::App& root) {
  auto* app = root.add_subcommand("info", "Print the resolved config, parameter counts, FLOPs and dataset sizes");
  auto a = std::make_shared<train::ConfigArgs>();
  add_config_options(*app, a->config, a->overrides);
  return {app, [a] { return train::run_info(*a); }, false};
}

}  // namespace segkd::launch
