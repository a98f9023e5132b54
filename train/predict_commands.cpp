// `segkd predict` and the pictures of `segkd report --panel`.
#include "train/commands.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "train/config.h"
#include "common/error.h"
#include "common/logging.h"
#include "common/paths.h"
#include "common/run_dir.h"
#include "data/dataset.h"
#include "data/image_io.h"
#include "data/transforms.h"
#include "distributed/communicator.h"
#include "distributed/runtime.h"
#include "models/segmentor.h"
#include "models/weights.h"
#include "train/checkpoint.h"
#include "train/evaluator.h"
#include "train/metrics.h"
#include "train/progress.h"
#include "train/command_util.h"
#include "train/plot.h"
#include "train/trainer.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace segkd::train {

int run_predict(const ConfigArgs& c, const std::string& weights, const std::string& input, const std::string& out) {
  auto cfg = load_with_overrides(c);
  setup_logging("", 0, cfg.log.level);
  configure_threads(cfg.run.threads, 1);
  std::vector<fs::path> images;
  if (fs::is_directory(input)) {
    for (const auto& e : fs::directory_iterator(input)) {
      auto ext = e.path().extension().string();
      std::transform(ext.begin(), ext.end(), ext.begin(), ::tolower);
      if (ext == ".png" || ext == ".jpg" || ext == ".jpeg") images.push_back(e.path());
    }
    std::sort(images.begin(), images.end());
    if (images.empty()) throw InputError(str_cat("--input ", input, ": no .png/.jpg/.jpeg images in the directory"));
  } else if (fs::exists(input)) {
    images.push_back(input);
  } else {
    throw InputError(str_cat("--input: not found: ", input));
  }
  check_output_dir_not_input_dir("--out", out, "--input", input);
  fs::create_directories(out);
  auto model = load_student(cfg, weights);
  const torch::Device device = dist::local_device();  // the one device rule of every subcommand
  model->to(device);
  const auto palette = palette_for(cfg);
  const auto aug = data::AugmentOptions::from(cfg.data);
  torch::NoGradGuard no_grad;
  Progress progress("predict", static_cast<int64_t>(images.size()), true);
  for (size_t i = 0; i < images.size(); ++i) {
    auto img = data::read_image(images[i].string());
    data::Sample s;
    s.name = images[i].stem().string();
    s.height = img.height;
    s.width = img.width;
    s.image = img.pixels;
    s.label.assign(static_cast<size_t>(img.height * img.width), static_cast<uint8_t>(cfg.data.ignore_index));
    auto tensors = data::to_tensors(s, aug);
    auto pred = infer_logits(model, tensors.first.unsqueeze(0).to(device), cfg.eval).argmax(1).squeeze(0).to(torch::kCPU, torch::kUInt8);
    pred = pred.contiguous();
    data::Image ids{img.height, img.width, 1, std::vector<uint8_t>(pred.data_ptr<uint8_t>(),
                                                                  pred.data_ptr<uint8_t>() + pred.numel())};
    data::write_png((fs::path(out) / (s.name + ".png")).string(), ids);
    data::Image color{img.height, img.width, 3, std::vector<uint8_t>(img.pixels.size())};
    for (int64_t p = 0; p < img.height * img.width; ++p) {
      const auto& col = palette[ids.pixels[p] % palette.size()];
      for (int k = 0; k < 3; ++k) {
        color.pixels[p * 3 + k] = static_cast<uint8_t>((img.pixels[p * 3 + k] + col[k] + 1) / 2);
      }
    }
    data::write_png((fs::path(out) / (s.name + "_color.png")).string(), color);
    progress.update(static_cast<int64_t>(i) + 1);
  }
  std::cout << "wrote " << images.size() << " prediction(s) to " << out << "\n";
  return 0;
}

namespace {

/// Reads a finished run's resolved config and its latest checkpoint's student (eval mode).
std::pair<Config, models::Segmentor> load_run(const std::string& dir) {
  const auto config = (fs::path(dir) / "config.toml").string();
  if (!fs::exists(config)) throw InputError(str_cat("no config.toml in ", dir, " (is it a segkd run directory?)"));
  auto cfg = load_config(config, {});
  const auto latest = (fs::path(dir) / "checkpoints" / "latest").string();
  std::ifstream in(latest);
  std::string name;
  if (!(in >> name)) throw InputError(str_cat("no checkpoint in ", dir, " (", latest, " is missing or empty)"));
  return {cfg, load_student(cfg, (fs::path(dir) / "checkpoints" / name).string())};
}

}  // namespace

void write_panel(const std::vector<std::string>& run_dirs, const std::string& out, int64_t count) {
  std::vector<std::pair<Config, models::Segmentor>> runs;
  for (const auto& dir : run_dirs) runs.push_back(load_run(dir));
  const Config& first = runs.front().first;
  if (first.data.val.empty()) throw InputError(str_cat(run_dirs.front(), "/config.toml: data.val is empty, no images to show"));
  for (size_t r = 1; r < runs.size(); ++r) {
    if (runs[r].first.data.num_classes != first.data.num_classes) {
      throw InputError(str_cat("--panel: ", run_dirs[r], " predicts ", runs[r].first.data.num_classes,
                               " classes, ", run_dirs.front(), " ", first.data.num_classes));
    }
  }
  data::H5Dataset val(first.data.val);
  const auto palette = palette_for(first);
  const auto aug = data::AugmentOptions::from(first.data);
  count = std::min<int64_t>(count, val.size());
  std::vector<data::Sample> samples;
  int64_t tile_h = 0, tile_w = 0;
  for (int64_t i = 0; i < count; ++i) {
    samples.push_back(val.get(i * val.size() / count));  // spread over the set
    tile_h = std::max(tile_h, samples.back().height);
    tile_w = std::max(tile_w, samples.back().width);
  }
  const int64_t zoom = std::max<int64_t>(1, 128 / std::max<int64_t>(1, std::min(tile_h, tile_w)));
  const int64_t gap = 4, cols = 2 + static_cast<int64_t>(runs.size());
  // Column titles are run names, wrapped at '-'/'_' to fit a column (about 8 pixels per character).
  const size_t title_chars = static_cast<size_t>(std::max<int64_t>(8, tile_w * zoom / 8));
  std::vector<std::string> run_titles;
  int64_t title_lines = 1;
  for (auto& run : runs) {
    run_titles.push_back(wrap_title(run.first.run.name, title_chars));
    title_lines = std::max<int64_t>(title_lines, 1 + std::count(run_titles.back().begin(), run_titles.back().end(), '\n'));
  }
  const int64_t header = 24 * title_lines;
  const int64_t width = cols * (tile_w * zoom + gap) + gap;
  data::Image panel{header + count * (tile_h * zoom + gap) + gap, width, 3, {}};
  panel.pixels.assign(static_cast<size_t>(panel.height * panel.width * 3), 255);
  // Column titles above the tiles, so a reader can tell the ground truth from each run's prediction.
  std::vector<std::pair<int64_t, std::string>> titles{{gap + tile_w * zoom / 2, "image"},
                                                      {2 * gap + tile_w * zoom * 3 / 2, "ground truth"}};
  for (size_t r = 0; r < runs.size(); ++r) {
    const int64_t col = 2 + static_cast<int64_t>(r);
    titles.emplace_back(gap + col * (tile_w * zoom + gap) + tile_w * zoom / 2, run_titles[r]);
  }
  const auto strip = text_strip(width, header, titles);
  std::copy(strip.pixels.begin(), strip.pixels.end(), panel.pixels.begin());
  auto paste = [&](int64_t row, int64_t col, const data::Sample& s, auto rgb_at) {
    const int64_t y0 = header + gap + row * (tile_h * zoom + gap), x0 = gap + col * (tile_w * zoom + gap);
    for (int64_t y = 0; y < s.height * zoom; ++y) {
      for (int64_t x = 0; x < s.width * zoom; ++x) {
        const auto rgb = rgb_at((y / zoom) * s.width + x / zoom);
        for (int k = 0; k < 3; ++k) panel.pixels[((y0 + y) * panel.width + x0 + x) * 3 + k] = rgb[k];
      }
    }
  };
  auto class_colour = [&](int64_t c) {
    return c == first.data.ignore_index ? std::array<uint8_t, 3>{0, 0, 0} : palette[c % palette.size()];
  };
  torch::NoGradGuard no_grad;
  for (int64_t i = 0; i < count; ++i) {
    const auto& s = samples[i];
    paste(i, 0, s, [&](int64_t p) { return std::array<uint8_t, 3>{s.image[p * 3], s.image[p * 3 + 1], s.image[p * 3 + 2]}; });
    paste(i, 1, s, [&](int64_t p) { return class_colour(s.label[p]); });
    const auto image = data::to_tensors(s, aug).first.unsqueeze(0);
    for (size_t r = 0; r < runs.size(); ++r) {
      auto pred = infer_logits(runs[r].second, image, runs[r].first.eval).argmax(1).squeeze(0).contiguous();
      const auto* ids = pred.data_ptr<int64_t>();
      paste(i, 2 + static_cast<int64_t>(r), s, [&](int64_t p) { return class_colour(ids[p]); });
    }
  }
  data::write_png(out, panel);
  std::string columns = "image | ground truth";
  for (const auto& [cfg, model] : runs) columns += " | " + cfg.run.name;
  std::cout << "\nwrote " << out << ": " << count << " validation images; columns: " << columns << "\n";
}

}  // namespace segkd::train
