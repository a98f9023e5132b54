#include "launch/commands.h"
#include "train/commands.h"

namespace segkd::launch {

Command add_eval(CLI::App& root) {
  auto* app = root.add_subcommand("eval", "Evaluate weights on data.val: mIoU, per-class IoU, pixel accuracy");
  struct Args {
    train::ConfigArgs c;
    std::string weights, out;
  };
  auto a = std::make_shared<Args>();
  add_config_options(*app, a->c.config, a->c.overrides);
  app->add_option("--weights", a->weights, "Student weights: a segkd checkpoint (.ckpt) or a state_dict (.pth)")
      ->required();
  app->add_option("--out", a->out, "JSON file for the result (default: <run.work_dir>/eval.json)");
  app->footer("Sliding-window inference: --set eval.mode=slide --set eval.slide_crop=[512,1024]");
  return {app, [a] { return train::run_eval(a->c, a->weights, a->out); }, true};
}

}  // namespace segkd::launch
