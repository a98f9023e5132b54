#include "train/trainer.h"

#include <dlfcn.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <thread>
#include <torch/cuda.h>

#include "common/env.h"
#include "common/error.h"
#include "common/logging.h"
#include "common/run_dir.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "data/transforms.h"
#include "distributed/communicator.h"
#include "distributed/grad_reducer.h"
#include "distributed/runtime.h"
#include "distributed/sync_batchnorm.h"
#include "losses/objective.h"
#include "models/segmentor.h"
#include "models/weights.h"
#include "train/checkpoint.h"
#include "train/config_diff.h"
#include "train/metrics.h"
#include "train/precision.h"
#include "train/progress.h"
#include "train/run_lock.h"
#include "train/schedule.h"
#include "train/stop_signal.h"
#include "train/teacher.h"
#include "train/teacher_runner.h"

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace segkd::train {
namespace {

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

/// Dropout randomness of iteration `iter` on `rank`: a counter-based seed, so a resumed run draws the same masks.
uint64_t step_seed(uint64_t seed, int64_t iter, int rank) {
  uint64_t x = seed * 0x9E3779B97F4A7C15ULL ^ (static_cast<uint64_t>(iter) + 0x632BE59BD9B4E019ULL) * 0xBF58476D1CE4E5B9ULL ^
               (static_cast<uint64_t>(rank) + 1) * 0x94D049BB133111EBULL;
  x ^= x >> 31;
  return x & 0x7FFFFFFFFFFFFFFFULL;
}

/// Builds a model without its `weights`, then loads them from a .pth or a segkd .ckpt, checking the class count
/// first so a teacher trained for another dataset gets a message that says so.
models::Segmentor build_with_weights(models::ModelOptions cfg, int64_t num_classes, const std::string& key) {
  const std::string weights = cfg.weights;
  cfg.weights.clear();
  auto model = models::build_model(cfg, num_classes);
  if (weights.empty()) return model;
  if (!fs::exists(weights)) throw InputError(str_cat(key, ".weights: file not found: ", weights));
  auto state = fs::path(weights).extension() == ".ckpt" ? read_checkpoint_student(weights) : models::read_pth(weights);
  auto it = state.find("decode_head.conv_seg.weight");
  if (it != state.end() && it->second.size(0) != num_classes) {
    throw ConfigError(str_cat(key, ".weights: ", weights, " predicts ", it->second.size(0),
                              " classes but data.num_classes = ", num_classes));
  }
  models::load_state_dict(*model, state, /*strict=*/true, weights);
  return model;
}

/// SGD parameter groups: {backbone, heads×head_lr_mult, projectors×head_lr_mult}, each split into decay / no-decay
/// when optimizer.no_decay_norm_bias is set. Returns the optimizer and each group's lr multiplier.
std::pair<std::unique_ptr<torch::optim::SGD>, std::vector<double>> make_optimizer(
    const OptimizerOptions& o, models::Segmentor& student, losses::Objective& objective) {
  std::set<torch::TensorImpl*> head;
  for (auto& p : student->head_parameters()) head.insert(p.unsafeGetTensorImpl());
  struct Group {
    std::vector<torch::Tensor> params;
    double mult;
    double decay;
  };
  std::vector<Group> groups(6);
  auto place = [&](const std::string& name, const torch::Tensor& p, int base, double mult) {
    if (!p.requires_grad()) return;
    bool no_decay = o.no_decay_norm_bias && (p.dim() <= 1);
    auto& g = groups[base + (no_decay ? 1 : 0)];
    g.params.push_back(p);
    g.mult = mult;
    g.decay = no_decay ? 0.0 : o.weight_decay;
  };
  for (auto& kv : student->named_parameters()) {
    bool is_head = head.count(kv.value().unsafeGetTensorImpl()) > 0;
    place(kv.key(), kv.value(), is_head ? 2 : 0, is_head ? o.head_lr_mult : 1.0);
  }
  for (auto& kv : objective->named_parameters()) place(kv.key(), kv.value(), 4, o.head_lr_mult);
  std::vector<torch::optim::OptimizerParamGroup> param_groups;
  std::vector<double> mults;
  for (auto& g : groups) {
    if (g.params.empty()) continue;
    auto opts = std::make_unique<torch::optim::SGDOptions>(o.lr * g.mult);
    opts->momentum(o.momentum).nesterov(o.nesterov).weight_decay(g.decay);
    param_groups.emplace_back(g.params, std::move(opts));
    mults.push_back(g.mult);
  }
  auto sgd = std::make_unique<torch::optim::SGD>(param_groups, torch::optim::SGDOptions(o.lr)
                                                                    .momentum(o.momentum)
                                                                    .nesterov(o.nesterov)
                                                                    .weight_decay(o.weight_decay));
  return {std::move(sgd), mults};
}

void set_lr(torch::optim::SGD& sgd, const std::vector<double>& mults, double lr) {
  auto& groups = sgd.param_groups();
  for (size_t i = 0; i < groups.size(); ++i) {
    static_cast<torch::optim::SGDOptions&>(groups[i].options()).lr(lr * mults[i]);
  }
}

std::vector<torch::Tensor> trainable(torch::nn::Module& a, torch::nn::Module& b) {
  std::vector<torch::Tensor> out;
  for (auto& p : a.parameters()) if (p.requires_grad()) out.push_back(p);
  for (auto& p : b.parameters()) if (p.requires_grad()) out.push_back(p);
  return out;
}

/// "RANK:ITER" from SEGKD_FAULT_INJECT: this rank throws at that iteration (tests of fail-together and resume).
int64_t fault_iteration(int rank) {
  const char* spec = std::getenv(env::kFaultInject);
  if (!spec) return -1;
  int r = -1;
  long long it = -1;
  if (std::sscanf(spec, "%d:%lld", &r, &it) != 2) return -1;
  return r == rank ? it : -1;
}

}  // namespace

std::unique_ptr<data::H5Dataset> open_dataset(const std::vector<std::string>& files, int64_t num_classes) {
  auto ds = std::make_unique<data::H5Dataset>(files);
  if (ds->info().num_classes != num_classes) {
    throw ConfigError(str_cat("data.num_classes = ", num_classes, " but dataset ", ds->files().front(), " has ",
                              ds->info().num_classes, " classes"));
  }
  return ds;
}

int configure_threads(int64_t threads, int local_size) {
  int n = static_cast<int>(threads);
  if (n <= 0) {
    int cores = static_cast<int>(std::thread::hardware_concurrency());
    n = std::max(1, cores / std::max(1, local_size));
  }
  at::set_num_threads(n);
  // OpenBLAS keeps its own pool (docs/toolchain.md): size it too when the library is loaded.
  using SetThreads = void (*)(int);
  if (auto fn = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) fn(n);
  return n;
}

std::vector<std::pair<std::string, double>> StepPhases::named() const {
  return {{"data_wait", data_wait}, {"student_forward", student_forward}, {"teacher_forward", teacher_forward},
          {"loss", loss},           {"backward", backward},               {"communication", communication},
          {"optimizer", optimizer}};
}

StepPhases& StepPhases::operator+=(const StepPhases& o) {
  data_wait += o.data_wait;
  student_forward += o.student_forward;
  teacher_forward += o.teacher_forward;
  loss += o.loss;
  backward += o.backward;
  communication += o.communication;
  optimizer += o.optimizer;
  return *this;
}

namespace {

/// Times the phases of a step. On an asynchronous device (CUDA) a lap waits for the device only when `sync` is
/// set, so timing costs nothing on the steps that are not measured.
class Stopwatch {
 public:
  Stopwatch(const torch::Device& device, bool sync) : device_(device), sync_(sync && device.is_cuda()) {}
  /// Seconds since the previous lap (or construction).
  double lap() {
    if (sync_) torch::cuda::synchronize(device_.index());
    auto now = Clock::now();
    double s = std::chrono::duration<double>(now - last_).count();
    last_ = now;
    return s;
  }
  double total() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }

 private:
  torch::Device device_;
  bool sync_;
  Clock::time_point start_ = Clock::now(), last_ = start_;
};

/// The loss values, per-term and per-phase times of the steps since the last progress line. Values stay on the
/// device (one small tensor add per step) until the line is written.
struct Window {
  std::vector<std::string> names;
  torch::Tensor sums;  ///< float64, one entry per name
  std::map<std::string, double> term_seconds;
  StepPhases phases, measured_phases;
  int64_t iters = 0, measured = 0, first_iter = 0;
  double start_train_s = 0;

  void add(const losses::ObjectiveResult& r, const StepPhases& p, bool phases_measured) {
    std::vector<torch::Tensor> values;
    if (iters == 0) names.clear();
    for (const auto& [name, v] : r.values) {
      if (iters == 0) names.push_back(name);
      values.push_back(v.to(torch::kDouble));
    }
    auto stacked = torch::stack(values);
    sums = iters == 0 ? stacked : sums + stacked;
    for (const auto& [name, s] : r.seconds) term_seconds[name] += s;
    phases += p;
    if (phases_measured) measured_phases += p, ++measured;
    ++iters;
  }
  void reset(double train_s, int64_t iter) {
    *this = Window();
    start_train_s = train_s;
    first_iter = iter;
  }
};

}  // namespace

/// One training run: `run()` is the loop; each step of it is a short member function.
class Trainer {
 public:
  Trainer(const Config& cfg, const TrainOptions& options);
  TrainSummary run();

 private:
  void open_run_dir();
  void build_models();
  void build_optimizer();
  void resume();
  void setup_teacher();
  void log_teacher(const torch::Tensor& images);
  bool keep_going();
  void step();
  bool check_finite(const losses::ObjectiveResult& r) const;
  double apply_update(bool finite);
  bool last_iteration() const { return !budget_ && iter_ >= total_; }
  void log_window();
  void maybe_checkpoint(bool last);
  void maybe_evaluate(bool last);
  void checkpoint_now();
  void evaluate_now();
  void stop_if_signalled();
  TrainSummary finish();

  const Config& cfg_;
  const TrainOptions options_;
  const Clock::time_point run_start_ = Clock::now();
  int rank_ = 0, world_ = 1, threads_ = 1;
  torch::Device device_{torch::kCPU};
  std::shared_ptr<dist::Communicator> comm_;
  std::shared_ptr<const data::H5Dataset> train_set_;
  std::unique_ptr<data::H5Dataset> val_set_;
  data::AugmentOptions aug_;

  models::Segmentor student_{nullptr};
  std::optional<models::Segmentor> teacher_;
  std::shared_ptr<models::Int8Segmentor> int8_;
  losses::Objective objective_{nullptr};
  std::unique_ptr<torch::optim::SGD> optimizer_;
  std::vector<double> lr_mults_;
  std::vector<torch::Tensor> params_;
  std::unique_ptr<dist::GradReducer> reducer_;
  std::unique_ptr<LrSchedule> schedule_;
  Precision precision_ = Precision::kFp32;
  std::unique_ptr<LossScaler> scaler_;
  std::unique_ptr<TeacherRunner> runner_;
  std::unique_ptr<data::TrainLoader> loader_;
  std::unique_ptr<MetricsWriter> metrics_;
  std::unique_ptr<RunDirClaim> claim_;  ///< rank 0's hold on the run directory (run.lock) for the whole run
  StopSignals stop_signals_;            ///< SIGTERM / SIGINT: all ranks stop at the same step boundary
  OutputRequest student_request_;

  int64_t iter_ = 0, total_ = 0, fault_at_ = -1, skipped_in_a_row_ = 0;
  int64_t last_checkpoint_ = -1, last_eval_ = -1, start_iter_ = 0;
  std::string run_id_ = new_run_id();  ///< checkpoint ownership (checkpoint.keep prunes only this run's own)
  std::string resumed_from_;           ///< the checkpoint this session resumed from (never pruned)
  double train_s_ = 0, progress_ = 0, lr_ = 0;
  bool budget_ = false;
  bool check_each_step_ = true;  ///< finiteness read every step (CPU, or loss.skip_nonfinite); else per window
  torch::Tensor resumed_ranges_;  ///< int8 teacher ranges from the checkpoint resumed from
  Window window_;
  TrainSummary summary_;
};

Trainer::Trainer(const Config& cfg, const TrainOptions& options) : cfg_(cfg), options_(options) {
  const auto& topo = dist::topology();
  rank_ = topo.rank;
  world_ = topo.size;
  threads_ = configure_threads(cfg.run.threads, topo.local_size);
  // One device per rank: CUDA device local_rank % count when GPUs exist, else the CPU.
  device_ = dist::local_device();
  comm_ = dist::make_communicator(cfg.distributed, device_);
  open_run_dir();
  train_set_ = open_dataset(cfg.data.train, cfg.data.num_classes);
  if (!cfg.data.val.empty()) val_set_ = open_dataset(cfg.data.val, cfg.data.num_classes);
  aug_ = data::AugmentOptions::from(cfg.data);
  build_models();
  build_optimizer();
  resume();
  if (teacher_) setup_teacher();
  loader_ = std::make_unique<data::TrainLoader>(train_set_, aug_, cfg.data.batch_per_rank, cfg.data.workers,
                                                cfg.data.prefetch, rank_, world_,
                                                static_cast<uint64_t>(cfg.run.seed), iter_);
  if (claim_) claim_->commit(cfg.resolved_toml);  // every start-up check has passed: config.toml, --overwrite
  start_iter_ = iter_;
  metrics_ = std::make_unique<MetricsWriter>(cfg.run.work_dir, rank_ == 0);
  budget_ = schedule_->budget_based();
  total_ = budget_ ? std::numeric_limits<int64_t>::max() : schedule_->total_iterations();
  fault_at_ = fault_iteration(rank_);
  student_request_ = objective_->student_request();
  check_each_step_ = device_.is_cpu() || cfg.loss.skip_nonfinite;
  window_.reset(train_s_, iter_);
}

void Trainer::open_run_dir() {
  // Rank 0 claims it (run.lock, another run's checkpoints); a refusal ends every rank alike. Nothing in it changes
  // before claim_->commit() (docs/run-directory.md).
  claim_ = claim_run_dir(*comm_, cfg_.run.work_dir, options_.resume, options_.overwrite);
  setup_logging(cfg_.run.work_dir, rank_, cfg_.log.level);
  spdlog::info("segkd train '{}' | config {} (hash {}) | {} rank(s) on {} node(s) via {} | {} thread(s)/rank | {} | {}",
               cfg_.run.name, cfg_.source_path, cfg_.hash, world_, dist::topology().nodes,
               dist::topology().launcher, threads_, device_.str(), comm_->backend());
}

void Trainer::build_models() {
  const int64_t nc = cfg_.data.num_classes;
  // Identical initialisation on every rank (then broadcast from rank 0 anyway).
  torch::manual_seed(cfg_.run.seed);
  student_ = build_with_weights(cfg_.student, nc, "student");
  losses::Channels teacher_channels;
  if (cfg_.teacher) {
    if (cfg_.teacher->weights.empty()) {
      throw ConfigError("teacher.weights is empty: a teacher must be trained (set teacher.weights to a .pth or .ckpt)");
    }
    teacher_ = build_with_weights(*cfg_.teacher, nc, "teacher");
    teacher_channels = (*teacher_)->feature_channels();
    (*teacher_)->to(device_);  // before folding: folded biases are not registered parameters
    models::prepare_teacher(*teacher_, cfg_.teacher->fold_bn);
  }
  objective_ = losses::Objective(cfg_.loss, cfg_.distill, nc, cfg_.data.ignore_index, student_->feature_channels(),
                                 teacher_channels);
  student_->to(device_);
  objective_->to(device_);
  if (world_ > 1 && cfg_.student.sync_bn) {
    dist::convert_sync_batchnorm(*student_, comm_);
    dist::convert_sync_batchnorm(*objective_, comm_);
  }
  dist::broadcast_module(*student_, *comm_);
  dist::broadcast_module(*objective_, *comm_);
  dist::check_agreement(*comm_, cfg_.hash, *student_);
  spdlog::info("student {}-{}: {:.2f} M parameters{}", cfg_.student.arch, cfg_.student.backbone,
               models::count_parameters(*student_) / 1e6,
               teacher_ ? str_cat(" | teacher ", cfg_.teacher->arch, "-", cfg_.teacher->backbone, ": ",
                                  models::count_parameters(**teacher_) / 1e6, " M (frozen",
                                  cfg_.teacher->fold_bn ? ", BN folded" : "", ")")
                        : std::string(" | no teacher (supervised)"));
}

void Trainer::build_optimizer() {
  std::tie(optimizer_, lr_mults_) = make_optimizer(cfg_.optimizer, student_, objective_);
  params_ = trainable(*student_, *objective_);
  reducer_ = std::make_unique<dist::GradReducer>(comm_, params_, cfg_.distributed);
  schedule_ = std::make_unique<LrSchedule>(cfg_.schedule, cfg_.optimizer.lr);
  // Mixed precision: autocast on CUDA, loss scaling for fp16; a CPU run trains in fp32 whatever run.precision says.
  precision_ = parse_precision(cfg_.run.precision);
  if (precision_ != Precision::kFp32 && !device_.is_cuda()) {
    spdlog::warn("run.precision = {} applies to CUDA devices; this {} run trains in fp32", cfg_.run.precision,
                 device_.str());
  }
  scaler_ = std::make_unique<LossScaler>(precision_ == Precision::kFp16 && device_.is_cuda());
}

void Trainer::resume() {
  if (options_.resume.empty()) return;
  std::string path;
  if (rank_ == 0) {
    if (options_.resume == "auto") {
      path = find_latest_checkpoint(cfg_.run.work_dir).value_or("");
      if (path.empty()) spdlog::info("--resume auto: no checkpoint in {}, starting from scratch", cfg_.run.work_dir);
    } else {
      path = options_.resume;
    }
  }
  path = comm_->all_gather_string(path).front();
  if (path.empty()) return;
  // Changed keys first: a changed model gets its reason, not a tensor-shape mismatch.
  check_resume_config(path, checkpoint_config(path, read_checkpoint_meta(path).config_toml), cfg_.resolved_toml);
  auto meta = load_checkpoint(path, *student_, *objective_, *optimizer_);
  if (!meta.run_id.empty()) run_id_ = meta.run_id;
  resumed_from_ = path;
  iter_ = meta.iteration;
  train_s_ = meta.train_seconds;
  scaler_->restore(meta.loss_scale, meta.loss_scale_clean_steps);
  resumed_ranges_ = meta.teacher_int8_ranges;
  spdlog::info("resumed from {} at iteration {} ({} of training already spent)", path, iter_,
               format_duration(train_s_));
}

void Trainer::setup_teacher() {
  const Precision precision = teacher_precision(*cfg_.teacher, precision_, device_);
  // The run's first batches (a loader of its own, so the training stream is untouched): int8 calibration on a
  // fresh start, and the forward timing of the start-up log.
  data::TrainLoader first(train_set_, aug_, cfg_.data.batch_per_rank, /*workers=*/0, /*prefetch=*/1, rank_, world_,
                          static_cast<uint64_t>(cfg_.run.seed), /*start_iteration=*/0);
  if (precision == Precision::kInt8) {
    int8_ = std::make_shared<models::Int8Segmentor>(*teacher_);
    if (resumed_ranges_.defined()) {
      int8_->set_ranges(resumed_ranges_);  // exactly the ranges the interrupted run used
    } else {
      calibrate_int8(*int8_, first, cfg_.teacher->calibration_batches, *comm_);
    }
  }
  runner_ = std::make_unique<TeacherRunner>(*teacher_, objective_->teacher_request(), cfg_.teacher->concurrent,
                                            threads_, precision, device_, int8_);
  log_teacher(first.next().image.to(device_));
}

void Trainer::log_teacher(const torch::Tensor& images) {
  auto time_forward = [&](auto&& fn) {
    fn();  // warm-up: first-call allocations and weight reorders
    auto t0 = Clock::now();
    fn();
    if (device_.is_cuda()) torch::cuda::synchronize(device_.index());
    return 1000 * seconds_since(t0);
  };
  const double ms = time_forward([&] {
    runner_->start(images);
    runner_->wait();
  });
  std::string versus;
  if (int8_) {
    const auto request = objective_->teacher_request();
    const double fp32_ms = time_forward([&] {
      c10::InferenceMode guard;
      (*teacher_)->forward(images, request);
    });
    versus = fmt::format(" (fp32: {:.0f} ms, {:.1f}x); calibrated on {} batch(es) per rank{}", fp32_ms, fp32_ms / ms,
                         cfg_.teacher->calibration_batches, resumed_ranges_.defined() ? ", ranges from the checkpoint" : "");
  }
  spdlog::info("teacher precision {}: forward {:.0f} ms per batch of {}{}", to_string(runner_->precision()), ms,
               images.size(0), versus);
}

bool Trainer::keep_going() {
  if (!budget_) {
    progress_ = static_cast<double>(iter_) / static_cast<double>(total_);
    return iter_ < total_;
  }
  // Budget mode: every rank follows rank 0's clock, so all stop at the same iteration with the same lr.
  auto clock = torch::tensor({train_s_}, torch::kDouble).to(device_);
  comm_->broadcast(clock, 0);
  train_s_ = clock.item<double>();
  progress_ = train_s_ / schedule_->budget_s();
  return train_s_ < schedule_->budget_s();
}

void Trainer::step() {
  if (iter_ == fault_at_) throw Error(str_cat("injected fault at iteration ", iter_, " (", env::kFaultInject, ")"));
  // On CUDA, one step per log window waits for the device at each phase boundary, so the phase times are real.
  const bool measured = device_.is_cpu() || (iter_ + 1) % cfg_.log.interval == 0;
  Stopwatch watch(device_, /*sync=*/measured);
  StepPhases phases;
  auto batch = loader_->next();
  if (!device_.is_cpu()) {
    batch.image = batch.image.to(device_, /*non_blocking=*/true);
    batch.label = batch.label.to(device_, /*non_blocking=*/true);
  }
  phases.data_wait = watch.lap();
  torch::manual_seed(step_seed(static_cast<uint64_t>(cfg_.run.seed), iter_, rank_));
  if (runner_) runner_->start(batch.image);
  ModelOutput s_out;
  {
    AutocastRegion autocast(precision_, device_);
    s_out = student_->forward(batch.image, student_request_);
  }
  widen_outputs(s_out, /*copy=*/false);
  phases.student_forward = watch.lap();
  ModelOutput t_out;
  if (runner_) t_out = runner_->wait();
  phases.teacher_forward = watch.lap();
  auto result = objective_->forward(s_out, runner_ ? &t_out : nullptr, batch.label, /*timed=*/measured);
  phases.loss = watch.lap();
  const bool finite = check_finite(result);
  optimizer_->zero_grad();
  reducer_->prepare(/*sync=*/true);
  scaler_->scale_loss(finite ? result.total : result.total * 0.0).backward();
  phases.backward = watch.lap();
  reducer_->finish();
  phases.communication = watch.lap();
  lr_ = apply_update(finite);
  phases.optimizer = watch.lap();
  ++iter_;
  train_s_ += watch.total();
  window_.add(result, phases, measured);
}

bool Trainer::check_finite(const losses::ObjectiveResult& r) const {
  // Reading the loss waits for the device: done every step only where that is free (CPU) or needed (skipping).
  if (!check_each_step_) return true;
  if (std::isfinite(r.total.item<double>())) return true;
  if (cfg_.loss.skip_nonfinite) return false;
  std::string bad = "total";
  double bad_value = r.total.item<double>();
  for (const auto& [name, v] : r.values) {
    if (!std::isfinite(v.item<double>())) {
      bad = name;
      bad_value = v.item<double>();
      break;
    }
  }
  throw Error(str_cat("non-finite loss at iteration ", iter_ + 1, ": term '", bad, "' = ", bad_value,
                      " (set loss.skip_nonfinite = true to skip such steps)"));
}

double Trainer::apply_update(bool finite) {
  // fp16: gradients are checked after the all-reduce, so an overflow on one rank skips the step on all.
  const bool overflow = scaler_->unscale(params_);
  scaler_->update(overflow);
  if (overflow) spdlog::debug("iteration {}: fp16 gradient overflow, step skipped, loss scale now {}", iter_, scaler_->scale());
  const double lr = schedule_->lr(iter_, progress_);
  set_lr(*optimizer_, lr_mults_, lr);
  // A step is skipped on every rank alike: after the all-reduce the gradients are the same everywhere.
  bool skip = false;
  if (cfg_.loss.skip_nonfinite) {
    auto flag = torch::tensor({finite ? 0.0 : 1.0}, torch::kDouble).to(device_);
    comm_->all_reduce(flag, dist::ReduceOp::kMax);
    skip = flag.item<double>() > 0;
    if (skip) {
      spdlog::warn("iteration {}: non-finite loss on some rank, step skipped", iter_ + 1);
      // Skipping gets past a bad batch, not past a model that has diverged: that one fails every step. Every
      // rank counts the same skips (the flag is all-reduced), so all stop together.
      if (++skipped_in_a_row_ >= cfg_.loss.max_skipped_steps) {
        throw Error(str_cat("non-finite loss in ", skipped_in_a_row_, " steps in a row (iterations ",
                            iter_ + 2 - skipped_in_a_row_, "-", iter_ + 1, ", loss.max_skipped_steps = ",
                            cfg_.loss.max_skipped_steps, "): training has diverged; lower optimizer.lr"));
      }
    } else {
      skipped_in_a_row_ = 0;
    }
  }
  if (!skip && !overflow) optimizer_->step();
  return lr;
}

void Trainer::log_window() {
  Window& w = window_;
  if (w.iters == 0) return;
  auto mean = (w.sums / static_cast<double>(w.iters)).contiguous();
  comm_->all_reduce(mean, dist::ReduceOp::kAverage);
  mean = mean.cpu();  // the one wait for the device per window
  std::vector<std::pair<std::string, double>> values;
  for (size_t i = 0; i < w.names.size(); ++i) values.emplace_back(w.names[i], mean[i].item<double>());
  // Where steps are not checked one by one (CUDA without loss.skip_nonfinite), the window is the check.
  for (const auto& [name, v] : values) {
    if (!check_each_step_ && !std::isfinite(v)) {
      throw Error(str_cat("non-finite loss in iterations ", w.first_iter + 1, "-", iter_, ": term '", name,
                          "' = ", v, " (set loss.skip_nonfinite = true to find and skip such steps)"));
    }
  }
  const double window_s = std::max(train_s_ - w.start_train_s, 1e-9);
  const double imgs = static_cast<double>(w.iters * cfg_.data.batch_per_rank * world_) / window_s;
  const double eta = budget_ ? schedule_->budget_s() - train_s_ : static_cast<double>(total_ - iter_) * window_s / w.iters;
  std::vector<std::pair<std::string, double>> ms;
  for (const auto& name : w.names) {
    if (w.term_seconds.count(name)) ms.emplace_back(name, 1000 * w.term_seconds[name] / w.iters);
  }
  const StepPhases& phases = w.measured > 0 ? w.measured_phases : w.phases;
  const double n = static_cast<double>(w.measured > 0 ? w.measured : w.iters);
  std::string terms, phase_text;
  for (const auto& [name, v] : values) terms += fmt::format(" {} {:.4f}", name, v);
  for (const auto& [name, s] : phases.named()) {
    ms.emplace_back(name, 1000 * s / n);
    if (name != "teacher_forward" || runner_) phase_text += fmt::format(" {} {:.0f}", name, 1000 * s / n);
  }
  const std::string position = budget_ ? str_cat(iter_, " (", format_duration(train_s_), "/",
                                                 format_duration(schedule_->budget_s()), ")")
                                       : str_cat(iter_, "/", total_);
  spdlog::info("iter {} | {:.1f} img/s |{} | lr {:.3e} | ms/step:{} | eta {}", position, imgs, terms, lr_, phase_text,
               format_duration(eta));
  metrics_->train_event(iter_, lr_, imgs, train_s_, values, ms);
  w.reset(train_s_, iter_);
}

void Trainer::maybe_checkpoint(bool last) {
  if (last || (cfg_.checkpoint.interval > 0 && iter_ % cfg_.checkpoint.interval == 0)) checkpoint_now();
}

void Trainer::maybe_evaluate(bool last) {
  if (last || (cfg_.eval.interval > 0 && iter_ % cfg_.eval.interval == 0)) evaluate_now();
}

void Trainer::checkpoint_now() {
  if (last_checkpoint_ == iter_) return;
  auto t0 = Clock::now();
  if (rank_ == 0) {
    CheckpointMeta meta{iter_, train_s_, cfg_.hash, scaler_->scale(), scaler_->clean_steps()};
    meta.run_id = run_id_;
    meta.config_toml = cfg_.resolved_toml;
    if (int8_) meta.teacher_int8_ranges = int8_->ranges();
    save_checkpoint(cfg_.run.work_dir, meta, *student_, *objective_, *optimizer_,
                    KeepPolicy{cfg_.checkpoint.keep, resumed_from_});
  }
  comm_->barrier();
  last_checkpoint_ = iter_;
  summary_.checkpoint_s += seconds_since(t0);
}

void Trainer::stop_if_signalled() {
  const int sig = agree_stop_signal(*comm_, device_);
  if (!sig) return;
  const bool save = cfg_.checkpoint.on_signal && iter_ > start_iter_;
  if (save) checkpoint_now();
  const std::string why =
      stop_message(sig, iter_, save ? checkpoint_path(cfg_.run.work_dir, iter_) : "", cfg_.checkpoint.on_signal);
  spdlog::warn("{}", why);
  throw Error(why);
}

void Trainer::evaluate_now() {
  if (!val_set_ || last_eval_ == iter_) return;
  auto t0 = Clock::now();
  auto r = evaluate(student_, *val_set_, aug_, cfg_.eval, *comm_, cfg_.data.ignore_index);
  last_eval_ = iter_;
  summary_.eval_s += seconds_since(t0);
  summary_.eval = r;
  summary_.evaluated = true;
  spdlog::info("eval @ iter {}: mIoU {:.2f} | pixel acc {:.2f} | {} images in {}", iter_, 100 * r.miou,
               100 * r.pixel_acc, r.images, format_duration(r.seconds));
  metrics_->eval_event(iter_, r, val_set_->info().class_names);
}

TrainSummary Trainer::run() {
  student_->train();
  while (keep_going()) {
    stop_if_signalled();
    step();
    const bool last = last_iteration();
    if (iter_ % cfg_.log.interval == 0 || last) log_window();
    maybe_checkpoint(last);
    maybe_evaluate(last);
  }
  return finish();
}

TrainSummary Trainer::finish() {
  // A budget run ends between log intervals: its last steps still get their line, checkpoint and evaluation
  // (each at most once per iteration).
  log_window();
  checkpoint_now();
  evaluate_now();
  summary_.iterations = iter_;
  summary_.train_s = train_s_;
  summary_.images_per_s = train_s_ > 0 ? static_cast<double>(iter_ * cfg_.data.batch_per_rank * world_) / train_s_ : 0;
  summary_.wall_clock_s = seconds_since(run_start_);
  if (rank_ == 0) {
    write_summary(cfg_, summary_, world_, val_set_ ? val_set_->info().class_names : std::vector<std::string>{});
  }
  spdlog::info("done: {} iterations | training {} | eval {} | checkpoints {} | {:.1f} img/s{}", iter_,
               format_duration(train_s_), format_duration(summary_.eval_s), format_duration(summary_.checkpoint_s),
               summary_.images_per_s,
               summary_.evaluated ? fmt::format(" | mIoU {:.2f}", 100 * summary_.eval.miou) : std::string());
  comm_->barrier();
  return summary_;
}

TrainSummary train(const Config& cfg, const TrainOptions& options) {
  try {
    return Trainer(cfg, options).run();
  } catch (const std::exception& e) {
    // A failed allocation is almost always the crop or batch (or the model at that size): name them, one line,
    // on the rank it happened on (run_guarded then ends every rank).
    const auto requested = out_of_memory_request(e);
    if (!requested) throw;
    throw Error(out_of_memory_message(
        *requested, str_cat(" with data.crop = [", cfg.data.crop[0], ", ", cfg.data.crop[1],
                            "] and data.batch_per_rank = ", cfg.data.batch_per_rank, " (student ", cfg.student.arch,
                            "-", cfg.student.backbone, cfg.teacher ? ", with a teacher" : "",
                            "): lower data.crop or data.batch_per_rank")));
  }
}

}  // namespace segkd::train
