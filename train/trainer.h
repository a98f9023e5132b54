#pragma once
/// The distillation training loop (docs/design.md, "One training step").
#include <memory>
#include <string>
#include <vector>

#include "common/config.h"
#include "data/dataset.h"
#include "train/evaluator.h"

namespace segkd::train {

struct TrainOptions {
  std::string resume;  ///< "" = fresh start, "auto" = newest valid checkpoint in work_dir, or a checkpoint path
};

struct TrainSummary {
  int64_t iterations = 0;
  double wall_clock_s = 0;   ///< whole run, start-up to summary
  double train_s = 0;        ///< training time (what the budget counts)
  double eval_s = 0;         ///< evaluation time (excluded from the budget)
  double checkpoint_s = 0;   ///< checkpoint time (excluded from the budget)
  double images_per_s = 0;   ///< global training throughput
  bool evaluated = false;
  EvalResult eval;
};

/// Trains the student of `cfg` (with the teacher's KD terms if `[teacher]` is set) on every rank of the MPI job
/// (dist::init must have run), writing the run directory of docs/formats.md. Throws segkd::Error on bad input.
TrainSummary train(const Config& cfg, const TrainOptions& options = {});

/// Opens the dataset of `files` (data.train or data.val) and checks it has data.num_classes classes.
std::unique_ptr<data::H5Dataset> open_dataset(const std::vector<std::string>& files, int64_t num_classes);

/// Sets intra-op threads (OpenMP and OpenBLAS) for this rank: `threads` > 0, else cores / ranks on this node.
int configure_threads(int64_t threads, int local_size);

}  // namespace segkd::train
