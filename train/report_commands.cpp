// `segkd report`: tables of finished runs.
#include "train/commands.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "train/config.h"
#include "common/error.h"
#include "common/logging.h"
#include "common/run_dir.h"
#include "data/dataset.h"
#include "data/image_io.h"
#include "data/transforms.h"
#include "distributed/communicator.h"
#include "distributed/runtime.h"
#include "models/segmentor.h"
#include "models/weights.h"
#include "train/checkpoint.h"
#include "train/evaluator.h"
#include "train/metrics.h"
#include "train/progress.h"
#include "train/command_util.h"
#include "train/curves.h"
#include "train/trainer.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace segkd::train {

int run_report(const std::vector<std::string>& run_dirs, const std::string& markdown_out, const std::string& panel,
               int64_t panel_images, const std::string& curves) {
  std::string md =
      "| run | student | teacher | KD | iterations | train time | img/s | mIoU |\n"
      "|---|---|---|---|---|---|---|---|\n";
  for (const auto& dir : run_dirs) {
    const auto path = (fs::path(dir) / "summary.json").string();
    std::ifstream in(path);
    if (!in) throw InputError(str_cat("no summary.json in ", dir, " (has the run finished?)"));
    json j;
    try {
      in >> j;
    } catch (const std::exception& e) {
      throw InputError(str_cat(path, ": not valid JSON: ", e.what()));
    }
    std::string kd;
    for (auto& d : j.value("distill", json::array())) {
      const auto type = d.value("type", std::string("?"));
      const auto takes = losses::DistillOptions(type).keys();  // the others have no tau
      const bool uses_tau = std::find(takes.begin(), takes.end(), "tau") != takes.end();
      kd += (kd.empty() ? "" : "+") +
            (uses_tau ? fmt::format("{}(w={},τ={})", type, d.value("weight", 0.0), d.value("tau", 0.0))
                      : fmt::format("{}(w={})", type, d.value("weight", 0.0)));
    }
    auto miou = j.contains("mIoU") && j["mIoU"].is_number() ? fmt::format("{:.2f}", 100 * j["mIoU"].get<double>())
                                                          : std::string("-");
    md += fmt::format("| {} | {} | {} | {} | {} | {} | {:.1f} | {} |\n", j.value("name", dir),
                      j.value("student", std::string("?")),
                      j["teacher"].is_string() ? j["teacher"].get<std::string>() : std::string("-"),
                      kd.empty() ? "-" : kd, j.value("iterations", 0), format_duration(j.value("train_s", 0.0)),
                      j.value("images_per_s", 0.0), miou);
  }
  std::cout << md;
  if (!markdown_out.empty()) write_file_atomic(markdown_out, md);
  if (!panel.empty()) write_panel(run_dirs, panel, panel_images);
  if (!curves.empty()) {
    write_curves(run_dirs, curves, "segkd report");
    std::cout << "wrote " << curves << ": mIoU and training loss against training time\n";
  }
  return 0;
}

}  // namespace segkd::train
