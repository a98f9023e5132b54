// The comparison protocol's pieces: run states and tables of train/protocol.h, curves (train/curves.h, PLplot
// pictures of train/plot.h) and TensorBoard event files (train/tensorboard.h, MetricsWriter).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "train/config.h"
#include "data/image_io.h"
#include "proto/tensorboard_event.pb.h"  // generated in the build tree (train/CMakeLists.txt)
#include "tests/testing/testing.h"
#include "train/curves.h"
#include "train/metrics.h"
#include "train/plot.h"
#include "train/protocol.h"
#include "train/tensorboard.h"

namespace fs = std::filesystem;
using nlohmann::json;
using segkd::testing::read_text;
using segkd::testing::TempDir;
using segkd::testing::write_text;
using namespace segkd::train;

namespace {

/// A finished (or, without `summary`, interrupted) run directory with the given config text and point.json.
void make_run(const std::string& dir, const std::string& config_text, bool summary, double miou, int64_t seed,
              const Labels& group, const std::string& metrics = "") {
  write_text(dir + "/config.toml", config_text);
  json p{{"kind", "compare"}, {"seed", seed}, {"group", json::array()}};
  for (auto& [k, v] : group) p["group"].push_back(json::array({k, v}));
  write_text(dir + "/point.json", p.dump());
  if (summary) {
    json s{{"config_hash", segkd::stable_hash(config_text)}, {"mIoU", miou}, {"iterations", 100}, {"train_s", 10.0},
           {"images_per_s", 40.0}, {"name", fs::path(dir).filename().string()}};
    write_text(dir + "/summary.json", s.dump());
  }
  if (!metrics.empty()) write_text(dir + "/metrics.jsonl", metrics);
}

TEST(Protocol, RunStateSkipsFinishedResumesInterruptedAndProtectsOtherConfigs) {
  TempDir root;
  PlannedRun run;
  run.dir_name = "a";
  run.hash = segkd::stable_hash("cfg-a");
  EXPECT_EQ(run_state(root.path(), run), RunState::kNew);
  make_run(root.file("a"), "cfg-a", /*summary=*/false, 0, 0, {});
  EXPECT_EQ(run_state(root.path(), run), RunState::kInterrupted);
  make_run(root.file("a"), "cfg-a", /*summary=*/true, 0.5, 0, {});
  EXPECT_EQ(run_state(root.path(), run), RunState::kFinished);
  // The same directory planned with another config: an error naming the file, never an overwrite.
  run.hash = segkd::stable_hash("cfg-b");
  SEGKD_EXPECT_THROW_MSG(run_state(root.path(), run), root.file("a/summary.json") + ": a finished run of another");
  fs::remove(root.file("a/summary.json"));
  SEGKD_EXPECT_THROW_MSG(run_state(root.path(), run), root.file("a/config.toml") + ": an unfinished run of another");
}

TEST(Protocol, TablesAggregateSeedsAndCompareWithTheBaseline) {
  TempDir root;
  const Labels base{{"method", "alone"}, {"extend", "1"}}, kd{{"method", "kd"}, {"extend", "1"}};
  const std::string metrics =
      "{\"event\":\"train\",\"iter\":50,\"train_s\":5,\"loss\":{\"ce\":1.0},\"ms\":{\"teacher_wait\":40,\"teacher_forward\":25,\"ce\":2}}\n"
      "{\"event\":\"train\",\"iter\":100,\"train_s\":10,\"loss\":{\"ce\":0.5},\"ms\":{\"teacher_wait\":20,\"teacher_forward\":25,\"ce\":2},"
      "\"backward_ms\":25}\n";
  make_run(root.file("alone-s1"), "a1", true, 0.50, 1, base);
  make_run(root.file("alone-s2"), "a2", true, 0.52, 2, base);
  make_run(root.file("kd-s1"), "k1", true, 0.55, 1, kd, metrics);
  make_run(root.file("kd-s2"), "k2", true, 0.59, 2, kd, metrics);
  make_run(root.file("kd-s3"), "k3", /*summary=*/false, 0, 3, kd);  // unfinished: not in the table
  make_run(root.file("stale"), "k4", true, 0.9, 4, kd);
  write_text(root.file("stale/config.toml"), "restarted with another config");  // summary of an older config
  const auto runs = finished_runs(root.path(), "compare");
  ASSERT_EQ(runs.size(), 4u);
  TableOptions options;
  options.order = {kd, base};
  options.baseline_key = "method";
  options.baseline_value = "alone";
  options.match_keys = {"extend"};
  options.mark_best = true;
  const auto rows = aggregate(runs, options);
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].group, kd);  // the plan's order, not alphabetical
  EXPECT_NEAR(rows[0].miou_mean, 0.57, 1e-12);
  EXPECT_NEAR(rows[0].miou_std, std::sqrt(0.0008), 1e-12);  // sample std of {0.55, 0.59}
  EXPECT_NEAR(rows[1].miou_std, std::sqrt(0.0002), 1e-12);
  EXPECT_TRUE(rows[1].is_baseline);
  EXPECT_NEAR(rows[0].delta, 0.06, 1e-12);
  EXPECT_NEAR(rows[0].delta_se, std::sqrt(0.0008 / 2 + 0.0002 / 2), 1e-12);
  EXPECT_TRUE(rows[0].best);
  EXPECT_FALSE(rows[1].best);
  // 100 ms per iteration (10 s / 100 it); teacher_wait averages 30 ms and includes the inline teacher_forward's 25
  // (the teacher share is the larger, not the sum); "*_ms" keys are read too.
  EXPECT_NEAR(rows[0].iteration_ms, 100, 1e-9);
  EXPECT_NEAR(rows[0].teacher_share, 0.30, 1e-9);
  ASSERT_FALSE(rows[0].cost_share.empty());
  EXPECT_EQ(rows[0].cost_share[0].first, "teacher_wait");
  bool backward = false;
  for (auto& [k, v] : rows[0].cost_share) backward = backward || (k == "backward" && std::abs(v - 0.25) < 1e-9);
  EXPECT_TRUE(backward);
  const auto md = table_markdown(rows);
  EXPECT_NE(md.find("| kd | 1 | 1, 2 | 57.00 ± 2.83 | +6.00 ± 2.24 |"), std::string::npos) << md;
  EXPECT_NE(md.find("| alone | 1 | 1, 2 | 51.00 ± 1.41 | baseline |"), std::string::npos) << md;
  EXPECT_NE(md.find("teacher_wait 30%"), std::string::npos) << md;
  EXPECT_NE(md.find("**best**"), std::string::npos) << md;
  const auto csv = table_csv(rows);
  EXPECT_EQ(csv.substr(0, csv.find('\n')),
            "method,extend,seeds,n,mIoU_mean,mIoU_std,delta,delta_se,iterations,train_s,images_per_s,iteration_ms,"
            "teacher_share,cost_share,best");
  EXPECT_NE(csv.find("kd,1,1;2,2,0.5700,0.0283,0.0600,0.0224,100,10.0,40.00,100.0,0.3000,"), std::string::npos)
      << csv;
}

TEST(Curves, ResumedIterationsKeepTheirLastRecordAndEvalTimesAreInterpolated) {
  TempDir root;
  const std::string metrics =
      "{\"event\":\"train\",\"iter\":10,\"train_s\":1,\"loss\":{\"ce\":2.0}}\n"
      "{\"event\":\"train\",\"iter\":20,\"train_s\":2,\"loss\":{\"ce\":1.5}}\n"
      "{\"event\":\"train\",\"iter\":30,\"train_s\":3,\"loss\":{\"ce\":9.0}}\n"   // lost in the crash
      "{\"event\":\"train\",\"iter\":30,\"train_s\":3.5,\"loss\":{\"ce\":1.2}}\n" // after the resume from 20
      "{\"event\":\"eval\",\"iter\":25,\"mIoU\":0.4}\n"
      "{\"event\":\"eval\",\"iter\":40,\"mIoU\":0.5}\n";
  make_run(root.file("r"), "c", true, 0.5, 0, {}, metrics);
  auto c = read_curves(root.file("r"));
  EXPECT_EQ(c.loss, (std::vector<double>{2.0, 1.5, 1.2}));
  EXPECT_EQ(c.loss_t, (std::vector<double>{1, 2, 3.5}));
  ASSERT_EQ(c.miou_t.size(), 2u);
  EXPECT_NEAR(c.miou_t[0], 2.75, 1e-12);  // iteration 25, half way from (20, 2 s) to (30, 3.5 s)
  EXPECT_NEAR(c.miou_t[1], 3.5 + 6.5 / 7, 1e-12);  // iteration 40: from (30, 3.5 s) to the summary's (100, 10 s)
  write_text(root.file("bad/metrics.jsonl"), "{\"event\":\"train\"}\nnot json\n");
  SEGKD_EXPECT_THROW_MSG(read_curves(root.file("bad")), root.file("bad/metrics.jsonl") + ":2: not valid JSON");
}

TEST(Curves, SeedsCombineIntoMeanAndRange) {
  auto band = combine_series({{0, 2, 4}, {1, 3, 5}}, {{0, 2, 4}, {10, 30, 50}});
  // Common range [1, 4]; grid = union of the points inside it.
  EXPECT_EQ(band.t, (std::vector<double>{1, 2, 3, 4}));
  EXPECT_NEAR(band.mean[0], (1 + 10) / 2.0, 1e-12);
  EXPECT_NEAR(band.lo[1], 2, 1e-12);
  EXPECT_NEAR(band.hi[1], 20, 1e-12);
  auto single = combine_series({{10}, {12}}, {{0.4}, {0.6}});
  EXPECT_EQ(single.t, (std::vector<double>{11}));
  EXPECT_NEAR(single.mean[0], 0.5, 1e-12);
  EXPECT_EQ(single.lo, (std::vector<double>{0.4}));
  EXPECT_EQ(single.hi, (std::vector<double>{0.6}));
}

/// Pixels of `img` within a small distance of the colour (r, g, b).
int64_t count_near(const segkd::data::Image& img, int r, int g, int b) {
  int64_t n = 0;
  for (size_t p = 0; p + 2 < img.pixels.size(); p += 3) {
    n += std::abs(img.pixels[p] - r) + std::abs(img.pixels[p + 1] - g) + std::abs(img.pixels[p + 2] - b) < 30;
  }
  return n;
}

TEST(Plot, CurvesPngIsDrawnAndDependsOnItsInput) {
  TempDir root;
  auto metrics = [](double scale) {
    std::string m;
    for (int i = 1; i <= 8; ++i) {
      m += json{{"event", "train"}, {"iter", 10 * i}, {"train_s", i}, {"loss", {{"ce", scale / i}}}}.dump() + "\n";
      if (i % 2 == 0) m += json{{"event", "eval"}, {"iter", 10 * i}, {"mIoU", 0.05 * i * scale}}.dump() + "\n";
    }
    return m;
  };
  make_run(root.file("a1"), "a1", true, 0.4, 1, {{"method", "alone"}}, metrics(1.0));
  make_run(root.file("a2"), "a2", true, 0.4, 2, {{"method", "alone"}}, metrics(1.1));
  make_run(root.file("b1"), "b1", true, 0.4, 1, {{"method", "kd"}}, metrics(0.7));
  write_curves({root.file("a1"), root.file("a2"), root.file("b1")}, root.file("one.png"), "test");
  write_curves({root.file("a1"), root.file("b1")}, root.file("two.png"), "test");
  ASSERT_TRUE(fs::exists(root.file("one.png")));
  EXPECT_GT(fs::file_size(root.file("one.png")), 10000u);
  EXPECT_NE(read_text(root.file("one.png")), read_text(root.file("two.png")));
  auto img = segkd::data::read_image(root.file("one.png"));
  EXPECT_EQ(img.width, 2 * 940);
  EXPECT_EQ(img.height, 560);
  // Both line colours appear (Tableau blue for "alone", orange for "kd"), the background is white.
  EXPECT_GT(count_near(img, 31, 119, 180), 100);
  EXPECT_GT(count_near(img, 255, 127, 14), 100);
  EXPECT_EQ(img.pixels[0], 255);
  SEGKD_EXPECT_THROW_MSG(write_curves({root.file("nowhere")}, root.file("x.png"), "t"), "no summary.json in");
}

// compare --extend 1,2: one colour per method (Tableau blue, orange), the extend factor as the line style; without
// that, four groups would take four colours (also green and red).
TEST(Plot, CurvesColourByMethodAndStyleByExtend) {
  TempDir root;
  auto metrics = [](double scale, int end) {
    std::string m;
    for (int i = 1; i <= end; ++i) {
      m += json{{"event", "train"}, {"iter", 10 * i}, {"train_s", i}, {"loss", {{"ce", scale / i}}}}.dump() + "\n";
      m += json{{"event", "eval"}, {"iter", 10 * i}, {"mIoU", 0.05 * i * scale}}.dump() + "\n";
    }
    return m;
  };
  int k = 0;
  std::vector<std::string> dirs;
  for (const char* extend : {"1", "2"}) {
    for (const char* method : {"alone", "kd"}) {
      dirs.push_back(root.file("r" + std::to_string(k)));
      make_run(dirs.back(), "r" + std::to_string(k++), true, 0.4, 1, {{"method", method}, {"extend", extend}},
               metrics(std::string(method) == "kd" ? 0.7 : 1.0, std::string(extend) == "1" ? 4 : 8));
    }
  }
  write_curves(dirs, root.file("c.png"), "test");
  auto img = segkd::data::read_image(root.file("c.png"));
  EXPECT_GT(count_near(img, 31, 119, 180), 100);
  EXPECT_GT(count_near(img, 255, 127, 14), 100);
  EXPECT_EQ(count_near(img, 44, 160, 44), 0);
  EXPECT_EQ(count_near(img, 214, 39, 40), 0);
}

TEST(Plot, TextStripDrawsTitlesWhereAsked) {
  const auto strip = text_strip(400, 24, {{100, "ground truth"}});
  ASSERT_EQ(strip.pixels.size(), 400u * 24 * 3);
  auto dark_in = [&](int64_t x0, int64_t x1) {
    int64_t n = 0;
    for (int64_t y = 0; y < 24; ++y) {
      for (int64_t x = x0; x < x1; ++x) n += strip.pixels[(y * 400 + x) * 3] < 128;
    }
    return n;
  };
  EXPECT_GT(dark_in(60, 140), 20);   // text around x = 100
  EXPECT_EQ(dark_in(250, 400), 0);   // nothing far from it
}

TEST(Plot, LongTitlesWrapAtSeparatorsAndDrawOnTwoLines) {
  EXPECT_EQ(wrap_title("logit_kd-2m-x1-s42", 12), "logit_kd-2m-\nx1-s42");
  EXPECT_EQ(wrap_title("teacher", 12), "teacher");
  EXPECT_EQ(wrap_title("averyveryverylongname", 8), "averyveryverylongname");  // one part stays whole
  const auto strip = text_strip(400, 48, {{100, "ground truth\nground truth"}});
  auto dark_rows = [&](int64_t y0, int64_t y1) {
    int64_t n = 0;
    for (int64_t y = y0; y < y1; ++y) {
      for (int64_t x = 0; x < 400; ++x) n += strip.pixels[(y * 400 + x) * 3] < 128;
    }
    return n;
  };
  EXPECT_GT(dark_rows(0, 24), 20);   // the first line in the upper half
  EXPECT_GT(dark_rows(24, 48), 20);  // the second in the lower half
}

TEST(TensorBoard, Crc32cHasTheStandardCheckValue) {
  EXPECT_EQ(crc32c("123456789", 9), 0xE3069283u);
  const uint32_t crc = 0xE3069283u;
  EXPECT_EQ(masked_crc32c("123456789", 9), ((crc >> 15) | (crc << 17)) + 0xa282ead8u);
}

TEST(TensorBoard, MetricsWriterEventFileDecodesToTheScalars) {
  TempDir dir;
  {
    MetricsWriter writer(dir.path(), /*enabled=*/true);
    writer.train_event(10, 0.01, 123.5, 4.0, {{"ce", 1.25}, {"logit", 0.5}}, {{"ce", 3.0}, {"teacher_wait", 7.0}});
    EvalResult r;
    r.miou = 0.625;
    r.pixel_acc = 0.75;
    r.mean_acc = 0.7;
    r.per_class_iou = {0.5, 0.75};
    writer.eval_event(10, r, {"road", "car"});
  }
  std::string file;
  for (auto& e : fs::directory_iterator(dir.path())) {
    if (e.path().filename().string().rfind("events.out.tfevents.", 0) == 0) file = e.path().string();
  }
  ASSERT_FALSE(file.empty()) << "no events.out.tfevents.* in " << dir.path();
  const auto records = read_tfrecords(file);
  ASSERT_EQ(records.size(), 3u);
  segkd::tensorboard::Event first;
  ASSERT_TRUE(first.ParseFromString(records[0]));
  EXPECT_EQ(first.file_version(), "brain.Event:2");
  std::map<std::string, float> scalars;
  for (size_t i = 1; i < records.size(); ++i) {
    segkd::tensorboard::Event e;
    ASSERT_TRUE(e.ParseFromString(records[i]));
    EXPECT_EQ(e.step(), 10);
    EXPECT_GT(e.wall_time(), 1.6e9);
    for (auto& v : e.summary().value()) scalars[v.tag()] = v.simple_value();
  }
  EXPECT_FLOAT_EQ(scalars["loss/ce"], 1.25f);
  EXPECT_FLOAT_EQ(scalars["loss/logit"], 0.5f);
  EXPECT_FLOAT_EQ(scalars["lr"], 0.01f);
  EXPECT_FLOAT_EQ(scalars["images_per_s"], 123.5f);
  EXPECT_FLOAT_EQ(scalars["time_ms/teacher_wait"], 7.0f);
  EXPECT_FLOAT_EQ(scalars["time_ms/ce"], 3.0f);
  EXPECT_FLOAT_EQ(scalars["eval/mIoU"], 0.625f);
  EXPECT_FLOAT_EQ(scalars["eval/pixel_acc"], 0.75f);
  EXPECT_FLOAT_EQ(scalars["eval/iou/car"], 0.75f);
  // A flipped payload byte is reported with the file and the record's offset.
  auto bytes = read_text(file);
  bytes[bytes.size() - 6] ^= 0x40;
  write_text(dir.file("damaged"), bytes);
  SEGKD_EXPECT_THROW_MSG(read_tfrecords(dir.file("damaged")), "payload CRC mismatch");
}

}  // namespace
