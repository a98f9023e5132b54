// TensorBoard event files (TFRecord framing of Event protobufs).
#include "train/tensorboard.h"

#include <unistd.h>

#include <array>
#include <chrono>
#include <cstring>
#include <filesystem>

#include "common/error.h"
#include "proto/tensorboard_event.pb.h"  // generated in the build tree (train/CMakeLists.txt)

namespace fs = std::filesystem;

namespace segkd::train {
namespace {

/// The byte-wise lookup table of the reflected Castagnoli polynomial 0x82F63B78.
std::array<uint32_t, 256> make_crc32c_table() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
    table[i] = c;
  }
  return table;
}

void put_le64(char* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((v >> (8 * i)) & 0xFF);
}

void put_le32(char* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out[i] = static_cast<char>((v >> (8 * i)) & 0xFF);
}

uint64_t get_le(const unsigned char* in, int bytes) {
  uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | in[i];
  return v;
}

std::string host_name() {
  char buf[256] = {0};
  if (::gethostname(buf, sizeof(buf) - 1) != 0 || buf[0] == 0) return "localhost";
  return buf;
}

}  // namespace

uint32_t crc32c(const void* data, size_t size) {
  // No Debian package ships a C/C++ CRC-32C (protobuf and abseil keep theirs internal); this is the textbook
  // table-driven form, checked against the standard check value in the tests.
  static const auto table = make_crc32c_table();
  const auto* p = static_cast<const unsigned char*>(data);
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < size; ++i) c = table[(c ^ p[i]) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

uint32_t masked_crc32c(const void* data, size_t size) {
  const uint32_t crc = crc32c(data, size);
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

TensorBoardWriter::TensorBoardWriter(const std::string& dir) {
  const auto now = std::chrono::system_clock::now().time_since_epoch();
  const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(now).count();
  path_ = (fs::path(dir) / str_cat("events.out.tfevents.", seconds, ".", host_name())).string();
  out_.open(path_, std::ios::binary | std::ios::app);
  if (!out_) throw ConfigError(str_cat("run.work_dir: cannot write the TensorBoard event file ", path_));
  tensorboard::Event e;
  e.set_wall_time(std::chrono::duration<double>(now).count());
  e.set_file_version("brain.Event:2");
  write_record(e.SerializeAsString());
}

void TensorBoardWriter::scalars(int64_t step, double wall_time,
                                const std::vector<std::pair<std::string, double>>& values) {
  tensorboard::Event e;
  e.set_wall_time(wall_time);
  e.set_step(step);
  auto* summary = e.mutable_summary();
  for (const auto& [tag, v] : values) {
    auto* value = summary->add_value();
    value->set_tag(tag);
    value->set_simple_value(static_cast<float>(v));
  }
  write_record(e.SerializeAsString());
}

void TensorBoardWriter::write_record(const std::string& payload) {
  char header[12], footer[4];
  put_le64(header, payload.size());
  put_le32(header + 8, masked_crc32c(header, 8));
  put_le32(footer, masked_crc32c(payload.data(), payload.size()));
  out_.write(header, sizeof(header));
  out_.write(payload.data(), static_cast<std::streamsize>(payload.size()));
  out_.write(footer, sizeof(footer));
  out_.flush();  // TensorBoard reads files while they grow
}

std::vector<std::string> read_tfrecords(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw InputError(str_cat("cannot read ", path));
  std::vector<std::string> records;
  uint64_t offset = 0;
  while (true) {
    unsigned char header[12];
    in.read(reinterpret_cast<char*>(header), sizeof(header));
    if (in.gcount() == 0) break;
    if (in.gcount() != sizeof(header)) throw InputError(str_cat(path, ": truncated record header at byte ", offset));
    if (get_le(header + 8, 4) != masked_crc32c(header, 8)) {
      throw InputError(str_cat(path, ": length CRC mismatch at byte ", offset));
    }
    const uint64_t length = get_le(header, 8);
    std::string payload(length, '\0');
    unsigned char footer[4];
    in.read(payload.data(), static_cast<std::streamsize>(length));
    in.read(reinterpret_cast<char*>(footer), sizeof(footer));
    if (!in) throw InputError(str_cat(path, ": truncated record at byte ", offset));
    if (get_le(footer, 4) != masked_crc32c(payload.data(), payload.size())) {
      throw InputError(str_cat(path, ": payload CRC mismatch in the record at byte ", offset));
    }
    records.push_back(std::move(payload));
    offset += 16 + length;
  }
  return records;
}

}  // namespace segkd::train
