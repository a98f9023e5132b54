#include "data/dataset.h"

#include <glob.h>
#include <hdf5.h>

#include <algorithm>
#include <cstdio>
#include <set>

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
  std::call_once(once, [] { H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr); });
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

/// Reads a 1-D string array (variable- or fixed-length) from a dataset or attribute.
std::vector<std::string> read_strings(hid_t obj, bool is_attr, const std::string& what, const std::string& path) {
  Id type(is_attr ? H5Aget_type(obj) : H5Dget_type(obj));
  Id space(is_attr ? H5Aget_space(obj) : H5Dget_space(obj));
  if (H5Tget_class(type.get()) != H5T_STRING)
    throw InputError(str_cat("dataset '", path, "': ", what, " must hold strings"));
  const hssize_t n = H5Sget_simple_extent_npoints(space.get());
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
      info.class_names = read_strings(attr.get(), true, "attribute 'class_names'", path);
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
    shard->index.resize(n);
    if (n > 0 && H5Dread(index.get(), H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, shard->index.data()) < 0)
      throw InputError(str_cat("dataset '", path, "': cannot read /index"));
    shard->names = read_strings(names.get(), false, "/names", path);
    if (static_cast<int64_t>(shard->names.size()) != n)
      throw InputError(str_cat("dataset '", path, "': /names has ", shard->names.size(), " entries, /index ", n));
    const auto image_dims = dims_of(shard->images.get());
    const auto label_dims = dims_of(shard->labels.get());
    if (image_dims.size() != 1 || label_dims.size() != 1)
      throw InputError(str_cat("dataset '", path, "': /images and /labels must be 1-D"));
    for (int64_t i = 0; i < n; ++i) {
      const auto& e = shard->index[i];
      const bool ok = e[0] >= 0 && e[1] >= 0 && e[2] > 0 && e[3] > 0 &&
                      static_cast<hsize_t>(e[0] + e[2] * e[3] * 3) <= image_dims[0] &&
                      static_cast<hsize_t>(e[1] + e[2] * e[3]) <= label_dims[0];
      if (!ok)
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

Id create_appendable(hid_t file, const char* name, int compression, const std::string& path) {
  hsize_t dims = 0, maxdims = H5S_UNLIMITED, chunk = kChunkBytes;
  Id space(H5Screate_simple(1, &dims, &maxdims));
  Id plist(H5Pcreate(H5P_DATASET_CREATE));
  H5Pset_obj_track_times(plist.get(), false);  // byte-identical files for identical content
  H5Pset_chunk(plist.get(), 1, &chunk);
  if (compression > 0) H5Pset_deflate(plist.get(), compression);
  Id d(H5Dcreate2(file, name, H5T_NATIVE_UINT8, space.get(), H5P_DEFAULT, plist.get(), H5P_DEFAULT));
  if (!d.ok()) throw InputError(str_cat("cannot create dataset '", name, "' in '", path, "'"));
  return d;
}

void append(hid_t dataset, int64_t& size, const std::vector<uint8_t>& data, const std::string& path) {
  if (data.empty()) return;
  hsize_t new_size = size + data.size();
  hsize_t offset = size, count = data.size();
  if (H5Dset_extent(dataset, &new_size) < 0) throw InputError(str_cat("cannot grow dataset in '", path, "'"));
  Id file_space(H5Dget_space(dataset));
  H5Sselect_hyperslab(file_space.get(), H5S_SELECT_SET, &offset, nullptr, &count, nullptr);
  Id mem_space(H5Screate_simple(1, &count, nullptr));
  if (H5Dwrite(dataset, H5T_NATIVE_UINT8, mem_space.get(), file_space.get(), H5P_DEFAULT, data.data()) < 0)
    throw InputError(str_cat("cannot write to '", path, "' (disk full?)"));
  size = new_size;
}

void write_int_attr(hid_t obj, const char* name, int64_t v) {
  Id space(H5Screate(H5S_SCALAR));
  Id attr(H5Acreate2(obj, name, H5T_NATIVE_INT64, space.get(), H5P_DEFAULT, H5P_DEFAULT));
  H5Awrite(attr.get(), H5T_NATIVE_INT64, &v);
}

std::vector<const char*> c_strings(const std::vector<std::string>& v) {
  std::vector<const char*> out;
  for (const auto& s : v) out.push_back(s.c_str());
  return out;
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
    file_ = H5Fcreate(partial_.c_str(), H5F_ACC_TRUNC, fcpl.get(), H5P_DEFAULT);
  }
  if (file_ < 0) throw InputError(str_cat("cannot create '", partial_, "' (missing directory or no permission?)"));
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

void H5Writer::close_ids() {
  for (int64_t* id : {&images_, &labels_}) {
    if (*id >= 0) H5Dclose(*id);
    *id = -1;
  }
  if (file_ >= 0) H5Fclose(file_);
  file_ = -1;
}

void H5Writer::add(const Sample& s) {
  if (finished_) throw InputError(str_cat("cannot add to '", path_, "': already finished"));
  if (s.height <= 0 || s.width <= 0 || s.image.size() != static_cast<size_t>(s.height * s.width * 3) ||
      s.label.size() != static_cast<size_t>(s.height * s.width))
    throw InputError(str_cat("sample '", s.name, "': image has ", s.image.size(), " bytes and label ",
                             s.label.size(), ", expected ", s.height, "x", s.width, "x3 and ", s.height, "x",
                             s.width));
  std::lock_guard<std::mutex> lock(hdf5_mutex());
  index_.push_back({image_size_, label_size_, s.height, s.width});
  names_.push_back(s.name);
  append(images_, image_size_, s.image, partial_);
  append(labels_, label_size_, s.label, partial_);
}

void H5Writer::finish() {
  if (finished_) return;
  {
    std::lock_guard<std::mutex> lock(hdf5_mutex());
    const hid_t f = file_;
    Id untimed(H5Pcreate(H5P_DATASET_CREATE));
    H5Pset_obj_track_times(untimed.get(), false);
    {
      hsize_t dims[2] = {index_.size(), 4};
      Id space(H5Screate_simple(2, dims, nullptr));
      Id d(H5Dcreate2(f, "index", H5T_NATIVE_INT64, space.get(), H5P_DEFAULT, untimed.get(), H5P_DEFAULT));
      if (!index_.empty() && H5Dwrite(d.get(), H5T_NATIVE_INT64, H5S_ALL, H5S_ALL, H5P_DEFAULT, index_.data()) < 0)
        throw InputError(str_cat("cannot write /index to '", partial_, "'"));
    }
    {
      hsize_t n = names_.size();
      Id type = string_type();
      Id space(H5Screate_simple(1, &n, nullptr));
      Id d(H5Dcreate2(f, "names", type.get(), space.get(), H5P_DEFAULT, untimed.get(), H5P_DEFAULT));
      auto ptrs = c_strings(names_);
      if (n > 0 && H5Dwrite(d.get(), type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, ptrs.data()) < 0)
        throw InputError(str_cat("cannot write /names to '", partial_, "'"));
    }
    write_int_attr(f, "segkd_format", 1);
    write_int_attr(f, "num_classes", info_.num_classes);
    write_int_attr(f, "ignore_index", info_.ignore_index);
    {
      hsize_t n = info_.class_names.size();
      Id type = string_type();
      Id space(H5Screate_simple(1, &n, nullptr));
      Id attr(H5Acreate2(f, "class_names", type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT));
      auto ptrs = c_strings(info_.class_names);
      H5Awrite(attr.get(), type.get(), ptrs.data());
    }
    {
      hsize_t dims[2] = {info_.palette.size(), 3};
      Id space(H5Screate_simple(2, dims, nullptr));
      Id attr(H5Acreate2(f, "palette", H5T_NATIVE_UINT8, space.get(), H5P_DEFAULT, H5P_DEFAULT));
      H5Awrite(attr.get(), H5T_NATIVE_UINT8, info_.palette.data());
    }
    H5Fflush(f, H5F_SCOPE_GLOBAL);
    close_ids();
  }
  if (std::rename(partial_.c_str(), path_.c_str()) != 0)
    throw InputError(str_cat("cannot rename '", partial_, "' to '", path_, "'"));
  finished_ = true;
}

}  // namespace segkd::data
