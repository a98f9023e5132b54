// The progress reporter: throttling, rate and ETA, both renderings, driven by a fake clock (no sleeps).
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <vector>

#include "common/progress.h"

namespace segkd {
namespace {

/// A clock the test advances by hand.
struct FakeClock {
  Progress::Clock::time_point t{};
  void advance(double seconds) {
    t += std::chrono::duration_cast<Progress::Clock::duration>(std::chrono::duration<double>(seconds));
  }
};

TEST(Progress, FormatsDurations) {
  EXPECT_EQ(format_duration(0), "00:00");
  EXPECT_EQ(format_duration(75), "01:15");
  EXPECT_EQ(format_duration(3725), "1:02:05");
  EXPECT_EQ(format_duration(-1), "--:--");
}

TEST(Progress, LogStyleThrottlesAndAlwaysReportsTheEnd) {
  FakeClock clock;
  std::vector<std::string> lines;
  Progress p("eval", 100, /*enabled=*/true, Progress::Style::kLog);
  p.clock([&] { return clock.t; }).sink([&](const std::string& s) { lines.push_back(s); });
  clock.advance(2);
  p.update(10);  // 2 s since start < 5 s: quiet
  EXPECT_TRUE(lines.empty());
  clock.advance(3);
  p.update(25);  // 5 s: a line, 25 items in 5 s = 5/s, 75 left = 15 s
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0], "eval 25/100 (25%) | 5.0/s | elapsed 00:05 | eta 00:15");
  clock.advance(1);
  p.update(30);  // 1 s since the last line: quiet
  EXPECT_EQ(lines.size(), 1u);
  clock.advance(1);
  p.update(100);  // the end is always reported
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(lines[1], "eval 100/100 (100%) | 14.3/s | elapsed 00:07 | eta 00:00");
}

TEST(Progress, BarStyleRedrawsInPlaceAndEndsTheLine) {
  FakeClock clock;
  std::string out;
  Progress p("synth", 40, /*enabled=*/true, Progress::Style::kBar);
  p.clock([&] { return clock.t; }).sink([&](const std::string& s) { out += s; });
  clock.advance(0.05);
  p.update(1);  // within 0.1 s: quiet
  EXPECT_EQ(out, "");
  clock.advance(1.95);
  p.update(10);  // 10 in 2 s = 5/s, 30 left = 6 s
  EXPECT_EQ(out, "\rsynth [#######.......................] 10/40  5.0/s  ETA 0:06 ");
  out.clear();
  clock.advance(2);
  p.update(40);
  EXPECT_EQ(out, "\rsynth [##############################] 40/40  10.0/s  ETA 0:00 \n");
}

TEST(Progress, AbandonEndsABarOnlyAndDisabledIsSilent) {
  std::string out;
  Progress bar("x", 10, /*enabled=*/true, Progress::Style::kBar);
  bar.sink([&](const std::string& s) { out += s; });
  bar.abandon();
  EXPECT_EQ(out, "\n");
  out.clear();
  Progress log("x", 10, /*enabled=*/true, Progress::Style::kLog);
  log.sink([&](const std::string& s) { out += s; });
  log.abandon();
  EXPECT_EQ(out, "");
  Progress off("x", 10, /*enabled=*/false, Progress::Style::kBar);
  off.sink([&](const std::string& s) { out += s; });
  off.update(10);
  off.abandon();
  EXPECT_EQ(out, "");
}

}  // namespace
}  // namespace segkd
