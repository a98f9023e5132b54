// The generic configuration machinery that knows no table: value formatting, the Checker, durations, hashing and
// "did you mean" (see config_schema.h).
#include "common/config_schema.h"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "common/hash.h"

namespace segkd {
namespace {

std::string format_one(bool v) { return v ? "true" : "false"; }
std::string format_one(int64_t v) { return std::to_string(v); }
std::string format_one(double v) { return format_double(v); }
std::string format_one(const std::string& v) { return format_string(v); }
template <typename Seq>
std::string format_sequence(const Seq& seq) {
  std::string out = "[";
  for (size_t i = 0; i < seq.size(); ++i) out += (i ? ", " : "") + format_one(seq[i]);
  return out + "]";
}
template <typename T>
std::string format_one(const std::vector<T>& v) { return format_sequence(v); }
template <typename T, size_t N>
std::string format_one(const std::array<T, N>& v) { return format_sequence(v); }

std::string type_of(const bool*) { return "boolean"; }
std::string type_of(const int64_t*) { return "integer"; }
std::string type_of(const double*) { return "float"; }
std::string type_of(const std::string*) { return "string"; }
std::string type_of(const std::vector<std::string>*) { return "array of strings"; }
std::string type_of(const std::vector<int64_t>*) { return "array of integers"; }
std::string type_of(const std::vector<double>*) { return "array of floats"; }
template <typename T, size_t N>
std::string type_of(const std::array<T, N>*) {
  return str_cat("array of ", N, " ", type_of(static_cast<const T*>(nullptr)), "s");
}

std::string trim(const std::string& s) {
  size_t b = 0, e = s.size();
  while (b < e && std::isspace(static_cast<unsigned char>(s[b]))) ++b;
  while (e > b && std::isspace(static_cast<unsigned char>(s[e - 1]))) --e;
  return s.substr(b, e - b);
}

std::string leaf_of(const std::string& path) {
  auto dot = path.rfind('.');
  return dot == std::string::npos ? path : path.substr(dot + 1);
}
std::string parent_of(const std::string& path) {
  auto dot = path.rfind('.');
  return dot == std::string::npos ? std::string() : path.substr(0, dot);
}

}  // namespace

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

std::string format_value(const ValueRef& v) {
  return std::visit([](auto* p) { return format_one(*p); }, v);
}

std::string type_name(const ValueRef& v) {
  return std::visit([](auto* p) { return type_of(p); }, v);
}

void add_shown(const BoundFields& fields, const std::string& prefix, Shown& shown) {
  for (const auto& f : fields) shown[prefix + "." + f.name] = format_value(f.ref);
}

std::string at(const std::string& location) { return location.empty() ? "" : location + ": "; }

// ------------------------------------------------------------------------------------------------------------------
// Checker

Checker Checker::in_context(std::string context, std::string prefix, const Shown* shown) {
  Checker c(nullptr, shown);
  c.context_form_ = true;
  c.context_ = std::move(context);
  c.prefix_ = std::move(prefix);
  return c;
}

std::string Checker::value_of(const std::string& path) const {
  if (shown_ == nullptr) return "";
  auto s = shown_->find(path);
  return s == shown_->end() ? "" : s->second;
}

std::string Checker::key_of(const std::string& path) const {
  const std::string dotted = prefix_ + ".";
  return path.rfind(dotted, 0) == 0 ? path.substr(dotted.size()) : path;
}

void Checker::operator()(bool ok, const std::string& path, const std::string& message) const {
  if (ok) return;
  const std::string value = value_of(path);
  if (context_form_) {
    const std::string key = key_of(path);
    throw ConfigError(context_ + ": " + key + " " + message + (value.empty() ? "" : " (" + key + " = " + value + ")"));
  }
  std::string location;
  if (loc_ != nullptr) {
    auto l = loc_->find(path);
    if (l != loc_->end()) location = l->second;
  }
  throw ConfigError(at(location) + path + (value.empty() ? "" : " = " + value) + ": " + message);
}

void Checker::one_of(const std::string& value, const std::vector<std::string>& allowed,
                     const std::string& path) const {
  std::string bar, comma;
  for (const auto& a : allowed) {
    if (value == a) return;
    bar += (bar.empty() ? "" : "|") + a;
    comma += (comma.empty() ? "" : ", ") + a;
  }
  if (context_form_) {
    throw ConfigError(context_ + ": " + key_of(path) + " = " + format_string(value) + " is not one of: " + comma);
  }
  (*this)(false, path, "must be one of " + bar);
}

// ------------------------------------------------------------------------------------------------------------------

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

std::string suggestion(const std::string& path, const std::vector<std::string>& candidates) {
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

}  // namespace segkd
