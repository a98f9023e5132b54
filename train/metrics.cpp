#include "train/metrics.h"

#include <chrono>
#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/run_dir.h"
#include "train/tensorboard.h"
#include "train/trainer.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace segkd::train {
namespace {

json per_class(const std::vector<double>& iou, const std::vector<std::string>& names) {
  json out = json::object();
  for (size_t i = 0; i < iou.size(); ++i) {
    std::string name = i < names.size() && !names[i].empty() ? names[i] : str_cat("class_", i);
    out[name] = std::isnan(iou[i]) ? json(nullptr) : json(iou[i]);
  }
  return out;
}

double unix_time() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

MetricsWriter::MetricsWriter(const std::string& work_dir, bool enabled) {
  if (!enabled) return;
  const std::string path = (fs::path(work_dir) / "metrics.jsonl").string();
  out_.open(path, std::ios::app);
  if (!out_) throw ConfigError(str_cat("run.work_dir: cannot write ", path));
  tensorboard_ = std::make_unique<TensorBoardWriter>(work_dir);
}

MetricsWriter::~MetricsWriter() = default;

void MetricsWriter::write_line(const std::string& line) {
  if (!out_.is_open()) return;
  out_ << line << '\n';
  out_.flush();
}

void MetricsWriter::train_event(int64_t iter, double lr, double images_per_s, double train_s,
                                const std::vector<std::pair<std::string, double>>& values,
                                const std::vector<std::pair<std::string, double>>& ms) {
  if (!out_.is_open()) return;
  json j{{"event", "train"}, {"iter", iter}, {"lr", lr}, {"images_per_s", images_per_s}, {"train_s", train_s},
         {"time", unix_time()}};
  json loss = json::object(), cost = json::object();
  for (auto& [k, v] : values) loss[k] = std::isfinite(v) ? json(v) : json(nullptr);
  for (auto& [k, v] : ms) cost[k] = v;
  j["loss"] = loss;
  j["ms"] = cost;
  write_line(j.dump());
  std::vector<std::pair<std::string, double>> scalars;
  for (auto& [k, v] : values) scalars.emplace_back("loss/" + k, v);
  scalars.emplace_back("lr", lr);
  scalars.emplace_back("images_per_s", images_per_s);
  scalars.emplace_back("train_s", train_s);
  for (auto& [k, v] : ms) scalars.emplace_back("time_ms/" + k, v);
  tensorboard_->scalars(iter, j["time"].get<double>(), scalars);
}

void MetricsWriter::eval_event(int64_t iter, const EvalResult& r, const std::vector<std::string>& class_names) {
  if (!out_.is_open()) return;
  json j{{"event", "eval"}, {"iter", iter}, {"mIoU", r.miou}, {"pixel_acc", r.pixel_acc}, {"mean_acc", r.mean_acc},
         {"images", r.images}, {"seconds", r.seconds}, {"time", unix_time()}};
  j["per_class_iou"] = per_class(r.per_class_iou, class_names);
  write_line(j.dump());
  std::vector<std::pair<std::string, double>> scalars{
      {"eval/mIoU", r.miou}, {"eval/pixel_acc", r.pixel_acc}, {"eval/mean_acc", r.mean_acc}, {"eval/seconds", r.seconds}};
  for (auto& [name, iou] : j["per_class_iou"].items()) {
    if (iou.is_number()) scalars.emplace_back("eval/iou/" + name, iou.get<double>());
  }
  tensorboard_->scalars(iter, j["time"].get<double>(), scalars);
}

std::string per_class_json(const std::vector<double>& iou, const std::vector<std::string>& class_names) {
  return per_class(iou, class_names).dump();
}

/// A term's temperature; 1.0 (the former shared default) for a term that takes none, as summary.json always had.
double tau_of(const losses::DistillOptions& d) {
  for (const auto& f : d.bind_fields()) {
    if (f.name == "tau") return *std::get<double*>(f.ref);
  }
  return 1.0;
}

/// "pspnet-resnet18_v1c-d8": architecture, backbone and output stride (mmseg's "-d8" suffix).
std::string model_name(const models::ModelOptions& m) { return str_cat(m.arch, "-", m.backbone, "-d", m.output_stride); }

void write_summary(const Config& cfg, const TrainSummary& s, int world, const std::vector<std::string>& class_names) {
  json j{{"iterations", s.iterations},
         {"wall_clock_s", s.wall_clock_s},
         {"images_per_s", s.images_per_s},
         {"mIoU", s.evaluated ? json(s.eval.miou) : json(nullptr)},
         {"per_class_iou", s.evaluated ? per_class(s.eval.per_class_iou, class_names) : json(nullptr)},
         {"world_size", world},
         {"config_hash", cfg.hash},
         {"name", cfg.run.name},
         {"train_s", s.train_s},
         {"eval_s", s.eval_s},
         {"checkpoint_s", s.checkpoint_s},
         {"pixel_acc", s.evaluated ? json(s.eval.pixel_acc) : json(nullptr)},
         {"student", model_name(cfg.student)},
         {"teacher", cfg.teacher ? json(model_name(*cfg.teacher)) : json(nullptr)}};
  json kd = json::array();
  for (auto& d : cfg.distill) kd.push_back(json{{"type", d.type}, {"weight", d.weight}, {"tau", tau_of(d)}});
  j["distill"] = kd;
  write_file_atomic((fs::path(cfg.run.work_dir) / "summary.json").string(), j.dump(2) + "\n");
}

}  // namespace segkd::train
