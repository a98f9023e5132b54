#pragma once
/// HDF5 datasets, format 1 (docs/formats.md): reader over one or more shard files and an atomic writer.
///
/// Layout of one shard: root attributes `segkd_format` (= 1), `num_classes`, `ignore_index`, `class_names`
/// (variable-length strings [C]), `palette` (uint8 [C,3]); datasets `/images` (uint8 1-D, HWC RGB of every sample
/// concatenated), `/labels` (uint8 1-D, train ids), `/index` (int64 [N,4]: image offset, label offset, height,
/// width), `/names` (variable-length strings [N], the source file stem). `/images` and `/labels` are chunked
/// (1 MiB chunks) and optionally deflate-compressed.
#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace segkd::data {

/// Dataset-wide metadata stored in every shard.
struct DatasetInfo {
  int64_t num_classes = 0;
  int64_t ignore_index = 255;
  std::vector<std::string> class_names;          ///< num_classes entries
  std::vector<std::array<uint8_t, 3>> palette;   ///< num_classes RGB colours
};

/// One decoded sample.
struct Sample {
  std::string name;
  int64_t height = 0, width = 0;
  std::vector<uint8_t> image;  ///< HWC RGB, height*width*3 bytes
  std::vector<uint8_t> label;  ///< HW train ids (ignore_index where unlabeled)
};

/// Expands globs in shard patterns (each pattern's matches sorted, order of patterns kept, duplicates dropped);
/// throws InputError naming the pattern when nothing matches.
std::vector<std::string> expand_shards(const std::vector<std::string>& patterns);

/// Reads format-1 shards; validates attributes and the index of every shard at construction, naming the file on
/// any problem. Each shard is opened once for the object's lifetime; get() does one contiguous read per array.
/// Thread-safe (HDF5 calls are serialised by a process-wide mutex; Debian's HDF5 is not thread-safe).
class H5Dataset {
 public:
  explicit H5Dataset(const std::vector<std::string>& shard_patterns);
  ~H5Dataset();
  H5Dataset(const H5Dataset&) = delete;
  H5Dataset& operator=(const H5Dataset&) = delete;

  /// Number of samples over all shards.
  int64_t size() const;
  /// Sample `index` in [0, size()), global over the shards in file order.
  Sample get(int64_t index) const;
  /// The shard file holding sample `index`.
  const std::string& file_of(int64_t index) const;
  /// Only the name of sample `index` (no HDF5 read).
  const std::string& name(int64_t index) const;
  /// Height and width of sample `index` (no HDF5 read).
  std::array<int64_t, 2> shape(int64_t index) const;
  /// Metadata of the first shard (all shards must agree on num_classes and ignore_index).
  const DatasetInfo& info() const;
  /// The shard files, after glob expansion.
  const std::vector<std::string>& files() const;

 private:
  struct Shard;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::vector<int64_t> starts_;  // global index of each shard's first sample, plus the total at the end
  std::vector<std::string> files_;
  DatasetInfo info_;
};

/// Writes a format-1 shard atomically: data goes to "<path>.partial", renamed to `path` by finish() only once every
/// HDF5 call (H5Fflush, H5Fclose included) succeeded and the file is fsynced; on any failure the partial file is
/// removed and the file at `path` is untouched (errors name the file and errno, "disk full (ENOSPC)"); destroying
/// the writer without finish() removes the partial file. `compression_level` 0 = none, 1..9 = deflate.
class H5Writer {
 public:
  H5Writer(const std::string& path, const DatasetInfo& info, int compression_level = 0);
  ~H5Writer();
  H5Writer(const H5Writer&) = delete;
  H5Writer& operator=(const H5Writer&) = delete;

  /// Appends one sample (image HxWx3, label HxW); throws InputError naming the sample on a size mismatch.
  void add(const Sample& s);
  /// Writes index, names and attributes, closes and renames the file. Returns nothing; throws on I/O errors.
  void finish();
  /// Samples added so far.
  int64_t count() const { return static_cast<int64_t>(names_.size()); }
  const std::string& path() const { return path_; }

 private:
  /// Closes datasets and file; false when any close failed (H5Fclose flushes metadata and may hit a full disk).
  bool close_ids();
  void write_metadata();
  std::string path_, partial_;
  DatasetInfo info_;
  int64_t file_ = -1, images_ = -1, labels_ = -1;
  int64_t image_size_ = 0, label_size_ = 0;
  std::vector<std::array<int64_t, 4>> index_;
  std::vector<std::string> names_;
  bool finished_ = false;
};

/// The mutex serialising every HDF5 call in this process (shared by readers and writers).
std::mutex& hdf5_mutex();

}  // namespace segkd::data
