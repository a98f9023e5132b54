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

#include "common/env.h"
#include "common/error.h"
#include "common/logging.h"
#include "common/run_dir.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "data/transforms.h"
#include "distributed/communicator.h"
#include "distributed/grad_reducer.h"
#include "distributed/sync_batchnorm.h"
#include "distributed/runtime.h"
#include "losses/objective.h"
#include "models/segmentor.h"
#include "models/weights.h"
#include "train/checkpoint.h"
#include "train/metrics.h"
#include "train/precision.h"
#include "train/progress.h"
#include "train/schedule.h"
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
models::Segmentor build_with_weights(ModelConfig cfg, int64_t num_classes, const std::string& key) {
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
    const OptimizerConfig& o, models::Segmentor& student, losses::Objective& objective) {
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

TrainSummary train(const Config& cfg, const TrainOptions& options) {
  const auto run_start = Clock::now();
  const auto& topo = dist::topology();
  const int rank = topo.rank, world = topo.size;
  const int threads = configure_threads(cfg.run.threads, topo.local_size);
  // One device per rank: CUDA device local_rank % count when GPUs exist, else the CPU.
  const torch::Device device = dist::local_device();
  auto comm = dist::make_communicator(cfg.distributed, device);

  // Run directory: rank 0 creates it; everybody logs into it.
  if (rank == 0) {
    prepare_run_dir(cfg.run.work_dir);
    write_file_atomic((fs::path(cfg.run.work_dir) / "config.toml").string(), cfg.resolved_toml);
  }
  comm->barrier();
  setup_logging(cfg.run.work_dir, rank, cfg.log.level);
  spdlog::info("segkd train '{}' | config {} (hash {}) | {} rank(s) on {} node(s) via {} | {} thread(s)/rank | {} | {}",
               cfg.run.name, cfg.source_path, cfg.hash, world, topo.nodes, topo.launcher, threads, device.str(),
               comm->backend());

  // Data.
  std::shared_ptr<const data::H5Dataset> train_set = open_dataset(cfg.data.train, cfg.data.num_classes);
  std::unique_ptr<data::H5Dataset> val_set;
  if (!cfg.data.val.empty()) val_set = open_dataset(cfg.data.val, cfg.data.num_classes);
  const auto aug = data::AugmentOptions::from(cfg.data);
  const int64_t nc = cfg.data.num_classes;

  // Models and objective; identical initialisation on every rank (then broadcast from rank 0 anyway).
  torch::manual_seed(cfg.run.seed);
  auto student = build_with_weights(cfg.student, nc, "student");
  std::optional<models::Segmentor> teacher;
  losses::Channels teacher_channels;
  if (cfg.teacher) {
    if (cfg.teacher->weights.empty()) {
      throw ConfigError("teacher.weights is empty: a teacher must be trained (set teacher.weights to a .pth or .ckpt)");
    }
    teacher = build_with_weights(*cfg.teacher, nc, "teacher");
    teacher_channels = (*teacher)->feature_channels();
    (*teacher)->to(device);  // before folding: folded biases are not registered parameters
    models::prepare_teacher(*teacher, cfg.teacher->fold_bn);
  }
  losses::Objective objective(cfg.loss, cfg.distill, nc, cfg.data.ignore_index, student->feature_channels(),
                              teacher_channels);
  student->to(device);
  objective->to(device);
  if (world > 1 && cfg.student.sync_bn) {
    dist::convert_sync_batchnorm(*student, comm);
    dist::convert_sync_batchnorm(*objective, comm);
  }
  dist::broadcast_module(*student, *comm);
  dist::broadcast_module(*objective, *comm);
  dist::check_agreement(*comm, cfg.hash, *student);
  spdlog::info("student {}-{}: {:.2f} M parameters{}", cfg.student.arch, cfg.student.backbone,
               models::count_parameters(*student) / 1e6,
               teacher ? str_cat(" | teacher ", cfg.teacher->arch, "-", cfg.teacher->backbone, ": ",
                                 models::count_parameters(**teacher) / 1e6, " M (frozen", cfg.teacher->fold_bn ? ", BN folded" : "", ")")
                       : std::string(" | no teacher (supervised)"));

  auto [optimizer, lr_mults] = make_optimizer(cfg.optimizer, student, objective);
  const std::vector<torch::Tensor> params = trainable(*student, *objective);
  dist::GradReducer reducer(comm, params, cfg.distributed);
  LrSchedule schedule(cfg.schedule, cfg.optimizer.lr);
  // Mixed precision: autocast on CUDA, loss scaling for fp16; a CPU run trains in fp32 whatever run.precision says.
  const Precision precision = parse_precision(cfg.run.precision);
  if (precision != Precision::kFp32 && !device.is_cuda()) {
    spdlog::warn("run.precision = {} applies to CUDA devices; this {} run trains in fp32", cfg.run.precision,
                 device.str());
  }
  LossScaler scaler(precision == Precision::kFp16 && device.is_cuda());

  // Resume.
  int64_t start_iter = 0;
  double train_s = 0;
  if (!options.resume.empty()) {
    std::string path;
    if (rank == 0) {
      if (options.resume == "auto") {
        path = find_latest_checkpoint(cfg.run.work_dir).value_or("");
        if (path.empty()) spdlog::info("--resume auto: no checkpoint in {}, starting from scratch", cfg.run.work_dir);
      } else {
        path = options.resume;
      }
    }
    path = comm->all_gather_string(path).front();
    if (!path.empty()) {
      auto meta = load_checkpoint(path, *student, *objective, *optimizer);
      if (!meta.config_hash.empty() && meta.config_hash != cfg.hash) {
        spdlog::warn("resuming {} written with config hash {} (now {})", path, meta.config_hash, cfg.hash);
      }
      start_iter = meta.iteration;
      train_s = meta.train_seconds;
      scaler.restore(meta.loss_scale, meta.loss_scale_clean_steps);
      spdlog::info("resumed from {} at iteration {} ({} of training already spent)", path, start_iter,
                   format_duration(train_s));
    }
  }

  std::unique_ptr<TeacherRunner> runner;
  if (teacher) {
    runner = std::make_unique<TeacherRunner>(*teacher, objective->teacher_request(), cfg.teacher->concurrent, threads,
                                             precision, device);
  }
  data::TrainLoader loader(train_set, aug, cfg.data.batch_per_rank, cfg.data.workers, cfg.data.prefetch, rank, world,
                           static_cast<uint64_t>(cfg.run.seed), start_iter);
  MetricsWriter metrics(cfg.run.work_dir, rank == 0);

  const bool budget = schedule.budget_based();
  const int64_t total = budget ? std::numeric_limits<int64_t>::max() : schedule.total_iterations();
  const int64_t fault_at = fault_iteration(rank);
  const auto student_request = objective->student_request();
  TrainSummary summary;
  student->train();

  // Window statistics for the progress line.
  std::map<std::string, double> window_values, window_seconds;
  double window_data_s = 0, window_teacher_s = 0, window_start_train_s = train_s;
  int64_t window_iters = 0;
  std::vector<std::string> term_order;

  auto evaluate_now = [&](int64_t iter) {
    if (!val_set) return;
    auto t0 = Clock::now();
    auto r = evaluate(student, *val_set, aug, cfg.eval, *comm, cfg.data.ignore_index);
    summary.eval_s += seconds_since(t0);
    summary.eval = r;
    summary.evaluated = true;
    spdlog::info("eval @ iter {}: mIoU {:.2f} | pixel acc {:.2f} | {} images in {}", iter, 100 * r.miou,
                 100 * r.pixel_acc, r.images, format_duration(r.seconds));
    metrics.eval_event(iter, r, val_set->info().class_names);
  };
  auto checkpoint_now = [&](int64_t iter) {
    auto t0 = Clock::now();
    if (rank == 0) {
      save_checkpoint(cfg.run.work_dir,
                      CheckpointMeta{iter, train_s, cfg.hash, scaler.scale(), scaler.clean_steps()}, *student,
                      *objective, *optimizer, cfg.checkpoint.keep);
    }
    comm->barrier();
    summary.checkpoint_s += seconds_since(t0);
  };

  int64_t iter = start_iter;
  int64_t skipped_in_a_row = 0;  // loss.skip_nonfinite
  while (true) {
    // Budget mode: every rank follows rank 0's clock, so all stop at the same iteration with the same lr.
    double progress;
    if (budget) {
      auto clock = torch::tensor({train_s}, torch::kDouble).to(device);
      comm->broadcast(clock, 0);
      train_s = clock.item<double>();
      if (train_s >= schedule.budget_s()) break;
      progress = train_s / schedule.budget_s();
    } else {
      if (iter >= total) break;
      progress = static_cast<double>(iter) / static_cast<double>(total);
    }
    const auto step_start = Clock::now();
    if (iter == fault_at) throw Error(str_cat("injected fault at iteration ", iter, " (", env::kFaultInject, ")"));

    auto t_data = Clock::now();
    auto batch = loader.next();
    if (!device.is_cpu()) {
      batch.image = batch.image.to(device, /*non_blocking=*/true);
      batch.label = batch.label.to(device, /*non_blocking=*/true);
    }
    window_data_s += seconds_since(t_data);
    torch::manual_seed(step_seed(static_cast<uint64_t>(cfg.run.seed), iter, rank));

    if (runner) runner->start(batch.image);
    ModelOutput s_out;
    {
      AutocastRegion autocast(precision, device);
      s_out = student->forward(batch.image, student_request);
    }
    widen_outputs(s_out, /*copy=*/false);
    ModelOutput t_out;
    if (runner) {
      auto t_wait = Clock::now();
      t_out = runner->wait();
      window_teacher_s += seconds_since(t_wait);
    }
    auto result = objective->forward(s_out, runner ? &t_out : nullptr, batch.label);

    bool finite = std::isfinite(result.total.item<double>());
    if (!finite && !cfg.loss.skip_nonfinite) {
      std::string bad = "total";
      double bad_value = result.total.item<double>();
      for (auto& [name, v] : result.values) {
        if (!std::isfinite(v)) {
          bad = name;
          bad_value = v;
          break;
        }
      }
      throw Error(str_cat("non-finite loss at iteration ", iter + 1, ": term '", bad, "' = ", bad_value,
                          " (set loss.skip_nonfinite = true to skip such steps)"));
    }
    optimizer->zero_grad();
    reducer.prepare(/*sync=*/true);
    scaler.scale_loss(finite ? result.total : result.total * 0.0).backward();
    reducer.finish();
    // fp16: gradients are checked after the all-reduce, so an overflow on one rank skips the step on all.
    const bool overflow = scaler.unscale(params);
    scaler.update(overflow);
    if (overflow) spdlog::debug("iteration {}: fp16 gradient overflow, step skipped, loss scale now {}", iter, scaler.scale());
    const double lr = schedule.lr(iter, progress);
    set_lr(*optimizer, lr_mults, lr);
    // A step is skipped on every rank alike: after the all-reduce the gradients are the same everywhere.
    bool skip = false;
    if (cfg.loss.skip_nonfinite) {
      auto flag = torch::tensor({finite ? 0.0 : 1.0}, torch::kDouble).to(device);
      comm->all_reduce(flag, dist::ReduceOp::kMax);
      skip = flag.item<double>() > 0;
      if (skip) {
        spdlog::warn("iteration {}: non-finite loss on some rank, step skipped", iter + 1);
        // Skipping gets past a bad batch, not past a model that has diverged: that one fails every step. Every
        // rank counts the same skips (the flag is all-reduced), so all stop together.
        if (++skipped_in_a_row >= cfg.loss.max_skipped_steps) {
          throw Error(str_cat("non-finite loss in ", skipped_in_a_row, " steps in a row (iterations ",
                              iter + 2 - skipped_in_a_row, "-", iter + 1, ", loss.max_skipped_steps = ",
                              cfg.loss.max_skipped_steps, "): training has diverged; lower optimizer.lr"));
        }
      } else {
        skipped_in_a_row = 0;
      }
    }
    if (!skip && !overflow) optimizer->step();
    ++iter;
    train_s += seconds_since(step_start);

    // Progress line.
    for (auto& [name, v] : result.values) {
      if (!window_values.count(name)) term_order.push_back(name);
      window_values[name] += v;
    }
    for (auto& [name, s] : result.seconds) window_seconds[name] += s;
    ++window_iters;
    const bool last = budget ? false : iter >= total;
    if (iter % cfg.log.interval == 0 || last) {
      std::vector<double> packed;
      for (auto& name : term_order) packed.push_back(window_values[name] / window_iters);
      auto t = torch::tensor(packed, torch::kDouble).to(device);
      comm->all_reduce(t, dist::ReduceOp::kAverage);
      std::vector<std::pair<std::string, double>> values;
      for (size_t i = 0; i < term_order.size(); ++i) values.emplace_back(term_order[i], t[i].item<double>());  // (syncs with the device)
      const double window_s = std::max(train_s - window_start_train_s, 1e-9);
      const double imgs = static_cast<double>(window_iters * cfg.data.batch_per_rank * world) / window_s;
      double eta = budget ? schedule.budget_s() - train_s
                          : (static_cast<double>(total - iter) * window_s / window_iters);
      std::string terms;
      for (auto& [name, v] : values) terms += fmt::format(" {} {:.4f}", name, v);
      std::string position = budget ? str_cat(iter, " (", format_duration(train_s), "/",
                                              format_duration(schedule.budget_s()), ")")
                                    : str_cat(iter, "/", total);
      spdlog::info("iter {} | {:.1f} img/s |{} | lr {:.3e} | data {:.0f} ms | eta {}", position, imgs, terms, lr,
                   1000 * window_data_s / window_iters, format_duration(eta));
      std::vector<std::pair<std::string, double>> ms;
      for (auto& name : term_order) {
        if (window_seconds.count(name)) ms.emplace_back(name, 1000 * window_seconds[name] / window_iters);
      }
      ms.emplace_back("data_wait", 1000 * window_data_s / window_iters);
      if (runner) ms.emplace_back("teacher_wait", 1000 * window_teacher_s / window_iters);
      metrics.train_event(iter, lr, imgs, train_s, values, ms);
      window_values.clear();
      window_seconds.clear();
      term_order.clear();
      window_data_s = window_teacher_s = 0;
      window_iters = 0;
      window_start_train_s = train_s;
    }
    if (cfg.checkpoint.interval > 0 && iter % cfg.checkpoint.interval == 0 && !last) checkpoint_now(iter);
    if (cfg.eval.interval > 0 && iter % cfg.eval.interval == 0 && !last) evaluate_now(iter);
  }

  summary.iterations = iter;
  summary.train_s = train_s;
  checkpoint_now(iter);
  evaluate_now(iter);
  summary.images_per_s = train_s > 0 ? static_cast<double>(iter * cfg.data.batch_per_rank * world) / train_s : 0;
  summary.wall_clock_s = seconds_since(run_start);
  if (rank == 0) write_summary(cfg, summary, world, val_set ? val_set->info().class_names : std::vector<std::string>{});
  spdlog::info("done: {} iterations | training {} | eval {} | checkpoints {} | {:.1f} img/s{}", iter,
               format_duration(train_s), format_duration(summary.eval_s), format_duration(summary.checkpoint_s),
               summary.images_per_s,
               summary.evaluated ? fmt::format(" | mIoU {:.2f}", 100 * summary.eval.miou) : std::string());
  comm->barrier();
  return summary;
}

}  // namespace segkd::train
