#pragma once
/// The frozen teacher of a KD run: its precision (`teacher.precision`), int8 calibration agreed by every rank, and
/// a one-off timing of its forward pass for the start-up log.
#include <torch/torch.h>

#include <memory>
#include <string>

#include "train/config.h"
#include "data/loader.h"
#include "distributed/communicator.h"
#include "models/int8.h"
#include "train/evaluator.h"
#include "train/precision.h"

namespace segkd::train {

/// Resolves `teacher.precision` for `device`: "" follows run.precision on CUDA and is int8 on the CPU when the
/// teacher's backbone runs in int8 (fp32 otherwise). Throws ConfigError for fp16/bf16 on the CPU (naming the
/// precisions the CPU supports), int8 on CUDA, or int8 for a backbone without an int8 path.
Precision teacher_precision(const models::ModelOptions& teacher, Precision run_precision, const torch::Device& device);

/// Calibrates `model`'s activation ranges on the next `batches` batches of `loader` and makes them the same on
/// every rank (element-wise min of minima and max of maxima over ranks), then sets them. Every rank must call it.
void calibrate_int8(models::Int8Segmentor& model, data::TrainLoader& loader, int64_t batches,
                    dist::Communicator& comm);

/// Min over ranks of column 0 and max over ranks of column 1 of a (K, 2) float64 tensor of ranges, in place.
void all_reduce_ranges(torch::Tensor& ranges, dist::Communicator& comm);

/// `segkd eval --precision`: evaluates `model` (on `device`) on `val` in fp32, or ("int8") as an int8 teacher runs:
/// BatchNorm folded, calibrated on the first `calibration_batches` batches of data.train (teacher's setting when
/// the config has a [teacher], else its default). Throws ConfigError for another precision or an empty data.train.
EvalResult evaluate_at_precision(const Config& cfg, models::Segmentor& model, const std::string& precision,
                                 const data::H5Dataset& val, dist::Communicator& comm, const torch::Device& device);

}  // namespace segkd::train
