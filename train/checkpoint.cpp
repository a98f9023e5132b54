#include "train/checkpoint.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <regex>

#include "common/error.h"
#include "common/run_dir.h"

namespace fs = std::filesystem;

namespace segkd::train {
namespace {

constexpr const char* kStudent = "student.";
constexpr const char* kObjective = "objective.";

void write_module(torch::serialize::OutputArchive& ar, const std::string& prefix, torch::nn::Module& m) {
  for (const auto& p : m.named_parameters()) ar.write(prefix + p.key(), p.value().detach());
  for (const auto& b : m.named_buffers()) ar.write(prefix + b.key(), b.value(), /*is_buffer=*/true);
}

void read_module(torch::serialize::InputArchive& ar, const std::string& prefix, torch::nn::Module& m,
                 const std::string& path) {
  torch::NoGradGuard no_grad;
  auto restore = [&](const std::string& key, torch::Tensor& dst, bool is_buffer) {
    torch::Tensor src;
    if (!ar.try_read(prefix + key, src, is_buffer)) {
      throw InputError(str_cat("checkpoint ", path, ": missing tensor '", prefix, key, "'"));
    }
    if (src.sizes() != dst.sizes()) {
      throw InputError(str_cat("checkpoint ", path, ": tensor '", prefix, key, "' has shape ", src.sizes(),
                               " but the model expects ", dst.sizes()));
    }
    dst.copy_(src);
  };
  for (auto& p : m.named_parameters()) restore(p.key(), p.value(), false);
  for (auto& b : m.named_buffers()) restore(b.key(), b.value(), true);
}

void fsync_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) throw InputError(str_cat("cannot reopen ", path, " to flush it"));
  ::fsync(fd);
  ::close(fd);
}

std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& work_dir) {
  std::vector<std::pair<int64_t, std::string>> out;
  fs::path dir = fs::path(work_dir) / "checkpoints";
  if (!fs::is_directory(dir)) return out;
  static const std::regex kName(R"(iter_(\d+)\.ckpt)");
  for (const auto& e : fs::directory_iterator(dir)) {
    std::smatch m;
    std::string name = e.path().filename().string();
    if (std::regex_match(name, m, kName)) out.emplace_back(std::stoll(m[1]), e.path().string());
  }
  std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.first > b.first; });
  return out;
}

torch::serialize::InputArchive open_archive(const std::string& path) {
  torch::serialize::InputArchive ar;
  try {
    ar.load_from(path);
  } catch (const std::exception& e) {
    std::string what = e.what();
    throw InputError(str_cat("checkpoint ", path, " is damaged or not a segkd checkpoint: ",
                             what.substr(0, what.find('\n'))));
  }
  return ar;
}

}  // namespace

std::string checkpoint_path(const std::string& work_dir, int64_t iteration) {
  return (fs::path(work_dir) / "checkpoints" / str_cat("iter_", iteration, ".ckpt")).string();
}

void save_checkpoint(const std::string& work_dir, const CheckpointMeta& meta, torch::nn::Module& student,
                     torch::nn::Module& objective, torch::optim::Optimizer& optimizer, int64_t keep) {
  const std::string path = checkpoint_path(work_dir, meta.iteration);
  fs::create_directories(fs::path(path).parent_path());
  torch::serialize::OutputArchive ar;
  ar.write("meta.iteration", c10::IValue(meta.iteration));
  ar.write("meta.train_seconds", c10::IValue(meta.train_seconds));
  ar.write("meta.config_hash", c10::IValue(meta.config_hash));
  ar.write("meta.loss_scale", c10::IValue(meta.loss_scale));
  ar.write("meta.loss_scale_clean_steps", c10::IValue(meta.loss_scale_clean_steps));
  if (meta.teacher_int8_ranges.defined()) ar.write("meta.teacher_int8_ranges", meta.teacher_int8_ranges);
  write_module(ar, kStudent, student);
  write_module(ar, kObjective, objective);
  torch::serialize::OutputArchive opt;
  optimizer.save(opt);
  ar.write("optimizer", opt);
  const std::string tmp = path + ".tmp";
  ar.save_to(tmp);
  fsync_file(tmp);
  fs::rename(tmp, path);
  write_file_atomic((fs::path(work_dir) / "checkpoints" / "latest").string(),
                    fs::path(path).filename().string() + "\n");
  auto all = list_checkpoints(work_dir);
  for (size_t i = static_cast<size_t>(std::max<int64_t>(keep, 1)); i < all.size(); ++i) {
    std::error_code ec;
    fs::remove(all[i].second, ec);
  }
}

CheckpointMeta load_checkpoint(const std::string& path, torch::nn::Module& student, torch::nn::Module& objective,
                               torch::optim::Optimizer& optimizer) {
  if (!fs::exists(path)) throw InputError(str_cat("checkpoint not found: ", path));
  auto ar = open_archive(path);
  CheckpointMeta meta;
  c10::IValue v;
  if (!ar.try_read("meta.iteration", v)) throw InputError(str_cat("checkpoint ", path, ": no meta.iteration"));
  meta.iteration = v.toInt();
  if (ar.try_read("meta.train_seconds", v)) meta.train_seconds = v.toDouble();
  if (ar.try_read("meta.config_hash", v)) meta.config_hash = v.toStringRef();
  if (ar.try_read("meta.loss_scale", v)) meta.loss_scale = v.toDouble();
  if (ar.try_read("meta.loss_scale_clean_steps", v)) meta.loss_scale_clean_steps = v.toInt();
  torch::Tensor ranges;
  if (ar.try_read("meta.teacher_int8_ranges", ranges)) meta.teacher_int8_ranges = ranges;
  read_module(ar, kStudent, student, path);
  read_module(ar, kObjective, objective, path);
  torch::serialize::InputArchive opt;
  if (!ar.try_read("optimizer", opt)) throw InputError(str_cat("checkpoint ", path, ": no optimizer state"));
  try {
    optimizer.load(opt);
  } catch (const std::exception& e) {
    std::string what = e.what();
    throw InputError(str_cat("checkpoint ", path, ": optimizer state does not match: ",
                             what.substr(0, what.find('\n'))));
  }
  return meta;
}

models::StateDict read_checkpoint_student(const std::string& path) {
  if (!fs::exists(path)) throw InputError(str_cat("checkpoint not found: ", path));
  auto ar = open_archive(path);
  models::StateDict out;
  const std::string prefix = kStudent;
  for (const auto& key : ar.keys()) {
    if (key.rfind(prefix, 0) != 0) continue;
    torch::Tensor t;
    if (ar.try_read(key, t, /*is_buffer=*/false) || ar.try_read(key, t, /*is_buffer=*/true)) {
      out[key.substr(prefix.size())] = t;
    }
  }
  if (out.empty()) throw InputError(str_cat("checkpoint ", path, " holds no student weights"));
  return out;
}

std::optional<std::string> find_latest_checkpoint(const std::string& work_dir) {
  for (const auto& [iter, path] : list_checkpoints(work_dir)) {
    try {
      auto ar = open_archive(path);
      c10::IValue v;
      if (!ar.try_read("meta.iteration", v)) throw InputError(str_cat("checkpoint ", path, ": no meta.iteration"));
      return path;
    } catch (const std::exception& e) {
      spdlog::warn("skipping damaged checkpoint: {}", e.what());
    }
  }
  return std::nullopt;
}

void load_student_weights(torch::nn::Module& student, const std::string& path) {
  if (!fs::exists(path)) throw InputError(str_cat("weights file not found: ", path));
  auto state = fs::path(path).extension() == ".ckpt" ? read_checkpoint_student(path) : models::read_pth(path);
  models::load_state_dict(student, state, /*strict=*/true, path);
}

}  // namespace segkd::train
