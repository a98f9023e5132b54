#pragma once
/// Checkpoints: student, KD projectors (the Objective's state), optimizer state, iteration, elapsed training time
/// and config hash, in one LibTorch archive serialized in memory and written by rank 0 through write_file_atomic().
/// A 36-byte trailer after the archive holds the archive size, a CRC-32 of archive + run id, the run id and a magic;
/// it is verified whenever a checkpoint is read. Checkpoints without the trailer (older segkd) still load.
#include <torch/torch.h>

#include <optional>
#include <string>
#include <vector>

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
  std::string run_id;           ///< 16 hex digits naming the run that wrote it (kept across resumes); "" if unknown
  std::string config_toml;      ///< the resolved config the run trained with (resume lists changed keys)
};

/// A fresh random run id (16 hex digits).
std::string new_run_id();

/// What `checkpoint.keep` may delete: this run's own checkpoints (same run id), never `resumed_from`.
struct KeepPolicy {
  int64_t keep = 3;            ///< checkpoints of this run to keep, counting the one just written
  std::string resumed_from;    ///< the checkpoint this session resumed from: never deleted
};

/// Checks a checkpoint's trailer and CRC without parsing the archive. Returns "" when it is intact, else the
/// reason ("CRC mismatch", "truncated", ...). `run_id` receives the id from the trailer ("" for an old checkpoint
/// without one, which is reported as intact).
std::string verify_checkpoint(const std::string& path, std::string* run_id = nullptr);

/// `checkpoints/iter_<N>.ckpt` inside `work_dir`.
std::string checkpoint_path(const std::string& work_dir, int64_t iteration);

/// Writes the checkpoint atomically, points `checkpoints/latest` at it, then deletes this run's own intact
/// checkpoints older than it beyond the newest `policy.keep` (damaged files, other runs' files and
/// `policy.resumed_from` are never deleted). Throws segkd::Error ("disk full (ENOSPC) writing ...") on failure,
/// leaving no temporary file and the previous files untouched.
void save_checkpoint(const std::string& work_dir, const CheckpointMeta& meta, torch::nn::Module& student,
                     torch::nn::Module& objective, torch::optim::Optimizer& optimizer, const KeepPolicy& policy);

/// Restores everything saved by save_checkpoint. Throws InputError naming the file if it is damaged or does not
/// match the modules (missing key, wrong shape).
CheckpointMeta load_checkpoint(const std::string& path, torch::nn::Module& student, torch::nn::Module& objective,
                               torch::optim::Optimizer& optimizer);

/// Only the student's tensors (mmseg key names) of a checkpoint (for eval/predict/export).
models::StateDict read_checkpoint_student(const std::string& path);

/// Reads only the meta fields (iteration, hashes, run id, config) of a verified checkpoint.
CheckpointMeta read_checkpoint_meta(const std::string& path);

/// `--resume auto`: the newest checkpoint in `work_dir/checkpoints` whose checksum verifies and whose archive opens;
/// each damaged one is named in a warning and skipped. nullopt when there is none.
std::optional<std::string> find_latest_checkpoint(const std::string& work_dir);

/// The `iter_<N>.ckpt` files in `work_dir/checkpoints`, newest first.
std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& work_dir);

/// Loads student weights from a `.ckpt` (segkd checkpoint) or a `.pth` (PyTorch state_dict), strict.
void load_student_weights(torch::nn::Module& student, const std::string& path);

}  // namespace segkd::train
