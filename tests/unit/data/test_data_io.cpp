// Codecs, HDF5 format-1 reader/writer, preprocess converters and the synthetic generator.
#include <hdf5.h>

#include <filesystem>
#include <fstream>
#include <limits>
#include <thread>

#include "common/error.h"
#include "data/dataset.h"
#include "data/image_io.h"
#include "data/preprocess.h"
#include "data/random.h"
#include "tests/testing/testing.h"

namespace fs = std::filesystem;
using namespace segkd::data;
using segkd::testing::TempDir;

namespace {

Image random_image(int64_t h, int64_t w, int64_t c, uint64_t seed, int max_value = 256) {
  Image im;
  im.height = h, im.width = w, im.channels = c;
  Rng rng(seed);
  for (int64_t i = 0; i < h * w * c; ++i) im.pixels.push_back(static_cast<uint8_t>(rng.below(max_value)));
  return im;
}

/// A smooth RGB image (JPEG keeps it close).
Image smooth_image(int64_t h, int64_t w, int shift = 0) {
  Image im;
  im.height = h, im.width = w, im.channels = 3;
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x)
      for (int k = 0; k < 3; ++k) im.pixels.push_back(static_cast<uint8_t>(30 + 2 * x + y + 30 * k + shift));
  return im;
}

Image label_image(int64_t h, int64_t w, const std::vector<uint8_t>& values, uint64_t seed) {
  Image im;
  im.height = h, im.width = w, im.channels = 1;
  Rng rng(seed);
  for (int64_t i = 0; i < h * w; ++i) im.pixels.push_back(values[rng.below(values.size())]);
  return im;
}

void truncate_file(const std::string& path, double keep) {
  const auto size = fs::file_size(path);
  fs::resize_file(path, static_cast<uintmax_t>(size * keep));
}

bool no_outputs(const std::string& dir) {
  for (const auto& e : fs::directory_iterator(dir))
    if (e.path().extension() == ".h5" || e.path().extension() == ".partial") return false;
  return true;
}

Sample make_sample(const std::string& name, int64_t h, int64_t w, uint64_t seed) {
  Sample s;
  s.name = name, s.height = h, s.width = w;
  s.image = random_image(h, w, 3, seed).pixels;
  s.label = label_image(h, w, {0, 1, 2, 255}, seed + 1).pixels;
  return s;
}

}  // namespace

// ---- codecs ----------------------------------------------------------------------------------------------------

TEST(ImageIo, PngRoundTripRgbAndGray) {
  TempDir dir;
  const Image rgb = random_image(13, 17, 3, 1), gray = random_image(9, 5, 1, 2);
  write_png(dir.file("rgb.png"), rgb);
  write_png(dir.file("gray.png"), gray);
  const Image a = read_image(dir.file("rgb.png"));
  EXPECT_EQ(a.height, 13);
  EXPECT_EQ(a.width, 17);
  EXPECT_EQ(a.channels, 3);
  EXPECT_EQ(a.pixels, rgb.pixels);
  const Image g = read_label_png(dir.file("gray.png"));
  EXPECT_EQ(g.channels, 1);
  EXPECT_EQ(g.pixels, gray.pixels);
  const Image g3 = read_image(dir.file("gray.png"));  // gray replicated to RGB
  ASSERT_EQ(g3.channels, 3);
  for (size_t i = 0; i < gray.pixels.size(); ++i)
    for (int k = 0; k < 3; ++k) ASSERT_EQ(g3.pixels[i * 3 + k], gray.pixels[i]);
}

TEST(ImageIo, PalettePngReadsIndicesAsLabelAndColoursAsImage) {
  TempDir dir;
  const auto palette = voc_colormap();
  const Image idx = label_image(8, 11, {0, 1, 15, 20, 255}, 3);
  write_png(dir.file("pal.png"), idx, &palette);
  const Image label = read_label_png(dir.file("pal.png"));
  EXPECT_EQ(label.pixels, idx.pixels);
  const Image colour = read_image(dir.file("pal.png"));
  for (size_t i = 0; i < idx.pixels.size(); ++i)
    for (int k = 0; k < 3; ++k) ASSERT_EQ(colour.pixels[i * 3 + k], palette[idx.pixels[i]][k]);
}

TEST(ImageIo, JpegRoundTripIsCloseAndDetectedByContent) {
  TempDir dir;
  const Image im = smooth_image(32, 40);
  write_jpeg(dir.file("a.png"), im, 100);  // misleading extension: detection is by content
  const Image back = read_image(dir.file("a.png"));
  ASSERT_EQ(back.height, 32);
  ASSERT_EQ(back.width, 40);
  int max_diff = 0;
  for (size_t i = 0; i < im.pixels.size(); ++i) max_diff = std::max(max_diff, std::abs(im.pixels[i] - back.pixels[i]));
  EXPECT_LE(max_diff, 8);
}

TEST(ImageIo, ErrorsNameTheFile) {
  TempDir dir;
  SEGKD_EXPECT_THROW_MSG(read_image(dir.file("missing.png")), "missing.png");
  segkd::testing::write_text(dir.file("text.png"), "hello, not an image");
  SEGKD_EXPECT_THROW_MSG(read_image(dir.file("text.png")), "text.png': not a PNG or JPEG");
  write_png(dir.file("cut.png"), random_image(64, 64, 3, 4));
  truncate_file(dir.file("cut.png"), 0.5);
  SEGKD_EXPECT_THROW_MSG(read_image(dir.file("cut.png")), "cannot read PNG '" + dir.file("cut.png"));
  write_jpeg(dir.file("cut.jpg"), smooth_image(64, 64), 90);
  truncate_file(dir.file("cut.jpg"), 0.6);
  SEGKD_EXPECT_THROW_MSG(read_image(dir.file("cut.jpg")), "cannot read JPEG '" + dir.file("cut.jpg"));
  write_png(dir.file("rgb.png"), random_image(4, 4, 3, 5));
  SEGKD_EXPECT_THROW_MSG(read_label_png(dir.file("rgb.png")), "label PNG is colour");
}

// ---- HDF5 ------------------------------------------------------------------------------------------------------

TEST(H5, WriteThenReadIsExactAcrossShards) {
  TempDir dir;
  const DatasetInfo info = voc_info();
  std::vector<Sample> samples;
  for (int i = 0; i < 5; ++i) samples.push_back(make_sample("s" + std::to_string(i), 7 + i, 9 + 2 * i, 10 + i));
  for (int shard = 0; shard < 2; ++shard) {
    H5Writer w(dir.file("part" + std::to_string(shard) + ".h5"), info, /*compression_level=*/shard);
    for (int i = shard * 3; i < std::min(5, shard * 3 + 3); ++i) w.add(samples[i]);
    w.finish();
  }
  H5Dataset ds({dir.file("part*.h5")});
  ASSERT_EQ(ds.size(), 5);
  ASSERT_EQ(ds.files().size(), 2u);
  EXPECT_EQ(ds.info().num_classes, 21);
  EXPECT_EQ(ds.info().ignore_index, 255);
  EXPECT_EQ(ds.info().class_names, info.class_names);
  EXPECT_EQ(ds.info().palette, info.palette);
  for (int i = 0; i < 5; ++i) {
    const Sample s = ds.get(i);
    EXPECT_EQ(s.name, samples[i].name);
    EXPECT_EQ(s.height, samples[i].height);
    EXPECT_EQ(s.width, samples[i].width);
    EXPECT_EQ(s.image, samples[i].image);
    EXPECT_EQ(s.label, samples[i].label);
  }
  SEGKD_EXPECT_THROW_MSG(ds.get(5), "sample index 5 outside dataset of 5");
}

TEST(H5, ConcurrentReadsAreCorrect) {
  TempDir dir;
  std::vector<Sample> samples;
  {
    H5Writer w(dir.file("d.h5"), generic_info(3), 1);
    for (int i = 0; i < 8; ++i) {
      samples.push_back(make_sample("c" + std::to_string(i), 20, 30, 100 + i));
      w.add(samples.back());
    }
    w.finish();
  }
  H5Dataset ds({dir.file("d.h5")});
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int r = 0; r < 40; ++r) {
        const int i = (t * 3 + r) % 8;
        const Sample s = ds.get(i);
        if (s.image != samples[i].image || s.label != samples[i].label) ++bad;
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(bad.load(), 0);
}

TEST(H5, UnfinishedWriterLeavesNoFile) {
  TempDir dir;
  {
    H5Writer w(dir.file("x.h5"), generic_info(3));
    w.add(make_sample("a", 4, 4, 1));
    EXPECT_TRUE(fs::exists(dir.file("x.h5.partial")));
    EXPECT_FALSE(fs::exists(dir.file("x.h5")));
  }
  EXPECT_TRUE(no_outputs(dir.path()));
}

TEST(H5, ReaderErrorsNameTheFileOrPattern) {
  TempDir dir;
  SEGKD_EXPECT_THROW_MSG(H5Dataset({dir.file("none-*.h5")}), "none-*.h5' matches no file");
  segkd::testing::write_text(dir.file("bogus.h5"), "not hdf5");
  SEGKD_EXPECT_THROW_MSG(H5Dataset({dir.file("bogus.h5")}), "bogus.h5': not an HDF5 file");
  {
    H5Writer w(dir.file("good.h5"), generic_info(3));
    w.add(make_sample("a", 4, 4, 1));
    w.finish();
  }
  {  // a format-1 file with the wrong format number
    std::lock_guard<std::mutex> lock(hdf5_mutex());
    hid_t f = H5Fopen(dir.file("good.h5").c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t a = H5Aopen(f, "segkd_format", H5P_DEFAULT);
    int64_t two = 2;
    H5Awrite(a, H5T_NATIVE_INT64, &two);
    H5Aclose(a);
    H5Fclose(f);
  }
  SEGKD_EXPECT_THROW_MSG(H5Dataset({dir.file("good.h5")}), "good.h5': segkd_format is 2");
  SEGKD_EXPECT_THROW_MSG(H5Writer(dir.file("w.h5"), DatasetInfo{}), "w.h5': num_classes 0");
}

TEST(H5, ReadableByH5py) {
  if (!fs::exists("/usr/bin/python3")) GTEST_SKIP() << "no /usr/bin/python3";
  TempDir dir;
  const Sample s = make_sample("py", 3, 5, 9);
  {
    H5Writer w(dir.file("p.h5"), voc_info());
    w.add(s);
    w.finish();
  }
  const std::string script = dir.file("check.py");
  segkd::testing::write_text(script,
                             "import h5py, sys\n"
                             "f = h5py.File(sys.argv[1], 'r')\n"
                             "a = f.attrs\n"
                             "names = [n.decode() if isinstance(n, bytes) else n for n in f['names'][:]]\n"
                             "cls = [n.decode() if isinstance(n, bytes) else n for n in a['class_names']]\n"
                             "print(int(a['segkd_format']), int(a['num_classes']), int(a['ignore_index']),\n"
                             "      cls[1], a['palette'].shape, list(f['index'][0]), names[0],\n"
                             "      int(f['images'][:].sum()), int(f['labels'][:].sum()))\n");
  std::string out;
  ASSERT_EQ(segkd::testing::run_command("/usr/bin/python3 " + script + " " + dir.file("p.h5"), &out), 0) << out;
  int64_t image_sum = 0, label_sum = 0;
  for (auto v : s.image) image_sum += v;
  for (auto v : s.label) label_sum += v;
  EXPECT_NE(out.find(segkd::str_cat("1 21 255 aeroplane (21, 3) [0, 0, 3, 5] py ", image_sum, " ", label_sum)),
            std::string::npos)
      << out;
}

// ---- preprocess --------------------------------------------------------------------------------------------------

namespace {

struct Written {
  std::string name;
  Image image;
  std::vector<uint8_t> expected_label;
};

PreprocessOptions options(const std::string& format, const std::string& root, const std::string& split,
                          const std::string& out) {
  PreprocessOptions o;
  o.format = format, o.root = root, o.split = split, o.out = out, o.progress = false, o.workers = 2;
  return o;
}

void expect_dataset(const std::string& path, std::vector<Written> expected, int64_t classes) {
  std::sort(expected.begin(), expected.end(), [](auto& a, auto& b) { return a.name < b.name; });
  H5Dataset ds({path});
  EXPECT_EQ(ds.info().num_classes, classes);
  ASSERT_EQ(ds.size(), static_cast<int64_t>(expected.size()));
  for (size_t i = 0; i < expected.size(); ++i) {
    const Sample s = ds.get(i);
    EXPECT_EQ(s.name, expected[i].name);
    EXPECT_EQ(s.height, expected[i].image.height);
    EXPECT_EQ(s.width, expected[i].image.width);
    EXPECT_EQ(s.image, expected[i].image.pixels) << s.name;
    EXPECT_EQ(s.label, expected[i].expected_label) << s.name;
  }
}

}  // namespace

TEST(Preprocess, CityscapesMapsLabelIdsToTrainIds) {
  TempDir dir;
  const std::string root = dir.file("cs");
  const auto lut = cityscapes_label_to_train();
  EXPECT_EQ(lut[7], 0);
  EXPECT_EQ(lut[26], 13);
  EXPECT_EQ(lut[33], 18);
  EXPECT_EQ(lut[0], 255);
  EXPECT_EQ(lut[6], 255);
  std::vector<Written> expected;
  int k = 0;
  for (const std::string city : {"aachen", "bremen"}) {
    fs::create_directories(root + "/leftImg8bit/train/" + city);
    fs::create_directories(root + "/gtFine/train/" + city);
    for (int j = 0; j < 2; ++j, ++k) {
      const std::string stem = city + "_00000" + std::to_string(j) + "_000019";
      const Image im = random_image(12, 20, 3, 50 + k);
      const Image ids = label_image(12, 20, {0, 1, 6, 7, 8, 11, 24, 26, 31, 33}, 60 + k);
      write_png(root + "/leftImg8bit/train/" + city + "/" + stem + "_leftImg8bit.png", im);
      write_png(root + "/gtFine/train/" + city + "/" + stem + "_gtFine_labelIds.png", ids);
      Written w{stem, im, {}};
      for (auto v : ids.pixels) w.expected_label.push_back(lut[v]);
      expected.push_back(w);
    }
  }
  const auto paths = preprocess(options("cityscapes", root, "train", dir.file("cs.h5")));
  ASSERT_EQ(paths, std::vector<std::string>{dir.file("cs.h5")});
  expect_dataset(dir.file("cs.h5"), expected, 19);
  EXPECT_EQ(H5Dataset({dir.file("cs.h5")}).info().class_names[13], "car");
}

TEST(Preprocess, Ade20kReducesZeroLabel) {
  TempDir dir;
  const std::string root = dir.file("ADEChallengeData2016");
  fs::create_directories(root + "/images/validation");
  fs::create_directories(root + "/annotations/validation");
  std::vector<Written> expected;
  for (int j = 0; j < 3; ++j) {
    const std::string stem = "ADE_val_0000000" + std::to_string(j);
    write_jpeg(root + "/images/validation/" + stem + ".jpg", smooth_image(16, 24, 7 * j), 90);
    const Image lbl = label_image(16, 24, {0, 1, 2, 75, 150}, 70 + j);
    write_png(root + "/annotations/validation/" + stem + ".png", lbl);
    Written w{stem, read_image(root + "/images/validation/" + stem + ".jpg"), {}};
    for (auto v : lbl.pixels) w.expected_label.push_back(v == 0 ? 255 : v - 1);
    expected.push_back(w);
  }
  preprocess(options("ade20k", dir.path(), "val", dir.file("ade.h5")));  // parent of ADEChallengeData2016
  expect_dataset(dir.file("ade.h5"), expected, 150);
}

TEST(Preprocess, VocReadsPaletteIndicesAndKeepsIgnore) {
  TempDir dir;
  const std::string root = dir.file("VOC2012");
  fs::create_directories(root + "/JPEGImages");
  fs::create_directories(root + "/SegmentationClass");
  fs::create_directories(root + "/ImageSets/Segmentation");
  const auto palette = voc_colormap();
  std::vector<Written> expected;
  std::string list;
  for (int j = 0; j < 3; ++j) {
    const std::string stem = "2007_00012" + std::to_string(j);
    write_jpeg(root + "/JPEGImages/" + stem + ".jpg", smooth_image(10, 14, 11 * j), 95);
    const Image idx = label_image(10, 14, {0, 1, 15, 20, 255}, 80 + j);
    write_png(root + "/SegmentationClass/" + stem + ".png", idx, &palette);
    if (j < 2) {  // the third is not in the split
      list += stem + "\n";
      expected.push_back({stem, read_image(root + "/JPEGImages/" + stem + ".jpg"), idx.pixels});
    }
  }
  segkd::testing::write_text(root + "/ImageSets/Segmentation/train.txt", list);
  preprocess(options("voc", root, "train", dir.file("voc.h5")));
  expect_dataset(dir.file("voc.h5"), expected, 21);
  EXPECT_EQ(H5Dataset({dir.file("voc.h5")}).info().palette[15], (std::array<uint8_t, 3>{192, 128, 128}));
}

TEST(Preprocess, FolderWithShards) {
  TempDir dir;
  const std::string root = dir.file("f");
  fs::create_directories(root + "/images");
  fs::create_directories(root + "/labels");
  std::vector<Written> expected;
  for (int j = 0; j < 5; ++j) {
    const std::string stem = "img" + std::to_string(j);
    const Image im = random_image(6 + j, 9, 3, 90 + j);
    const Image lbl = label_image(6 + j, 9, {0, 1, 2, 255}, 95 + j);
    write_png(root + "/images/" + stem + ".png", im);
    write_png(root + "/labels/" + stem + ".png", lbl);
    expected.push_back({stem, im, lbl.pixels});
  }
  auto o = options("folder", root, "train", dir.file("out/train.h5"));
  fs::create_directories(dir.file("out"));
  o.classes = 3;
  o.shards = 2;
  o.compression = 4;
  const auto paths = preprocess(o);
  ASSERT_EQ(paths.size(), 2u);
  EXPECT_EQ(paths[0], dir.file("out/train-00000-of-00002.h5"));
  EXPECT_EQ(paths[1], dir.file("out/train-00001-of-00002.h5"));
  EXPECT_EQ(H5Dataset({paths[0]}).size(), 3);  // shard of sample i: floor(i * 2 / 5)
  expect_dataset(dir.file("out/train-*.h5"), expected, 3);
}

TEST(Preprocess, ErrorsNameTheFile) {
  TempDir dir;
  const std::string root = dir.file("f");
  fs::create_directories(root + "/images");
  fs::create_directories(root + "/labels");
  const std::string out = dir.file("out.h5");
  auto o = options("folder", root, "train", out);
  o.classes = 3;
  // empty split
  SEGKD_EXPECT_THROW_MSG(preprocess(o), "split 'train' is empty: no images found in '" + root + "/images'");
  // images without label: the first few are listed
  for (int j = 0; j < 7; ++j) write_png(root + "/images/m" + std::to_string(j) + ".png", random_image(4, 4, 3, j));
  SEGKD_EXPECT_THROW_MSG(preprocess(o), "7 image(s) without label in '" + root + "/labels': " + root +
                                            "/images/m0.png, " + root + "/images/m1.png");
  SEGKD_EXPECT_THROW_MSG(preprocess(o), "/images/m4.png and 2 more");
  for (int j = 0; j < 7; ++j) write_png(root + "/labels/m" + std::to_string(j) + ".png", label_image(4, 4, {0, 1}, j));
  // size mismatch
  write_png(root + "/labels/m3.png", label_image(5, 4, {0}, 1));
  SEGKD_EXPECT_THROW_MSG(preprocess(o), "size mismatch: image '" + root + "/images/m3.png' is 4x4 but label '" +
                                            root + "/labels/m3.png' is 5x4");
  write_png(root + "/labels/m3.png", label_image(4, 4, {0}, 1));
  // label value >= classes and != ignore
  write_png(root + "/labels/m5.png", label_image(4, 4, {5}, 1));
  SEGKD_EXPECT_THROW_MSG(preprocess(o), "label '" + root + "/labels/m5.png': value 5 at (y=0, x=0) maps to 5, "
                                        "which is >= num_classes 3 and != ignore 255");
  write_png(root + "/labels/m5.png", label_image(4, 4, {255, 2}, 1));
  // truncated image
  write_png(root + "/images/m6.png", random_image(40, 40, 3, 6));
  write_png(root + "/labels/m6.png", label_image(40, 40, {0}, 6));
  truncate_file(root + "/images/m6.png", 0.5);
  SEGKD_EXPECT_THROW_MSG(preprocess(o), "cannot read PNG '" + root + "/images/m6.png'");
  EXPECT_TRUE(no_outputs(dir.path()));  // nothing that looks complete, no partial left
  write_png(root + "/images/m6.png", random_image(40, 40, 3, 6));
  EXPECT_EQ(preprocess(o).size(), 1u);
  EXPECT_EQ(H5Dataset({out}).size(), 7);
  // VOC: empty split list; bad format
  fs::create_directories(dir.file("voc/ImageSets/Segmentation"));
  segkd::testing::write_text(dir.file("voc/ImageSets/Segmentation/val.txt"), "\n");
  SEGKD_EXPECT_THROW_MSG(preprocess(options("voc", dir.file("voc"), "val", dir.file("v.h5"))),
                         "split 'val' is empty: '" + dir.file("voc/ImageSets/Segmentation/val.txt"));
  SEGKD_EXPECT_THROW_MSG(preprocess(options("coco", root, "train", out)), "unknown --format 'coco'");
  SEGKD_EXPECT_THROW_MSG(preprocess(options("cityscapes", root, "train", out)),
                         "split 'train' is empty: directory '" + root + "/leftImg8bit/train' does not exist");
}

TEST(Preprocess, OutputThatIsAnInputIsRefused) {
  TempDir dir;
  const std::string root = dir.file("f");
  fs::create_directories(root + "/images");
  fs::create_directories(root + "/labels");
  for (int j = 0; j < 2; ++j) {
    write_png(root + "/images/i" + std::to_string(j) + ".png", random_image(4, 4, 3, j));
    write_png(root + "/labels/i" + std::to_string(j) + ".png", label_image(4, 4, {0, 1}, j));
  }
  const std::string image = root + "/images/i1.png";
  const std::string before = segkd::testing::read_text(image);
  auto o = options("folder", root, "train", image);
  o.classes = 2;
  SEGKD_EXPECT_THROW_MSG(preprocess(o), "--out " + image + " is the same file as input image of 'i1'");
  // Through a symbolic link too.
  fs::create_symlink(root + "/labels/i0.png", dir.file("link.h5"));
  o.out = dir.file("link.h5");
  SEGKD_EXPECT_THROW_MSG(preprocess(o), "is the same file as input label of 'i0'");
  EXPECT_EQ(segkd::testing::read_text(image), before);
}

// ---- disk full and crafted files -----------------------------------------------------------------------------------

TEST(H5, DiskFullIsAClearErrorAndThePreviousDatasetSurvives) {
  // 4 MiB: the small previous file takes 2 MiB (one 1 MiB chunk each for /images and /labels).
  segkd::testing::SmallTmpfs disk("4m");
  if (!disk.mounted()) GTEST_SKIP() << disk.error();
  const std::string path = disk.file("train.h5");
  {
    H5Writer w(path, generic_info(3));
    w.add(make_sample("good", 8, 8, 1));
    w.finish();
  }
  const std::string before = segkd::testing::read_text(path);
  std::string message;
  try {
    H5Writer w(path, generic_info(3));
    for (int i = 0; i < 20; ++i) w.add(make_sample("big" + std::to_string(i), 256, 256, i));  // 20 x 256 KB
    w.finish();
  } catch (const segkd::InputError& e) {
    message = e.what();
  }
  EXPECT_NE(message.find("disk full (ENOSPC)"), std::string::npos) << message;
  EXPECT_NE(message.find(path + ".partial"), std::string::npos) << message;
  EXPECT_EQ(segkd::testing::list_dir(disk.path()), std::vector<std::string>{"train.h5"});
  EXPECT_EQ(segkd::testing::read_text(path), before);
  EXPECT_EQ(H5Dataset({path}).size(), 1);
}

/// Overwrites row `row` of /index in an existing format-1 file (a crafted or damaged file).
void poke_index_row(const std::string& path, hsize_t row, const std::array<int64_t, 4>& values) {
  std::lock_guard<std::mutex> lock(hdf5_mutex());
  hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  hid_t d = H5Dopen2(f, "index", H5P_DEFAULT);
  hid_t space = H5Dget_space(d);
  hsize_t start[2] = {row, 0}, count[2] = {1, 4};
  H5Sselect_hyperslab(space, H5S_SELECT_SET, start, nullptr, count, nullptr);
  hid_t mem = H5Screate_simple(2, count, nullptr);
  ASSERT_GE(H5Dwrite(d, H5T_NATIVE_INT64, mem, space, H5P_DEFAULT, values.data()), 0);
  H5Sclose(mem);
  H5Sclose(space);
  H5Dclose(d);
  H5Fclose(f);
}

TEST(H5, IndexRowsWhoseSizeOverflowsAreRejected) {
  TempDir dir;
  const std::string path = dir.file("crafted.h5");
  {
    H5Writer w(path, generic_info(3));
    w.add(make_sample("a", 4, 4, 1));
    w.add(make_sample("b", 4, 4, 2));
    w.finish();
  }
  // h*w = 2^64 wraps to 0: the unchecked sum e[0] + h*w*3 stayed inside /images.
  poke_index_row(path, 1, {0, 0, int64_t{1} << 32, int64_t{1} << 32});
  SEGKD_EXPECT_THROW_MSG(H5Dataset({path}), "/index row 1 ('b') points outside /images or /labels");
  // h*w*3 overflows int64 (signed overflow, then a negative end).
  poke_index_row(path, 1, {0, 0, int64_t{3} << 60, 1});
  SEGKD_EXPECT_THROW_MSG(H5Dataset({path}), "/index row 1 ('b') points outside");
  // The offset itself near INT64_MAX.
  poke_index_row(path, 1, {std::numeric_limits<int64_t>::max() - 10, 0, 4, 4});
  SEGKD_EXPECT_THROW_MSG(H5Dataset({path}), "/index row 1 ('b') points outside");
}

TEST(H5, FuzzCorpusGoodFilesReadBadFilesEndInAOneLineError) {
  // tests/fuzz/corpus/h5 (tests/fuzz/make_corpus.py): the seed corpus of fuzz_h5, run through the reader here.
  const std::string corpus = segkd::testing::source_dir() + "/tests/fuzz/corpus/h5";
  int files = 0;
  for (const auto& name : segkd::testing::list_dir(corpus)) {
    const std::string path = corpus + "/" + name;
    ++files;
    try {
      H5Dataset ds({path});
      for (int64_t i = 0; i < ds.size(); ++i) ds.get(i);
      EXPECT_EQ(name.rfind("good", 0), 0u) << name << " was read";
    } catch (const segkd::Error& e) {
      const std::string what = e.what();
      EXPECT_EQ(name.rfind("bad_", 0), 0u) << name << ": " << what;
      EXPECT_EQ(what.find('\n'), std::string::npos) << name << ": " << what;
      EXPECT_NE(what.find(path), std::string::npos) << name << ": " << what;
      if (name.rfind("bad_index_", 0) == 0) {
        EXPECT_NE(what.find("/index row 1 ('s1') points outside"), std::string::npos) << name << ": " << what;
      }
      if (name == "bad_names_extent_huge.h5") {  // found by fuzz_h5: a /names extent of ~2^60 strings
        EXPECT_NE(what.find("/names holds"), std::string::npos) << name << ": " << what;
      }
    }
  }
  EXPECT_GE(files, 6);
}

// ---- synth -------------------------------------------------------------------------------------------------------

TEST(Synth, DeterministicBySeedAndWorkersWithLabelsInRange) {
  TempDir dir;
  SynthOptions o;
  o.num = 24, o.height = 48, o.width = 64, o.classes = 8, o.progress = false;
  o.out = dir.file("a.h5"), o.seed = 3, o.workers = 2;
  synthesize(o);
  o.out = dir.file("b.h5"), o.workers = 1;
  synthesize(o);
  o.out = dir.file("c.h5"), o.seed = 4;
  synthesize(o);
  EXPECT_EQ(segkd::testing::read_text(dir.file("a.h5")), segkd::testing::read_text(dir.file("b.h5")));
  EXPECT_NE(segkd::testing::read_text(dir.file("a.h5")), segkd::testing::read_text(dir.file("c.h5")));
  H5Dataset a({dir.file("a.h5")}), c({dir.file("c.h5")});
  ASSERT_EQ(a.size(), 24);
  EXPECT_EQ(a.info().num_classes, 8);
  EXPECT_EQ(a.info().class_names.size(), 8u);
  EXPECT_EQ(a.info().class_names[0], "stuff-hstripes");
  EXPECT_NE(a.get(0).image, c.get(0).image);
  std::vector<int64_t> counts(256, 0);
  for (int64_t i = 0; i < a.size(); ++i) {
    const Sample s = a.get(i);
    EXPECT_EQ(s.height, 48);
    EXPECT_EQ(s.width, 64);
    for (auto v : s.label) ++counts[v];
  }
  for (int c = 0; c < 8; ++c) EXPECT_GT(counts[c], 0) << "class " << c << " never appears";
  for (int v = 8; v < 256; ++v) EXPECT_EQ(counts[v], 0) << "label value " << v << " out of range";
}

TEST(Synth, ObjectClassPairsAreDecidedByContext) {
  // Classes 4,5 share shape and texture and differ only by the stuff class under the object's centre: both must
  // occur, so a model can only separate them with context.
  int64_t n4 = 0, n5 = 0;
  for (int i = 0; i < 30; ++i) {
    const Sample s = synth_sample(8, 11, i, 32, 32);
    for (auto v : s.label) n4 += v == 4, n5 += v == 5;
  }
  EXPECT_GT(n4, 0);
  EXPECT_GT(n5, 0);
  const auto info = synth_info(8);
  EXPECT_EQ(info.class_names[4].substr(0, info.class_names[4].find("-on-")),
            info.class_names[5].substr(0, info.class_names[5].find("-on-")));
  SEGKD_EXPECT_THROW_MSG(synth_sample(1, 0, 0, 8, 8), "classes must be in [2, 255]");
}
