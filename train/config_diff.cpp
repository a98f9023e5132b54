// Config differences on resume (see config_diff.h).
#include "train/config_diff.h"

#include <spdlog/spdlog.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "common/error.h"

namespace fs = std::filesystem;

namespace segkd::train {
namespace {

/// Flattens the resolved TOML (one `key = value` per line under `[section]` / `[[array]]` headers) into
/// "section.key" -> value, keeping the order of appearance; array-of-table entries get their index.
std::vector<std::pair<std::string, std::string>> flatten(const std::string& toml) {
  std::vector<std::pair<std::string, std::string>> out;
  std::map<std::string, int> array_count;
  std::string section;
  std::istringstream in(toml);
  for (std::string line; std::getline(in, line);) {
    if (line.empty() || line[0] == '#') continue;
    if (line.rfind("[[", 0) == 0) {
      std::string name = line.substr(2, line.find("]]") - 2);
      section = str_cat(name, ".", array_count[name]++);
      continue;
    }
    if (line[0] == '[') {
      section = line.substr(1, line.find(']') - 1);
      continue;
    }
    const size_t eq = line.find(" = ");
    if (eq == std::string::npos) continue;
    out.emplace_back(section.empty() ? line.substr(0, eq) : section + "." + line.substr(0, eq), line.substr(eq + 3));
  }
  return out;
}

std::string list_changes(const std::vector<ConfigChange>& changes) {
  std::string out;
  for (const auto& c : changes) {
    if (!out.empty()) out += ", ";
    out += str_cat(c.key, ": ", c.before.empty() ? "(absent)" : c.before, " -> ",
                   c.after.empty() ? "(absent)" : c.after);
  }
  return out;
}

}  // namespace

std::vector<ConfigChange> diff_resolved_toml(const std::string& before, const std::string& after) {
  auto a = flatten(before), b = flatten(after);
  std::map<std::string, std::string> old_values(a.begin(), a.end());
  std::map<std::string, bool> seen;
  std::vector<ConfigChange> changes;
  for (const auto& [key, value] : b) {
    seen[key] = true;
    auto it = old_values.find(key);
    std::string old = it == old_values.end() ? "" : it->second;
    if (old != value) changes.push_back({key, old, value});
  }
  for (const auto& [key, value] : a) {
    if (!seen.count(key)) changes.push_back({key, value, ""});
  }
  return changes;
}

bool alters_model(const std::string& key) {
  static const char* kModelKeys[] = {"student.arch", "student.backbone", "student.output_stride", "student.aux_head",
                                     "data.num_classes"};
  for (const char* k : kModelKeys) {
    if (key == k) return true;
  }
  return false;
}

void check_resume_config(const std::string& checkpoint, const std::string& before, const std::string& after) {
  if (before.empty()) {
    spdlog::warn("resuming {}: it records no config (older segkd), so changes to the config cannot be listed",
                 checkpoint);
    return;
  }
  auto changes = diff_resolved_toml(before, after);
  std::vector<ConfigChange> model;
  for (const auto& c : changes) {
    if (alters_model(c.key)) model.push_back(c);
  }
  if (!model.empty()) {
    throw ConfigError(str_cat("cannot resume ", checkpoint, ": the config changes the model (", list_changes(model),
                              "); start a new run (another --work-dir, or --overwrite) or restore these keys"));
  }
  if (!changes.empty()) {
    spdlog::warn("resuming {} with a changed config ({} key(s)): {}", checkpoint, changes.size(), list_changes(changes));
  }
}

std::string checkpoint_config(const std::string& checkpoint, const std::string& stored) {
  if (!stored.empty()) return stored;
  const fs::path beside = fs::path(checkpoint).parent_path().parent_path() / "config.toml";
  std::ifstream in(beside, std::ios::binary);
  if (!in) return "";
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace segkd::train
