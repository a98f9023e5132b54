#include "launch/commands.h"
#include "train/commands.h"

namespace segkd::launch {

Command add_report(CLI::App& root) {
  auto* app = root.add_subcommand("report", "Tabulate finished runs (their summary.json) as markdown; draw their curves and predictions");
  struct Args {
    std::vector<std::string> dirs;
    std::string out, panel, curves;
    int64_t panel_images = 4;
  };
  auto a = std::make_shared<Args>();
  app->add_option("run_dirs", a->dirs, "Run directories")->required();
  app->add_option("--out", a->out, "Also write the table to this markdown file");
  app->add_option("--panel", a->panel,
                  "Also write a PNG: validation images, ground truth and each run's prediction side by side "
                  "(latest checkpoint of each run)");
  app->add_option("--panel-images", a->panel_images, "Rows of the panel")->check(CLI::Range(1, 64));
  app->add_option("--curves", a->curves,
                  "Also write a PNG: mIoU and training loss against training time, one line per method (runs of one "
                  "sweep point or compare method are averaged over their seeds, their range drawn as a band)")
      ->type_name("FILE.png");
  return {app, [a] { return train::run_report(a->dirs, a->out, a->panel, a->panel_images, a->curves); }, false};
}

}  // namespace segkd::launch
