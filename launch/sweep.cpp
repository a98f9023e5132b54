#include "launch/commands.h"
#include "train/commands.h"

namespace segkd::launch {

Command add_sweep(CLI::App& root) {
  auto* app = root.add_subcommand(
      "sweep", "Grid search: train every combination of --grid values, write sweep.csv and sweep.md");
  struct Args {
    train::ConfigArgs c;
    std::vector<std::string> grid;
    std::string work_dir;
  };
  auto a = std::make_shared<Args>();
  add_config_options(*app, a->c.config, a->c.overrides);
  app->add_option("--grid", a->grid, "An axis of the grid, e.g. --grid optimizer.lr=0.01,0.02 (repeatable)")
      ->required()
      ->type_name("KEY=V1,V2,...");
  app->add_option("--work-dir", a->work_dir, "Sweep directory (default run.work_dir); one sub-directory per run");
  return {app, [a] { return train::run_sweep(a->c, a->grid, a->work_dir); }, true};
}

}  // namespace segkd::launch
