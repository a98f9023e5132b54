#pragma once
/// Library side of the `segkd` subcommands (launch/ only parses arguments and calls these).
/// Each returns the process exit status and throws segkd::Error with a one-line reason on bad input.
#include <cstdint>
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
/// Options shared by `segkd sweep` and `segkd compare` (the plan engine of train/protocol.h).
struct ProtocolArgs {
  std::string work_dir;  ///< root directory: one run directory per planned run, and the tables
  int64_t seeds = 1;     ///< seeds run.seed + 0 .. seeds-1 for every point or method
  int64_t index = -1;    ///< >= 0: train only this run of the plan (job arrays)
  bool dry_run = false;  ///< print the plan with each run's state and stop
};

/// `segkd sweep CONFIG --grid key=v1,v2 ...`: trains every combination (x seeds) that has not finished, resumes
/// interrupted ones, and rewrites sweep.csv and sweep.md from every finished point in the directory (best marked).
int run_sweep(const ConfigArgs& c, const std::vector<std::string>& grid, const ProtocolArgs& p);

/// What `segkd compare` compares.
struct CompareArgs {
  std::vector<std::string> configs;    ///< one config per method; the first is the baseline
  std::vector<std::string> overrides;  ///< --set, applied to every config
  std::string budget;                  ///< --budget: schedule.budget of every run ("" = the configs' schedules)
  int64_t iterations = 0;              ///< --iterations: schedule.iterations of every run (0 = the configs')
  std::vector<double> extend{1.0};     ///< --extend: schedule.extend factors
};

/// `segkd compare CONFIG...`: one run per (method, seed, extend) under the same schedule, skip/resume as sweep;
/// writes compare.csv, compare.md (mIoU mean ± std over seeds, cost shares, difference to the baseline) and
/// curves.png from every finished run in the directory.
int run_compare(const CompareArgs& a, const ProtocolArgs& p);
/// `segkd info CONFIG`: resolved config, parameter counts, FLOPs per image, dataset sizes.
int run_info(const ConfigArgs& c);
/// `segkd report RUN_DIR... [--out MD] [--panel PNG] [--curves PNG]`: a table of the runs' summary.json (name,
/// models, KD, iterations, time, mIoU); with `panel`, a PNG of `panel_images` validation images, their ground truth
/// and each run's prediction side by side, titled; with `curves`, mIoU and training loss against training time.
int run_report(const std::vector<std::string>& run_dirs, const std::string& markdown_out, const std::string& panel = "",
               int64_t panel_images = 4, const std::string& curves = "");

}  // namespace segkd::train
