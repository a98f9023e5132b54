#include "data/dataset.h"

#include <glob.h>
#include <hdf5.h>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <set>

#include "common/atomic_file.h"
#include "common/error.h"

namespace segkd::data {

std::mutex& hdf5_mutex() {
  static std::mutex m;
  return m;
}

namespace {

constexpr hsize_t kChunkBytes = 1 << 20;

/// Closes an HDF5 identifier with the right H5?close when it goes out of scope.
class Id {
 public:
  Id() = default;
  explicit Id(hid_t id) : id_(id) {}
  Id(Id&& o) noexcept : id_(o.id_) { o.id_ = -1; }
  Id& operator=(Id&& o) noexcept {
    std::swap(id_, o.id_);
    return *this;
  }
  Id(const Id&) = delete;
  ~Id() { reset(); }
  void reset() {
    if (id_ < 0) return;
    switch (H5Iget_type(id_)) {
      case H5I_FILE: H5Fclose(id_); break;
      case H5I_DATASET: H5Dclose(id_); break;
      case H5I_DATASPACE: H5Sclose(id_); break;
      case H5I_DATATYPE: H5Tclose(id_); break;
      case H5I_ATTR: H5Aclose(id_); break;
      case H5I_GENPROP_LST: H5Pclose(id_); break;
      default: break;
    }
    id_ = -1;
  }
  hid_t get() const { return id_; }
  hid_t release() {
    hid_t id = id_;
    id_ = -1;
    return id;
  }
  bool ok() const { return id_ >= 0; }

 private:
  hid_t id_ = -1;
};

void quiet_hdf5() {
  static std::once_flag once;
  std::call_once(once, [] {
    // No library shutdown at exit: after an H5Fclose that failed (disk full) HDF5 1.10's exit handler closes the
    // half-closed file again and segfaults. Writers close (or remove) their files themselves; readers only read.
    H5dont_atexit();
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  });
}

Id string_type() {
  Id t(H5Tcopy(H5T_C_S1));
  H5Tset_size(t.get(), H5T_VARIABLE);
  H5Tset_cset(t.get(), H5T_CSET_UTF8);
  return t;
}

// ---- reading helpers (caller holds hdf5_mutex) ----

int64_t read_int_attr(hid_t file, const char* name, const std::string& path) {
  if (H5Aexists(file, name) <= 0)
    throw InputError(str_cat("dataset '", path, "': missing root attribute '", name, "'"));
  Id attr(H5Aopen(file, name, H5P_DEFAULT));
  Id space(H5Aget_space(attr.get()));
  if (H5Sget_simple_extent_npoints(space.get()) != 1)
    throw InputError(str_cat("dataset '", path, "': attribute '", name, "' must be a scalar"));
  int64_t v = 0;
  if (H5Aread(attr.get(), H5T_NATIVE_INT64, &v) < 0)
    throw InputError(str_cat("dataset '", path, "': attribute '", name, "' is not an integer"));
  return v;
}

/// Reads a 1-D string array (variable- or fixed-length) from a dataset or attribute of at most `max_count` strings
/// (a damaged file may claim any extent: found by fuzz_h5, tests/fuzz/corpus/h5/bad_names_extent_huge.h5).
std::vector<std::string> read_strings(hid_t obj, bool is_attr, const std::string& what, const std::string& path,
                                      int64_t max_count) {
  Id type(is_attr ? H5Aget_type(obj) : H5Dget_type(obj));
  Id space(is_attr ? H5Aget_space(obj) : H5Dget_space(obj));
  if (H5Tget_class(type.get()) != H5T_STRING)
    throw InputError(str_cat("dataset '", path, "': ", what, " must hold strings"));
  const hssize_t n = H5Sget_simple_extent_npoints(space.get());
  if (n > max_count)
    throw InputError(str_cat("dataset '", path, "': ", what, " holds ", n, " strings, expected at most ", max_count));
  std::vector<std::string> out(std::max<hssize_t>(n, 0));
  if (n <= 0) return out;
  if (H5Tis_variable_str(type.get()) > 0) {
    Id mem = string_type();
    std::vector<char*> buf(n, nullptr);
    herr_t rc = is_attr ? H5Aread(obj, mem.get(), buf.data())
                        : H5Dread(obj, mem.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data());
    if (rc < 0) throw InputError(str_cat("dataset '", path, "': cannot read ", what));
    for (hssize_t i = 0; i < n; ++i) out[i] = buf[i] ? buf[i] : "";
    H5Dvlen_reclaim(mem.get(), space.get(), H5P_DEFAULT, buf.data());
  } else {
    const size_t len = H5Tget_size(type.get());
    Id mem(H5Tcopy(H5T_C_S1));
    H5Tset_size(mem.get(), len);
    std::vector<char> buf(static_cast<size_t>(n) * len);
    herr_t rc = is_attr ? H5Aread(obj, mem.get(), buf.data())
                        : H5Dread(obj, mem.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data());
    if (rc < 0) throw InputError(str_cat("dataset '", path, "': cannot read ", what));
    for (hssize_t i = 0; i < n; ++i) {
      const char* s = buf.data() + i * len;
      out[i] = std::string(s, strnlen(s, len));
    }
  }
  return out;
}

Id open_dataset(hid_t file, const char* name, const std::string& path) {
  if (H5Lexists(file, name, H5P_DEFAULT) <= 0)
    throw InputError(str_cat("dataset '", path, "': missing dataset '", name, "'"));
  Id d(H5Dopen2(file, name, H5P_DEFAULT));
  if (!d.ok()) throw InputError(str_cat("dataset '", path, "': cannot open dataset '", name, "'"));
  return d;
}

std::vector<hsize_t> dims_of(hid_t dataset) {
  Id space(H5Dget_space(dataset));
  const int rank = H5Sget_simple_extent_ndims(space.get());
  std::vector<hsize_t> dims(std::max(rank, 0));
  H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr);
  return dims;
}

/// True when index row {image offset, label offset, h, w} lies inside /images (`images` bytes) and /labels: every
/// product and sum checked for overflow, since a crafted h*w*3 can wrap around to a small number.
bool index_row_fits(const std::array<int64_t, 4>& e, hsize_t images, hsize_t labels) {
  if (e[0] < 0 || e[1] < 0 || e[2] <= 0 || e[3] <= 0) return false;
  int64_t pixels = 0, bytes = 0, image_end = 0, label_end = 0;
  if (__builtin_mul_overflow(e[2], e[3], &pixels) || __builtin_mul_overflow(pixels, int64_t{3}, &bytes) ||
      __builtin_add_overflow(e[0], bytes, &image_end) || __builtin_add_overflow(e[1], pixels, &label_end)) {
    return false;
  }
  return static_cast<hsize_t>(image_end) <= images && static_cast<hsize_t>(label_end) <= labels;
}

void read_range(hid_t dataset, hsize_t offset, hsize_t count, uint8_t* out) {
  thread_local bool quiet = false;  // the error-printing switch is per thread: failures are reported by exceptions
  if (!quiet) H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr), quiet = true;
  Id file_space(H5Dget_space(dataset));
  H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, &offset, nullptr, &count, nullptr);
  Id mem_space(H5Screate_simple(1, &count, nullptr));
  if (H5Dread(dataset, H5T_NATIVE_UINT8, mem_space.get(), file_space.get(), H5P_DEFAULT, out) < 0)
    throw InputError(str_cat("HDF5 read of ", count, " bytes at offset ", offset, " failed"));
}

}  // namespace

// ---------------------------------------------------------------------------------------------------------------

std::vector<std::string> expand_shards(const std::vector<std::string>& patterns) {
  if (patterns.empty()) throw InputError("no dataset shard files given (empty list of patterns)");
  std::vector<std::string> out;
  std::set<std::string> seen;
  for (const auto& pattern : patterns) {
    glob_t g{};
    const int rc = ::glob(pattern.c_str(), 0, nullptr, &g);
    std::vector<std::string> matches;
    if (rc == 0)
      for (size_t i = 0; i < g.gl_pathc; ++i) matches.emplace_back(g.gl_pathv[i]);
    globfree(&g);
    if (matches.empty()) throw InputError(str_cat("dataset pattern '", pattern, "' matches no file"));
    std::sort(matches.begin(), matches.end());
    for (auto& m : matches)
      if (seen.insert(m).second) out.push_back(std::move(m));
  }
  return out;
}

struct H5Dataset::Shard {
  std::string path;
  Id file, images, labels;
  std::vector<std::array<int64_t, 4>> index;
  std::vector<std::string> names;
};

/// The root attributes of the open shard `f` (segkd_format, num_classes, ignore_index, class_names, palette), checked.
static DatasetInfo read_shard_info(hid_t f, const std::string& path) {
  const int64_t format = read_int_attr(f, "segkd_format", path);
  if (format != 1)
    throw InputError(str_cat("dataset '", path, "': segkd_format is ", format, ", this build reads format 1"));
  DatasetInfo info;
  info.num_classes = read_int_attr(f, "num_classes", path);
  info.ignore_index = read_int_attr(f, "ignore_index", path);
  if (info.num_classes <= 0 || info.num_classes > 256)
    throw InputError(str_cat("dataset '", path, "': num_classes ", info.num_classes, " outside [1, 256]"));
  if (H5Aexists(f, "class_names") > 0) {
    Id attr(H5Aopen(f, "class_names", H5P_DEFAULT));
    info.class_names = read_strings(attr.get(), true, "attribute 'class_names'", path, info.num_classes);
  }
  if (static_cast<int64_t>(info.class_names.size()) != info.num_classes)
    throw InputError(str_cat("dataset '", path, "': class_names has ", info.class_names.size(),
                             " entries, num_classes is ", info.num_classes));
  if (H5Aexists(f, "palette") > 0) {
    Id attr(H5Aopen(f, "palette", H5P_DEFAULT));
    Id space(H5Aget_space(attr.get()));
    const hssize_t n = H5Sget_simple_extent_npoints(space.get());
    if (n != info.num_classes * 3)
      throw InputError(str_cat("dataset '", path, "': palette has ", n, " values, expected [", info.num_classes,
                               ",3]"));
    info.palette.resize(info.num_classes);
    H5Aread(attr.get(), H5T_NATIVE_UINT8, info.palette.data());
  } else {
    throw InputError(str_cat("dataset '", path, "': missing root attribute 'palette'"));
  }
  return info;
}

H5Dataset::H5Dataset(const std::vector<std::string>& shard_patterns) {
  files_ = expand_shards(shard_patterns);
  quiet_hdf5();
  std::lock_guard<std::mutex> lock(hdf5_mutex());
  starts_.push_back(0);
  for (const auto& path : files_) {
    auto shard = std::make_unique<Shard>();
    shard->path = path;
    if (H5Fis_hdf5(path.c_str()) <= 0) throw InputError(str_cat("dataset '", path, "': not an HDF5 file"));
    shard->file = Id(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT));
    if (!shard->file.ok()) throw InputError(str_cat("dataset '", path, "': cannot open (corrupt or truncated?)"));
    const hid_t f = shard->file.get();
    const DatasetInfo info = read_shard_info(f, path);
    if (shards_.empty()) {
      info_ = info;
    } else if (info.num_classes != info_.num_classes || info.ignore_index != info_.ignore_index) {
      throw InputError(str_cat("dataset '", path, "': num_classes/ignore_index ", info.num_classes, "/",
                               info.ignore_index, " differ from '", files_[0], "' (", info_.num_classes, "/",
                               info_.ignore_index, ")"));
    }
    shard->images = open_dataset(f, "/images", path);
    shard->labels = open_dataset(f, "/labels", path);
    Id index = open_dataset(f, "/index", path);
    Id names = open_dataset(f, "/names", path);
    const auto idims = dims_of(index.get());
    if (idims.size() != 2 || idims[1] != 4)
      throw InputError(str_cat("dataset '", path, "': /index must be int64 [N,4]"));
    const int64_t n = static_cast<int64_t>(idims[0]);
    // A damaged extent must not become a huge allocation: each row is 32 bytes, and even compressed the rows
    // cannot take fewer bytes of file than 1/1024 of that.
    std::error_code size_error;
    const auto file_bytes = static_cast<int64_t>(std::filesystem::file_size(path, size_error));
    if (n < 0 || (!size_error && n / 1024 > file_bytes / 32 + 1))
      throw InputError(str_cat("dataset '", path, "': /index claims ", n, " rows, more than a ", file_bytes,
                               "-byte file can hold"));
    shard->index.resize(n);
    if (n > 0 && H5Dread(index.get(), H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, shard->index.data()) < 0)
      throw InputError(str_cat("dataset '", path, "': cannot read /index"));
    shard->names = read_strings(names.get(), false, "/names", path, n);
    if (static_cast<int64_t>(shard->names.size()) != n)
      throw InputError(str_cat("dataset '", path, "': /names has ", shard->names.size(), " entries, /index ", n));
    const auto image_dims = dims_of(shard->images.get());
    const auto label_dims = dims_of(shard->labels.get());
    if (image_dims.size() != 1 || label_dims.size() != 1)
      throw InputError(str_cat("dataset '", path, "': /images and /labels must be 1-D"));
    for (int64_t i = 0; i < n; ++i) {
      const auto& e = shard->index[i];
      if (!index_row_fits(e, image_dims[0], label_dims[0]))
        throw InputError(str_cat("dataset '", path, "': /index row ", i, " ('", shard->names[i],
                                 "') points outside /images or /labels (truncated file?)"));
    }
    starts_.push_back(starts_.back() + n);
    shards_.push_back(std::move(shard));
  }
}

H5Dataset::~H5Dataset() {
  std::lock_guard<std::mutex> lock(hdf5_mutex());
  shards_.clear();
}

int64_t H5Dataset::size() const { return starts_.back(); }

const DatasetInfo& H5Dataset::info() const { return info_; }

const std::vector<std::string>& H5Dataset::files() const { return files_; }

namespace {
std::pair<size_t, int64_t> locate(const std::vector<int64_t>& starts, int64_t index) {
  if (index < 0 || index >= starts.back())
    throw InputError(str_cat("sample index ", index, " outside dataset of ", starts.back(), " samples"));
  const size_t s = std::upper_bound(starts.begin(), starts.end(), index) - starts.begin() - 1;
  return {s, index - starts[s]};
}
}  // namespace

const std::string& H5Dataset::file_of(int64_t index) const {
  auto [s, i] = locate(starts_, index);
  return shards_[s]->path;
}

const std::string& H5Dataset::name(int64_t index) const {
  auto [s, i] = locate(starts_, index);
  return shards_[s]->names[i];
}

std::array<int64_t, 2> H5Dataset::shape(int64_t index) const {
  auto [s, i] = locate(starts_, index);
  return {shards_[s]->index[i][2], shards_[s]->index[i][3]};
}

Sample H5Dataset::get(int64_t index) const {
  auto [s, i] = locate(starts_, index);
  const Shard& shard = *shards_[s];
  const auto& e = shard.index[i];
  Sample out;
  out.name = shard.names[i];
  out.height = e[2];
  out.width = e[3];
  out.image.resize(e[2] * e[3] * 3);
  out.label.resize(e[2] * e[3]);
  std::lock_guard<std::mutex> lock(hdf5_mutex());
  try {
    read_range(shard.images.get(), e[0], out.image.size(), out.image.data());
    read_range(shard.labels.get(), e[1], out.label.size(), out.label.data());
  } catch (const InputError& err) {
    throw InputError(str_cat("dataset '", shard.path, "', sample '", out.name, "': ", err.what()));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------

namespace {

/// The reason of a failed HDF5 write: the errno of the underlying system call when there is one ("disk full
/// (ENOSPC)"), else HDF5's own failure.
std::string write_failure() {
  return errno != 0 ? errno_reason(errno) : std::string("HDF5 error (disk full or I/O error?)");
}

/// Throws InputError "cannot write 'PATH': WHAT: REASON" when an HDF5 call returned a negative value.
template <typename T>
T checked(T rc, const char* what, const std::string& path) {
  if (rc < 0) throw InputError(str_cat("cannot write '", path, "': ", what, ": ", write_failure()));
  return rc;
}

Id create_appendable(hid_t file, const char* name, int compression, const std::string& path) {
  hsize_t dims = 0, maxdims = H5S_UNLIMITED, chunk = kChunkBytes;
  Id space(checked(H5Screate_simple(1, &dims, &maxdims), "H5Screate_simple", path));
  Id plist(checked(H5Pcreate(H5P_DATASET_CREATE), "H5Pcreate", path));
  checked(H5Pset_obj_track_times(plist.get(), false), "H5Pset_obj_track_times", path);  // byte-identical files
  checked(H5Pset_chunk(plist.get(), 1, &chunk), "H5Pset_chunk", path);
  if (compression > 0) checked(H5Pset_deflate(plist.get(), compression), "H5Pset_deflate", path);
  Id d(H5Dcreate2(file, name, H5T_NATIVE_UINT8, space.get(), H5P_DEFAULT, plist.get(), H5P_DEFAULT));
  if (!d.ok()) throw InputError(str_cat("cannot create dataset '", name, "' in '", path, "': ", write_failure()));
  return d;
}

void append(hid_t dataset, int64_t& size, const std::vector<uint8_t>& data, const std::string& path) {
  if (data.empty()) return;
  hsize_t new_size = size + data.size();
  hsize_t offset = size, count = data.size();
  errno = 0;
  checked(H5Dset_extent(dataset, &new_size), "growing a dataset", path);
  Id file_space(checked(H5Dget_space(dataset), "H5Dget_space", path));
  checked(H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, &offset, nullptr, &count, nullptr),
          "H5Sselect_hyperslab", path);
  Id mem_space(checked(H5Screate_simple(1, &count, nullptr), "H5Screate_simple", path));
  checked(H5Dwrite(dataset, H5T_NATIVE_UINT8, mem_space.get(), file_space.get(), H5P_DEFAULT, data.data()),
          "writing sample data", path);
  size = new_size;
}

void write_int_attr(hid_t obj, const char* name, int64_t v, const std::string& path) {
  Id space(checked(H5Screate(H5S_SCALAR), "H5Screate", path));
  Id attr(checked(H5Acreate2(obj, name, H5T_NATIVE_INT64, space.get(), H5P_DEFAULT, H5P_DEFAULT), name, path));
  checked(H5Awrite(attr.get(), H5T_NATIVE_INT64, &v), name, path);
}

/// A 1-D dataset `name` of `n` strings, or an attribute when `attr`.
void write_strings(hid_t f, const char* name, const std::vector<std::string>& values, bool attr, hid_t untimed,
                   const std::string& path) {
  hsize_t n = values.size();
  Id type = string_type();
  Id space(checked(H5Screate_simple(1, &n, nullptr), "H5Screate_simple", path));
  std::vector<const char*> ptrs;
  for (const auto& v : values) ptrs.push_back(v.c_str());
  if (attr) {
    Id a(checked(H5Acreate2(f, name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT), name, path));
    checked(H5Awrite(a.get(), type.get(), ptrs.data()), name, path);
    return;
  }
  Id d(checked(H5Dcreate2(f, name, type.get(), space.get(), H5P_DEFAULT, untimed, H5P_DEFAULT), name, path));
  if (n > 0) checked(H5Dwrite(d.get(), type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, ptrs.data()), name, path);
}

/// fsync()s a closed file so the rename that follows cannot expose an empty or partial file after a crash.
void sync_file(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw InputError(str_cat("cannot write '", path, "': reopening to sync: ", errno_reason(errno)));
  const bool ok = ::fsync(fd) == 0;
  const int err = errno;
  ::close(fd);
  if (!ok) throw InputError(str_cat("cannot write '", path, "': fsync: ", errno_reason(err)));
}

}  // namespace

H5Writer::H5Writer(const std::string& path, const DatasetInfo& info, int compression_level)
    : path_(path), partial_(path + ".partial"), info_(info) {
  if (info.num_classes <= 0 || info.num_classes > 256)
    throw InputError(str_cat("cannot write '", path, "': num_classes ", info.num_classes, " outside [1, 256]"));
  if (static_cast<int64_t>(info.class_names.size()) != info.num_classes ||
      static_cast<int64_t>(info.palette.size()) != info.num_classes)
    throw InputError(str_cat("cannot write '", path, "': need ", info.num_classes, " class names and palette ",
                             "colours, got ", info.class_names.size(), " and ", info.palette.size()));
  if (compression_level < 0 || compression_level > 9)
    throw InputError(str_cat("cannot write '", path, "': compression level ", compression_level,
                             " outside [0, 9]"));
  quiet_hdf5();
  std::lock_guard<std::mutex> lock(hdf5_mutex());
  {
    Id fcpl(H5Pcreate(H5P_FILE_CREATE));
    H5Pset_obj_track_times(fcpl.get(), false);
    errno = 0;
    file_ = H5Fcreate(partial_.c_str(), H5F_ACC_TRUNC, fcpl.get(), H5P_DEFAULT);
  }
  if (file_ < 0) throw InputError(str_cat("cannot create '", partial_, "': ", write_failure()));
  try {
    Id images = create_appendable(file_, "images", compression_level, partial_);
    Id labels = create_appendable(file_, "labels", compression_level, partial_);
    images_ = images.release();  // kept open until finish()
    labels_ = labels.release();
  } catch (...) {
    close_ids();
    std::remove(partial_.c_str());
    throw;
  }
}

H5Writer::~H5Writer() {
  if (finished_) return;
  {
    std::lock_guard<std::mutex> lock(hdf5_mutex());
    close_ids();
  }
  std::remove(partial_.c_str());
}

bool H5Writer::close_ids() {
  bool ok = true;
  for (int64_t* id : {&images_, &labels_}) {
    if (*id >= 0) ok = H5Dclose(*id) >= 0 && ok;
    *id = -1;
  }
  if (file_ >= 0) ok = H5Fclose(file_) >= 0 && ok;  // flushes the metadata: may fail on a full disk
  file_ = -1;
  return ok;
}

void H5Writer::add(const Sample& s) {
  if (finished_) throw InputError(str_cat("cannot add to '", path_, "': already finished"));
  if (file_ < 0) throw InputError(str_cat("cannot add to '", path_, "': an earlier write failed"));
  if (s.height <= 0 || s.width <= 0 || s.image.size() != static_cast<size_t>(s.height * s.width * 3) ||
      s.label.size() != static_cast<size_t>(s.height * s.width))
    throw InputError(str_cat("sample '", s.name, "': image has ", s.image.size(), " bytes and label ",
                             s.label.size(), ", expected ", s.height, "x", s.width, "x3 and ", s.height, "x",
                             s.width));
  std::lock_guard<std::mutex> lock(hdf5_mutex());
  try {
    append(images_, image_size_, s.image, partial_);
    append(labels_, label_size_, s.label, partial_);
  } catch (...) {
    close_ids();  // a failed write leaves HDF5's caches in an unknown state: nothing more goes into this file
    std::remove(partial_.c_str());
    throw;
  }
  index_.push_back({image_size_ - static_cast<int64_t>(s.image.size()),
                    label_size_ - static_cast<int64_t>(s.label.size()), s.height, s.width});
  names_.push_back(s.name);
}

void H5Writer::write_metadata() {
  const hid_t f = file_;
  Id untimed(checked(H5Pcreate(H5P_DATASET_CREATE), "H5Pcreate", partial_));
  checked(H5Pset_obj_track_times(untimed.get(), false), "H5Pset_obj_track_times", partial_);
  {
    hsize_t dims[2] = {index_.size(), 4};
    Id space(checked(H5Screate_simple(2, dims, nullptr), "H5Screate_simple", partial_));
    Id d(checked(H5Dcreate2(f, "index", H5T_NATIVE_INT64, space.get(), H5P_DEFAULT, untimed.get(), H5P_DEFAULT),
                 "creating /index", partial_));
    if (!index_.empty())
      checked(H5Dwrite(d.get(), H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, index_.data()), "writing /index",
              partial_);
  }
  write_strings(f, "names", names_, /*attr=*/false, untimed.get(), partial_);
  write_int_attr(f, "segkd_format", 1, partial_);
  write_int_attr(f, "num_classes", info_.num_classes, partial_);
  write_int_attr(f, "ignore_index", info_.ignore_index, partial_);
  write_strings(f, "class_names", info_.class_names, /*attr=*/true, untimed.get(), partial_);
  {
    hsize_t dims[2] = {info_.palette.size(), 3};
    Id space(checked(H5Screate_simple(2, dims, nullptr), "H5Screate_simple", partial_));
    Id attr(checked(H5Acreate2(f, "palette", H5T_NATIVE_UINT8, space.get(), H5P_DEFAULT, H5P_DEFAULT), "palette",
                    partial_));
    checked(H5Awrite(attr.get(), H5T_NATIVE_UINT8, info_.palette.data()), "palette", partial_);
  }
  checked(H5Fflush(f, H5F_SCOPE_GLOBAL), "H5Fflush", partial_);
}

void H5Writer::finish() {
  if (finished_) return;
  if (file_ < 0) throw InputError(str_cat("cannot finish '", path_, "': an earlier write failed"));
  try {
    std::lock_guard<std::mutex> lock(hdf5_mutex());
    errno = 0;
    write_metadata();
    errno = 0;
    if (!close_ids()) throw InputError(str_cat("cannot write '", partial_, "': H5Fclose: ", write_failure()));
  } catch (...) {
    {
      std::lock_guard<std::mutex> lock(hdf5_mutex());
      close_ids();
    }
    std::remove(partial_.c_str());
    throw;
  }
  try {
    sync_file(partial_);
  } catch (...) {
    std::remove(partial_.c_str());
    throw;
  }
  // Only a complete, closed and synced file replaces what is at `path_`.
  if (std::rename(partial_.c_str(), path_.c_str()) != 0) {
    const int err = errno;
    std::remove(partial_.c_str());
    throw InputError(str_cat("cannot rename '", partial_, "' to '", path_, "': ", errno_reason(err)));
  }
  fsync_directory(std::filesystem::path(path_).parent_path().string());
  finished_ = true;
}

}  // namespace segkd::data
