// Configuration loading: TOML files -> `extends` resolution -> `--set` overrides -> typed structs -> validation.
//
// One schema drives everything: `fields<S>()` lists every key of a section struct with a pointer to its member, and
// `visit_sections()` lists the sections in canonical order. Parsing, type checks, the "did you mean" search and the
// canonical resolved TOML all walk these two tables, so a key added to a struct and its field list is complete.
//
// Where a value came from is kept on the toml++ nodes themselves (source regions survive because files are merged
// by moving nodes, never copying them); values from `--set` carry the source path "--set KEY=VALUE".
#include "common/config.h"

#include <toml++/toml.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <type_traits>
#include <variant>

#include "common/error.h"
#include "common/hash.h"
#include "common/logging.h"

namespace fs = std::filesystem;

namespace segkd {
namespace {

constexpr const char* kSetPrefix = "--set ";

// ------------------------------------------------------------------------------------------------------------------
// Canonical value formatting (the resolved TOML and the values quoted in error messages).

std::string format_double(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v < 0 ? "-inf" : "inf";
  // Shortest text that reads back to the same double, so the resolved TOML round-trips exactly; fixed notation
  // unless scientific is clearly shorter ("600.0", "0.0005", but "1e-07", "1e+20").
  char buf[64];
  auto general = std::to_chars(buf, buf + sizeof(buf), v);
  std::string s(buf, general.ptr);
  auto fixed = std::to_chars(buf, buf + sizeof(buf), v, std::chars_format::fixed);
  if (fixed.ec == std::errc() && static_cast<size_t>(fixed.ptr - buf) <= s.size() + 2) s.assign(buf, fixed.ptr);
  if (s.find_first_of(".e") == std::string::npos) s += ".0";  // TOML floats need a '.' or an exponent
  return s;
}

std::string format_string(const std::string& s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\t': out += "\\t"; break;
      case '\n': out += "\\n"; break;
      case '\f': out += "\\f"; break;
      case '\r': out += "\\r"; break;
      default:
        if (c < 0x20 || c == 0x7f) {
          char buf[8];
          std::snprintf(buf, sizeof(buf), "\\u%04x", c);
          out += buf;
        } else {
          out += static_cast<char>(c);
        }
    }
  }
  return out + "\"";
}

std::string format_value(bool v) { return v ? "true" : "false"; }
std::string format_value(int64_t v) { return std::to_string(v); }
std::string format_value(double v) { return format_double(v); }
std::string format_value(const std::string& v) { return format_string(v); }
template <typename Seq>
std::string format_sequence(const Seq& seq) {
  std::string out = "[";
  for (size_t i = 0; i < seq.size(); ++i) out += (i ? ", " : "") + format_value(seq[i]);
  return out + "]";
}
template <typename T>
std::string format_value(const std::vector<T>& v) { return format_sequence(v); }
template <typename T, size_t N>
std::string format_value(const std::array<T, N>& v) { return format_sequence(v); }

// ------------------------------------------------------------------------------------------------------------------
// Type names (for "expected X, got Y") and typed reads from toml++ nodes.

std::string type_name(const bool*) { return "boolean"; }
std::string type_name(const int64_t*) { return "integer"; }
std::string type_name(const double*) { return "float"; }
std::string type_name(const std::string*) { return "string"; }
std::string type_name(const std::vector<std::string>*) { return "array of strings"; }
std::string type_name(const std::vector<int64_t>*) { return "array of integers"; }
std::string type_name(const std::vector<double>*) { return "array of floats"; }
template <typename T, size_t N>
std::string type_name(const std::array<T, N>*) {
  return str_cat("array of ", N, " ", type_name(static_cast<const T*>(nullptr)), "s");
}

std::string describe(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::string: return "string";
    case toml::node_type::integer: return "integer";
    case toml::node_type::floating_point: return "float";
    case toml::node_type::boolean: return "boolean";
    case toml::node_type::table: return "table";
    case toml::node_type::array: {
      const auto& a = *n.as_array();
      if (a.empty()) return "empty array";
      std::vector<std::string> kinds;
      for (const auto& e : a) {
        std::string k = describe(e);
        if (std::find(kinds.begin(), kinds.end(), k) == kinds.end()) kinds.push_back(k);
      }
      if (kinds.size() == 1) return str_cat("array of ", a.size(), " ", kinds[0], a.size() == 1 ? "" : "s");
      std::string list;
      for (const auto& k : kinds) list += (list.empty() ? "" : ", ") + k;
      return str_cat("array of ", a.size(), " mixed values (", list, ")");
    }
    case toml::node_type::date: return "date";
    case toml::node_type::time: return "time";
    case toml::node_type::date_time: return "date-time";
    default: return "nothing";
  }
}

bool read_value(const toml::node& n, bool& out) {
  if (const auto* v = n.as_boolean()) return out = v->get(), true;
  return false;
}
bool read_value(const toml::node& n, int64_t& out) {
  if (const auto* v = n.as_integer()) return out = v->get(), true;
  return false;
}
bool read_value(const toml::node& n, double& out) {  // an integer is accepted where a float is expected
  if (const auto* v = n.as_floating_point()) return out = v->get(), true;
  if (const auto* v = n.as_integer()) return out = static_cast<double>(v->get()), true;
  return false;
}
bool read_value(const toml::node& n, std::string& out) {
  if (const auto* v = n.as_string()) return out = v->get(), true;
  return false;
}
template <typename T>
bool read_value(const toml::node& n, std::vector<T>& out) {
  const auto* a = n.as_array();
  if (a == nullptr) return false;
  std::vector<T> items(a->size());
  for (size_t i = 0; i < a->size(); ++i) {
    if (!read_value(*a->get(i), items[i])) return false;
  }
  out = std::move(items);
  return true;
}
template <typename T, size_t N>
bool read_value(const toml::node& n, std::array<T, N>& out) {
  const auto* a = n.as_array();
  if (a == nullptr || a->size() != N) return false;
  std::array<T, N> items{};
  for (size_t i = 0; i < N; ++i) {
    if (!read_value(*a->get(i), items[i])) return false;
  }
  out = items;
  return true;
}

// ------------------------------------------------------------------------------------------------------------------
// The schema.

template <typename S>
using Member = std::variant<bool S::*, int64_t S::*, double S::*, std::string S::*, std::vector<std::string> S::*,
                            std::vector<int64_t> S::*, std::vector<double> S::*, std::array<int64_t, 2> S::*,
                            std::array<double, 2> S::*, std::array<double, 3> S::*>;

/// One key of a section: its name and the struct member it fills.
template <typename S>
struct Field {
  const char* name;
  Member<S> member;
};

template <typename S>
const std::vector<Field<S>>& fields();

template <>
const std::vector<Field<RunConfig>>& fields<RunConfig>() {
  using S = RunConfig;
  static const std::vector<Field<S>> f{
      {"name", &S::name}, {"work_dir", &S::work_dir}, {"seed", &S::seed}, {"threads", &S::threads},
      {"precision", &S::precision}};
  return f;
}

template <>
const std::vector<Field<DataConfig>>& fields<DataConfig>() {
  using S = DataConfig;
  static const std::vector<Field<S>> f{
      {"train", &S::train},         {"val", &S::val},
      {"num_classes", &S::num_classes}, {"ignore_index", &S::ignore_index},
      {"crop", &S::crop},           {"scale_range", &S::scale_range},
      {"flip", &S::flip},           {"photometric", &S::photometric},
      {"batch_per_rank", &S::batch_per_rank}, {"workers", &S::workers},
      {"prefetch", &S::prefetch},   {"mean", &S::mean},
      {"std", &S::std}};
  return f;
}

template <>
const std::vector<Field<ModelConfig>>& fields<ModelConfig>() {
  using S = ModelConfig;
  static const std::vector<Field<S>> f{
      {"arch", &S::arch},         {"backbone", &S::backbone}, {"pretrained", &S::pretrained},
      {"weights", &S::weights},   {"aux_head", &S::aux_head}, {"dropout", &S::dropout},
      {"output_stride", &S::output_stride}, {"sync_bn", &S::sync_bn}, {"concurrent", &S::concurrent},
      {"fold_bn", &S::fold_bn},   {"precision", &S::precision}, {"calibration_batches", &S::calibration_batches}};
  return f;
}

template <>
const std::vector<Field<LossConfig>>& fields<LossConfig>() {
  using S = LossConfig;
  static const std::vector<Field<S>> f{
      {"aux_weight", &S::aux_weight}, {"class_weights", &S::class_weights}, {"skip_nonfinite", &S::skip_nonfinite},
      {"max_skipped_steps", &S::max_skipped_steps}};
  return f;
}

template <>
const std::vector<Field<DistillConfig>>& fields<DistillConfig>() {
  using S = DistillConfig;
  static const std::vector<Field<S>> f{
      {"type", &S::type},           {"weight", &S::weight},       {"tau", &S::tau},
      {"resolution", &S::resolution}, {"mask_ignore", &S::mask_ignore}, {"student", &S::student},
      {"teacher", &S::teacher},     {"normalize", &S::normalize}, {"projector", &S::projector},
      {"on", &S::on},               {"pool_kernel", &S::pool_kernel}, {"beta", &S::beta},
      {"gamma", &S::gamma}};
  return f;
}

template <>
const std::vector<Field<OptimizerConfig>>& fields<OptimizerConfig>() {
  using S = OptimizerConfig;
  static const std::vector<Field<S>> f{
      {"lr", &S::lr},           {"momentum", &S::momentum},
      {"nesterov", &S::nesterov}, {"weight_decay", &S::weight_decay},
      {"no_decay_norm_bias", &S::no_decay_norm_bias}, {"head_lr_mult", &S::head_lr_mult}};
  return f;
}

template <>
const std::vector<Field<ScheduleConfig>>& fields<ScheduleConfig>() {
  using S = ScheduleConfig;
  static const std::vector<Field<S>> f{
      {"policy", &S::policy}, {"iterations", &S::iterations}, {"budget", &S::budget},
      {"power", &S::power},   {"warmup_iters", &S::warmup_iters}, {"warmup_ratio", &S::warmup_ratio},
      {"steps", &S::steps},   {"gamma", &S::gamma},           {"extend", &S::extend},
      {"min_lr", &S::min_lr}};
  return f;
}

template <>
const std::vector<Field<EvalConfig>>& fields<EvalConfig>() {
  using S = EvalConfig;
  static const std::vector<Field<S>> f{
      {"interval", &S::interval}, {"mode", &S::mode}, {"slide_crop", &S::slide_crop},
      {"slide_stride", &S::slide_stride}};
  return f;
}

template <>
const std::vector<Field<CheckpointConfig>>& fields<CheckpointConfig>() {
  using S = CheckpointConfig;
  static const std::vector<Field<S>> f{{"interval", &S::interval}, {"keep", &S::keep}, {"on_signal", &S::on_signal}};
  return f;
}

template <>
const std::vector<Field<DistributedConfig>>& fields<DistributedConfig>() {
  using S = DistributedConfig;
  static const std::vector<Field<S>> f{
      {"backend", &S::backend}, {"bucket_mb", &S::bucket_mb}, {"first_bucket_mb", &S::first_bucket_mb},
      {"timeout_s", &S::timeout_s}};
  return f;
}

template <>
const std::vector<Field<LogConfig>>& fields<LogConfig>() {
  using S = LogConfig;
  static const std::vector<Field<S>> f{{"interval", &S::interval}, {"level", &S::level}};
  return f;
}

template <typename T>
struct is_optional : std::false_type {};
template <typename T>
struct is_optional<std::optional<T>> : std::true_type {};
template <typename T>
struct is_vector : std::false_type {};
template <typename T>
struct is_vector<std::vector<T>> : std::true_type {};

/// Calls fn(name, section) for every section of `cfg` in canonical order. `teacher` is an optional table,
/// `distill` an array of tables; every other section is a plain table.
template <typename C, typename Fn>
void visit_sections(C& cfg, Fn&& fn) {
  fn("run", cfg.run);
  fn("data", cfg.data);
  fn("student", cfg.student);
  fn("teacher", cfg.teacher);
  fn("loss", cfg.loss);
  fn("distill", cfg.distill);
  fn("optimizer", cfg.optimizer);
  fn("schedule", cfg.schedule);
  fn("eval", cfg.eval);
  fn("checkpoint", cfg.checkpoint);
  fn("distributed", cfg.distributed);
  fn("log", cfg.log);
}

template <typename T>
struct section_struct {
  using type = T;
};
template <typename T>
struct section_struct<std::optional<T>> {
  using type = T;
};
template <typename T>
struct section_struct<std::vector<T>> {
  using type = T;
};

/// Every valid key in generic form ("student.arch", "distill.tau") with its type name; plus the section names.
struct KeyIndex {
  std::map<std::string, std::string> types;
  std::vector<std::string> sections;
};

const KeyIndex& key_index() {
  static const KeyIndex index = [] {
    KeyIndex k;
    Config dummy;
    visit_sections(dummy, [&](const char* name, auto& section) {
      using S = typename section_struct<std::decay_t<decltype(section)>>::type;
      k.sections.push_back(name);
      S value{};
      for (const auto& f : fields<S>()) {
        std::visit([&](auto m) { k.types[str_cat(name, ".", f.name)] = type_name(&(value.*m)); }, f.member);
      }
    });
    return k;
  }();
  return index;
}

std::string leaf_of(const std::string& path) {
  auto dot = path.rfind('.');
  return dot == std::string::npos ? path : path.substr(dot + 1);
}
std::string parent_of(const std::string& path) {
  auto dot = path.rfind('.');
  return dot == std::string::npos ? std::string() : path.substr(0, dot);
}

/// " (did you mean 'X'?)" for the valid key nearest to `path` (display form, e.g. "distill[1].tua").
std::string suggestion(const std::string& path) {
  const KeyIndex& index = key_index();
  // Array items are addressed as "distill[i]"; suggest keys of the same item.
  std::string item_prefix;
  if (path.rfind("distill[", 0) == 0) {
    auto close = path.find(']');
    if (close != std::string::npos) item_prefix = path.substr(0, close + 1);
  }
  std::vector<std::string> candidates = index.sections;
  for (const auto& [key, type] : index.types) {
    if (!item_prefix.empty() && key.rfind("distill.", 0) == 0) {
      candidates.push_back(item_prefix + key.substr(std::strlen("distill")));
    } else {
      candidates.push_back(key);
    }
  }
  std::string best;
  size_t best_score = std::string::npos;
  for (const auto& c : candidates) {
    // Whole-path distance, or the leaf's distance when the key was written in the wrong section
    // ("lr" at the top level -> "optimizer.lr").
    size_t whole = edit_distance(path, c);
    size_t by_leaf = edit_distance(leaf_of(path), leaf_of(c)) + (parent_of(path) == parent_of(c) ? 0 : 1);
    size_t score = std::min(whole, by_leaf);
    if (score < best_score) best_score = score, best = c;
  }
  if (best.empty() || best_score > std::max<size_t>(3, path.size() / 2)) return "";
  return " (did you mean '" + best + "'?)";
}

// ------------------------------------------------------------------------------------------------------------------
// Locations.

/// "FILE:LINE:COL" of a node, "--set KEY=VALUE" for an override, "" when unknown (defaults, created tables).
std::string where(const toml::node& n) {
  const auto& src = n.source();
  if (!src.path || src.path->empty()) return "";
  if (src.path->rfind(kSetPrefix, 0) == 0) return *src.path;
  if (src.begin.line == 0) return *src.path;
  return str_cat(*src.path, ":", src.begin.line, ":", src.begin.column);
}

std::string at(const std::string& location) { return location.empty() ? "" : location + ": "; }

ConfigError unknown_key(const std::string& path, const std::string& location) {
  return ConfigError(at(location) + "unknown key '" + path + "'" + suggestion(path));
}

// ------------------------------------------------------------------------------------------------------------------
// Files, `extends`, merging.

toml::table parse_text(const std::string& text, const std::string& path) {
  try {
    return toml::parse(text, path);
  } catch (const toml::parse_error& e) {
    throw ConfigError(str_cat(path, ":", e.source().begin.line, ":", e.source().begin.column,
                              ": malformed TOML: ", e.description()));
  }
}

toml::table read_file(const std::string& path, const std::string& referenced_at) {
  std::error_code ec;
  if (!fs::is_regular_file(path, ec)) throw ConfigError(at(referenced_at) + "config file not found: " + path);
  std::ifstream in(path, std::ios::binary);
  std::ostringstream text;
  text << in.rdbuf();
  if (!in.good() && !in.eof()) {
    throw ConfigError(at(referenced_at) + "cannot read config file " + path + ": " + std::strerror(errno));
  }
  return parse_text(text.str(), path);
}

/// Deep merge: tables merge key by key, anything else (values, arrays, arrays of tables) in `src` replaces.
/// Nodes are moved so they keep their source regions.
void deep_merge(toml::table& dst, toml::table& src) {
  for (auto&& [k, v] : src) {
    std::string key(k.str());
    toml::node* existing = dst.get(key);
    if (existing != nullptr && existing->is_table() && v.is_table()) {
      deep_merge(*existing->as_table(), *v.as_table());
    } else {
      dst.insert_or_assign(key, std::move(v));
    }
  }
}

class ExtendsResolver {
 public:
  /// Returns `tbl` (read from `path`) merged over its bases, recursively, with `extends` removed.
  toml::table resolve(toml::table tbl, const std::string& path, const std::string& referenced_at) {
    std::error_code ec;
    std::string identity = fs::weakly_canonical(fs::absolute(path), ec).string();
    if (ec) identity = fs::absolute(path).lexically_normal().string();
    for (size_t i = 0; i < stack_.size(); ++i) {
      if (stack_[i].first == identity) {
        std::string chain;
        for (size_t j = i; j < stack_.size(); ++j) chain += stack_[j].second + " -> ";
        throw ConfigError(at(referenced_at) + "extends cycle: " + chain + path);
      }
    }
    stack_.emplace_back(identity, path);

    toml::table merged;
    if (toml::node* ext = tbl.get("extends")) {
      std::vector<const toml::node*> entries;
      if (ext->is_string()) {
        entries.push_back(ext);
      } else if (const auto* a = ext->as_array()) {
        for (const auto& e : *a) entries.push_back(&e);
      }
      if (entries.empty() && !ext->is_array()) {
        throw ConfigError(at(where(*ext)) + "wrong type for extends: expected array of strings, got " +
                          describe(*ext));
      }
      for (const toml::node* e : entries) {
        if (!e->is_string()) {
          throw ConfigError(at(where(*e)) + "wrong type for extends: expected array of strings, got an item of type " +
                            describe(*e));
        }
        fs::path base = e->as_string()->get();
        if (base.is_relative()) base = fs::path(path).parent_path() / base;
        std::string base_path = base.lexically_normal().string();
        toml::table base_table = resolve(read_file(base_path, where(*e)), base_path, where(*e));
        deep_merge(merged, base_table);
      }
      tbl.erase("extends");
    }
    deep_merge(merged, tbl);
    stack_.pop_back();
    return merged;
  }

 private:
  std::vector<std::pair<std::string, std::string>> stack_;  // (canonical identity, path as written)
};

// ------------------------------------------------------------------------------------------------------------------
// `--set` overrides.

std::string trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

bool is_index(const std::string& s) {
  return !s.empty() && s.size() < 9 && std::all_of(s.begin(), s.end(), [](char c) { return std::isdigit(c); });
}

void apply_override(toml::table& root, const std::string& item) {
  const std::string origin = kSetPrefix + item;
  auto eq = item.find('=');
  if (eq == std::string::npos) throw ConfigError(origin + ": expected KEY=VALUE");
  std::string key = trim(item.substr(0, eq));
  std::string text = trim(item.substr(eq + 1));

  // "distill[0].tau" and "distill.0.tau" are the same key.
  std::string dotted;
  for (char c : key) {
    if (c == '[') {
      dotted += '.';
    } else if (c != ']') {
      dotted += c;
    }
  }
  std::vector<std::string> tokens;
  {
    std::stringstream ss(dotted);
    std::string t;
    while (std::getline(ss, t, '.')) tokens.push_back(trim(t));
    if (!dotted.empty() && dotted.back() == '.') tokens.emplace_back();
  }
  if (tokens.empty() || std::any_of(tokens.begin(), tokens.end(), [](const auto& t) { return t.empty(); })) {
    throw ConfigError(origin + ": malformed key '" + key + "'");
  }

  // Generic form (for the schema) and display form (for messages).
  std::string generic, display;
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (i == 1 && tokens[0] == "distill" && is_index(tokens[1])) {
      display += "[" + tokens[1] + "]";
      continue;
    }
    generic += (generic.empty() ? "" : ".") + tokens[i];
    display += (display.empty() ? "" : ".") + tokens[i];
  }
  const KeyIndex& index = key_index();
  auto type_it = index.types.find(generic);
  bool is_section = std::find(index.sections.begin(), index.sections.end(), generic) != index.sections.end();
  bool item_table = tokens.size() == 2 && tokens[0] == "distill" && is_index(tokens[1]);
  if (type_it == index.types.end() && !is_section && !item_table) {
    throw ConfigError(origin + ": unknown key '" + display + "'" + suggestion(display));
  }
  const std::string expected = type_it == index.types.end() ? "" : type_it->second;

  // The value is TOML (`0.02`, `[256, 512]`, `"x"`); a bare word is a string. A string-typed key takes the text
  // as written (`run.name=123`), and an array-of-strings key accepts a single string.
  auto parse_value = [&](const std::string& toml_text) { return toml::parse("v = " + toml_text, origin); };
  toml::table parsed;
  try {
    parsed = parse_value(text);
  } catch (const toml::parse_error&) {
    parsed = parse_value(format_string(text));
  }
  if (parsed.size() != 1 || parsed.get("v") == nullptr) parsed = parse_value(format_string(text));
  if (expected == "string" && !parsed.get("v")->is_string()) parsed = parse_value(format_string(text));
  if (expected == "array of strings" && parsed.get("v")->is_string()) {
    parsed = parse_value("[" + format_string(parsed.get("v")->as_string()->get()) + "]");
  }
  toml::node& value = *parsed.get("v");

  toml::node* cur = &root;
  std::string walked;
  for (size_t i = 0; i + 1 < tokens.size(); ++i) {
    const std::string& t = tokens[i];
    if (auto* tbl = cur->as_table()) {
      const toml::node* child = tbl->get(t);
      if (child == nullptr && is_index(tokens[i + 1])) {  // "distill.0.tau" with no [[distill]] at all
        throw ConfigError(str_cat(origin, ": index ", tokens[i + 1], " out of range: ", t, " has 0 entries"));
      }
      // A missing table is created (`--set teacher.arch=...` configures a teacher); "none" is replaced.
      if (child == nullptr || (child->is_string() && child->as_string()->get() == "none")) {
        tbl->insert_or_assign(t, toml::table{});
      }
      cur = tbl->get(t);
    } else if (auto* arr = cur->as_array()) {
      size_t idx = std::stoul(t);
      if (idx >= arr->size()) {
        throw ConfigError(str_cat(origin, ": index ", idx, " out of range: ", walked, " has ", arr->size(),
                                  " entries"));
      }
      cur = arr->get(idx);
    } else {
      throw ConfigError(origin + ": " + walked + " is not a table");
    }
    walked += (walked.empty() ? "" : ".") + t;
  }
  if (auto* arr = cur->as_array(); arr != nullptr && is_index(tokens.back())) {  // "distill[0]={type=...}"
    size_t idx = std::stoul(tokens.back());
    if (idx >= arr->size()) {
      throw ConfigError(str_cat(origin, ": index ", idx, " out of range: ", walked, " has ", arr->size(),
                                " entries"));
    }
    arr->replace(arr->cbegin() + static_cast<std::ptrdiff_t>(idx), std::move(value));
    return;
  }
  auto* tbl = cur->as_table();
  if (tbl == nullptr) throw ConfigError(origin + ": " + walked + " is not a table");
  tbl->insert_or_assign(tokens.back(), std::move(value));
}

// ------------------------------------------------------------------------------------------------------------------
// Typed structs from the merged table.

/// Location of every key read ("data.crop" -> "base.toml:7:8"), for range errors found after parsing.
using Locations = std::map<std::string, std::string>;

template <typename S>
void read_struct(const toml::table& tbl, const std::string& prefix, S& out, Locations& loc) {
  const auto& flds = fields<S>();
  for (auto&& [k, v] : tbl) {
    std::string key(k.str());
    std::string path = prefix + "." + key;
    auto it = std::find_if(flds.begin(), flds.end(), [&](const Field<S>& f) { return key == f.name; });
    if (it == flds.end()) throw unknown_key(path, where(v));
    loc[path] = where(v);
    std::visit(
        [&](auto m) {
          auto& dst = out.*m;
          if (!read_value(v, dst)) {
            throw ConfigError(at(where(v)) + "wrong type for " + path + ": expected " + type_name(&dst) + ", got " +
                              describe(v));
          }
        },
        it->member);
  }
}

void read_config(const toml::table& root, Config& cfg, Locations& loc) {
  for (auto&& [k, v] : root) {
    std::string key(k.str());
    bool known = false;
    visit_sections(cfg, [&](const char* name, auto& section) {
      using T = std::decay_t<decltype(section)>;
      if (key != name) return;
      known = true;
      loc[key] = where(v);
      auto wrong = [&](const std::string& expected) {
        return ConfigError(at(where(v)) + "wrong type for " + key + ": expected " + expected + ", got " + describe(v));
      };
      if constexpr (is_optional<T>::value) {
        if (v.is_string() && v.as_string()->get() == "none") {  // `teacher = "none"` / `--set teacher=none`
          section.reset();
          return;
        }
        if (!v.is_table()) throw wrong("table (or \"none\")");
        section.emplace();
        read_struct(*v.as_table(), key, *section, loc);
      } else if constexpr (is_vector<T>::value) {
        const auto* arr = v.as_array();
        if (arr == nullptr) throw wrong("array of tables ([[" + key + "]])");
        section.clear();
        for (size_t i = 0; i < arr->size(); ++i) {
          const toml::node& item = *arr->get(i);
          std::string prefix = str_cat(key, "[", i, "]");
          if (!item.is_table()) {
            throw ConfigError(at(where(item)) + "wrong type for " + prefix + ": expected table, got " +
                              describe(item));
          }
          loc[prefix] = where(item);
          section.emplace_back();
          read_struct(*item.as_table(), prefix, section.back(), loc);
        }
      } else {
        if (!v.is_table()) throw wrong("table");
        read_struct(*v.as_table(), key, section, loc);
      }
    });
    if (!known) throw unknown_key(key, where(v));
  }
}

/// The canonical TOML of `cfg`: every key, defaults included, in schema order. `shown` receives each key's value
/// text for error messages.
std::string render(const Config& cfg, std::map<std::string, std::string>& shown) {
  std::string out;
  auto emit = [&](const std::string& header, const std::string& prefix, const auto& s) {
    using S = std::decay_t<decltype(s)>;
    if (!out.empty()) out += "\n";
    out += header + "\n";
    for (const auto& f : fields<S>()) {
      std::visit(
          [&](auto m) {
            std::string text = format_value(s.*m);
            out += std::string(f.name) + " = " + text + "\n";
            shown[prefix + "." + f.name] = text;
          },
          f.member);
    }
  };
  visit_sections(cfg, [&](const char* name, const auto& section) {
    using T = std::decay_t<decltype(section)>;
    if constexpr (is_optional<T>::value) {
      if (section) emit(str_cat("[", name, "]"), name, *section);
    } else if constexpr (is_vector<T>::value) {
      for (size_t i = 0; i < section.size(); ++i) {
        emit(str_cat("[[", name, "]]"), str_cat(name, "[", i, "]"), section[i]);
      }
    } else {
      emit(str_cat("[", name, "]"), name, section);
    }
  });
  return out;
}

// ------------------------------------------------------------------------------------------------------------------
// Validation of values.

class Checker {
 public:
  Checker(const Locations& loc, const std::map<std::string, std::string>& shown) : loc_(loc), shown_(shown) {}

  /// Throws "LOC: PATH = VALUE: MESSAGE" unless `ok`.
  void operator()(bool ok, const std::string& path, const std::string& message) const {
    if (ok) return;
    auto l = loc_.find(path);
    auto s = shown_.find(path);
    throw ConfigError(at(l == loc_.end() ? "" : l->second) + path + (s == shown_.end() ? "" : " = " + s->second) +
                      ": " + message);
  }

  void one_of(const std::string& value, std::initializer_list<const char*> allowed, const std::string& path) const {
    one_of(value, std::vector<std::string>(allowed.begin(), allowed.end()), path);
  }

  void one_of(const std::string& value, const std::vector<std::string>& allowed, const std::string& path) const {
    std::string list;
    for (const auto& a : allowed) {
      if (value == a) return;
      list += (list.empty() ? "" : "|") + a;
    }
    (*this)(false, path, "must be one of " + list);
  }

 private:
  const Locations& loc_;
  const std::map<std::string, std::string>& shown_;
};

bool positive_multiple_of_8(int64_t v) { return v > 0 && v % 8 == 0; }

void validate_model(const ModelConfig& m, const std::string& p, const Checker& check) {
  check.one_of(m.arch, {"pspnet", "deeplabv3"}, p + ".arch");
  check.one_of(m.backbone, {"resnet18_v1c", "resnet34_v1c", "resnet50_v1c", "resnet101_v1c", "efficientnet_b0"},
               p + ".backbone");
  check(m.dropout >= 0 && m.dropout < 1, p + ".dropout", "must be in [0, 1)");
  check(m.output_stride == 8 || m.output_stride == 16, p + ".output_stride", "must be 8 or 16");
  if (p == "student") {
    check(m.precision.empty(), p + ".precision", "applies to the teacher only; the student follows run.precision");
  } else {
    check(m.precision.empty() || m.precision == "fp32" || m.precision == "int8" || m.precision == "fp16" ||
              m.precision == "bf16",
          p + ".precision", "must be one of fp32|int8|fp16|bf16 (or unset: int8 on CPU, run.precision on CUDA)");
  }
  check(m.calibration_batches >= 1, p + ".calibration_batches", "must be >= 1");
}

void validate_distill(const Config& cfg, size_t i, const Checker& check) {
  const DistillConfig& d = cfg.distill[i];
  const std::string p = str_cat("distill[", i, "]");
  check.one_of(d.type, {"logit", "feature", "cwd", "pairwise", "ifvd", "at", "dist"}, p + ".type");
  check(cfg.teacher.has_value(), p, "KD terms need a [teacher] table");
  check(d.weight >= 0, p + ".weight", "must be >= 0");
  check(d.tau > 0, p + ".tau", "must be > 0");
  check.one_of(d.resolution, {"logits", "label"}, p + ".resolution");
  for (const char* side : {"student", "teacher"}) {
    const auto& names = std::string(side) == "student" ? d.student : d.teacher;
    for (const auto& n : names) check.one_of(n, {"layer1", "layer2", "layer3", "layer4", "head"}, p + "." + side);
  }
  bool uses_features = d.type == "feature" || d.type == "pairwise" || d.type == "ifvd" || d.type == "at" ||
                       (d.type == "cwd" && d.on == "feature");
  if (uses_features) check(!d.student.empty(), p + ".student", "must name at least one feature");
  check(d.teacher.size() == d.student.size(), p + ".teacher",
        str_cat("must list as many features as ", p, ".student (", d.student.size(), ")"));
  check.one_of(d.normalize, {"none", "channel"}, p + ".normalize");
  check.one_of(d.projector, {"conv1x1", "conv1x1_bn"}, p + ".projector");
  check.one_of(d.on, {"logits", "feature"}, p + ".on");
  check(d.pool_kernel >= 1, p + ".pool_kernel", "must be >= 1");
  check(d.beta >= 0, p + ".beta", "must be >= 0");
  check(d.gamma >= 0, p + ".gamma", "must be >= 0");
}

void validate(const Config& cfg, const Checker& check) {
  check(!cfg.run.work_dir.empty(), "run.work_dir", "must not be empty");
  check(cfg.run.threads >= 0, "run.threads", "must be >= 0");
  check.one_of(cfg.run.precision, {"fp32", "fp16", "bf16"}, "run.precision");

  const DataConfig& d = cfg.data;
  check(d.num_classes >= 1, "data.num_classes", "must be >= 1");
  check(d.ignore_index >= 0 && d.ignore_index <= 255, "data.ignore_index", "must be in [0, 255]");
  check(positive_multiple_of_8(d.crop[0]) && positive_multiple_of_8(d.crop[1]), "data.crop",
        "each must be a positive multiple of 8");
  check(d.scale_range[0] > 0 && d.scale_range[0] <= d.scale_range[1], "data.scale_range",
        "must be positive and increasing ([min, max], min <= max)");
  check(d.batch_per_rank >= 1, "data.batch_per_rank", "must be >= 1");
  check(d.workers >= 0, "data.workers", "must be >= 0");
  check(d.prefetch >= 1, "data.prefetch", "must be >= 1");
  check(d.std[0] > 0 && d.std[1] > 0 && d.std[2] > 0, "data.std", "each must be > 0");

  validate_model(cfg.student, "student", check);
  if (cfg.teacher) validate_model(*cfg.teacher, "teacher", check);

  check(cfg.loss.aux_weight >= 0, "loss.aux_weight", "must be >= 0");
  check(cfg.loss.max_skipped_steps >= 1, "loss.max_skipped_steps", "must be >= 1");
  if (!cfg.loss.class_weights.empty()) {
    check(static_cast<int64_t>(cfg.loss.class_weights.size()) == d.num_classes, "loss.class_weights",
          str_cat("must have data.num_classes (", d.num_classes, ") entries"));
    for (double w : cfg.loss.class_weights) check(w >= 0, "loss.class_weights", "each must be >= 0");
  }
  for (size_t i = 0; i < cfg.distill.size(); ++i) validate_distill(cfg, i, check);

  const OptimizerConfig& o = cfg.optimizer;
  check(o.lr > 0, "optimizer.lr", "must be > 0");
  check(o.momentum >= 0 && o.momentum < 1, "optimizer.momentum", "must be in [0, 1)");
  check(o.weight_decay >= 0, "optimizer.weight_decay", "must be >= 0");
  check(o.head_lr_mult > 0, "optimizer.head_lr_mult", "must be > 0");

  const ScheduleConfig& s = cfg.schedule;
  check.one_of(s.policy, {"poly", "step"}, "schedule.policy");
  check(s.iterations >= 1, "schedule.iterations", "must be >= 1");
  if (!s.budget.empty()) {
    double seconds = 0;
    try {
      seconds = parse_duration(s.budget, "schedule.budget");
    } catch (const ConfigError&) {
      check(false, "schedule.budget", "not a duration (expected e.g. \"90s\", \"45m\", \"2h\", \"1h30m\" or seconds)");
    }
    check(seconds > 0, "schedule.budget", "must be > 0");
  }
  check(s.power >= 0, "schedule.power", "must be >= 0");
  check(s.warmup_iters >= 0, "schedule.warmup_iters", "must be >= 0");
  check(s.warmup_ratio > 0 && s.warmup_ratio <= 1, "schedule.warmup_ratio", "must be in (0, 1]");
  for (size_t i = 0; i < s.steps.size(); ++i) {
    check(s.steps[i] >= 1 && (i == 0 || s.steps[i] > s.steps[i - 1]), "schedule.steps",
          "must be positive and strictly increasing");
  }
  check(s.gamma > 0, "schedule.gamma", "must be > 0");
  check(s.extend > 0, "schedule.extend", "must be > 0");
  check(s.min_lr >= 0, "schedule.min_lr", "must be >= 0");

  const EvalConfig& e = cfg.eval;
  check(e.interval >= 0, "eval.interval", "must be >= 0");
  check.one_of(e.mode, {"whole", "slide"}, "eval.mode");
  check(e.slide_crop[0] > 0 && e.slide_crop[1] > 0, "eval.slide_crop", "each must be > 0");
  check(e.slide_stride[0] > 0 && e.slide_stride[1] > 0, "eval.slide_stride", "each must be > 0");

  check(cfg.checkpoint.interval >= 0, "checkpoint.interval", "must be >= 0");
  check(cfg.checkpoint.keep >= 1, "checkpoint.keep", "must be >= 1");

  const DistributedConfig& dist = cfg.distributed;
  check.one_of(dist.backend, {"auto", "mpi", "nccl"}, "distributed.backend");
  check(dist.bucket_mb > 0, "distributed.bucket_mb", "must be > 0");
  check(dist.first_bucket_mb > 0, "distributed.first_bucket_mb", "must be > 0");
  check(dist.timeout_s > 0, "distributed.timeout_s", "must be > 0");

  check(cfg.log.interval >= 1, "log.interval", "must be >= 1");
  check.one_of(cfg.log.level, log_level_names(), "log.level");
}

Config finish(toml::table root, const std::string& source_path, const std::vector<std::string>& overrides) {
  for (const auto& item : overrides) apply_override(root, item);
  Config cfg;
  Locations loc;
  read_config(root, cfg, loc);
  std::map<std::string, std::string> shown;
  cfg.resolved_toml = render(cfg, shown);
  validate(cfg, Checker(loc, shown));
  cfg.source_path = source_path;
  cfg.hash = stable_hash(cfg.resolved_toml);
  return cfg;
}

}  // namespace

Config load_config(const std::string& path, const std::vector<std::string>& overrides) {
  ExtendsResolver resolver;
  toml::table root = resolver.resolve(read_file(path, ""), path, "");
  return finish(std::move(root), path, overrides);
}

Config load_config_from_string(const std::string& toml, const std::string& virtual_path,
                               const std::vector<std::string>& overrides) {
  ExtendsResolver resolver;
  toml::table root = resolver.resolve(parse_text(toml, virtual_path), virtual_path, "");
  return finish(std::move(root), virtual_path, overrides);
}

double parse_duration(const std::string& text, const std::string& key) {
  auto fail = [&]() -> ConfigError {
    return ConfigError(key + " = \"" + text +
                       "\": not a duration (expected e.g. \"90s\", \"45m\", \"2h\", \"1h30m\" or seconds)");
  };
  std::string s = trim(text);
  if (s.empty()) throw fail();
  double total = 0;
  size_t pos = 0;
  bool any_unit = false;
  std::string units_seen;
  while (pos < s.size()) {
    size_t start = pos;
    while (pos < s.size() && (std::isdigit(static_cast<unsigned char>(s[pos])) || s[pos] == '.')) ++pos;
    std::string number = s.substr(start, pos - start);
    if (number.empty() || number == "." || std::count(number.begin(), number.end(), '.') > 1) throw fail();
    double value = std::strtod(number.c_str(), nullptr);
    if (pos == s.size()) {
      if (any_unit) throw fail();  // "1h30" is ambiguous
      total += value;
      break;
    }
    char unit = static_cast<char>(std::tolower(static_cast<unsigned char>(s[pos++])));
    double scale = unit == 'd' ? 86400 : unit == 'h' ? 3600 : unit == 'm' ? 60 : unit == 's' ? 1 : -1;
    if (scale < 0 || units_seen.find(unit) != std::string::npos) throw fail();
    units_seen += unit;
    any_unit = true;
    total += value * scale;
  }
  if (!std::isfinite(total)) throw fail();
  return total;
}

std::string stable_hash(const std::string& text) { return Fnv1a64().update(text).hex(); }

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t substitute = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, substitute});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

}  // namespace segkd
