#pragma once
/// segkd configuration: TOML files parsed once, at start-up, into these typed structs and validated there.
///
/// Files may `extends = ["base.toml", ...]` (paths relative to the file, deep merge, later wins, cycles are an
/// error); `--set a.b.c=value` overrides are type-checked against the schema. An unknown key is an error naming
/// the file, the key and the nearest valid key. Nothing deeper in the code reads raw TOML.
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace segkd {

struct RunConfig {
  std::string name = "segkd";
  std::string work_dir = "runs/segkd";
  int64_t seed = 42;
  int64_t threads = 0;  ///< intra-op threads per rank; 0 = cores per node / ranks per node
  std::string precision = "fp32";  ///< fp32 | fp16 (autocast + loss scaling) | bf16 (autocast); CUDA only
};

struct DataConfig {
  std::vector<std::string> train;  ///< HDF5 shard files (globs allowed)
  std::vector<std::string> val;
  int64_t num_classes = 19;
  int64_t ignore_index = 255;
  std::array<int64_t, 2> crop{512, 1024};  ///< height, width; each divisible by 8
  std::array<double, 2> scale_range{0.5, 2.0};
  bool flip = true;
  bool photometric = false;  ///< photometric distortion (brightness, contrast, saturation, hue)
  int64_t batch_per_rank = 2;
  int64_t workers = 2;        ///< loader threads per rank
  int64_t prefetch = 4;       ///< batches queued ahead
  std::array<double, 3> mean{123.675, 116.28, 103.53};  ///< RGB, 0..255 scale
  std::array<double, 3> std{58.395, 57.12, 57.375};
};

/// A segmentation network (student or teacher).
struct ModelConfig {
  std::string arch = "pspnet";            ///< pspnet | deeplabv3
  std::string backbone = "resnet18_v1c";  ///< resnet{18,34,50,101}_v1c | efficientnet_b0
  std::string pretrained;                 ///< backbone-only ImageNet weights (.pth), optional
  std::string weights;                    ///< whole-model weights (.pth or segkd checkpoint), optional
  bool aux_head = true;
  double dropout = 0.1;                   ///< before conv_seg in each head
  int64_t output_stride = 8;              ///< 8 | 16
  bool sync_bn = true;                    ///< student only: SyncBatchNorm when world > 1
  // teacher only
  bool concurrent = false;  ///< teacher forward on a worker thread (and a second CUDA stream on GPU) (README)
  bool fold_bn = true;     ///< fold BatchNorm into the preceding convolution
  /// fp32 | int8 (CPU, quantised kernels) | fp16 | bf16 (CUDA autocast); "" = automatic: int8 on the CPU for a ResNetV1c
  /// teacher, run.precision on CUDA. The student always follows run.precision.
  std::string precision;
  int64_t calibration_batches = 8;  ///< int8: training batches whose activation ranges set the scales
};

struct LossConfig {
  double aux_weight = 0.4;
  std::vector<double> class_weights;  ///< empty = unweighted
  bool skip_nonfinite = false;        ///< skip a step whose loss is NaN/inf instead of stopping
  int64_t max_skipped_steps = 10;     ///< with skip_nonfinite: stop after this many non-finite steps in a row
};

/// One `[[distill]]` table: a KD term and its options (options not used by `type` keep their defaults).
struct DistillConfig {
  std::string type;           ///< logit | feature | cwd | pairwise | ifvd | at | dist
  double weight = 1.0;
  double tau = 1.0;           ///< temperature (logit, cwd, dist)
  std::string resolution = "logits";  ///< logit: "logits" | "label"
  bool mask_ignore = false;   ///< logit: drop pixels whose label is ignore_index
  std::vector<std::string> student{"layer4"};  ///< feature/cwd/pairwise/ifvd/at: student feature names
  std::vector<std::string> teacher{"layer4"};  ///< matching teacher feature names (same length)
  std::string normalize = "none";    ///< feature: none | channel
  std::string projector = "conv1x1"; ///< feature/cwd: conv1x1 | conv1x1_bn
  std::string on = "logits";         ///< cwd: "logits" | "feature"
  int64_t pool_kernel = 2;           ///< pairwise: max-pool kernel (ceil mode)
  double beta = 1.0;                 ///< dist: inter-class weight
  double gamma = 1.0;                ///< dist: intra-class weight
};

struct OptimizerConfig {
  double lr = 0.01;
  double momentum = 0.9;
  bool nesterov = false;
  double weight_decay = 5e-4;
  bool no_decay_norm_bias = false;  ///< no weight decay on normalisation weights and biases
  double head_lr_mult = 1.0;        ///< learning-rate multiplier for decode/aux heads and KD projectors
};

struct ScheduleConfig {
  std::string policy = "poly";  ///< poly | step
  int64_t iterations = 80000;   ///< used when budget is empty
  std::string budget;           ///< training wall-clock budget ("45m", "2h", "90s"); empty = iteration-based
  double power = 0.9;
  int64_t warmup_iters = 0;
  double warmup_ratio = 0.1;    ///< warm-up starts at lr * warmup_ratio
  std::vector<int64_t> steps;   ///< step policy: iterations where lr *= gamma
  double gamma = 0.1;
  double extend = 1.0;          ///< multiplies iterations or budget
  double min_lr = 1e-4;         ///< poly floor
};

struct EvalConfig {
  int64_t interval = 8000;  ///< iterations (0 = only at the end)
  std::string mode = "whole";  ///< whole | slide
  std::array<int64_t, 2> slide_crop{512, 1024};
  std::array<int64_t, 2> slide_stride{341, 683};
};

struct CheckpointConfig {
  int64_t interval = 8000;  ///< iterations (0 = only at the end)
  int64_t keep = 3;         ///< newest checkpoints of this run kept (docs/run-directory.md)
  bool on_signal = true;    ///< SIGTERM/SIGINT: write a checkpoint at the step boundary where training stops
};

struct DistributedConfig {
  std::string backend = "auto";  ///< auto | mpi | nccl
  double bucket_mb = 25;
  double first_bucket_mb = 1;
  double timeout_s = 600;
};

struct LogConfig {
  int64_t interval = 50;
  std::string level = "info";  ///< trace | debug | info | warn | error | off (log_level_names())
};

/// The whole resolved configuration.
struct Config {
  RunConfig run;
  DataConfig data;
  ModelConfig student;
  std::optional<ModelConfig> teacher;  ///< absent = supervised training
  LossConfig loss;
  std::vector<DistillConfig> distill;
  OptimizerConfig optimizer;
  ScheduleConfig schedule;
  EvalConfig eval;
  CheckpointConfig checkpoint;
  DistributedConfig distributed;
  LogConfig log;

  std::string source_path;  ///< the top-level file it was loaded from
  std::string resolved_toml;  ///< canonical TOML of the resolved config (written to the run directory)
  std::string hash;           ///< 16 hex digits of a stable hash of resolved_toml
};

/// Loads `path`, resolves `extends`, applies `overrides` ("a.b.c=value", "distill.0.tau=2"), validates and
/// returns the typed config. Throws ConfigError with file, key (and line where known) on any problem.
Config load_config(const std::string& path, const std::vector<std::string>& overrides = {});

/// Parses a TOML string as if it were the file `virtual_path` (tests, `--config-string`).
Config load_config_from_string(const std::string& toml, const std::string& virtual_path,
                               const std::vector<std::string>& overrides = {});

/// Parses a duration such as "90s", "45m", "2h", "1h30m" into seconds. Throws ConfigError naming `key`.
double parse_duration(const std::string& text, const std::string& key);

/// The FNV-1a 64-bit hash of `text` as 16 hex digits.
std::string stable_hash(const std::string& text);

/// Levenshtein distance (for "did you mean").
size_t edit_distance(const std::string& a, const std::string& b);

}  // namespace segkd
