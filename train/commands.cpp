// `segkd train`, `eval`, `export` and `info`.
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
#include "common/paths.h"
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
#include "train/teacher.h"
#include "train/command_util.h"
#include "train/trainer.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace segkd::train {

int run_train(const ConfigArgs& c, const std::string& work_dir, const std::string& resume, bool overwrite) {
  std::vector<std::string> extra;
  if (!work_dir.empty()) extra.push_back("run.work_dir=" + quote_toml(work_dir));
  auto cfg = load_with_overrides(c, extra);
  setup_logging("", dist::topology().rank, cfg.log.level);
  TrainOptions options;
  options.resume = resume;
  options.overwrite = overwrite;
  train(cfg, options);  // an out-of-memory error names data.crop and data.batch_per_rank (train())
  return 0;
}

int run_eval(const ConfigArgs& c, const std::string& weights, const std::string& out_json,
             const std::string& precision) {
  auto cfg = load_with_overrides(c);
  const auto& topo = dist::topology();
  setup_logging("", topo.rank, cfg.log.level);
  configure_threads(cfg.run.threads, topo.local_size);
  if (cfg.data.val.empty()) throw ConfigError("data.val is empty: nothing to evaluate");
  const torch::Device device = dist::local_device();
  auto comm = dist::make_communicator(cfg.distributed, device);
  auto val_set = open_dataset(cfg.data.val, cfg.data.num_classes);
  const auto& val = *val_set;
  auto model = load_student(cfg, weights);
  model->to(device);
  auto r = evaluate_at_precision(cfg, model, precision, val, *comm, device);
  if (topo.rank == 0) {
    std::cout << fmt::format("mIoU {:.2f} | pixel acc {:.2f} | mean acc {:.2f} | {} images | {} | {}\n", 100 * r.miou,
                             100 * r.pixel_acc, 100 * r.mean_acc, r.images, precision, weights);
    const auto& names = val.info().class_names;
    for (size_t k = 0; k < r.per_class_iou.size(); ++k) {
      std::cout << fmt::format("  {:>3} {:<20} {:>6}\n", k, k < names.size() ? names[k] : "", fmt_pct(r.per_class_iou[k]));
    }
    std::string path = out_json.empty() ? (fs::path(cfg.run.work_dir) / "eval.json").string() : out_json;
    if (!fs::path(path).parent_path().empty()) fs::create_directories(fs::path(path).parent_path());
    json j{{"weights", weights}, {"mIoU", r.miou}, {"pixel_acc", r.pixel_acc}, {"mean_acc", r.mean_acc},
           {"images", r.images}, {"config_hash", cfg.hash}, {"world_size", comm->size()}, {"precision", precision}};
    j["per_class_iou"] = json::parse(per_class_json(r.per_class_iou, names));
    write_file_atomic(path, j.dump(2) + "\n");
    std::cout << "written " << path << "\n";
  }
  return 0;
}

int run_export(const std::string& checkpoint, const std::string& out) {
  check_output_not_input("--out", out, "checkpoint", checkpoint);
  auto state = read_checkpoint_student(checkpoint);
  models::write_pth(state, out);
  std::cout << "exported " << state.size() << " tensors from " << checkpoint << " to " << out
            << " (PyTorch state_dict, mmsegmentation key names)\n";
  return 0;
}

int run_info(const ConfigArgs& c) {
  auto cfg = load_with_overrides(c);
  std::cout << "# resolved config: " << cfg.source_path << " (hash " << cfg.hash << ")\n" << cfg.resolved_toml << "\n";
  auto describe = [&](const char* role, models::ModelOptions mc) {
    mc.weights.clear();
    mc.pretrained.clear();
    auto model = models::build_model(mc, cfg.data.num_classes);
    const int64_t h = cfg.data.crop[0], w = cfg.data.crop[1];
    std::cout << fmt::format("{}: {}-{} | {} parameters ({} trainable) | {:.1f} GFLOPs per {}x{} image\n", role,
                             mc.arch, mc.backbone, with_commas(models::count_parameters(*model)),
                             with_commas(models::count_parameters(*model, true)),
                             models::flops_per_image(model, h, w) / 1e9, h, w);
  };
  describe("student", cfg.student);
  if (cfg.teacher) describe("teacher", *cfg.teacher);
  for (auto [name, files] : {std::pair{"train", &cfg.data.train}, std::pair{"val", &cfg.data.val}}) {
    if (files->empty()) continue;
    try {
      data::H5Dataset ds(*files);
      std::cout << fmt::format("{} set: {} images in {} shard(s), {} classes\n", name, ds.size(), ds.files().size(),
                               ds.info().num_classes);
    } catch (const std::exception& e) {
      std::cout << name << " set: unavailable (" << e.what() << ")\n";
    }
  }
  return 0;
}

}  // namespace segkd::train
