#pragma once
/// The TOML side of the generic configuration machinery (config_schema.h): files and `extends`, `--set`
/// overrides, typed reads with file:line:column locations, unknown keys with "did you mean", and the canonical
/// rendering of a table. Used by train/config.cpp, which assembles the libraries' tables into the whole Config;
/// no library reads raw TOML.
///
/// Where a value came from is kept on the toml++ nodes themselves (source regions survive because files are merged
/// by moving nodes, never copying them); values from `--set` carry the source path "--set KEY=VALUE".
#include <toml++/toml.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "common/config_schema.h"

namespace segkd::config_toml {

/// "FILE:LINE:COL" of a node, "--set KEY=VALUE" for an override, "" when unknown (defaults, created tables).
std::string where(const toml::node& n);
/// True when the node's value was given with `--set`.
bool from_override(const toml::node& n);
/// The node's TOML type for messages: "string", "array of 2 integers", "table", ...
std::string describe(const toml::node& n);

/// Reads `n` into `ref`; false (and `ref` untouched) when the TOML type does not match.
bool read_value(const toml::node& n, const ValueRef& ref);
/// Reads `n` into `ref`; throws "LOC: wrong type for PATH: expected T, got U".
void read_field(const toml::node& n, const std::string& path, const ValueRef& ref);

/// Called for a key of a table that is not among its fields; throws, or returns to ignore the key.
using UnknownKey = std::function<void(const std::string& key, const std::string& path, const toml::node& value)>;
/// Reads every key of `tbl` into `fields` (recording "PREFIX.KEY" locations); other keys go to `unknown`.
void read_table(const toml::table& tbl, const std::string& prefix, const BoundFields& fields, Locations& loc,
                const UnknownKey& unknown);

/// Appends "HEADER\nkey = value\n..." (a blank line before it unless `out` is empty) and records the shown values.
void render_table(const std::string& header, const std::string& prefix,
                  const std::vector<std::pair<std::string, std::string>>& key_texts, std::string& out, Shown& shown);
/// `key_texts` of a table's bound fields, in order.
std::vector<std::pair<std::string, std::string>> key_texts(const BoundFields& fields);

/// Every valid key of the assembled schema, for `--set` and "did you mean". Keys are in generic form:
/// "student.arch", and for arrays of tables "distill.tau" (any item).
struct KeyIndex {
  std::map<std::string, std::string> types;  ///< generic key -> type name (type_name())
  std::vector<std::string> sections;         ///< top-level tables, in canonical order
  std::vector<std::string> arrays;           ///< the sections that are arrays of tables ("distill")

  /// Candidates for "did you mean" near `path`: sections, then every key; an item's keys ("distill[1].tau") when
  /// `path` addresses an item of an array of tables.
  std::vector<std::string> candidates(const std::string& path) const;
};

/// "LOC: unknown key 'PATH' (did you mean 'X'?)".
ConfigError unknown_key(const std::string& path, const std::string& location, const std::vector<std::string>& candidates);

/// Reads `path` (or parses `text` as if it were the file `virtual_path`) and merges its `extends` bases
/// (relative to the file, deep merge, later wins; a cycle is an error naming the chain).
toml::table load_file(const std::string& path);
toml::table load_string(const std::string& text, const std::string& virtual_path);

/// Applies one `--set KEY=VALUE` ("a.b.c=value", "distill.0.tau=2", "distill[0]={type=\"cwd\"}") to `root`.
/// The key must be in `index`; the value is TOML, a bare word a string.
void apply_override(toml::table& root, const std::string& item, const KeyIndex& index);

}  // namespace segkd::config_toml
