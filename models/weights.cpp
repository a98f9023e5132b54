#include "models/weights.h"

#include <caffe2/serialize/inline_container.h>
#include <torch/serialize.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <sstream>
#include <unistd.h>

#include "common/atomic_file.h"
#include "common/error.h"

namespace segkd::models {

namespace {

// ---- A small pickle machine for torch.save's data.pkl -----------------------------------------------------------
//
// LibTorch 1.13's unpickler turns collections.OrderedDict into None (docs/toolchain.md), which is what every
// model.state_dict() is. This reader knows the opcodes pickle protocols 2-5 emit, builds dicts (OrderedDict
// included), lists, tuples, scalars and strings, rebuilds tensors from the archive's storages, and represents any
// other Python object as an opaque value, so checkpoint metadata never stops a load.

struct PyObj;
using Obj = std::shared_ptr<PyObj>;

/// Containers nested deeper than this are refused: nothing torch.save writes for a state_dict comes close.
constexpr int kMaxNesting = 512;

struct PyObj {
  enum Kind { kNone, kBool, kInt, kFloat, kStr, kBytes, kTuple, kList, kDict, kGlobal, kTensor, kStorage, kOpaque };
  Kind kind = kNone;
  int64_t i = 0;
  double f = 0;
  int depth = 1;  // containers: 1 + the deepest element at insertion time
  std::string s;  // str, bytes, global "module.name", opaque class name
  std::vector<Obj> items;
  std::vector<std::pair<Obj, Obj>> dict;
  torch::Tensor tensor;

  PyObj() = default;
  PyObj(const PyObj&) = delete;
  PyObj& operator=(const PyObj&) = delete;
  /// Iterative teardown: a crafted pickle may nest (or, through the memo, chain) objects deeper than the stack
  /// would survive with the recursive destruction of shared_ptr members.
  ~PyObj() {
    std::vector<Obj> pending;
    auto take = [&pending](PyObj& o) {
      for (auto& item : o.items) pending.push_back(std::move(item));
      for (auto& [k, v] : o.dict) {
        pending.push_back(std::move(k));
        pending.push_back(std::move(v));
      }
      o.items.clear();
      o.dict.clear();
    };
    take(*this);
    while (!pending.empty()) {
      Obj o = std::move(pending.back());
      pending.pop_back();
      if (o && o.use_count() == 1) take(*o);  // its last owner: empty it before it dies
    }
  }
};

const char* kind_name(PyObj::Kind kind) {
  switch (kind) {
    case PyObj::kNone: return "None";
    case PyObj::kBool: return "a bool";
    case PyObj::kInt: return "an int";
    case PyObj::kFloat: return "a float";
    case PyObj::kStr: return "a str";
    case PyObj::kBytes: return "bytes";
    case PyObj::kTuple: return "a tuple";
    case PyObj::kList: return "a list";
    case PyObj::kDict: return "a dict";
    case PyObj::kGlobal: return "a class or function";
    case PyObj::kTensor: return "a single tensor";
    case PyObj::kStorage: return "a storage";
    case PyObj::kOpaque: return "an object";
  }
  return "?";
}

Obj make(PyObj::Kind kind) {
  auto o = std::make_shared<PyObj>();
  o->kind = kind;
  return o;
}

Obj make_str(PyObj::Kind kind, std::string s) {
  auto o = make(kind);
  o->s = std::move(s);
  return o;
}

Obj make_int(int64_t v) {
  auto o = make(PyObj::kInt);
  o->i = v;
  return o;
}

torch::Dtype storage_dtype(const std::string& name, const std::string& where) {
  static const std::map<std::string, torch::Dtype> table{
      {"FloatStorage", torch::kFloat},   {"DoubleStorage", torch::kDouble}, {"HalfStorage", torch::kHalf},
      {"BFloat16Storage", torch::kBFloat16}, {"LongStorage", torch::kLong}, {"IntStorage", torch::kInt},
      {"ShortStorage", torch::kShort},   {"CharStorage", torch::kChar},     {"ByteStorage", torch::kByte},
      {"BoolStorage", torch::kBool}};
  auto dot = name.rfind('.');
  auto it = table.find(dot == std::string::npos ? name : name.substr(dot + 1));
  if (it == table.end()) throw InputError(str_cat(where, ": unsupported storage type ", name));
  return it->second;
}

class Unpickler {
 public:
  /// Creates the storage for a persistent id ('storage', type, key, location, numel[, view]).
  using StorageLoader = std::function<torch::Tensor(const std::string& key, torch::Dtype dtype, int64_t numel)>;

  Unpickler(const std::string& data, size_t start, StorageLoader loader, std::string path)
      : data_(data), loader_(std::move(loader)), path_(std::move(path)), pos_(start) {}

  /// Where the next pickle in `data` starts (after run()).
  size_t position() const { return pos_; }

  Obj run() {
    while (true) {
      const uint8_t op = u8();
      switch (op) {
        case 0x80: u8(); break;                  // PROTO
        case 0x95: read(8); break;               // FRAME
        case '}': push(make(PyObj::kDict)); break;
        case ']': push(make(PyObj::kList)); break;
        case ')': push(make(PyObj::kTuple)); break;
        case 0x8f: push(make_str(PyObj::kOpaque, "set")); break;  // EMPTY_SET
        case '(': marks_.push_back(stack_.size()); break;
        case 't': { auto t = make(PyObj::kTuple); t->items = pop_mark(); nest(t, t->items); push(t); break; }
        case 'l': { auto t = make(PyObj::kList); t->items = pop_mark(); nest(t, t->items); push(t); break; }
        case 'd': {
          auto d = make(PyObj::kDict);
          auto items = pop_mark();
          nest(d, items);
          for (size_t k = 0; k + 1 < items.size(); k += 2) d->dict.emplace_back(items[k], items[k + 1]);
          push(d);
          break;
        }
        case 0x85: case 0x86: case 0x87: {  // TUPLE1..3
          const size_t n = op - 0x84;
          need(n);
          auto t = make(PyObj::kTuple);
          t->items.assign(stack_.end() - n, stack_.end());
          stack_.resize(stack_.size() - n);
          nest(t, t->items);
          push(t);
          break;
        }
        case 'X': push(make_str(PyObj::kStr, read(u32()))); break;
        case 0x8c: push(make_str(PyObj::kStr, read(u8()))); break;
        case 0x8d: push(make_str(PyObj::kStr, read(u64()))); break;
        case 'T': push(make_str(PyObj::kStr, read(u32()))); break;
        case 'U': push(make_str(PyObj::kStr, read(u8()))); break;
        case 'B': push(make_str(PyObj::kBytes, read(u32()))); break;
        case 'C': push(make_str(PyObj::kBytes, read(u8()))); break;
        case 0x8e: push(make_str(PyObj::kBytes, read(u64()))); break;
        case 'J': push(make_int(static_cast<int32_t>(u32()))); break;
        case 'K': push(make_int(u8())); break;
        case 'M': { int64_t lo = u8(); int64_t hi = u8(); push(make_int(lo | (hi << 8))); break; }
        case 0x8a: push(read_long(u8())); break;
        case 0x8b: push(read_long(u32())); break;
        case 'G': {
          auto bytes = read(8);
          uint64_t bits = 0;
          for (unsigned char c : bytes) bits = (bits << 8) | c;  // big-endian
          auto o = make(PyObj::kFloat);
          std::memcpy(&o->f, &bits, sizeof(double));
          push(o);
          break;
        }
        case 0x88: case 0x89: { auto o = make(PyObj::kBool); o->i = op == 0x88; push(o); break; }
        case 'N': push(make(PyObj::kNone)); break;
        case 'c': {
          auto module = read_line();
          auto name = read_line();
          push(make_str(PyObj::kGlobal, module + "." + name));
          break;
        }
        case 0x93: {  // STACK_GLOBAL
          auto name = pop();
          auto module = pop();
          push(make_str(PyObj::kGlobal, module->s + "." + name->s));
          break;
        }
        case 'q': memo_[u8()] = top(); break;
        case 'r': memo_[u32()] = top(); break;
        case 0x94: memo_[memo_.size()] = top(); break;  // MEMOIZE
        case 'p': memo_[decimal_arg('p', pos_ - 1)] = top(); break;
        case 'h': push(memo(u8())); break;
        case 'j': push(memo(u32())); break;
        case 'g': push(memo(decimal_arg('g', pos_ - 1))); break;
        case 'Q': push(persistent_load(pop())); break;
        case 'R': { auto args = pop(); auto fn = pop(); push(reduce(fn, args)); break; }
        case 0x81: { pop(); auto cls = pop(); push(make_str(PyObj::kOpaque, cls->s)); break; }       // NEWOBJ
        case 0x92: { pop(); pop(); auto cls = pop(); push(make_str(PyObj::kOpaque, cls->s)); break; }  // NEWOBJ_EX
        case 'b': pop(); need(1); break;  // BUILD: object state (OrderedDict._metadata, numpy buffers) is dropped
        case 's': { auto v = pop(); auto k = pop(); add_items(top(), {k, v}); break; }
        case 'u': { auto items = pop_mark(); add_items(top(), items); break; }
        case 'a': { auto v = pop(); append(top(), {v}); break; }
        case 'e': { auto items = pop_mark(); append(top(), items); break; }
        case 0x90: pop_mark(); need(1); break;  // ADDITEMS (to a set)
        case 0x91: pop_mark(); push(make_str(PyObj::kOpaque, "frozenset")); break;
        case '0': pop(); break;
        case '1': pop_mark(); break;
        case '2': push(top()); break;
        case '.': need(1); return pop();
        default:
          fail(str_cat("unsupported pickle opcode 0x", std::hex, static_cast<int>(op), std::dec, " at offset ",
                       pos_ - 1));
      }
    }
  }

 private:
  [[noreturn]] void fail(const std::string& what) const {
    throw InputError(str_cat(path_, ": cannot parse data.pkl: ", what));
  }
  /// Records that `container` now holds `items`; refuses nesting deeper than kMaxNesting.
  void nest(const Obj& container, const std::vector<Obj>& items) {
    for (const auto& item : items) {
      if (item->depth + 1 > container->depth) container->depth = item->depth + 1;
    }
    if (container->depth > kMaxNesting) {
      fail(str_cat("containers nested deeper than ", kMaxNesting, " levels at offset ", pos_ - 1));
    }
  }
  /// The decimal argument of a text opcode (`p`, `g`) that started at `start`.
  uint64_t decimal_arg(char op, size_t start) {
    const std::string line = read_line();
    uint64_t v = 0;
    if (line.empty() || line.size() > 19) fail(str_cat("opcode '", op, "' at offset ", start, ": bad argument \"", line.substr(0, 40), "\""));
    for (char c : line) {
      if (c < '0' || c > '9') {
        fail(str_cat("opcode '", op, "' at offset ", start, ": bad argument \"", line.substr(0, 40), "\" (not a number)"));
      }
      v = v * 10 + static_cast<uint64_t>(c - '0');
    }
    return v;
  }
  void need(size_t n) const {
    if (stack_.size() < n) fail(str_cat("stack underflow at offset ", pos_));
  }
  uint8_t u8() {
    if (pos_ >= data_.size()) fail("unexpected end of data.pkl (truncated file?)");
    return static_cast<uint8_t>(data_[pos_++]);
  }
  std::string read(uint64_t n) {
    if (n > data_.size() - pos_) fail("unexpected end of data.pkl (truncated file?)");
    auto s = data_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  uint64_t read_le(size_t n) {
    auto s = read(n);
    uint64_t v = 0;
    for (size_t k = 0; k < n; ++k) v |= static_cast<uint64_t>(static_cast<uint8_t>(s[k])) << (8 * k);
    return v;
  }
  uint32_t u32() { return static_cast<uint32_t>(read_le(4)); }
  uint64_t u64() { return read_le(8); }
  Obj read_long(uint64_t n) {
    if (n > 8) {  // e.g. the legacy format's magic number: kept as an opaque big integer
      read(n);
      return make_str(PyObj::kOpaque, "int");
    }
    if (n == 0) return make_int(0);
    uint64_t v = read_le(n);
    if (n < 8 && (v >> (8 * n - 1)) & 1) v |= ~uint64_t{0} << (8 * n);  // sign-extend
    return make_int(static_cast<int64_t>(v));
  }
  std::string read_line() {
    auto end = data_.find('\n', pos_);
    if (end == std::string::npos) fail("unterminated line (truncated file?)");
    auto s = data_.substr(pos_, end - pos_);
    pos_ = end + 1;
    return s;
  }
  void push(Obj o) { stack_.push_back(std::move(o)); }
  Obj pop() {
    if (stack_.empty()) fail(str_cat("stack underflow at offset ", pos_));
    auto o = stack_.back();
    stack_.pop_back();
    return o;
  }
  Obj top() {
    if (stack_.empty()) fail(str_cat("stack underflow at offset ", pos_));
    return stack_.back();
  }
  std::vector<Obj> pop_mark() {
    if (marks_.empty()) fail(str_cat("MARK missing at offset ", pos_));
    const size_t mark = marks_.back();
    marks_.pop_back();
    if (mark > stack_.size()) fail(str_cat("bad MARK at offset ", pos_));
    std::vector<Obj> items(stack_.begin() + static_cast<std::ptrdiff_t>(mark), stack_.end());
    stack_.resize(mark);
    return items;
  }
  Obj memo(uint64_t key) {
    auto it = memo_.find(key);
    if (it == memo_.end()) fail(str_cat("memo key ", key, " not found"));
    return it->second;
  }
  void add_items(const Obj& target, const std::vector<Obj>& items) {
    if (target->kind != PyObj::kDict) return;  // e.g. a custom mapping object: ignore its items
    nest(target, items);
    for (size_t k = 0; k + 1 < items.size(); k += 2) target->dict.emplace_back(items[k], items[k + 1]);
  }
  void append(const Obj& target, const std::vector<Obj>& items) {
    if (target->kind != PyObj::kList) return;
    nest(target, items);
    target->items.insert(target->items.end(), items.begin(), items.end());
  }

  Obj persistent_load(const Obj& pid) {
    // ('storage', <torch.XStorage>, key, location, numel[, view_metadata])
    if (pid->kind != PyObj::kTuple || pid->items.size() < 5 || pid->items[0]->s != "storage") {
      fail("unknown persistent id (not a tensor storage)");
    }
    if (pid->items.size() > 5 && pid->items[5]->kind != PyObj::kNone) fail("storage views are not supported");
    const std::string key = pid->items[2]->kind == PyObj::kInt ? std::to_string(pid->items[2]->i) : pid->items[2]->s;
    auto cached = storages_.find(key);
    if (cached != storages_.end()) return cached->second;
    const torch::Dtype dtype = storage_dtype(pid->items[1]->s, path_);
    const int64_t numel = pid->items[4]->i;
    int64_t bytes = 0;
    if (pid->items[4]->kind != PyObj::kInt || numel < 0 ||
        __builtin_mul_overflow(numel, static_cast<int64_t>(c10::elementSize(dtype)), &bytes)) {
      fail(str_cat("storage ", key, " has an invalid element count (offset ", pos_ - 1, ")"));
    }
    auto o = make(PyObj::kStorage);
    o->tensor = loader_(key, dtype, numel);
    storages_[key] = o;
    return o;
  }

  std::vector<int64_t> int_list(const Obj& o, const char* what) const {
    if (o->kind != PyObj::kTuple && o->kind != PyObj::kList) fail(str_cat("tensor record: ", what, " is not a tuple"));
    std::vector<int64_t> v;
    for (const auto& item : o->items) {
      if (item->kind != PyObj::kInt || item->i < 0) fail(str_cat("tensor record: ", what, " holds a negative or non-integer value"));
      v.push_back(item->i);
    }
    return v;
  }

  /// A view (offset, sizes, strides) of `storage`, after checking every element it can address lies inside it
  /// (all arithmetic checked: crafted sizes must not wrap around the bounds check).
  torch::Tensor checked_view(const torch::Tensor& storage, const Obj& offset_obj, const Obj& sizes_obj,
                             const Obj& strides_obj) const {
    const auto sizes = int_list(sizes_obj, "size"), strides = int_list(strides_obj, "stride");
    if (sizes.size() != strides.size()) fail("tensor record: size and stride differ in length");
    if (offset_obj->kind != PyObj::kInt || offset_obj->i < 0) fail("tensor record: negative storage offset");
    const int64_t offset = offset_obj->i, numel = storage.numel();
    int64_t last = offset;  // the highest element index the view touches
    bool empty = false;
    for (size_t d = 0; d < sizes.size(); ++d) {
      if (sizes[d] == 0) empty = true;
      int64_t span = 0;
      if (sizes[d] > 0 && (__builtin_mul_overflow(sizes[d] - 1, strides[d], &span) ||
                           __builtin_add_overflow(last, span, &last))) {
        fail(str_cat("tensor record: view of ", sizes.size(), "-d shape overflows (storage offset ", offset, ")"));
      }
    }
    if (!empty && last >= numel) {
      fail(str_cat("tensor record: view reaches element ", last, " but its storage holds ", numel,
                   " (storage offset ", offset, ")"));
    }
    if (empty) return torch::empty(sizes, storage.options());
    return storage.as_strided(sizes, strides, offset);
  }

  Obj reduce(const Obj& fn, const Obj& args) {
    const std::string& name = fn->s;
    if (name == "torch._utils._rebuild_tensor_v2" || name == "torch._utils._rebuild_tensor") {
      if (args->items.size() < 4 || args->items[0]->kind != PyObj::kStorage) fail("malformed tensor record");
      auto o = make(PyObj::kTensor);
      // A view of the storage: the legacy format fills storages after the pickle; read_pth clones at the end.
      o->tensor = checked_view(args->items[0]->tensor, args->items[1], args->items[2], args->items[3]);
      return o;
    }
    if (name == "torch._utils._rebuild_parameter" || name == "torch._utils._rebuild_parameter_with_state" ||
        name == "torch.jit._pickle.restore_type_tag" || name.rfind("torch.jit._pickle.build_", 0) == 0) {
      if (args->items.empty()) fail(str_cat("malformed ", name, " record"));
      return args->items[0];
    }
    if (name == "collections.OrderedDict" || name == "builtins.dict") {
      auto d = make(PyObj::kDict);
      if (!args->items.empty() && args->items[0]->kind == PyObj::kList) {
        for (const auto& pair : args->items[0]->items) {
          if (pair->items.size() == 2) d->dict.emplace_back(pair->items[0], pair->items[1]);
        }
      }
      return d;
    }
    return make_str(PyObj::kOpaque, name);
  }

  const std::string& data_;
  StorageLoader loader_;
  std::string path_;
  size_t pos_;
  std::vector<Obj> stack_;
  std::vector<size_t> marks_;
  std::map<uint64_t, Obj> memo_;
  std::map<std::string, Obj> storages_;
};

std::string first_line(const std::string& text) { return text.substr(0, text.find('\n')); }

std::string shape_str(const torch::Tensor& t) {
  std::ostringstream os;
  os << '[';
  for (int64_t d = 0; d < t.dim(); ++d) os << (d ? "," : "") << t.size(d);
  os << ']';
  return os.str();
}

std::string describe_list(const std::string& what, const std::vector<std::string>& keys) {
  constexpr size_t kShown = 5;
  std::string out = str_cat(keys.size(), " ", what, " (");
  for (size_t k = 0; k < keys.size() && k < kShown; ++k) out += (k ? ", " : "") + keys[k];
  if (keys.size() > kShown) out += ", ...";
  return out + ")";
}

}  // namespace

namespace {

/// Parses the zip format (PyTorch >= 1.6): data.pkl plus one record per storage, data/<key>.
Obj load_zip(const std::string& path) {
  std::unique_ptr<caffe2::serialize::PyTorchStreamReader> reader;
  std::string pickle;
  try {
    reader = std::make_unique<caffe2::serialize::PyTorchStreamReader>(path);
    if (!reader->hasRecord("data.pkl")) {
      std::string records;
      for (const auto& r : reader->getAllRecords()) records += (records.empty() ? "" : ", ") + r;
      throw InputError(str_cat(path, ": zip archive has no data.pkl (records: ", records,
                               "), not a torch.save file"));
    }
    at::DataPtr ptr;
    size_t size = 0;
    std::tie(ptr, size) = reader->getRecord("data.pkl");
    pickle.assign(static_cast<const char*>(ptr.get()), size);
  } catch (const c10::Error& e) {
    throw InputError(str_cat(path, ": unreadable zip archive (truncated or damaged file?): ",
                             first_line(e.what_without_backtrace())));
  }
  auto loader = [&](const std::string& key, torch::Dtype dtype, int64_t numel) {
    const std::string record = "data/" + key;
    if (!reader->hasRecord(record)) {
      throw InputError(str_cat(path, ": storage record ", record, " is missing from the archive"));
    }
    at::DataPtr ptr;
    size_t size = 0;
    std::tie(ptr, size) = reader->getRecord(record);
    const size_t expected = static_cast<size_t>(numel) * c10::elementSize(dtype);
    if (size < expected) {
      throw InputError(str_cat(path, ": storage ", record, " holds ", size, " bytes, expected ", expected,
                               " (truncated file?)"));
    }
    if (numel == 0) return torch::empty({0}, dtype);
    return torch::from_blob(ptr.get(), {numel}, torch::TensorOptions().dtype(dtype)).clone();
  };
  try {
    return Unpickler(pickle, 0, loader, path).run();
  } catch (const c10::Error& e) {
    throw InputError(str_cat(path, ": unreadable tensor data (truncated or damaged file?): ",
                             first_line(e.what_without_backtrace())));
  }
}

/// Parses the legacy format (torch.save before 1.6, or _use_new_zipfile_serialization=False): pickles of the
/// magic number, protocol version and system info, the object, the list of storage keys, then each storage as
/// int64 element count + raw little-endian data, in that order.
Obj load_legacy(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  std::string data((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  std::map<std::string, torch::Tensor> storages;
  auto loader = [&](const std::string& key, torch::Dtype dtype, int64_t numel) {
    // Storages follow the pickles in this file: a count larger than the file is damage, not a huge allocation.
    if (static_cast<uint64_t>(numel) * c10::elementSize(dtype) > data.size()) {
      throw InputError(str_cat(path, ": storage ", key, " claims ", numel, " elements, more than the file holds"));
    }
    auto t = torch::empty({numel}, dtype);
    storages[key] = t;
    return t;
  };
  size_t pos = 0;
  for (int header = 0; header < 3; ++header) {  // magic number, protocol version, sys_info
    Unpickler p(data, pos, loader, path);
    p.run();
    pos = p.position();
  }
  Unpickler main_pickle(data, pos, loader, path);
  Obj root = main_pickle.run();
  Unpickler keys_pickle(data, main_pickle.position(), loader, path);
  Obj keys = keys_pickle.run();
  pos = keys_pickle.position();
  if (keys->kind != PyObj::kList) throw InputError(str_cat(path, ": legacy torch.save file without storage list"));
  for (const auto& key_obj : keys->items) {
    auto it = storages.find(key_obj->s);
    if (it == storages.end()) throw InputError(str_cat(path, ": storage ", key_obj->s, " listed but never used"));
    auto& tensor = it->second;
    if (data.size() - pos < 8) throw InputError(str_cat(path, ": file ends inside storage ", key_obj->s, " (truncated?)"));
    int64_t numel = 0;
    std::memcpy(&numel, data.data() + pos, 8);
    pos += 8;
    const size_t bytes = static_cast<size_t>(tensor.numel()) * tensor.element_size();
    if (numel != tensor.numel() || data.size() - pos < bytes) {
      throw InputError(str_cat(path, ": storage ", key_obj->s, " is truncated or has ", numel, " elements, expected ",
                               tensor.numel()));
    }
    std::memcpy(tensor.data_ptr(), data.data() + pos, bytes);
    pos += bytes;
  }
  return root;
}

}  // namespace

StateDict read_pth(const std::string& path) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) throw InputError(str_cat(path, ": is a directory, not a weight file"));
  std::ifstream file(path, std::ios::binary);
  if (!file) throw InputError(str_cat(path, ": cannot open weight file"));
  char magic[4] = {0, 0, 0, 0};
  file.read(magic, 4);
  const auto got = file.gcount();
  file.close();
  if (got == 0) throw InputError(str_cat(path, ": empty file, not a torch.save archive"));
  Obj root;
  if (got == 4 && std::memcmp(magic, "PK\x03\x04", 4) == 0) {
    root = load_zip(path);
  } else if (static_cast<uint8_t>(magic[0]) == 0x80) {
    try {
      root = load_legacy(path);
    } catch (const InputError& e) {
      throw InputError(str_cat(e.what(), " [legacy (pre-1.6, non-zip) torch.save format; re-saving it with "
                                         "torch.save(obj, f) in a current PyTorch may help]"));
    }
  } else {
    throw InputError(str_cat(path, ": not a zip archive, so not a torch.save file (first bytes 0x", std::hex,
                             static_cast<int>(static_cast<uint8_t>(magic[0])), " 0x",
                             static_cast<int>(static_cast<uint8_t>(magic[1])), ")"));
  }

  if (root->kind != PyObj::kDict) {
    std::string found = kind_name(root->kind);
    if (root->kind == PyObj::kOpaque || root->kind == PyObj::kGlobal) found += " of type " + root->s;
    throw InputError(str_cat(path, ": top-level object is ", found, ", expected a state_dict (dict of tensors) "
                                   "or a dict with a \"state_dict\" entry"));
  }
  Obj dict = root;
  for (const auto& [key, value] : root->dict) {
    if (key->kind == PyObj::kStr && key->s == "state_dict") {
      if (value->kind != PyObj::kDict) {
        throw InputError(str_cat(path, ": \"state_dict\" entry is ", kind_name(value->kind), ", expected a dict"));
      }
      dict = value;
    }
  }
  StateDict state;
  std::vector<std::string> keys;
  for (const auto& [key, value] : dict->dict) {
    if (key->kind == PyObj::kStr) keys.push_back(key->s);
    if (key->kind == PyObj::kStr && value->kind == PyObj::kTensor) state[key->s] = value->tensor.clone();
  }
  if (state.empty()) {
    throw InputError(str_cat(path, ": dict holds no tensors and no \"state_dict\" entry (", describe_list("keys", keys),
                             ")"));
  }
  return state;
}

void write_pth(const StateDict& state, const std::string& path) {
  c10::Dict<std::string, at::Tensor> dict;
  for (const auto& [key, tensor] : state) dict.insert(key, tensor.detach().cpu().contiguous());
  const std::vector<char> bytes = torch::pickle_save(dict);
  // Checked writes, temporary file removed on failure, the previous file untouched (disk full, quota).
  write_file_atomic(path, bytes.data(), bytes.size());
}

StateDict state_dict(torch::nn::Module& module) {
  StateDict state;
  for (const auto& item : module.named_parameters(/*recurse=*/true)) state[item.key()] = item.value();
  for (const auto& item : module.named_buffers(/*recurse=*/true)) state[item.key()] = item.value();
  return state;
}

std::string describe(const LoadReport& report) {
  std::vector<std::string> parts;
  if (!report.missing.empty()) parts.push_back(describe_list("missing", report.missing));
  if (!report.unexpected.empty()) parts.push_back(describe_list("unexpected", report.unexpected));
  if (!report.mismatched.empty()) parts.push_back(describe_list("mismatched", report.mismatched));
  std::string out;
  for (const auto& p : parts) out += (out.empty() ? "" : ", ") + p;
  return out.empty() ? "all keys matched" : out;
}

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

LoadReport load_state_dict(torch::nn::Module& module, const StateDict& state, bool strict,
                           const std::string& source) {
  LoadReport report;
  auto own = state_dict(module);
  torch::NoGradGuard no_grad;
  for (auto& [key, target] : own) {
    auto it = state.find(key);
    if (it == state.end()) {
      if (!ends_with(key, "num_batches_tracked")) report.missing.push_back(key);
      continue;
    }
    if (it->second.sizes() != target.sizes()) {
      report.mismatched.push_back(str_cat(key, ": file ", shape_str(it->second), " vs model ", shape_str(target)));
      continue;
    }
  }
  for (const auto& [key, tensor] : state) {
    if (!own.count(key)) report.unexpected.push_back(key);
  }
  if (strict && !report.ok()) {
    throw InputError(str_cat(source, ": weights do not match the model: ", describe(report)));
  }
  for (auto& [key, target] : own) {
    auto it = state.find(key);
    if (it != state.end() && it->second.sizes() == target.sizes()) target.copy_(it->second);
  }
  return report;
}

LoadReport load_pretrained_backbone(Segmentor& model, const std::string& path) {
  const StateDict file = read_pth(path);
  StateDict mapped;
  for (const auto& [raw_key, tensor] : file) {
    std::string key = raw_key;
    for (const std::string prefix : {"module.", "backbone."}) {
      if (key.rfind(prefix, 0) == 0) key = key.substr(prefix.size());
    }
    // Classification heads and EfficientNet's last 1x1 conv are not part of a segmentation backbone.
    if (key.rfind("fc.", 0) == 0 || key.rfind("classifier.", 0) == 0 || key.rfind("head.", 0) == 0 ||
        key.rfind("features.8.", 0) == 0 || key.rfind("decode_head.", 0) == 0 ||
        key.rfind("auxiliary_head.", 0) == 0) {
      continue;
    }
    mapped[key] = tensor;
  }
  auto report = load_state_dict(*model->backbone(), mapped, /*strict=*/false, path);
  size_t matched = 0;
  for (const auto& [key, tensor] : state_dict(*model->backbone())) {
    auto it = mapped.find(key);
    matched += it != mapped.end() && it->second.sizes() == tensor.sizes();
  }
  if (matched == 0) {
    throw InputError(str_cat(path, ": no backbone weight matched the model's backbone (", describe(report), ")"));
  }
  return report;
}

}  // namespace segkd::models
