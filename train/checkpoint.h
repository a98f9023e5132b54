#pragma once
/// Checkpoints: student, KD projectors (the Objective's state), optimizer state, iteration, elapsed training time
/// and config hash, in one LibTorch archive written atomically (temporary file, fsync, rename) by rank 0.
#include <torch/torch.h>

#include <optional>
#include <string>

#include "models/weights.h"

namespace segkd::train {

struct CheckpointMeta {
  int64_t iteration = 0;        ///< iterations completed
  double train_seconds = 0;     ///< training wall-clock spent (budget accounting)
  std::string config_hash;
  double loss_scale = 1;        ///< fp16 loss scaler state (LossScaler)
  int64_t loss_scale_clean_steps = 0;
  /// int8 teacher: its calibrated activation ranges ((points, 2) float64), so a resumed run quantises exactly as
  /// the uninterrupted one. Undefined for an fp32 teacher or none.
  torch::Tensor teacher_int8_ranges;
};

/// `checkpoints/iter_<N>.ckpt` inside `work_dir`.
std::string checkpoint_path(const std::string& work_dir, int64_t iteration);

/// Writes the checkpoint atomically, points `checkpoints/latest` at it, and removes all but the newest `keep`.
void save_checkpoint(const std::string& work_dir, const CheckpointMeta& meta, torch::nn::Module& student,
                     torch::nn::Module& objective, torch::optim::Optimizer& optimizer, int64_t keep);

/// Restores everything saved by save_checkpoint. Throws InputError naming the file if it is damaged or does not
/// match the modules (missing key, wrong shape).
CheckpointMeta load_checkpoint(const std::string& path, torch::nn::Module& student, torch::nn::Module& objective,
                               torch::optim::Optimizer& optimizer);

/// Only the student's tensors (mmseg key names) of a checkpoint (for eval/predict/export).
models::StateDict read_checkpoint_student(const std::string& path);

/// `--resume auto`: the newest checkpoint in `work_dir/checkpoints` that opens and reads; each damaged one is
/// reported (warning) and skipped. nullopt when there is none.
std::optional<std::string> find_latest_checkpoint(const std::string& work_dir);

/// Loads student weights from a `.ckpt` (segkd checkpoint) or a `.pth` (PyTorch state_dict), strict.
void load_student_weights(torch::nn::Module& student, const std::string& path);

}  // namespace segkd::train
