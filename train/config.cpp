// The whole config (config.h): each library's tables assembled, read through the generic TOML machinery
// (common/config_toml.h), rendered canonically and validated.
//
// `visit_sections()` lists the tables in canonical order; each table's keys are its options struct's `fields()`,
// except `[[distill]]`, whose keys depend on the table's `type` (losses/options.h).
#include "train/config.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <type_traits>

#include "common/config_toml.h"

namespace segkd {
namespace {

namespace ct = config_toml;

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

/// Every valid key ("student.arch"; "distill.tau" for a key any KD term takes) with its type, and the sections.
const ct::KeyIndex& key_index() {
  static const ct::KeyIndex index = [] {
    ct::KeyIndex k;
    Config dummy;
    visit_sections(dummy, [&](const char* name, auto& section) {
      using T = std::decay_t<decltype(section)>;
      k.sections.push_back(name);
      if constexpr (is_vector<T>::value) {
        k.arrays.push_back(name);
        for (const auto& [key, type] : losses::distill_key_types()) k.types[str_cat(name, ".", key)] = type;
      } else if constexpr (is_optional<T>::value) {
        typename T::value_type value{};
        for (const auto& f : bind_fields(value)) k.types[str_cat(name, ".", f.name)] = type_name(f.ref);
      } else {
        for (const auto& f : bind_fields(section)) k.types[str_cat(name, ".", f.name)] = type_name(f.ref);
      }
    });
    return k;
  }();
  return index;
}

std::string join(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : ", ") + s;
  return out;
}

/// A key of a plain table that is not in its schema.
ct::UnknownKey refuse_unknown() {
  return [](const std::string&, const std::string& path, const toml::node& v) {
    throw ct::unknown_key(path, ct::where(v), key_index().candidates(path));
  };
}

/// The canonical text of `v` read as the `[[distill]]` key `key`, "" when it has another type.
std::string distill_value_text(const std::string& key, const toml::node& v) {
  for (const auto& type : losses::registered_terms()) {
    losses::DistillOptions probe(type);
    for (const auto& f : probe.bind_fields()) {
      if (f.name == key) return ct::read_value(v, f.ref) ? format_value(f.ref) : "";
    }
  }
  return "";
}

/// One `[[distill]]` table: `type` first, which decides the keys the table takes.
///
/// A key the term does not take is refused naming both — except a key of the former shared table
/// (losses::former_shared_keys()) in a table in resolved form, i.e. one that lists every such key as the resolved
/// TOML does (a run directory's config.toml, a checkpoint's config, whatever segkd version wrote it): such a key is
/// ignored, as it always was, with a warning when its value is not the former default. A key given with `--set`
/// is always checked.
void read_distill(const toml::table& tbl, const std::string& prefix, losses::DistillOptions& out, Locations& loc) {
  std::string type;
  if (const toml::node* t = tbl.get("type")) {
    loc[prefix + ".type"] = ct::where(*t);
    ct::read_field(*t, prefix + ".type", ValueRef(&type));
  }
  out = losses::DistillOptions(type);
  if (std::holds_alternative<std::monostate>(out.options)) {
    const Shown shown{{prefix + ".type", format_string(type)}};
    Checker(&loc, &shown).one_of(type, losses::registered_terms(), prefix + ".type");
  }
  const auto& former = losses::former_shared_keys();
  const bool resolved_form = tbl.contains("type") && tbl.contains("weight") &&
                             std::all_of(former.begin(), former.end(),
                                         [&](const losses::FormerSharedKey& k) { return tbl.contains(k.name); });
  const std::vector<std::string> takes = out.keys();
  auto unknown = [&](const std::string& key, const std::string& path, const toml::node& v) {
    auto f = std::find_if(former.begin(), former.end(), [&](const losses::FormerSharedKey& k) { return key == k.name; });
    if (f != former.end() && resolved_form && !ct::from_override(v)) {
      if (distill_value_text(key, v) != f->text) {
        spdlog::warn("{}{} ignored: KD term '{}' does not take option '{}' (a resolved config written by an older "
                     "segkd, which ignored it too)", at(ct::where(v)), path, type, key);
      }
      return;
    }
    if (key_index().types.count("distill." + key) != 0) {
      throw ConfigError(at(ct::where(v)) + path + ": KD term '" + type + "' does not take option '" + key +
                        "' (it takes: " + join(takes) + ")");
    }
    // A typo: suggest among this term's keys (and anything outside the table).
    std::vector<std::string> candidates;
    for (const auto& c : key_index().candidates(path)) {
      const std::string item = prefix + ".";
      if (c.rfind(item, 0) == 0) {
        const std::string k = c.substr(item.size());
        if (k != "type" && std::find(takes.begin(), takes.end(), k) == takes.end()) continue;
      }
      candidates.push_back(c);
    }
    throw ct::unknown_key(path, ct::where(v), candidates);
  };
  ct::read_table(tbl, prefix, out.bind_fields(), loc, unknown);
}

void read_config(const toml::table& root, Config& cfg, Locations& loc) {
  for (auto&& [k, v] : root) {
    std::string key(k.str());
    bool known = false;
    visit_sections(cfg, [&](const char* name, auto& section) {
      using T = std::decay_t<decltype(section)>;
      if (key != name) return;
      known = true;
      loc[key] = ct::where(v);
      auto wrong = [&](const std::string& expected) {
        return ConfigError(at(ct::where(v)) + "wrong type for " + key + ": expected " + expected + ", got " +
                           ct::describe(v));
      };
      if constexpr (is_optional<T>::value) {
        if (v.is_string() && v.as_string()->get() == "none") {  // `teacher = "none"` / `--set teacher=none`
          section.reset();
          return;
        }
        if (!v.is_table()) throw wrong("table (or \"none\")");
        section.emplace();
        ct::read_table(*v.as_table(), key, bind_fields(*section), loc, refuse_unknown());
      } else if constexpr (is_vector<T>::value) {
        const auto* arr = v.as_array();
        if (arr == nullptr) throw wrong("array of tables ([[" + key + "]])");
        section.clear();
        for (size_t i = 0; i < arr->size(); ++i) {
          const toml::node& item = *arr->get(i);
          std::string prefix = str_cat(key, "[", i, "]");
          if (!item.is_table()) {
            throw ConfigError(at(ct::where(item)) + "wrong type for " + prefix + ": expected table, got " +
                              ct::describe(item));
          }
          loc[prefix] = ct::where(item);
          section.emplace_back();
          read_distill(*item.as_table(), prefix, section.back(), loc);
        }
      } else {
        if (!v.is_table()) throw wrong("table");
        ct::read_table(*v.as_table(), key, bind_fields(section), loc, refuse_unknown());
      }
    });
    if (!known) throw ct::unknown_key(key, ct::where(v), key_index().candidates(key));
  }
}

/// The canonical TOML of `cfg`: every key, defaults included, in schema order. `shown` receives each key's value
/// text for error messages.
std::string render(const Config& cfg, Shown& shown) {
  std::string out;
  visit_sections(cfg, [&](const char* name, const auto& section) {
    using T = std::decay_t<decltype(section)>;
    if constexpr (is_optional<T>::value) {
      if (section) ct::render_table(str_cat("[", name, "]"), name, ct::key_texts(bind_fields(*section)), out, shown);
    } else if constexpr (is_vector<T>::value) {
      for (size_t i = 0; i < section.size(); ++i) {
        ct::render_table(str_cat("[[", name, "]]"), str_cat(name, "[", i, "]"), losses::render_distill(section[i]),
                         out, shown);
      }
    } else {
      ct::render_table(str_cat("[", name, "]"), name, ct::key_texts(bind_fields(section)), out, shown);
    }
  });
  return out;
}

/// Each table's own rules (its options' validate()), in canonical order, and the rules across tables.
void validate(const Config& cfg, const Checker& check) {
  cfg.run.validate("run", check);
  cfg.data.validate("data", check);
  check(cfg.student.precision.empty(), "student.precision",
        "applies to the teacher only; the student follows run.precision");
  cfg.student.validate("student", check);
  if (cfg.teacher) cfg.teacher->validate("teacher", check);
  cfg.loss.validate("loss", check);
  if (!cfg.loss.class_weights.empty()) {
    check(static_cast<int64_t>(cfg.loss.class_weights.size()) == cfg.data.num_classes, "loss.class_weights",
          str_cat("must have data.num_classes (", cfg.data.num_classes, ") entries"));
  }
  for (size_t i = 0; i < cfg.distill.size(); ++i) {
    const std::string p = str_cat("distill[", i, "]");
    check(cfg.teacher.has_value(), p, "KD terms need a [teacher] table");
    cfg.distill[i].validate(p, check);
  }
  cfg.optimizer.validate("optimizer", check);
  cfg.schedule.validate("schedule", check);
  cfg.eval.validate("eval", check);
  cfg.checkpoint.validate("checkpoint", check);
  cfg.distributed.validate("distributed", check);
  cfg.log.validate("log", check);
}

Config finish(toml::table root, const std::string& source_path, const std::vector<std::string>& overrides) {
  for (const auto& item : overrides) ct::apply_override(root, item, key_index());
  Config cfg;
  Locations loc;
  read_config(root, cfg, loc);
  Shown shown;
  cfg.resolved_toml = render(cfg, shown);
  validate(cfg, Checker(&loc, &shown));
  cfg.source_path = source_path;
  cfg.hash = stable_hash(cfg.resolved_toml);
  return cfg;
}

}  // namespace

void Config::validate() const {
  Shown shown;
  render(*this, shown);
  segkd::validate(*this, Checker(nullptr, &shown));
}

Config load_config(const std::string& path, const std::vector<std::string>& overrides) {
  return finish(ct::load_file(path), path, overrides);
}

Config load_config_from_string(const std::string& toml, const std::string& virtual_path,
                               const std::vector<std::string>& overrides) {
  return finish(ct::load_string(toml, virtual_path), virtual_path, overrides);
}

}  // namespace segkd
