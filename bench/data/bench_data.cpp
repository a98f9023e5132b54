// Loader throughput at 512x1024 crops of 1024x2048 samples: the HDF5 TrainLoader (1 and 2 workers, uncompressed
// and deflate-1) against the layout PyTorch pipelines read — per-sample PNG image + PNG label files, decoded and
// then given the same augmentation on the same number of threads.
//
//   bench_data [--samples N] [--batches B] [--size HxW] [--crop HxW] [--dir DIR]
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>

#include "data/dataset.h"
#include "data/image_io.h"
#include "data/loader.h"
#include "data/preprocess.h"
#include "data/transforms.h"

namespace fs = std::filesystem;
using namespace segkd::data;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

void parse_hw(const char* text, int64_t& h, int64_t& w) {
  if (std::sscanf(text, "%ldx%ld", &h, &w) != 2) {
    std::fprintf(stderr, "bench_data: expected HxW, got '%s'\n", text);
    std::exit(2);
  }
}

/// Samples per second of the HDF5 loader over `batches` batches of 2 (after one warm-up batch).
double bench_h5(const std::string& path, const AugmentOptions& aug, int64_t workers, int64_t batches) {
  auto ds = std::make_shared<const H5Dataset>(std::vector<std::string>{path});
  TrainLoader loader(ds, aug, /*batch_per_rank=*/2, workers, /*prefetch=*/4, /*rank=*/0, /*world=*/1, /*seed=*/1);
  loader.next();
  const auto t0 = Clock::now();
  for (int64_t k = 0; k < batches; ++k) loader.next();
  return batches * 2 / seconds_since(t0);
}

/// Samples per second of decoding per-sample PNG files and applying the same augmentation on `workers` threads.
double bench_png(const std::vector<std::pair<std::string, std::string>>& files, const AugmentOptions& aug,
                 int64_t workers, int64_t samples) {
  std::atomic<int64_t> next{0};
  const int64_t plane = aug.crop[0] * aug.crop[1];
  auto work = [&] {
    std::vector<float> image(3 * plane);
    std::vector<int64_t> label(plane);
    for (int64_t i; (i = next++) < samples;) {
      const auto& [image_path, label_path] = files[i % files.size()];
      Image im = read_image(image_path);
      Image lb = read_label_png(label_path);
      Sample s;
      s.name = image_path, s.height = im.height, s.width = im.width;
      s.image = std::move(im.pixels);
      s.label = std::move(lb.pixels);
      augment_into(s, aug, 1, 0, i, image.data(), label.data());
    }
  };
  const auto t0 = Clock::now();
  std::vector<std::thread> threads;
  for (int64_t t = 0; t < workers; ++t) threads.emplace_back(work);
  for (auto& t : threads) t.join();
  return samples / seconds_since(t0);
}

}  // namespace

int main(int argc, char** argv) {
  int64_t num = 8, batches = 12, height = 1024, width = 2048;
  AugmentOptions aug;  // crop 512x1024, scale 0.5-2.0, flip
  std::string dir = (fs::temp_directory_path() / "segkd_bench_data").string();
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--samples") num = std::atol(argv[i + 1]);
    else if (a == "--batches") batches = std::atol(argv[i + 1]);
    else if (a == "--size") parse_hw(argv[i + 1], height, width);
    else if (a == "--crop") parse_hw(argv[i + 1], aug.crop[0], aug.crop[1]);
    else if (a == "--dir") dir = argv[i + 1];
    else {
      std::fprintf(stderr, "bench_data: unknown option '%s'\n", a.c_str());
      return 2;
    }
  }
  try {
    fs::create_directories(dir);
    auto t0 = Clock::now();
    std::vector<std::pair<std::string, std::string>> png_files;
    {
      H5Writer raw(dir + "/bench.h5", synth_info(19), 0), deflate(dir + "/bench_deflate1.h5", synth_info(19), 1);
      for (int64_t i = 0; i < num; ++i) {
        Sample s = synth_sample(19, 0, i, height, width);
        raw.add(s);
        deflate.add(s);
        Image im{height, width, 3, s.image}, lb{height, width, 1, s.label};
        png_files.emplace_back(dir + "/" + s.name + ".png", dir + "/" + s.name + "_label.png");
        write_png(png_files.back().first, im);
        write_png(png_files.back().second, lb);
      }
      raw.finish();
      deflate.finish();
    }
    int64_t png_bytes = 0;
    for (auto& [a, b] : png_files) png_bytes += fs::file_size(a) + fs::file_size(b);
    std::printf("dataset: %ld synthetic samples %ldx%ld, crop %ldx%ld, batch 2 (prepared in %.1f s)\n", num, height,
                width, aug.crop[0], aug.crop[1], seconds_since(t0));
    std::printf("sizes: HDF5 raw %.1f MB, HDF5 deflate-1 %.1f MB, PNG files %.1f MB\n",
                fs::file_size(dir + "/bench.h5") / 1e6, fs::file_size(dir + "/bench_deflate1.h5") / 1e6,
                png_bytes / 1e6);
    std::printf("%-8s %14s %18s %14s %10s\n", "workers", "HDF5 samples/s", "HDF5-deflate1 s/s", "PNG samples/s",
                "HDF5/PNG");
    for (int64_t workers : {1, 2}) {
      const double h5 = bench_h5(dir + "/bench.h5", aug, workers, batches);
      const double h5z = bench_h5(dir + "/bench_deflate1.h5", aug, workers, batches);
      const double png = bench_png(png_files, aug, workers, batches * 2);
      std::printf("%-8ld %14.1f %18.1f %14.1f %9.1fx\n", workers, h5, h5z, png, h5 / png);
    }
    {  // synthetic data generation speed (the demo's data: 1000 scenes of 128x128)
      SynthOptions so;
      so.out = dir + "/synth.h5", so.num = 1000, so.height = 128, so.width = 128, so.workers = 2;
      so.progress = false;
      const auto ts = Clock::now();
      synthesize(so);
      std::printf("synth: 1000 scenes 128x128, 8 classes, 2 workers: %.2f s\n", seconds_since(ts));
    }
    fs::remove_all(dir);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_data: %s\n", e.what());
    return 1;
  }
  return 0;
}
