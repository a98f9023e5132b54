#pragma once
/// Run-directory outputs: `metrics.jsonl` (one JSON object per log or eval event), the same scalars in a TensorBoard
/// event file (`events.out.tfevents.*`), and `summary.json`.
#include <fstream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "train/config.h"
#include "train/evaluator.h"

namespace segkd::train {

struct TrainSummary;
class TensorBoardWriter;

class MetricsWriter {
 public:
  /// Appends to `work_dir/metrics.jsonl` and starts a TensorBoard event file there when `enabled` (rank 0);
  /// otherwise does nothing.
  MetricsWriter(const std::string& work_dir, bool enabled);
  ~MetricsWriter();
  /// {"event":"train","iter","lr","images_per_s","train_s","loss":{term: value},"ms":{term: ms}, "time"}; in
  /// TensorBoard: loss/<term>, lr, images_per_s, train_s and time_ms/<term or phase> at step `iter`.
  void train_event(int64_t iter, double lr, double images_per_s, double train_s,
                   const std::vector<std::pair<std::string, double>>& values,
                   const std::vector<std::pair<std::string, double>>& ms);
  /// {"event":"eval","iter","mIoU","pixel_acc","mean_acc","per_class_iou":{name: iou|null},"images","seconds"}; in
  /// TensorBoard: eval/mIoU, eval/pixel_acc, eval/mean_acc, eval/seconds and eval/iou/<class> at step `iter`.
  void eval_event(int64_t iter, const EvalResult& r, const std::vector<std::string>& class_names);

 private:
  void write_line(const std::string& json);
  std::ofstream out_;
  std::unique_ptr<TensorBoardWriter> tensorboard_;
};

/// Writes `summary.json` atomically: {"iterations","wall_clock_s","images_per_s","mIoU","per_class_iou",
/// "world_size","config_hash"} plus train_s, eval_s, checkpoint_s, pixel_acc, run name, student, teacher, distill.
void write_summary(const Config& cfg, const TrainSummary& s, int world, const std::vector<std::string>& class_names);

/// Per-class IoU as a JSON object keyed by class name (null for NaN), as a string.
std::string per_class_json(const std::vector<double>& iou, const std::vector<std::string>& class_names);

}  // namespace segkd::train
