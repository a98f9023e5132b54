#include "train/commands.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/config.h"
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
#include "train/teacher.h"
#include "train/trainer.h"

namespace fs = std::filesystem;
using nlohmann::json;

namespace segkd::train {
namespace {

Config load(const ConfigArgs& c, const std::vector<std::string>& extra = {}) {
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

/// The student of `cfg` with `weights` loaded (strict), in eval mode.
models::Segmentor load_student(const Config& cfg, const std::string& weights) {
  auto mc = cfg.student;
  mc.weights.clear();
  mc.pretrained.clear();
  auto model = models::build_model(mc, cfg.data.num_classes);
  load_student_weights(*model, weights);
  model->eval();
  return model;
}

/// A fixed palette (the dataset's if known): distinct colours for class ids.
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

/// 12790086 -> "12,790,086".
std::string with_commas(int64_t n) {
  std::string digits = std::to_string(n < 0 ? -n : n), out;
  for (size_t i = 0; i < digits.size(); ++i) {
    if (i > 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return n < 0 ? "-" + out : out;
}

std::string fmt_pct(double v) { return std::isnan(v) ? std::string("-") : fmt::format("{:.2f}", 100 * v); }

}  // namespace

int run_train(const ConfigArgs& c, const std::string& work_dir, const std::string& resume, bool overwrite) {
  std::vector<std::string> extra;
  if (!work_dir.empty()) extra.push_back("run.work_dir=" + quote_toml(work_dir));
  auto cfg = load(c, extra);
  setup_logging("", dist::topology().rank, cfg.log.level);
  TrainOptions options;
  options.resume = resume;
  options.overwrite = overwrite;
  try {
    train(cfg, options);
  } catch (const c10::Error& e) {
    std::string what = e.what_without_backtrace();
    what = what.substr(0, what.find('\n'));
    if (what.find("can't allocate memory") == std::string::npos) throw;
    throw Error(str_cat("out of memory (", what.substr(what.find("can't allocate")), ") with data.crop = [",
                        cfg.data.crop[0], ", ", cfg.data.crop[1], "] and data.batch_per_rank = ",
                        cfg.data.batch_per_rank, ": lower them"));
  } catch (const std::bad_alloc&) {
    throw Error(str_cat("out of memory with data.crop = [", cfg.data.crop[0], ", ", cfg.data.crop[1],
                        "] and data.batch_per_rank = ", cfg.data.batch_per_rank, ": lower them"));
  }
  return 0;
}

int run_eval(const ConfigArgs& c, const std::string& weights, const std::string& out_json,
             const std::string& precision) {
  auto cfg = load(c);
  const auto& topo = dist::topology();
  setup_logging("", topo.rank, cfg.log.level);
  configure_threads(cfg.run.threads, topo.local_size);
  if (cfg.data.val.empty()) throw ConfigError("data.val is empty: nothing to evaluate");
  const torch::Device device = dist::local_device();
  auto comm = dist::make_communicator(cfg.distributed, device);
  auto val_set = open_dataset(cfg.data.val, cfg.data.num_classes);
  const auto& val = *val_set;
  auto model = load_student(cfg, weights);
  model->to(device);
  auto r = evaluate_at_precision(cfg, model, precision, val, *comm, device);
  if (topo.rank == 0) {
    std::cout << fmt::format("mIoU {:.2f} | pixel acc {:.2f} | mean acc {:.2f} | {} images | {} | {}\n", 100 * r.miou,
                             100 * r.pixel_acc, 100 * r.mean_acc, r.images, precision, weights);
    const auto& names = val.info().class_names;
    for (size_t k = 0; k < r.per_class_iou.size(); ++k) {
      std::cout << fmt::format("  {:>3} {:<20} {:>6}\n", k, k < names.size() ? names[k] : "", fmt_pct(r.per_class_iou[k]));
    }
    std::string path = out_json.empty() ? (fs::path(cfg.run.work_dir) / "eval.json").string() : out_json;
    if (!fs::path(path).parent_path().empty()) fs::create_directories(fs::path(path).parent_path());
    json j{{"weights", weights}, {"mIoU", r.miou}, {"pixel_acc", r.pixel_acc}, {"mean_acc", r.mean_acc},
           {"images", r.images}, {"config_hash", cfg.hash}, {"world_size", comm->size()}, {"precision", precision}};
    j["per_class_iou"] = json::parse(per_class_json(r.per_class_iou, names));
    write_file_atomic(path, j.dump(2) + "\n");
    std::cout << "written " << path << "\n";
  }
  return 0;
}

int run_predict(const ConfigArgs& c, const std::string& weights, const std::string& input, const std::string& out) {
  auto cfg = load(c);
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

int run_export(const std::string& checkpoint, const std::string& out) {
  check_output_not_input("--out", out, "checkpoint", checkpoint);
  auto state = read_checkpoint_student(checkpoint);
  models::write_pth(state, out);
  std::cout << "exported " << state.size() << " tensors from " << checkpoint << " to " << out
            << " (PyTorch state_dict, mmsegmentation key names)\n";
  return 0;
}

int run_sweep(const ConfigArgs& c, const std::vector<std::string>& grid, const std::string& work_dir) {
  // Parse "key=v1,v2,..." axes and run their cartesian product.
  std::vector<std::pair<std::string, std::vector<std::string>>> axes;
  for (const auto& g : grid) {
    auto eq = g.find('=');
    if (eq == std::string::npos || eq == 0 || eq + 1 == g.size()) {
      throw ConfigError(str_cat("--grid '", g, "': expected key=v1,v2,..."));
    }
    std::vector<std::string> values;
    std::stringstream ss(g.substr(eq + 1));
    std::string v;
    while (std::getline(ss, v, ',')) values.push_back(v);
    axes.emplace_back(g.substr(0, eq), values);
  }
  if (axes.empty()) throw ConfigError("segkd sweep needs at least one --grid key=v1,v2,...");
  auto base = load(c, work_dir.empty() ? std::vector<std::string>{}
                                       : std::vector<std::string>{"run.work_dir=" + quote_toml(work_dir)});
  const std::string root = base.run.work_dir;
  const auto& topo = dist::topology();
  // Validate every combination before training any of them.
  std::vector<std::vector<std::string>> combos{{}};
  for (auto& [key, values] : axes) {
    std::vector<std::vector<std::string>> next;
    for (auto& combo : combos) {
      for (auto& v : values) {
        auto x = combo;
        x.push_back(key + "=" + v);
        next.push_back(x);
      }
    }
    combos = next;
  }
  std::vector<std::pair<std::string, Config>> runs;
  for (auto& combo : combos) {
    std::string tag;
    for (auto& kv : combo) tag += (tag.empty() ? "" : ",") + kv;
    std::string dir_name = tag;
    std::replace_if(dir_name.begin(), dir_name.end(), [](char ch) { return ch == '/' || ch == ' ' || ch == '"'; }, '_');
    auto extra = combo;
    extra.push_back("run.work_dir=" + quote_toml((fs::path(root) / dir_name).string()));
    runs.emplace_back(tag, load(c, extra));
  }
  std::string csv = "run";
  for (auto& [key, values] : axes) csv += "," + key;
  csv += ",iterations,train_s,images_per_s,mIoU\n";
  std::string md = "| run |";
  for (auto& [key, values] : axes) md += " " + key + " |";
  md += " iterations | train time | img/s | mIoU |\n|---|";
  for (size_t i = 0; i < axes.size(); ++i) md += "---|";
  md += "---|---|---|---|\n";
  for (size_t i = 0; i < runs.size(); ++i) {
    auto& [tag, cfg] = runs[i];
    setup_logging("", topo.rank, cfg.log.level);
    spdlog::info("sweep run {}/{}: {}", i + 1, runs.size(), tag);
    auto s = train(cfg, {});
    if (topo.rank == 0) {
      std::string miou = s.evaluated ? fmt::format("{:.4f}", s.eval.miou) : "";
      csv += std::to_string(i);
      md += "| " + std::to_string(i) + " |";
      for (auto& kv : combos[i]) {
        csv += "," + kv.substr(kv.find('=') + 1);
        md += " " + kv.substr(kv.find('=') + 1) + " |";
      }
      csv += fmt::format(",{},{:.1f},{:.2f},{}\n", s.iterations, s.train_s, s.images_per_s, miou);
      md += fmt::format(" {} | {} | {:.1f} | {} |\n", s.iterations, format_duration(s.train_s), s.images_per_s,
                        s.evaluated ? fmt::format("{:.2f}", 100 * s.eval.miou) : "-");
      // Written after every run so a long sweep shows its results as they come.
      write_file_atomic((fs::path(root) / "sweep.csv").string(), csv);
      write_file_atomic((fs::path(root) / "sweep.md").string(), md);
    }
  }
  if (topo.rank == 0) std::cout << md << "written " << root << "/sweep.csv and sweep.md\n";
  return 0;
}

int run_info(const ConfigArgs& c) {
  auto cfg = load(c);
  std::cout << "# resolved config: " << cfg.source_path << " (hash " << cfg.hash << ")\n" << cfg.resolved_toml << "\n";
  auto describe = [&](const char* role, ModelConfig mc) {
    mc.weights.clear();
    mc.pretrained.clear();
    auto model = models::build_model(mc, cfg.data.num_classes);
    const int64_t h = cfg.data.crop[0], w = cfg.data.crop[1];
    std::cout << fmt::format("{}: {}-{} | {} parameters ({} trainable) | {:.1f} GFLOPs per {}x{} image\n", role,
                             mc.arch, mc.backbone, with_commas(models::count_parameters(*model)),
                             with_commas(models::count_parameters(*model, true)),
                             models::flops_per_image(model, h, w) / 1e9, h, w);
  };
  describe("student", cfg.student);
  if (cfg.teacher) describe("teacher", *cfg.teacher);
  for (auto [name, files] : {std::pair{"train", &cfg.data.train}, std::pair{"val", &cfg.data.val}}) {
    if (files->empty()) continue;
    try {
      data::H5Dataset ds(*files);
      std::cout << fmt::format("{} set: {} images in {} shard(s), {} classes\n", name, ds.size(), ds.files().size(),
                               ds.info().num_classes);
    } catch (const std::exception& e) {
      std::cout << name << " set: unavailable (" << e.what() << ")\n";
    }
  }
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

/// The panel of `segkd report --panel`: one row per validation image (the first run's data.val); columns: image,
/// ground truth, then each run's prediction, all in the dataset palette, tiles enlarged to >= 128 px.
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
  data::Image panel{count * (tile_h * zoom + gap) + gap, cols * (tile_w * zoom + gap) + gap, 3, {}};
  panel.pixels.assign(static_cast<size_t>(panel.height * panel.width * 3), 255);
  auto paste = [&](int64_t row, int64_t col, const data::Sample& s, auto rgb_at) {
    const int64_t y0 = gap + row * (tile_h * zoom + gap), x0 = gap + col * (tile_w * zoom + gap);
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

}  // namespace

int run_report(const std::vector<std::string>& run_dirs, const std::string& markdown_out, const std::string& panel,
               int64_t panel_images) {
  std::string md =
      "| run | student | teacher | KD | iterations | train time | img/s | mIoU |\n"
      "|---|---|---|---|---|---|---|---|\n";
  for (const auto& dir : run_dirs) {
    const auto path = (fs::path(dir) / "summary.json").string();
    std::ifstream in(path);
    if (!in) throw InputError(str_cat("no summary.json in ", dir, " (has the run finished?)"));
    json j;
    try {
      in >> j;
    } catch (const std::exception& e) {
      throw InputError(str_cat(path, ": not valid JSON: ", e.what()));
    }
    std::string kd;
    for (auto& d : j.value("distill", json::array())) {
      const auto type = d.value("type", std::string("?"));
      const bool uses_tau = type == "logit" || type == "cwd" || type == "dist";  // the others ignore distill.tau
      kd += (kd.empty() ? "" : "+") +
            (uses_tau ? fmt::format("{}(w={},τ={})", type, d.value("weight", 0.0), d.value("tau", 0.0))
                      : fmt::format("{}(w={})", type, d.value("weight", 0.0)));
    }
    auto miou = j.contains("mIoU") && j["mIoU"].is_number() ? fmt::format("{:.2f}", 100 * j["mIoU"].get<double>())
                                                          : std::string("-");
    md += fmt::format("| {} | {} | {} | {} | {} | {} | {:.1f} | {} |\n", j.value("name", dir),
                      j.value("student", std::string("?")),
                      j["teacher"].is_string() ? j["teacher"].get<std::string>() : std::string("-"),
                      kd.empty() ? "-" : kd, j.value("iterations", 0), format_duration(j.value("train_s", 0.0)),
                      j.value("images_per_s", 0.0), miou);
  }
  std::cout << md;
  if (!markdown_out.empty()) write_file_atomic(markdown_out, md);
  if (!panel.empty()) write_panel(run_dirs, panel, panel_images);
  return 0;
}

}  // namespace segkd::train
