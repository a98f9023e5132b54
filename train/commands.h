#pragma once
/// Library side of the `segkd` subcommands (launch/ only parses arguments and calls these).
/// Each returns the process exit status and throws segkd::Error with a one-line reason on bad input.
#include <string>
#include <vector>

namespace segkd::train {

struct ConfigArgs {
  std::string config;                  ///< TOML file
  std::vector<std::string> overrides;  ///< --set key=value
};

/// `segkd train CONFIG [--set ...] [--work-dir DIR] [--resume auto|PATH | --overwrite]` (needs dist::init).
int run_train(const ConfigArgs& c, const std::string& work_dir, const std::string& resume, bool overwrite = false);
/// `segkd eval CONFIG --weights PATH [--precision fp32|int8]`: prints and writes (`<work_dir>/eval.json`) mIoU and
/// per-class IoU; int8 evaluates the model as an int8 teacher runs (folded, calibrated on data.train).
int run_eval(const ConfigArgs& c, const std::string& weights, const std::string& out_json,
             const std::string& precision = "fp32");
/// `segkd predict CONFIG --weights PATH --input IMAGE_OR_DIR --out DIR`: `<stem>.png` (class ids) and
/// `<stem>_color.png` (palette over the image).
int run_predict(const ConfigArgs& c, const std::string& weights, const std::string& input, const std::string& out);
/// `segkd export CHECKPOINT --out FILE.pth`: the student as a PyTorch state_dict with mmseg key names.
int run_export(const std::string& checkpoint, const std::string& out);
/// `segkd sweep CONFIG --grid key=v1,v2 ...`: trains every combination, writes sweep.csv and sweep.md.
int run_sweep(const ConfigArgs& c, const std::vector<std::string>& grid, const std::string& work_dir);
/// `segkd info CONFIG`: resolved config, parameter counts, FLOPs per image, dataset sizes.
int run_info(const ConfigArgs& c);
/// `segkd report RUN_DIR... [--out MD] [--panel PNG]`: a table of the runs' summary.json (name, models, KD,
/// iterations, time, mIoU); with `panel`, a PNG of `panel_images` validation images, their ground truth and each
/// run's prediction side by side.
int run_report(const std::vector<std::string>& run_dirs, const std::string& markdown_out, const std::string& panel = "",
               int64_t panel_images = 4);

}  // namespace segkd::train
