// Helpers shared by the subcommand implementations (train/*_commands.cpp).
#include "train/command_util.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

#include "data/dataset.h"
#include "models/weights.h"
#include "train/checkpoint.h"

namespace segkd::train {

Config load_with_overrides(const ConfigArgs& c, const std::vector<std::string>& extra) {
  auto overrides = c.overrides;
  overrides.insert(overrides.end(), extra.begin(), extra.end());
  return load_config(c.config, overrides);
}

std::string quote_toml(const std::string& s) {
  std::string out = "\"";
  for (char ch : s) {
    if (ch == '"' || ch == '\\') out += '\\';
    out += ch;
  }
  return out + "\"";
}

models::Segmentor load_student(const Config& cfg, const std::string& weights) {
  auto mc = cfg.student;
  mc.weights.clear();
  mc.pretrained.clear();
  auto model = models::build_model(mc, cfg.data.num_classes);
  load_student_weights(*model, weights);
  model->eval();
  return model;
}

std::vector<std::array<uint8_t, 3>> palette_for(const Config& cfg) {
  for (const auto* files : {&cfg.data.val, &cfg.data.train}) {
    if (files->empty()) continue;
    try {
      data::H5Dataset ds(*files);
      if (static_cast<int64_t>(ds.info().palette.size()) >= cfg.data.num_classes) return ds.info().palette;
    } catch (const std::exception&) {
    }
  }
  std::vector<std::array<uint8_t, 3>> p;
  for (int64_t i = 0; i < std::max<int64_t>(cfg.data.num_classes, 256); ++i) {
    // Bit-interleaved colours, as the VOC palette.
    int64_t c = i;
    uint8_t r = 0, g = 0, b = 0;
    for (int k = 7; k >= 0 && c; --k, c >>= 3) {
      r |= ((c >> 0) & 1) << k;
      g |= ((c >> 1) & 1) << k;
      b |= ((c >> 2) & 1) << k;
    }
    p.push_back({r, g, b});
  }
  return p;
}

std::string with_commas(int64_t n) {
  std::string digits = std::to_string(n < 0 ? -n : n), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return n < 0 ? "-" + out : out;
}

std::string fmt_pct(double v) { return std::isnan(v) ? std::string("-") : fmt::format("{:.2f}", 100 * v); }

}  // namespace segkd::train
