#include "launch/commands.h"
#include "train/commands.h"

namespace segkd::launch {

Command add_predict(CLI::App& root) {
  auto* app = root.add_subcommand("predict", "Segment images: <stem>.png (class ids) and <stem>_color.png (overlay)");
  struct Args {
    train::ConfigArgs c;
    std::string weights, input, out;
  };
  auto a = std::make_shared<Args>();
  add_config_options(*app, a->c.config, a->c.overrides);
  app->add_option("--weights", a->weights, "Student weights (.ckpt or .pth)")->required();
  app->add_option("--input", a->input, "An image (PNG/JPEG) or a directory of them")->required();
  app->add_option("--out", a->out, "Output directory")->required();
  return {app, [a] { return train::run_predict(a->c, a->weights, a->input, a->out); }, false};
}

}  // namespace segkd::launch
