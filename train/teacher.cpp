#include "train/teacher.h"

#include <spdlog/spdlog.h>

#include "common/error.h"
#include "distributed/runtime.h"
#include "train/trainer.h"

namespace segkd::train {

Precision teacher_precision(const models::ModelOptions& teacher, Precision run_precision, const torch::Device& device) {
  const std::string& name = teacher.precision;
  if (name.empty()) {
    if (device.is_cuda()) return run_precision;
    return teacher.backbone.rfind("resnet", 0) == 0 && teacher.fold_bn ? Precision::kInt8 : Precision::kFp32;
  }
  if (name == "fp32") return Precision::kFp32;
  if (name == "int8") {
    if (device.is_cuda()) {
      throw ConfigError("teacher.precision = \"int8\" runs on the CPU (quantised kernels); on CUDA use fp32, fp16 or bf16");
    }
    if (!teacher.fold_bn) throw ConfigError("teacher.precision = \"int8\" needs teacher.fold_bn = true");
    models::check_int8_supported(teacher.backbone, "teacher.precision");
    return Precision::kInt8;
  }
  if (name == "fp16" || name == "bf16") {
    if (!device.is_cuda()) {
      throw ConfigError(str_cat("teacher.precision = \"", name, "\" runs under CUDA autocast; on the CPU (", device.str(),
                                ") the teacher supports fp32 and int8"));
    }
    return name == "fp16" ? Precision::kFp16 : Precision::kBf16;
  }
  throw ConfigError(str_cat("teacher.precision: must be one of fp32, int8, fp16, bf16 (or unset), got \"", name, "\""));
}

void all_reduce_ranges(torch::Tensor& ranges, dist::Communicator& comm) {
  SEGKD_CHECK(ranges.dim() == 2 && ranges.size(1) == 2 && ranges.scalar_type() == torch::kDouble,
              "all_reduce_ranges: expected (K, 2) float64, got ", ranges.sizes());
  // One collective: max over ranks of (-min, max) is (-(min over ranks), max over ranks).
  auto packed = torch::stack({-ranges.select(1, 0), ranges.select(1, 1)}, 1).contiguous();
  comm.all_reduce(packed, dist::ReduceOp::kMax);
  ranges = torch::stack({-packed.select(1, 0), packed.select(1, 1)}, 1).contiguous();
}

void calibrate_int8(models::Int8Segmentor& model, data::TrainLoader& loader, int64_t batches,
                    dist::Communicator& comm) {
  SEGKD_CHECK(batches >= 1, "teacher.calibration_batches must be >= 1, got ", batches);
  for (int64_t i = 0; i < batches; ++i) model.observe(loader.next().image);
  auto ranges = model.ranges();
  all_reduce_ranges(ranges, comm);
  model.set_ranges(ranges);
}

EvalResult evaluate_at_precision(const Config& cfg, models::Segmentor& model, const std::string& precision,
                                 const data::H5Dataset& val, dist::Communicator& comm, const torch::Device& device) {
  const auto aug = data::AugmentOptions::from(cfg.data);
  if (precision == "fp32") return evaluate(model, val, aug, cfg.eval, comm, cfg.data.ignore_index);
  if (precision != "int8") throw ConfigError(str_cat("--precision: must be fp32 or int8, got \"", precision, "\""));
  if (!device.is_cpu()) throw ConfigError("--precision int8 runs on the CPU (quantised kernels); this rank has " + device.str());
  models::check_int8_supported(cfg.student.backbone, "--precision int8");
  if (cfg.data.train.empty()) throw ConfigError("--precision int8 calibrates on data.train, which is empty");
  const int64_t batches = cfg.teacher ? cfg.teacher->calibration_batches : models::ModelOptions().calibration_batches;
  models::prepare_teacher(model, /*fold_bn=*/true);
  models::Int8Segmentor int8(model);
  std::shared_ptr<const data::H5Dataset> train_set = open_dataset(cfg.data.train, cfg.data.num_classes);
  const auto& topo = dist::topology();
  data::TrainLoader first(train_set, aug, cfg.data.batch_per_rank, /*workers=*/0, /*prefetch=*/1, topo.rank,
                          topo.size, static_cast<uint64_t>(cfg.run.seed), /*start_iteration=*/0);
  calibrate_int8(int8, first, batches, comm);
  spdlog::info("int8: calibrated {} points on {} batch(es) of {} per rank from data.train", int8.point_names().size(),
               batches, cfg.data.batch_per_rank);
  return evaluate([&](const torch::Tensor& x, const OutputRequest& req) { return int8.forward(x, req); },
                  cfg.data.num_classes, device, val, aug, cfg.eval, comm, cfg.data.ignore_index);
}

}  // namespace segkd::train
