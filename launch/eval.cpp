#include "launch/commands.h"
#include "train/commands.h"

namespace segkd::launch {

Command add_eval(CLI::App& root) {
  auto* app = root.add_subcommand("eval", "Evaluate weights on data.val: mIoU, per-class IoU, pixel accuracy");
  struct Args {
    train::ConfigArgs c;
    std::string weights, out, precision = "fp32";
  };
  auto a = std::make_shared<Args>();
  add_config_options(*app, a->c.config, a->c.overrides);
  app->add_option("--weights", a->weights, "Student weights: a segkd checkpoint (.ckpt) or a state_dict (.pth)")
      ->required();
  app->add_option("--precision", a->precision,
                  "fp32, or int8: the model as an int8 teacher runs it (BatchNorm folded, quantised kernels, "
                  "calibrated on the first teacher.calibration_batches batches of data.train)")
      ->check(CLI::IsMember({"fp32", "int8"}))
      ->capture_default_str();
  app->add_option("--out", a->out, "JSON file for the result (default: <run.work_dir>/eval.json)");
  app->footer("Sliding-window inference: --set eval.mode=slide --set eval.slide_crop=[512,1024]");
  return {app, [a] { return train::run_eval(a->c, a->weights, a->out, a->precision); }, true};
}

}  // namespace segkd::launch
