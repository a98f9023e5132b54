#include "launch/commands.h"
#include "train/commands.h"

namespace segkd::launch {

Command add_report(CLI::App& root) {
  auto* app = root.add_subcommand("report", "Tabulate finished runs (their summary.json) as markdown");
  struct Args {
    std::vector<std::string> dirs;
    std::string out;
  };
  auto a = std::make_shared<Args>();
  app->add_option("run_dirs", a->dirs, "Run directories")->required();
  app->add_option("--out", a->out, "Also write the table to this markdown file");
  return {app, [a] { return train::run_report(a->dirs, a->out); }, false};
}

}  // namespace segkd::launch
