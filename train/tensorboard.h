#pragma once
/// TensorBoard event files: `events.out.tfevents.<unix time>.<host>` in a run directory, TFRecord-framed Event
/// protobufs with scalar summaries (schema in train/proto/tensorboard_event.proto), so `tensorboard --logdir runs/`
/// shows every run.
#include <cstddef>
#include <cstdint>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

namespace segkd::train {

/// CRC-32C (Castagnoli polynomial, reflected, as TFRecord and iSCSI use) of `size` bytes at `data`.
uint32_t crc32c(const void* data, size_t size);

/// TFRecord's masked CRC-32C: ((crc >> 15) | (crc << 17)) + 0xa282ead8.
uint32_t masked_crc32c(const void* data, size_t size);

class TensorBoardWriter {
 public:
  /// Creates `dir/events.out.tfevents.<unix seconds>.<host>` (appends if it exists) and writes the file_version
  /// record. Throws ConfigError naming the file when it cannot be written.
  explicit TensorBoardWriter(const std::string& dir);
  /// Appends one Event at training iteration `step` with a scalar summary per (tag, value); `wall_time` in seconds
  /// since the Unix epoch. Non-finite values are written as they are (TensorBoard shows NaN).
  void scalars(int64_t step, double wall_time, const std::vector<std::pair<std::string, double>>& values);
  /// The event file.
  const std::string& path() const { return path_; }

 private:
  void write_record(const std::string& payload);
  std::string path_;
  std::ofstream out_;
};

/// Every record payload of a TFRecord file in order, both CRCs checked. Throws InputError naming the file and the
/// byte offset of a truncated or damaged record.
std::vector<std::string> read_tfrecords(const std::string& path);

}  // namespace segkd::train
