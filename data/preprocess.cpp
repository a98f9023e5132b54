#include "data/preprocess.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "common/error.h"
#include "common/paths.h"
#include "common/progress.h"
#include "data/image_io.h"
#include "data/ordered_producer.h"
#include "data/parallel_write.h"

namespace fs = std::filesystem;

namespace segkd::data {

// ---- built-in dataset metadata --------------------------------------------------------------------------------

std::vector<std::array<uint8_t, 3>> voc_colormap() {
  std::vector<std::array<uint8_t, 3>> map(256);
  for (int i = 0; i < 256; ++i) {
    int c = i, r = 0, g = 0, b = 0;
    for (int j = 0; j < 8; ++j) {
      r |= ((c >> 0) & 1) << (7 - j);
      g |= ((c >> 1) & 1) << (7 - j);
      b |= ((c >> 2) & 1) << (7 - j);
      c >>= 3;
    }
    map[i] = {static_cast<uint8_t>(r), static_cast<uint8_t>(g), static_cast<uint8_t>(b)};
  }
  return map;
}

std::array<uint8_t, 256> cityscapes_label_to_train() {
  std::array<uint8_t, 256> lut;
  lut.fill(255);
  const int ids[19] = {7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33};
  for (int t = 0; t < 19; ++t) lut[ids[t]] = static_cast<uint8_t>(t);
  return lut;
}

DatasetInfo cityscapes_info() {
  DatasetInfo info;
  info.num_classes = 19;
  info.class_names = {"road",  "sidewalk",   "building", "wall",   "fence", "pole",  "traffic light",
                      "traffic sign", "vegetation", "terrain", "sky", "person", "rider", "car",
                      "truck", "bus", "train", "motorcycle", "bicycle"};
  info.palette = {{128, 64, 128}, {244, 35, 232}, {70, 70, 70},    {102, 102, 156}, {190, 153, 153},
                  {153, 153, 153}, {250, 170, 30}, {220, 220, 0},   {107, 142, 35},  {152, 251, 152},
                  {70, 130, 180},  {220, 20, 60},  {255, 0, 0},     {0, 0, 142},     {0, 0, 70},
                  {0, 60, 100},    {0, 80, 100},   {0, 0, 230},     {119, 11, 32}};
  return info;
}

namespace {
std::vector<std::array<uint8_t, 3>> generated_palette(int64_t n) {
  // Golden-ratio hue walk with alternating value; distinct enough for visualisation.
  std::vector<std::array<uint8_t, 3>> out;
  for (int64_t i = 0; i < n; ++i) {
    const double h = std::fmod(i * 0.618033988749895, 1.0) * 6.0;
    const double v = (i % 2) ? 0.75 : 1.0, s = (i % 3 == 2) ? 0.55 : 0.85;
    const int k = static_cast<int>(h);
    const double f = h - k, p = v * (1 - s), q = v * (1 - s * f), t = v * (1 - s * (1 - f));
    double r, g, b;
    switch (k % 6) {
      case 0: r = v, g = t, b = p; break;
      case 1: r = q, g = v, b = p; break;
      case 2: r = p, g = v, b = t; break;
      case 3: r = p, g = q, b = v; break;
      case 4: r = t, g = p, b = v; break;
      default: r = v, g = p, b = q; break;
    }
    out.push_back({static_cast<uint8_t>(r * 255), static_cast<uint8_t>(g * 255), static_cast<uint8_t>(b * 255)});
  }
  return out;
}
}  // namespace

DatasetInfo ade20k_info() {
  DatasetInfo info;
  info.num_classes = 150;
  info.class_names = {
      "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
      "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
      "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk",
      "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
      "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand",
      "path", "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge",
      "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove",
      "palm", "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus",
      "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver",
      "airplane", "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle",
      "buffet", "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything",
      "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven",
      "ball", "food", "step", "tank", "trade name", "microwave", "pot", "animal", "bicycle", "lake",
      "dishwasher", "screen", "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray",
      "ashcan", "fan", "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator",
      "glass", "clock", "flag"};
  info.palette = generated_palette(150);
  return info;
}

DatasetInfo voc_info() {
  DatasetInfo info;
  info.num_classes = 21;
  info.class_names = {"background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus",
                      "car", "cat", "chair", "cow", "diningtable", "dog", "horse",
                      "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor"};
  const auto map = voc_colormap();
  info.palette.assign(map.begin(), map.begin() + 21);
  return info;
}

DatasetInfo generic_info(int64_t classes) {
  DatasetInfo info;
  info.num_classes = classes;
  for (int64_t i = 0; i < classes; ++i) info.class_names.push_back(str_cat("class", i));
  info.palette = generated_palette(classes);
  return info;
}

std::string shard_path(const std::string& out, int64_t i, int64_t n) {
  if (n <= 1) return out;
  const fs::path p(out);
  char suffix[64];
  std::snprintf(suffix, sizeof(suffix), "-%05lld-of-%05lld", static_cast<long long>(i), static_cast<long long>(n));
  return (p.parent_path() / (p.stem().string() + suffix + p.extension().string())).string();
}

// ---- ordered parallel writer --------------------------------------------------------------------------------

namespace detail {

void write_parallel(int64_t n, int64_t workers, const std::function<Sample(int64_t)>& produce,
                    const std::vector<std::string>& paths, const DatasetInfo& info, int compression,
                    bool progress, const std::string& label) {
  const int64_t num_shards = static_cast<int64_t>(paths.size());
  std::vector<std::unique_ptr<H5Writer>> writers;
  for (const auto& p : paths) writers.push_back(std::make_unique<H5Writer>(p, info, compression));

  workers = std::max<int64_t>(1, workers);
  OrderedProducer<Sample> producer(produce, workers, /*window=*/4 * workers, /*first=*/0, /*end=*/n);
  Progress bar(label, n, /*enabled=*/progress, Progress::Style::kBar);
  try {
    for (int64_t i = 0; i < n; ++i) {
      writers[i * num_shards / n]->add(producer.next());
      bar.update(i + 1);
    }
    producer.stop();
    for (auto& w : writers) w->finish();
  } catch (...) {
    bar.abandon();
    producer.stop();
    writers.clear();  // removes every *.partial
    // Shards renamed before the failure (only possible if a later finish() failed) are removed too.
    for (const auto& p : paths) std::remove(p.c_str());
    throw;
  }
}

}  // namespace detail

// ---- dataset layouts --------------------------------------------------------------------------------------------

namespace {

struct Pair {
  std::string name, image, label;
};

enum class LabelMap { kIdentity, kCityscapes, kReduceZero };

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

void require_dir(const fs::path& dir, const std::string& split) {
  if (!fs::is_directory(dir))
    throw InputError(str_cat("split '", split, "' is empty: directory '", dir.string(), "' does not exist"));
}

[[noreturn]] void throw_missing_labels(const std::vector<std::string>& missing, const fs::path& label_dir) {
  std::string list;
  const size_t shown = std::min<size_t>(missing.size(), 5);
  for (size_t i = 0; i < shown; ++i) list += (i ? ", " : "") + missing[i];
  if (missing.size() > shown) list += str_cat(" and ", missing.size() - shown, " more");
  throw InputError(str_cat(missing.size(), " image(s) without label in '", label_dir.string(), "': ", list));
}

void check_nonempty(const std::vector<Pair>& pairs, const std::string& split, const fs::path& where) {
  if (pairs.empty())
    throw InputError(str_cat("split '", split, "' is empty: no images found in '", where.string(), "'"));
}

/// Pairs each regular file of `files` that `label_of(path, stem, label)` accepts with its label file; images whose
/// label is missing are one error listing them all; an empty result is an error naming the split.
template <class Files, class LabelOf>
std::vector<Pair> pair_images(Files files, const fs::path& img_dir, const fs::path& lbl_dir, const std::string& split,
                              LabelOf label_of) {
  std::vector<Pair> pairs;
  std::vector<std::string> missing;
  for (const auto& entry : files) {
    if (!entry.is_regular_file()) continue;
    std::string stem;
    fs::path label;
    if (!label_of(entry.path(), stem, label)) continue;
    if (!fs::exists(label)) {
      missing.push_back(entry.path().string());
      continue;
    }
    pairs.push_back({stem, entry.path().string(), label.string()});
  }
  std::sort(missing.begin(), missing.end());
  if (!missing.empty()) throw_missing_labels(missing, lbl_dir);
  check_nonempty(pairs, split, img_dir);
  return pairs;
}

std::vector<Pair> list_cityscapes(const fs::path& root, const std::string& split) {
  const fs::path img_dir = root / "leftImg8bit" / split, lbl_dir = root / "gtFine" / split;
  require_dir(img_dir, split);
  const std::string suffix = "_leftImg8bit.png";
  return pair_images(fs::recursive_directory_iterator(img_dir), img_dir, lbl_dir, split,
                     [&](const fs::path& image, std::string& stem, fs::path& label) {
                       const std::string file = image.filename().string();
                       if (!ends_with(file, suffix)) return false;
                       stem = file.substr(0, file.size() - suffix.size());
                       label = lbl_dir / fs::relative(image.parent_path(), img_dir) / (stem + "_gtFine_labelIds.png");
                       return true;
                     });
}

std::vector<Pair> list_by_stem(const fs::path& img_dir, const fs::path& lbl_dir, const std::string& split,
                               const std::vector<std::string>& image_exts) {
  require_dir(img_dir, split);
  return pair_images(fs::directory_iterator(img_dir), img_dir, lbl_dir, split,
                     [&](const fs::path& image, std::string& stem, fs::path& label) {
                       const std::string ext = lower(image.extension().string());
                       if (std::find(image_exts.begin(), image_exts.end(), ext) == image_exts.end()) return false;
                       stem = image.stem().string();
                       label = lbl_dir / (stem + ".png");
                       return true;
                     });
}

std::vector<Pair> list_ade20k(fs::path root, const std::string& split) {
  if (fs::is_directory(root / "ADEChallengeData2016")) root /= "ADEChallengeData2016";
  std::string sub;
  if (split == "train" || split == "training") sub = "training";
  else if (split == "val" || split == "validation") sub = "validation";
  else throw InputError(str_cat("ade20k: split must be train or val, got '", split, "'"));
  return list_by_stem(root / "images" / sub, root / "annotations" / sub, split, {".jpg", ".jpeg", ".png"});
}

std::vector<Pair> list_voc(const fs::path& root, const std::string& split) {
  const fs::path list = root / "ImageSets" / "Segmentation" / (split + ".txt");
  std::ifstream in(list);
  if (!in) throw InputError(str_cat("voc: cannot open split list '", list.string(), "'"));
  std::vector<Pair> pairs;
  std::vector<std::string> missing;
  std::string line;
  while (std::getline(in, line)) {
    while (!line.empty() && std::isspace(static_cast<unsigned char>(line.back()))) line.pop_back();
    size_t start = 0;
    while (start < line.size() && std::isspace(static_cast<unsigned char>(line[start]))) ++start;
    line = line.substr(start);
    if (line.empty()) continue;
    const fs::path image = root / "JPEGImages" / (line + ".jpg");
    const fs::path label = root / "SegmentationClass" / (line + ".png");
    if (!fs::exists(image))
      throw InputError(str_cat("voc: image '", image.string(), "' listed in '", list.string(), "' is missing"));
    if (!fs::exists(label)) {
      missing.push_back(image.string());
      continue;
    }
    pairs.push_back({line, image.string(), label.string()});
  }
  if (!missing.empty()) throw_missing_labels(missing, root / "SegmentationClass");
  if (pairs.empty()) throw InputError(str_cat("split '", split, "' is empty: '", list.string(), "' lists no images"));
  return pairs;
}

std::vector<Pair> list_folder(const fs::path& root, const std::string& split) {
  fs::path img_dir = root / "images", lbl_dir = root / "labels";
  if (!split.empty() && fs::is_directory(img_dir / split)) {
    img_dir /= split;
    lbl_dir /= split;
  }
  return list_by_stem(img_dir, lbl_dir, split, {".png", ".jpg", ".jpeg"});
}

Sample convert(const Pair& p, LabelMap map, int64_t classes, int64_t ignore) {
  Image image = read_image(p.image);
  Image label = read_label_png(p.label);
  if (image.height != label.height || image.width != label.width)
    throw InputError(str_cat("size mismatch: image '", p.image, "' is ", image.height, "x", image.width,
                             " but label '", p.label, "' is ", label.height, "x", label.width));
  static const auto city = cityscapes_label_to_train();
  Sample s;
  s.name = p.name;
  s.height = image.height;
  s.width = image.width;
  s.image = std::move(image.pixels);
  s.label = std::move(label.pixels);
  for (size_t i = 0; i < s.label.size(); ++i) {
    uint8_t v = s.label[i];
    if (map == LabelMap::kCityscapes) v = city[v];
    else if (map == LabelMap::kReduceZero) v = v == 0 ? 255 : static_cast<uint8_t>(v - 1);
    if (v >= classes && v != ignore)
      throw InputError(str_cat("label '", p.label, "': value ", static_cast<int>(s.label[i]), " at (y=",
                               static_cast<int64_t>(i) / s.width, ", x=", static_cast<int64_t>(i) % s.width,
                               ") maps to ", static_cast<int>(v), ", which is >= num_classes ", classes,
                               " and != ignore ", ignore));
    s.label[i] = v;
  }
  return s;
}

/// An output that already exists may be one of the inputs (`--out` = an image or label): refuse before writing.
void check_outputs_not_inputs(const std::vector<std::string>& outputs, const std::vector<Pair>& pairs) {
  for (const auto& out : outputs) {
    std::error_code ec;
    if (!fs::exists(out, ec)) continue;  // an input always exists
    for (const auto& p : pairs) {
      check_output_not_input("--out", out, str_cat("input image of '", p.name, "'"), p.image);
      check_output_not_input("--out", out, str_cat("input label of '", p.name, "'"), p.label);
    }
  }
}

}  // namespace

std::vector<std::string> preprocess(const PreprocessOptions& o) {
  if (o.root.empty()) throw ConfigError("preprocess: --root is required");
  if (o.out.empty()) throw ConfigError("preprocess: --out is required");
  if (!fs::is_directory(o.root)) throw InputError(str_cat("preprocess: root '", o.root, "' is not a directory"));
  if (o.shards < 1) throw ConfigError(str_cat("preprocess: --shards must be >= 1, got ", o.shards));
  std::vector<Pair> pairs;
  DatasetInfo info;
  LabelMap map = LabelMap::kIdentity;
  if (o.format == "cityscapes") {
    pairs = list_cityscapes(o.root, o.split);
    info = cityscapes_info();
    map = LabelMap::kCityscapes;
  } else if (o.format == "ade20k") {
    pairs = list_ade20k(o.root, o.split);
    info = ade20k_info();
    map = LabelMap::kReduceZero;
  } else if (o.format == "voc") {
    pairs = list_voc(o.root, o.split);
    info = voc_info();
  } else if (o.format == "folder") {
    if (o.classes <= 0 || o.classes > 255)
      throw ConfigError(str_cat("preprocess: format 'folder' needs --classes in [1, 255], got ", o.classes));
    pairs = list_folder(o.root, o.split);
    info = generic_info(o.classes);
  } else {
    throw ConfigError(str_cat("preprocess: unknown --format '", o.format, "' (cityscapes|ade20k|voc|folder)"));
  }
  std::sort(pairs.begin(), pairs.end(), [](const Pair& a, const Pair& b) { return a.name < b.name; });
  const int64_t n = static_cast<int64_t>(pairs.size());
  const int64_t shards = std::min<int64_t>(o.shards, n);
  std::vector<std::string> paths;
  for (int64_t i = 0; i < shards; ++i) paths.push_back(shard_path(o.out, i, shards));
  check_outputs_not_inputs(paths, pairs);
  detail::write_parallel(
      n, o.workers, [&](int64_t i) { return convert(pairs[i], map, info.num_classes, info.ignore_index); }, paths,
      info, o.compression, o.progress, str_cat("preprocess ", o.format, "/", o.split));
  return paths;
}

}  // namespace segkd::data
