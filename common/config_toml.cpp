// TOML files -> `extends` resolution -> `--set` overrides -> typed reads (see config_toml.h).
#include "common/config_toml.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace fs = std::filesystem;

namespace segkd::config_toml {
namespace {

constexpr const char* kSetPrefix = "--set ";

bool read_one(const toml::node& n, bool& out) {
  if (const auto* v = n.as_boolean()) return out = v->get(), true;
  return false;
}
bool read_one(const toml::node& n, int64_t& out) {
  if (const auto* v = n.as_integer()) return out = v->get(), true;
  return false;
}
bool read_one(const toml::node& n, double& out) {  // an integer is accepted where a float is expected
  if (const auto* v = n.as_floating_point()) return out = v->get(), true;
  if (const auto* v = n.as_integer()) return out = static_cast<double>(v->get()), true;
  return false;
}
bool read_one(const toml::node& n, std::string& out) {
  if (const auto* v = n.as_string()) return out = v->get(), true;
  return false;
}
template <typename T>
bool read_one(const toml::node& n, std::vector<T>& out) {
  const auto* a = n.as_array();
  if (a == nullptr) return false;
  std::vector<T> items(a->size());
  for (size_t i = 0; i < a->size(); ++i) {
    if (!read_one(*a->get(i), items[i])) return false;
  }
  out = std::move(items);
  return true;
}
template <typename T, size_t N>
bool read_one(const toml::node& n, std::array<T, N>& out) {
  const auto* a = n.as_array();
  if (a == nullptr || a->size() != N) return false;
  std::array<T, N> items{};
  for (size_t i = 0; i < N; ++i) {
    if (!read_one(*a->get(i), items[i])) return false;
  }
  out = items;
  return true;
}

std::string trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

bool is_index(const std::string& s) {
  return !s.empty() && s.size() < 9 && std::all_of(s.begin(), s.end(), [](char c) { return std::isdigit(c); });
}

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

}  // namespace

std::string where(const toml::node& n) {
  const auto& src = n.source();
  if (!src.path || src.path->empty()) return "";
  if (src.path->rfind(kSetPrefix, 0) == 0) return *src.path;
  if (src.begin.line == 0) return *src.path;
  return str_cat(*src.path, ":", src.begin.line, ":", src.begin.column);
}

bool from_override(const toml::node& n) {
  const auto& src = n.source();
  return src.path && src.path->rfind(kSetPrefix, 0) == 0;
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

bool read_value(const toml::node& n, const ValueRef& ref) {
  return std::visit([&](auto* p) { return read_one(n, *p); }, ref);
}

void read_field(const toml::node& n, const std::string& path, const ValueRef& ref) {
  if (!read_value(n, ref)) {
    throw ConfigError(at(where(n)) + "wrong type for " + path + ": expected " + type_name(ref) + ", got " +
                      describe(n));
  }
}

void read_table(const toml::table& tbl, const std::string& prefix, const BoundFields& fields, Locations& loc,
                const UnknownKey& unknown) {
  for (auto&& [k, v] : tbl) {
    std::string key(k.str());
    std::string path = prefix + "." + key;
    auto it = std::find_if(fields.begin(), fields.end(), [&](const BoundField& f) { return key == f.name; });
    if (it == fields.end()) {
      unknown(key, path, v);
      continue;
    }
    loc[path] = where(v);
    read_field(v, path, it->ref);
  }
}

std::vector<std::pair<std::string, std::string>> key_texts(const BoundFields& fields) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& f : fields) out.emplace_back(f.name, format_value(f.ref));
  return out;
}

void render_table(const std::string& header, const std::string& prefix,
                  const std::vector<std::pair<std::string, std::string>>& texts, std::string& out, Shown& shown) {
  if (!out.empty()) out += "\n";
  out += header + "\n";
  for (const auto& [key, text] : texts) {
    out += key + " = " + text + "\n";
    shown[prefix + "." + key] = text;
  }
}

std::vector<std::string> KeyIndex::candidates(const std::string& path) const {
  // Array items are addressed as "distill[i]"; suggest keys of the same item.
  std::string item_prefix, array;
  for (const auto& a : arrays) {
    if (path.rfind(a + "[", 0) == 0) {
      auto close = path.find(']');
      if (close != std::string::npos) item_prefix = path.substr(0, close + 1), array = a;
    }
  }
  std::vector<std::string> out = sections;
  for (const auto& [key, type] : types) {
    if (!item_prefix.empty() && key.rfind(array + ".", 0) == 0) {
      out.push_back(item_prefix + key.substr(array.size()));
    } else {
      out.push_back(key);
    }
  }
  return out;
}

ConfigError unknown_key(const std::string& path, const std::string& location,
                        const std::vector<std::string>& candidates) {
  return ConfigError(at(location) + "unknown key '" + path + "'" + suggestion(path, candidates));
}

toml::table load_file(const std::string& path) {
  ExtendsResolver resolver;
  return resolver.resolve(read_file(path, ""), path, "");
}

toml::table load_string(const std::string& text, const std::string& virtual_path) {
  ExtendsResolver resolver;
  return resolver.resolve(parse_text(text, virtual_path), virtual_path, "");
}

namespace {

/// "distill[0].tau" and "distill.0.tau" as the tokens {"distill", "0", "tau"}; a malformed key is an error.
std::vector<std::string> split_key(const std::string& key, const std::string& origin) {
  std::string dotted;
  for (char c : key) {
    if (c == '[') {
      dotted += '.';
    } else if (c != ']') {
      dotted += c;
    }
  }
  std::vector<std::string> tokens;
  std::stringstream ss(dotted);
  std::string t;
  while (std::getline(ss, t, '.')) tokens.push_back(trim(t));
  if (!dotted.empty() && dotted.back() == '.') tokens.emplace_back();
  if (tokens.empty() || std::any_of(tokens.begin(), tokens.end(), [](const auto& t) { return t.empty(); })) {
    throw ConfigError(origin + ": malformed key '" + key + "'");
  }
  return tokens;
}

/// The value is TOML (`0.02`, `[256, 512]`, `"x"`); a bare word is a string. A string-typed key takes the text
/// as written (`run.name=123`), and an array-of-strings key accepts a single string. Returns a table {v = value}.
toml::table parse_override_value(const std::string& text, const std::string& expected, const std::string& origin) {
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
  return parsed;
}

/// The array element `token` of `arr` (reached through `walked`), or an out-of-range error.
size_t array_index(const toml::array& arr, const std::string& token, const std::string& walked,
                   const std::string& origin) {
  const size_t idx = std::stoul(token);
  if (idx >= arr.size()) {
    throw ConfigError(str_cat(origin, ": index ", idx, " out of range: ", walked, " has ", arr.size(), " entries"));
  }
  return idx;
}

/// The node holding the last token: walks all tokens but the last from `root`, creating missing tables (`--set
/// teacher.arch=...` configures a teacher; "none" is replaced). `walked` receives the path walked.
toml::node* walk_to_parent(toml::table& root, const std::vector<std::string>& tokens, const std::string& origin,
                           std::string& walked) {
  toml::node* cur = &root;
  for (size_t i = 0; i + 1 < tokens.size(); ++i) {
    const std::string& t = tokens[i];
    if (auto* tbl = cur->as_table()) {
      const toml::node* child = tbl->get(t);
      if (child == nullptr && is_index(tokens[i + 1])) {  // "distill.0.tau" with no [[distill]] at all
        throw ConfigError(str_cat(origin, ": index ", tokens[i + 1], " out of range: ", t, " has 0 entries"));
      }
      if (child == nullptr || (child->is_string() && child->as_string()->get() == "none")) {
        tbl->insert_or_assign(t, toml::table{});
      }
      cur = tbl->get(t);
    } else if (auto* arr = cur->as_array()) {
      cur = arr->get(array_index(*arr, t, walked, origin));
    } else {
      throw ConfigError(origin + ": " + walked + " is not a table");
    }
    walked += (walked.empty() ? "" : ".") + t;
  }
  return cur;
}

}  // namespace

void apply_override(toml::table& root, const std::string& item, const KeyIndex& index) {
  const std::string origin = kSetPrefix + item;
  auto eq = item.find('=');
  if (eq == std::string::npos) throw ConfigError(origin + ": expected KEY=VALUE");
  const std::string key = trim(item.substr(0, eq));
  const std::vector<std::string> tokens = split_key(key, origin);

  auto is_array = [&](const std::string& s) {
    return std::find(index.arrays.begin(), index.arrays.end(), s) != index.arrays.end();
  };
  // Generic form (for the schema) and display form (for messages).
  std::string generic, display;
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (i == 1 && is_array(tokens[0]) && is_index(tokens[1])) {
      display += "[" + tokens[1] + "]";
      continue;
    }
    generic += (generic.empty() ? "" : ".") + tokens[i];
    display += (display.empty() ? "" : ".") + tokens[i];
  }
  auto type_it = index.types.find(generic);
  bool is_section = std::find(index.sections.begin(), index.sections.end(), generic) != index.sections.end();
  bool item_table = tokens.size() == 2 && is_array(tokens[0]) && is_index(tokens[1]);
  if (type_it == index.types.end() && !is_section && !item_table) {
    throw ConfigError(origin + ": unknown key '" + display + "'" + suggestion(display, index.candidates(display)));
  }
  const std::string expected = type_it == index.types.end() ? "" : type_it->second;
  toml::table parsed = parse_override_value(trim(item.substr(eq + 1)), expected, origin);
  toml::node& value = *parsed.get("v");

  std::string walked;
  toml::node* cur = walk_to_parent(root, tokens, origin, walked);
  if (auto* arr = cur->as_array(); arr != nullptr && is_index(tokens.back())) {  // "distill[0]={type=...}"
    const size_t idx = array_index(*arr, tokens.back(), walked, origin);
    arr->replace(arr->cbegin() + static_cast<std::ptrdiff_t>(idx), std::move(value));
    return;
  }
  auto* tbl = cur->as_table();
  if (tbl == nullptr) throw ConfigError(origin + ": " + walked + " is not a table");
  tbl->insert_or_assign(tokens.back(), std::move(value));
}

}  // namespace segkd::config_toml
