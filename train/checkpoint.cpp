#include "train/checkpoint.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <zlib.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <regex>

#include "common/error.h"
#include "common/atomic_file.h"

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

constexpr char kMagic[8] = {'S', 'E', 'G', 'K', 'D', 'C', 'K', '1'};
constexpr size_t kRunIdSize = 16;
constexpr size_t kTrailerSize = 8 + 4 + kRunIdSize + sizeof(kMagic);

std::vector<char> read_whole_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(str_cat("checkpoint ", path, ": cannot open"));
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw InputError(str_cat("checkpoint ", path, ": read error"));
  return bytes;
}

uint64_t get_le(const char* p, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
  return v;
}

void put_le(std::string& out, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}

uint32_t crc_of(const char* archive, size_t size, const char* run_id) {
  uLong crc = crc32(0L, Z_NULL, 0);
  // zlib takes uInt lengths: feed in 1 GiB pieces.
  for (size_t off = 0; off < size; off += (1u << 30)) {
    crc = crc32(crc, reinterpret_cast<const Bytef*>(archive + off), static_cast<uInt>(std::min<size_t>(size - off, 1u << 30)));
  }
  return static_cast<uint32_t>(crc32(crc, reinterpret_cast<const Bytef*>(run_id), kRunIdSize));
}

/// Where the archive ends in `bytes` and the run id of the trailer. Throws InputError on a damaged trailer or CRC;
/// a file without the trailer (older segkd) is all archive, run id "".
size_t checked_archive_size(const std::vector<char>& bytes, const std::string& path, std::string* run_id) {
  if (run_id) run_id->clear();
  if (bytes.size() < kTrailerSize ||
      std::memcmp(bytes.data() + bytes.size() - sizeof(kMagic), kMagic, sizeof(kMagic)) != 0) {
    return bytes.size();
  }
  const char* tail = bytes.data() + bytes.size() - kTrailerSize;
  const uint64_t size = get_le(tail, 8);
  if (size != bytes.size() - kTrailerSize) {
    throw InputError(str_cat("checkpoint ", path, " is damaged: ", bytes.size(), " bytes but the trailer records ",
                             size, " + ", kTrailerSize, " (truncated or appended to)"));
  }
  const uint32_t stored = static_cast<uint32_t>(get_le(tail + 8, 4));
  const uint32_t actual = crc_of(bytes.data(), size, tail + 12);
  if (stored != actual) {
    throw InputError(str_cat("checkpoint ", path, " is damaged: CRC-32 of its content is ", std::hex, actual,
                             " but was ", stored, " when written"));
  }
  if (run_id) run_id->assign(tail + 12, kRunIdSize);
  return size;
}

/// A verified archive with the bytes it was parsed from.
struct OpenedArchive {
  std::vector<char> bytes;
  std::string run_id;
  torch::serialize::InputArchive ar;
};

OpenedArchive open_archive(const std::string& path) {
  if (fs::is_directory(path)) throw InputError(str_cat("checkpoint ", path, " is a directory, not a file"));
  OpenedArchive out;
  out.bytes = read_whole_file(path);
  const size_t size = checked_archive_size(out.bytes, path, &out.run_id);
  try {
    out.ar.load_from(out.bytes.data(), size);
  } catch (const std::exception& e) {
    std::string what = e.what();
    throw InputError(str_cat("checkpoint ", path, " is damaged or not a segkd checkpoint: ",
                             what.substr(0, what.find('\n'))));
  }
  return out;
}

/// Deletes this run's own intact checkpoints older than `newest` beyond `policy.keep` (see save_checkpoint).
void prune(const std::string& work_dir, int64_t newest, const std::string& run_id, const KeepPolicy& policy) {
  int64_t kept = 1;  // the one just written
  std::error_code ec;
  const fs::path protect = policy.resumed_from.empty() ? fs::path() : fs::weakly_canonical(policy.resumed_from, ec);
  for (const auto& [iter, path] : list_checkpoints(work_dir)) {
    if (iter >= newest) continue;
    std::string owner;
    if (!verify_checkpoint(path, &owner).empty() || owner.empty() || owner != run_id) continue;
    const bool resumed = !protect.empty() && fs::weakly_canonical(path, ec) == protect;
    if (kept < policy.keep || resumed) {
      ++kept;
      continue;
    }
    if (!fs::remove(path, ec) && ec) spdlog::warn("checkpoint.keep: cannot remove {}: {}", path, ec.message());
  }
}

}  // namespace

std::string checkpoint_path(const std::string& work_dir, int64_t iteration) {
  return (fs::path(work_dir) / "checkpoints" / str_cat("iter_", iteration, ".ckpt")).string();
}

std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& work_dir) {
  std::vector<std::pair<int64_t, std::string>> out;
  fs::path dir = fs::path(work_dir) / "checkpoints";
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  static const std::regex kName(R"(iter_(\d{1,18})\.ckpt)");
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    std::smatch m;
    std::string name = e.path().filename().string();
    if (std::regex_match(name, m, kName)) out.emplace_back(std::stoll(m[1]), e.path().string());
  }
  std::sort(out.begin(), out.end(), [](auto& a, auto& b) { return a.first > b.first; });
  return out;
}

std::string new_run_id() {
  std::random_device rd;
  const uint64_t v = (static_cast<uint64_t>(rd()) << 32) ^ rd() ^ static_cast<uint64_t>(::getpid());
  return fmt::format("{:016x}", v);
}

std::string verify_checkpoint(const std::string& path, std::string* run_id) {
  try {
    auto bytes = read_whole_file(path);
    checked_archive_size(bytes, path, run_id);
    return "";
  } catch (const std::exception& e) {
    return e.what();
  }
}

void save_checkpoint(const std::string& work_dir, const CheckpointMeta& meta, torch::nn::Module& student,
                     torch::nn::Module& objective, torch::optim::Optimizer& optimizer, const KeepPolicy& policy) {
  const std::string path = checkpoint_path(work_dir, meta.iteration);
  fs::create_directories(fs::path(path).parent_path());
  std::string run_id = meta.run_id.empty() ? new_run_id() : meta.run_id;
  run_id.resize(kRunIdSize, '0');
  torch::serialize::OutputArchive ar;
  ar.write("meta.iteration", c10::IValue(meta.iteration));
  ar.write("meta.train_seconds", c10::IValue(meta.train_seconds));
  ar.write("meta.config_hash", c10::IValue(meta.config_hash));
  ar.write("meta.loss_scale", c10::IValue(meta.loss_scale));
  ar.write("meta.loss_scale_clean_steps", c10::IValue(meta.loss_scale_clean_steps));
  if (meta.teacher_int8_ranges.defined()) ar.write("meta.teacher_int8_ranges", meta.teacher_int8_ranges);
  ar.write("meta.config_toml", c10::IValue(meta.config_toml));
  write_module(ar, kStudent, student);
  write_module(ar, kObjective, objective);
  torch::serialize::OutputArchive opt;
  optimizer.save(opt);
  ar.write("optimizer", opt);
  // Serialized in memory: LibTorch's file writer throws from a destructor on a full disk (std::terminate); the
  // bytes go to disk through write_file_atomic, which checks every step.
  std::string bytes;
  ar.save_to([&bytes](const void* data, size_t size) -> size_t {
    bytes.append(static_cast<const char*>(data), size);
    return size;
  });
  const size_t archive_size = bytes.size();
  const uint32_t crc = crc_of(bytes.data(), archive_size, run_id.data());
  put_le(bytes, archive_size, 8);
  put_le(bytes, crc, 4);
  bytes += run_id;
  bytes.append(kMagic, sizeof(kMagic));
  write_file_atomic(path, bytes);
  write_file_atomic((fs::path(work_dir) / "checkpoints" / "latest").string(),
                    fs::path(path).filename().string() + "\n");
  prune(work_dir, meta.iteration, run_id, policy);
}

namespace {

CheckpointMeta meta_of(OpenedArchive& opened, const std::string& path) {
  auto& ar = opened.ar;
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
  if (ar.try_read("meta.config_toml", v)) meta.config_toml = v.toStringRef();
  meta.run_id = opened.run_id;
  return meta;
}

}  // namespace

CheckpointMeta read_checkpoint_meta(const std::string& path) {
  if (!fs::exists(path)) throw InputError(str_cat("checkpoint not found: ", path));
  auto opened = open_archive(path);
  return meta_of(opened, path);
}

CheckpointMeta load_checkpoint(const std::string& path, torch::nn::Module& student, torch::nn::Module& objective,
                               torch::optim::Optimizer& optimizer) {
  if (!fs::exists(path)) throw InputError(str_cat("checkpoint not found: ", path));
  auto opened = open_archive(path);
  CheckpointMeta meta = meta_of(opened, path);
  auto& ar = opened.ar;
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
  auto opened = open_archive(path);
  auto& ar = opened.ar;
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
      auto opened = open_archive(path);  // verifies the CRC
      meta_of(opened, path);
      return path;
    } catch (const std::exception& e) {
      spdlog::warn("skipping damaged checkpoint: {}", e.what());
    }
  }
  return std::nullopt;
}

void load_student_weights(torch::nn::Module& student, const std::string& path) {
  if (!fs::exists(path)) throw InputError(str_cat("weights file not found: ", path));
  if (fs::is_directory(path)) throw InputError(str_cat("weights ", path, " is a directory, not a file"));
  auto state = fs::path(path).extension() == ".ckpt" ? read_checkpoint_student(path) : models::read_pth(path);
  models::load_state_dict(student, state, /*strict=*/true, path);
}

}  // namespace segkd::train
