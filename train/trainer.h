#pragma once
/// The distillation training loop (docs/design.md, "One training step").
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "train/config.h"
#include "data/dataset.h"
#include "train/evaluator.h"

namespace segkd::train {

struct TrainOptions {
  std::string resume;  ///< "" = fresh start, "auto" = newest valid checkpoint in work_dir, or a checkpoint path
  bool overwrite = false;  ///< start afresh in a run directory that holds another run's checkpoints (deletes them)
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

/// Where a training step's time goes, in seconds, in the order the step runs them. `teacher_forward` is the time
/// the trainer waited for the teacher (its whole forward unless it runs concurrently); `communication` is the
/// gradient all-reduce left over after backward (the exposed part; the rest overlaps backward).
struct StepPhases {
  double data_wait = 0, student_forward = 0, teacher_forward = 0, loss = 0, backward = 0, communication = 0,
         optimizer = 0;
  /// (name, seconds) in step order, for metrics.jsonl and the progress line.
  std::vector<std::pair<std::string, double>> named() const;
  StepPhases& operator+=(const StepPhases& other);
};

class Trainer;

/// Trains the student of `cfg` (with the teacher's KD terms if `[teacher]` is set) on every rank of the MPI job
/// (dist::init must have run), writing the run directory of docs/formats.md. Throws segkd::Error on bad input.
TrainSummary train(const Config& cfg, const TrainOptions& options = {});

/// Opens the dataset of `files` (data.train or data.val) and checks it has data.num_classes classes.
std::unique_ptr<data::H5Dataset> open_dataset(const std::vector<std::string>& files, int64_t num_classes);

/// Sets intra-op threads (OpenMP and OpenBLAS) for this rank: `threads` > 0, else cores / ranks on this node.
int configure_threads(int64_t threads, int local_size);

}  // namespace segkd::train
