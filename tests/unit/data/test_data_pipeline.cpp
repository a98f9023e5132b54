// Sampler, augmentation and the threaded loader.
#include <hdf5.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "common/error.h"
#include "data/dataset.h"
#include "data/loader.h"
#include "data/preprocess.h"
#include "data/random.h"
#include "data/sampler.h"
#include "data/transforms.h"
#include "tests/testing/testing.h"

namespace fs = std::filesystem;
using namespace segkd::data;
using segkd::testing::TempDir;
namespace F = torch::nn::functional;

// ---- sampler -----------------------------------------------------------------------------------------------------

// Every augmentation, shuffle and synthetic scene is drawn from these functions, so their values are part of
// what a checkpoint resumes into: pinned here (computed before mix64 became the one SplitMix step of Rng).
TEST(Random, ValuesArePinned) {
  EXPECT_EQ(mix64(0), 0xe220a8397b1dcdafULL);  // SplitMix64's first output for seed 0
  EXPECT_EQ(mix64(42), 0xbdd732262feb6e95ULL);
  EXPECT_EQ(hash_key(42, 3, 17, 0xa06), 0x39d1a7d88ed78b2cULL);
  EXPECT_EQ(hash_key(7), 0x720900f1b7ca8f1cULL);
  Rng rng(hash_key(42, 1, 0x5a3b1e));
  EXPECT_EQ(rng.next(), 0xf3dbbc1fb03edcddULL);
  EXPECT_EQ(rng.next(), 0xf69792bb81ceab9fULL);
  EXPECT_EQ(rng.next(), 0x638de2da4c9a1942ULL);
  Rng small(5);
  EXPECT_EQ(small.below(1000), 618u);
  EXPECT_DOUBLE_EQ(small.uniform(), 0.7523070158382239);
}

TEST(Sampler, DisjointCompleteAndPaddedFor1To8Ranks) {
  for (int64_t n : {1, 7, 20, 33}) {
    for (int64_t world = 1; world <= 8; ++world) {
      const int64_t per_rank = (n + world - 1) / world;
      std::vector<int64_t> count(n, 0);
      for (int64_t rank = 0; rank < world; ++rank) {
        Sampler s(n, rank, world, /*seed=*/5);
        EXPECT_EQ(s.per_rank(), per_rank);
        const auto idx = s.epoch_indices(3);
        ASSERT_EQ(static_cast<int64_t>(idx.size()), per_rank);
        for (auto i : idx) {
          ASSERT_GE(i, 0);
          ASSERT_LT(i, n);
          ++count[i];
        }
      }
      int64_t duplicates = 0;
      for (auto c : count) {
        EXPECT_GE(c, 1) << "n=" << n << " world=" << world;  // complete
        duplicates += c - 1;
      }
      EXPECT_EQ(duplicates, per_rank * world - n) << "only the wrap padding repeats (n=" << n << ", world=" << world << ")";
      if (n >= world) EXPECT_LE(*std::max_element(count.begin(), count.end()), 2);
    }
  }
}

TEST(Sampler, DeterministicBySeedAndDifferentPerEpoch) {
  Sampler a(50, 1, 3, 7), b(50, 1, 3, 7), c(50, 1, 3, 8);
  EXPECT_EQ(a.epoch_indices(0), b.epoch_indices(0));
  EXPECT_EQ(a.epoch_indices(4), b.epoch_indices(4));
  EXPECT_NE(a.epoch_indices(0), a.epoch_indices(1));
  EXPECT_NE(a.epoch_indices(0), c.epoch_indices(0));
  Sampler ordered(10, 0, 2, 7, /*shuffle=*/false);
  EXPECT_EQ(ordered.epoch_indices(0), (std::vector<int64_t>{0, 2, 4, 6, 8}));
}

TEST(Sampler, StreamFollowsEpochs) {
  Sampler s(11, 2, 4, 9);
  for (int64_t pos = 0; pos < 5 * s.per_rank(); ++pos)
    ASSERT_EQ(s.stream_at(pos), s.epoch_indices(pos / s.per_rank())[pos % s.per_rank()]) << pos;
  SEGKD_EXPECT_THROW_MSG(Sampler(10, 4, 4, 0), "rank 4 is outside world of size 4");
  SEGKD_EXPECT_THROW_MSG(Sampler(0, 0, 1, 0), "dataset is empty");
}

TEST(Sampler, ValidationShardsWithoutDuplicates) {
  for (int64_t world = 1; world <= 8; ++world) {
    std::multiset<int64_t> all;
    for (int64_t r = 0; r < world; ++r)
      for (auto i : val_indices(13, r, world)) all.insert(i);
    ASSERT_EQ(all.size(), 13u);
    for (int64_t i = 0; i < 13; ++i) EXPECT_EQ(all.count(i), 1u);
  }
  EXPECT_EQ(val_indices(5, 1, 2), (std::vector<int64_t>{1, 3}));
}

// ---- transforms --------------------------------------------------------------------------------------------------

namespace {

Sample random_sample(int64_t h, int64_t w, uint64_t seed, const std::string& name = "r") {
  Sample s;
  s.name = name, s.height = h, s.width = w;
  Rng rng(seed);
  for (int64_t i = 0; i < h * w * 3; ++i) s.image.push_back(static_cast<uint8_t>(rng.below(256)));
  for (int64_t i = 0; i < h * w; ++i) s.label.push_back(static_cast<uint8_t>(rng.below(19)));
  return s;
}

/// Blocks of 8x8 whose colour encodes the class: the label can be read back from the image's own pixels.
Sample block_sample(int64_t h, int64_t w, uint64_t seed) {
  Sample s;
  s.name = "blocks", s.height = h, s.width = w;
  Rng rng(seed);
  const int64_t bw = (w + 7) / 8;
  std::vector<uint8_t> cls((h / 8 + 1) * bw);
  for (auto& c : cls) c = static_cast<uint8_t>(rng.below(5));
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) {
      const uint8_t c = cls[(y / 8) * bw + x / 8];
      s.label.push_back(c);
      for (int k = 0; k < 3; ++k) s.image.push_back(static_cast<uint8_t>(c * 50 + 20));
    }
  return s;
}

/// Class decoded from a normalised image pixel (nearest block colour).
int decode_class(const torch::Tensor& image, const AugmentOptions& o, int64_t y, int64_t x) {
  const double v = image[0][y][x].item<float>() * o.std[0] + o.mean[0];
  return static_cast<int>(std::lround((v - 20) / 50));
}

}  // namespace

TEST(Augment, MatchesTorchInterpolateAndPadsWithIgnore) {
  const Sample s = random_sample(10, 14, 1);
  AugmentOptions o;
  o.crop = {24, 26};
  o.scale_range = {1.5, 1.5};  // 15x21, smaller than the crop: offsets 0, rest padded
  o.flip = false;
  auto [image, label] = augment(s, o, /*seed=*/1, /*epoch=*/0, /*index=*/0);
  ASSERT_EQ(image.sizes(), (std::vector<int64_t>{3, 24, 26}));
  ASSERT_EQ(label.sizes(), (std::vector<int64_t>{24, 26}));
  ASSERT_EQ(label.scalar_type(), torch::kInt64);
  auto src = torch::from_blob(const_cast<uint8_t*>(s.image.data()), {1, 10, 14, 3}, torch::kUInt8)
                 .permute({0, 3, 1, 2}).to(torch::kFloat32);
  auto ref = F::interpolate(src, F::InterpolateFuncOptions().size(std::vector<int64_t>{15, 21})
                                     .mode(torch::kBilinear).align_corners(false))[0];
  auto mean = torch::tensor({o.mean[0], o.mean[1], o.mean[2]}, torch::kFloat32).view({3, 1, 1});
  auto std = torch::tensor({o.std[0], o.std[1], o.std[2]}, torch::kFloat32).view({3, 1, 1});
  EXPECT_TRUE(segkd::testing::tensors_close(image.slice(1, 0, 15).slice(2, 0, 21), (ref - mean) / std, 1e-4, 1e-4));
  auto lsrc = torch::from_blob(const_cast<uint8_t*>(s.label.data()), {1, 1, 10, 14}, torch::kUInt8).to(torch::kFloat32);
  auto lref = F::interpolate(lsrc, F::InterpolateFuncOptions().size(std::vector<int64_t>{15, 21}).mode(torch::kNearestExact))[0][0];
  EXPECT_TRUE(torch::equal(label.slice(0, 0, 15).slice(1, 0, 21), lref.to(torch::kInt64)));
  // padding: image 0 (after normalisation), label ignore
  EXPECT_TRUE(torch::all(label.slice(0, 15).eq(255)).item<bool>());
  EXPECT_TRUE(torch::all(label.slice(1, 21).eq(255)).item<bool>());
  EXPECT_EQ(image.slice(1, 15).abs().sum().item<float>(), 0.f);
  EXPECT_EQ(image.slice(2, 21).abs().sum().item<float>(), 0.f);
}

TEST(Augment, KeepsImageLabelAlignment) {
  const Sample s = block_sample(64, 96, 2);
  AugmentOptions o;
  o.crop = {32, 48};
  o.scale_range = {1.0, 1.0};  // crop + flip only: alignment must be exact
  int flipped_or_moved = 0;
  torch::Tensor first;
  for (int64_t index = 0; index < 12; ++index) {
    auto [image, label] = augment(s, o, 3, 0, index);
    if (index == 0) first = image;
    else flipped_or_moved += !torch::equal(image, first);
    for (int64_t y = 0; y < 32; ++y)
      for (int64_t x = 0; x < 48; ++x)
        ASSERT_EQ(decode_class(image, o, y, x), label[y][x].item<int64_t>()) << index << " " << y << " " << x;
  }
  EXPECT_GT(flipped_or_moved, 0);
  o.scale_range = {0.5, 2.0};  // with rescaling, only pixels at block borders may blend
  int64_t agree = 0, total = 0;
  for (int64_t index = 0; index < 8; ++index) {
    auto [image, label] = augment(s, o, 4, 1, index);
    for (int64_t y = 0; y < 32; ++y)
      for (int64_t x = 0; x < 48; ++x) {
        const int64_t l = label[y][x].item<int64_t>();
        if (l == 255) continue;
        ++total;
        agree += decode_class(image, o, y, x) == l;
      }
  }
  ASSERT_GT(total, 0);
  EXPECT_GT(static_cast<double>(agree) / total, 0.9);
}

TEST(Augment, RandomnessComesOnlyFromSeedEpochAndIndex) {
  const Sample s = random_sample(40, 50, 3);
  AugmentOptions o;
  o.crop = {24, 24};
  o.photometric = true;
  auto a = augment(s, o, 1, 2, 3), b = augment(s, o, 1, 2, 3);
  EXPECT_TRUE(torch::equal(a.first, b.first));
  EXPECT_TRUE(torch::equal(a.second, b.second));
  EXPECT_FALSE(torch::equal(a.first, augment(s, o, 1, 2, 4).first));
  EXPECT_FALSE(torch::equal(a.first, augment(s, o, 1, 3, 3).first));
  EXPECT_FALSE(torch::equal(a.first, augment(s, o, 2, 2, 3).first));
  // photometric distortion changes colours only, never the geometry
  AugmentOptions plain = o;
  plain.photometric = false;
  int differs = 0;
  for (int64_t index = 0; index < 6; ++index) {
    auto p = augment(s, o, 5, 0, index), q = augment(s, plain, 5, 0, index);
    EXPECT_TRUE(torch::equal(p.second, q.second));
    differs += !torch::equal(p.first, q.first);
  }
  EXPECT_GT(differs, 0);
}

TEST(Augment, EvalTransformIsExactNormalisation) {
  const Sample s = random_sample(5, 7, 4);
  AugmentOptions o;
  auto [image, label] = to_tensors(s, o);
  ASSERT_EQ(image.sizes(), (std::vector<int64_t>{3, 5, 7}));
  EXPECT_FLOAT_EQ(image[1][2][3].item<float>(), static_cast<float>((s.image[(2 * 7 + 3) * 3 + 1] - o.mean[1]) / o.std[1]));
  EXPECT_EQ(label[4][6].item<int64_t>(), s.label[4 * 7 + 6]);
}

// ---- loader ------------------------------------------------------------------------------------------------------

namespace {
std::shared_ptr<const H5Dataset> synth_dataset(const TempDir& dir, int64_t n) {
  H5Writer w(dir.file("synth.h5"), synth_info(8));
  for (int64_t i = 0; i < n; ++i) w.add(synth_sample(8, 1, i, 20 + i % 3, 30));
  w.finish();
  return std::make_shared<const H5Dataset>(std::vector<std::string>{dir.file("synth.h5")});
}
}  // namespace

TEST(Loader, TrainingLabelOutOfRangeNamesFileSampleAndPixel) {
  TempDir dir;
  const std::string path = dir.file("bad.h5");
  {
    H5Writer w(path, synth_info(8));
    Sample s = synth_sample(8, 1, 0, 20, 30);
    s.name = "frame_0007";
    s.label[2 * 30 + 5] = 200;  // (y=2, x=5)
    w.add(s);
    w.finish();
  }
  auto ds = std::make_shared<const H5Dataset>(std::vector<std::string>{path});
  AugmentOptions o;
  o.crop = {16, 16};
  TrainLoader loader(ds, o, /*batch_per_rank=*/1, /*workers=*/1, /*prefetch=*/1, /*rank=*/0, /*world=*/1, 7);
  std::string message;
  try {
    loader.next();
  } catch (const std::exception& e) {
    message = e.what();
  }
  EXPECT_NE(message.find("sample 'frame_0007' (index 0"), std::string::npos) << message;
  EXPECT_NE(message.find("label value 200 at (y=2, x=5) is >= num_classes 8 and != ignore_index 255 in '" + path + "'"),
            std::string::npos)
      << message;
}

TEST(Loader, DeterministicAndResumable) {
  TempDir dir;
  auto ds = synth_dataset(dir, 10);
  AugmentOptions o;
  o.crop = {16, 16};
  std::vector<Batch> ref;
  {
    TrainLoader loader(ds, o, /*batch_per_rank=*/3, /*workers=*/2, /*prefetch=*/3, /*rank=*/1, /*world=*/2, 7);
    for (int k = 0; k < 6; ++k) ref.push_back(loader.next());
  }
  const Sampler sampler(10, 1, 2, 7);
  for (int k = 0; k < 6; ++k) {
    ASSERT_EQ(ref[k].iteration, k);
    ASSERT_EQ(ref[k].image.sizes(), (std::vector<int64_t>{3, 3, 16, 16}));
    ASSERT_EQ(ref[k].label.sizes(), (std::vector<int64_t>{3, 16, 16}));
    for (int j = 0; j < 3; ++j) {
      EXPECT_EQ(ref[k].indices[j], sampler.stream_at(k * 3 + j));
      EXPECT_EQ(ref[k].names[j], ds->name(ref[k].indices[j]));
      // sample j of batch k is the augmentation of its stream position's epoch
      auto [img, lbl] = augment(ds->get(ref[k].indices[j]), o, 7, (k * 3 + j) / sampler.per_rank(), ref[k].indices[j]);
      EXPECT_TRUE(torch::equal(ref[k].image[j], img));
      EXPECT_TRUE(torch::equal(ref[k].label[j], lbl));
    }
  }
  for (int64_t workers : {0, 1}) {  // same stream whatever the threading
    TrainLoader loader(ds, o, 3, workers, 2, 1, 2, 7, /*start_iteration=*/4);
    for (int k = 4; k < 6; ++k) {
      Batch b = loader.next();
      EXPECT_EQ(b.iteration, k);
      EXPECT_EQ(b.indices, ref[k].indices);
      EXPECT_TRUE(torch::equal(b.image, ref[k].image)) << "workers=" << workers << " batch " << k;
      EXPECT_TRUE(torch::equal(b.label, ref[k].label));
    }
  }
}

TEST(Loader, StopsCleanlyMidEpoch) {
  TempDir dir;
  auto ds = synth_dataset(dir, 10);
  AugmentOptions o;
  o.crop = {16, 16};
  for (int round = 0; round < 5; ++round) {
    TrainLoader loader(ds, o, 2, 2, 2, 0, 1, round);
    if (round % 2) loader.next();  // destroyed with workers blocked on a full queue, or mid-build
  }
  SUCCEED();
}

TEST(Loader, WorkerErrorSurfacesWithSampleName) {
  // Samples of 512x512 span their own deflate chunks of /images; corrupting chunk 2 breaks samples 2 and 3 only.
  TempDir dir;
  const std::string path = dir.file("bad.h5");
  {
    H5Writer w(path, synth_info(4), /*compression_level=*/1);
    for (int i = 0; i < 6; ++i) {
      Sample s;
      s.name = "big" + std::to_string(i), s.height = 512, s.width = 512;
      s.image.resize(512 * 512 * 3);
      for (size_t k = 0; k < s.image.size(); ++k) s.image[k] = static_cast<uint8_t>((k * 7 + i) % 251);
      s.label.assign(512 * 512, static_cast<uint8_t>(i % 4));
      w.add(s);
    }
    w.finish();
  }
  haddr_t addr = 0;
  hsize_t size = 0;
  {
    std::lock_guard<std::mutex> lock(hdf5_mutex());
    hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, "images", H5P_DEFAULT);
    hsize_t offset = 2 << 20;
    unsigned mask = 0;
    ASSERT_GE(H5Dget_chunk_info_by_coord(d, &offset, &mask, &addr, &size), 0);
    H5Dclose(d);
    H5Fclose(f);
  }
  ASSERT_GT(size, 64u);
  {
    std::fstream file(path, std::ios::in | std::ios::out | std::ios::binary);
    file.seekp(static_cast<std::streamoff>(addr));
    const std::string garbage(32, '\x5a');
    file.write(garbage.data(), garbage.size());
  }
  auto ds = std::make_shared<const H5Dataset>(std::vector<std::string>{path});
  AugmentOptions o;
  o.crop = {16, 16};
  TrainLoader loader(ds, o, 1, 2, 3, 0, 1, 3);
  int failures = 0;
  for (int64_t k = 0; k < 6; ++k) {
    const int64_t index = loader.sampler().stream_at(k);
    if (index == 2 || index == 3) {
      ++failures;
      SEGKD_EXPECT_THROW_MSG(loader.next(), "data loader: sample 'big" + std::to_string(index) + "' (index " +
                                                std::to_string(index));
    } else {
      EXPECT_EQ(loader.next().indices[0], index);
    }
  }
  EXPECT_EQ(failures, 2);
}
