#pragma once
/// The generic half of segkd's configuration: how a library describes the keys of its TOML table, how values are
/// formatted and checked, and the error messages. It knows no particular table.
///
/// Each library owns its options (models/options.h, data/options.h, losses/options.h, distributed/options.h,
/// train/options.h): a struct with a public member per key, chained setters (`SEGKD_OPTION`), a static `fields()`
/// listing its keys in canonical order (that list *is* the table's schema: reading, type checks, "did you mean",
/// and the resolved TOML all walk it) and a `validate()` of its own. train/config.h assembles the tables into the
/// whole `Config`; the TOML side (files, `extends`, `--set`, line numbers) is common/config_toml.h.
#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "common/error.h"

/// Declares an option: a public member `name` (initialised with the remaining arguments) and a chained setter
/// `set_name(value)` returning the options object, LibTorch style: `ModelOptions().set_backbone("resnet50_v1c")`.
/// The enclosing struct must declare `using Self = ...;`. (The member keeps the TOML key's name so code reads
/// `cfg.student.backbone`; a C++ member and a function cannot share a name, hence the `set_` prefix.)
#define SEGKD_OPTION(T, name, ...)                \
  T name{__VA_ARGS__};                            \
  Self& set_##name(T value) {                     \
    this->name = std::move(value);                \
    return *this;                                 \
  }

namespace segkd {

/// Fixed-size array option types (a comma in a macro argument would split it).
using IntPair = std::array<int64_t, 2>;
using FloatPair = std::array<double, 2>;
using FloatTriple = std::array<double, 3>;

/// A member of options struct S that is a config key: every value type a key can have.
template <typename S>
using Member = std::variant<bool S::*, int64_t S::*, double S::*, std::string S::*, std::vector<std::string> S::*,
                            std::vector<int64_t> S::*, std::vector<double> S::*, IntPair S::*, FloatPair S::*,
                            FloatTriple S::*>;

/// One key of a table: its TOML name and the member it fills.
template <typename S>
struct Field {
  const char* name;
  Member<S> member;
};

/// A key bound to the value it reads into / renders from (type-erased, so the TOML side needs no template).
using ValueRef = std::variant<bool*, int64_t*, double*, std::string*, std::vector<std::string>*,
                              std::vector<int64_t>*, std::vector<double>*, IntPair*, FloatPair*, FloatTriple*>;
struct BoundField {
  std::string name;
  ValueRef ref;
};
using BoundFields = std::vector<BoundField>;

/// The keys of `s` (S::fields()) bound to its members. The const overload is for reading (rendering) only.
template <typename S>
BoundFields bind_fields(S& s) {
  BoundFields out;
  for (const auto& f : S::fields()) {
    std::visit([&](auto m) { out.push_back({f.name, ValueRef(&(s.*m))}); }, f.member);
  }
  return out;
}
template <typename S>
BoundFields bind_fields(const S& s) {
  return bind_fields(const_cast<S&>(s));
}

/// Canonical TOML text of a value (the resolved TOML and the values quoted in messages): shortest round-tripping
/// floats ("600.0", "0.0005", "1e-07"), escaped strings, arrays as "[a, b]".
std::string format_value(const ValueRef& v);
std::string format_double(double v);
std::string format_string(const std::string& s);
/// "boolean", "integer", "float", "string", "array of strings", "array of 2 integers", ...
std::string type_name(const ValueRef& v);

/// Where each key came from ("data.crop" -> "base.toml:7:8", or "--set data.crop=[1,2]").
using Locations = std::map<std::string, std::string>;
/// Each key's value as canonical TOML text ("data.crop" -> "[512, 1024]").
using Shown = std::map<std::string, std::string>;

/// `shown` entries "PREFIX.KEY" for every key of `fields`.
void add_shown(const BoundFields& fields, const std::string& prefix, Shown& shown);
template <typename S>
Shown shown_values(const S& s, const std::string& prefix) {
  Shown shown;
  add_shown(bind_fields(s), prefix, shown);
  return shown;
}

/// "LOCATION: " or "" when the location is unknown.
std::string at(const std::string& location);

/// Checks option values and throws ConfigError naming the key. The one place rules are written is each options
/// struct's `validate(prefix, check)`; the Checker decides how a broken rule reads:
///  - key form (config loading, a standalone validate()): "LOC: PATH = VALUE: MESSAGE", LOC and VALUE where known;
///  - context form (losses::make_term): "CONTEXT: KEY MESSAGE (KEY = VALUE)" for a rule and
///    "CONTEXT: KEY = VALUE is not one of: a, b" for a choice, where KEY is PATH without `prefix.`.
class Checker {
 public:
  /// Key form; `loc`/`shown` may be null (no location, no value), and must outlive the Checker.
  explicit Checker(const Locations* loc = nullptr, const Shown* shown = nullptr) : loc_(loc), shown_(shown) {}
  /// Context form for the keys under `prefix`.
  static Checker in_context(std::string context, std::string prefix, const Shown* shown);

  /// Throws unless `ok`.
  void operator()(bool ok, const std::string& path, const std::string& message) const;
  /// Throws unless `value` is one of `allowed`.
  void one_of(const std::string& value, const std::vector<std::string>& allowed, const std::string& path) const;
  void one_of(const std::string& value, std::initializer_list<const char*> allowed, const std::string& path) const {
    one_of(value, std::vector<std::string>(allowed.begin(), allowed.end()), path);
  }

 private:
  std::string value_of(const std::string& path) const;
  std::string key_of(const std::string& path) const;

  const Locations* loc_ = nullptr;
  const Shown* shown_ = nullptr;
  bool context_form_ = false;
  std::string context_, prefix_;
};

/// An options struct's standalone `validate(prefix)`: its `validate(prefix, check)` with a key-form Checker that
/// shows the struct's own values (no locations).
template <typename S>
void validate_standalone(const S& s, const std::string& prefix) {
  const Shown shown = shown_values(s, prefix);
  s.validate(prefix, Checker(nullptr, &shown));
}

/// Parses a duration such as "90s", "45m", "2h", "1h30m" into seconds. Throws ConfigError naming `key`.
double parse_duration(const std::string& text, const std::string& key);

/// The FNV-1a 64-bit hash of `text` as 16 hex digits.
std::string stable_hash(const std::string& text);

/// Levenshtein distance (for "did you mean").
size_t edit_distance(const std::string& a, const std::string& b);

/// " (did you mean 'X'?)" for the candidate nearest to `path` (whole path, or its last component when the key
/// was written in the wrong table), "" when none is close.
std::string suggestion(const std::string& path, const std::vector<std::string>& candidates);

}  // namespace segkd
