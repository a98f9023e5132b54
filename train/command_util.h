#pragma once
/// Helpers shared by the `segkd` subcommand implementations in train/*_commands.cpp (not a public API).
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "train/config.h"
#include "models/segmentor.h"
#include "train/commands.h"

namespace segkd::train {

/// Loads `c.config` with its --set overrides followed by `extra` overrides (later wins).
Config load_with_overrides(const ConfigArgs& c, const std::vector<std::string>& extra = {});

/// `s` as a TOML basic string literal ("..." with quotes and backslashes escaped), for --set values.
std::string quote_toml(const std::string& s);

/// The student of `cfg` with `weights` (.pth or .ckpt) loaded strictly, in eval mode.
models::Segmentor load_student(const Config& cfg, const std::string& weights);

/// A palette with at least data.num_classes colours: the dataset's if its files say so, else VOC-style colours.
std::vector<std::array<uint8_t, 3>> palette_for(const Config& cfg);

/// 12790086 -> "12,790,086".
std::string with_commas(int64_t n);

/// A fraction as a percentage with two decimals ("-" for NaN).
std::string fmt_pct(double v);

/// The panel of `segkd report --panel`: one row per validation image (the first run's data.val, `count` images
/// spread over the set); columns, each titled: image, ground truth, then each run's prediction (latest checkpoint),
/// all in the dataset palette, tiles enlarged to >= 128 px.
void write_panel(const std::vector<std::string>& run_dirs, const std::string& out, int64_t count);

}  // namespace segkd::train
