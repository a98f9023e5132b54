#pragma once
/// Library side of `segkd preprocess` and `segkd synth` (the CLI in launch/ parses arguments and calls these).
#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "data/dataset.h"

namespace segkd::data {

/// Options of `segkd preprocess`.
struct PreprocessOptions {
  std::string format;  ///< cityscapes | ade20k | voc | folder
  std::string root;    ///< dataset root (see preprocess() for the layouts)
  std::string split;   ///< train | val (folder: also any sub-directory name)
  std::string out;     ///< output .h5 path
  int64_t shards = 1;
  int64_t workers = 2;   ///< decoding threads
  int64_t classes = 0;   ///< folder format only: number of classes
  int compression = 0;   ///< deflate level 0..9
  bool progress = true;  ///< progress bar with ETA on stderr
};

/// Converts a dataset in its published layout to format-1 HDF5 shards:
///   cityscapes: ROOT/leftImg8bit/SPLIT/CITY/X_leftImg8bit.png + ROOT/gtFine/SPLIT/CITY/X_gtFine_labelIds.png;
///               labelIds mapped to the 19 train ids, all others to 255; sample name X.
///   ade20k:     ROOT/images/{training,validation}/X.jpg + ROOT/annotations/{training,validation}/X.png
///               (ROOT may also be the parent of ADEChallengeData2016); 0 -> 255, k -> k-1; 150 classes.
///   voc:        ROOT/JPEGImages/X.jpg + ROOT/SegmentationClass/X.png (palette indices), names from
///               ROOT/ImageSets/Segmentation/SPLIT.txt; 21 classes, 255 stays ignore.
///   folder:     ROOT/images/ and ROOT/labels/ (or ROOT/images/SPLIT and ROOT/labels/SPLIT when those exist),
///               matched by file stem; labels are gray/palette PNGs holding train ids; `classes` required.
/// Samples are written in sorted name order. With shards > 1, shard i of N is written to OUT with
/// "-0000i-of-0000N" inserted before the extension ("train.h5" -> "train-00000-of-00002.h5"), samples split
/// into N contiguous, nearly equal parts. Errors (InputError) name the file: image without label (first few
/// listed), size mismatch, label value >= classes and != 255, unreadable or truncated file, empty split. Files
/// are written as *.partial and renamed only when complete. Returns the written shard paths.
std::vector<std::string> preprocess(const PreprocessOptions& o);

/// Options of `segkd synth`.
struct SynthOptions {
  std::string out;
  int64_t num = 100, height = 128, width = 128, classes = 8;
  uint64_t seed = 0;
  int64_t workers = 2;
  bool progress = true;
  int compression = 0;
};

/// Largest image side synthesize() accepts: a scene is built in memory by each worker (4 bytes per pixel).
constexpr int64_t kMaxSynthSide = 16384;

/// Writes `num` procedurally generated scenes with exact labels to `out` (deterministic by seed, independent of
/// `workers`). Classes split into "stuff" classes (the first ceil(C/2)): warped Voronoi regions, each class a
/// texture (stripe orientation/period, checks, dots, ...) in random colours; and "object" classes: shapes
/// (disk, square, triangle, ring, ...) with their own texture, at scales from 1/10 to 1/2.5 of the image, drawn
/// over each other (occlusion). Object classes come in pairs that share shape and texture and differ only by
/// context: the class is 2b when the object's centre lies on a stuff class of even id, 2b+1 on odd. Colours are
/// random per region/object, so colour alone does not identify a class; an illumination gradient and pixel noise
/// are added. Class names and a palette are stored.
void synthesize(const SynthOptions& o);

/// Scene `index` of synthesize() for (classes, seed) at height x width, without writing anything.
Sample synth_sample(int64_t classes, uint64_t seed, int64_t index, int64_t height, int64_t width);

/// Class names ("stuff-<texture>", "<shape>-<texture>-on-even|odd-<b>") and palette of synthetic data.
DatasetInfo synth_info(int64_t classes);

/// Built-in metadata: Cityscapes (19 train ids), ADE20K (150), Pascal VOC (21); `generic_info(C)` names classes
/// "class0".. with a generated palette.
DatasetInfo cityscapes_info();
DatasetInfo ade20k_info();
DatasetInfo voc_info();
DatasetInfo generic_info(int64_t classes);

/// The 256-entry Pascal VOC colour map (index -> RGB).
std::vector<std::array<uint8_t, 3>> voc_colormap();

/// Cityscapes labelId (0..255) -> trainId lookup table (unlisted ids -> 255).
std::array<uint8_t, 256> cityscapes_label_to_train();

/// The shard file name for shard `i` of `n` ("x/train.h5", 0, 2 -> "x/train-00000-of-00002.h5"; n == 1 -> out).
std::string shard_path(const std::string& out, int64_t i, int64_t n);

}  // namespace segkd::data
