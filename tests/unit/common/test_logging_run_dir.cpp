// Logging (per-rank files, levels, re-setup) and the run directory helpers.
#include <gtest/gtest.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>
#include <vector>

#include "common/error.h"
#include "common/logging.h"
#include "common/run_dir.h"
#include "tests/testing/testing.h"

namespace fs = std::filesystem;

namespace segkd {
namespace {

using segkd::testing::read_text;
using segkd::testing::TempDir;
using segkd::testing::write_text;

class Logging : public ::testing::Test {
 protected:
  // Leave a console-only logger behind so no test keeps a file in a removed directory open.
  void TearDown() override { setup_logging("", 0, "info"); }
};

TEST_F(Logging, RankZeroWritesLogTxtWithTimestampAndLevel) {
  TempDir dir;
  setup_logging(dir.path(), 0, "info");
  spdlog::info("hello from rank {}", 0);
  spdlog::debug("hidden at info level");
  flush_logs();
  std::string text = read_text(dir.file("log.txt"));
  EXPECT_TRUE(std::regex_search(
      text, std::regex(R"(\[\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3}\] \[info\] hello from rank 0)")))
      << text;
  EXPECT_EQ(text.find("hidden at info level"), std::string::npos) << text;
}

TEST_F(Logging, OtherRanksWriteTheirOwnFileOnly) {
  TempDir dir;
  setup_logging(dir.path(), 2, "debug");
  spdlog::debug("rank two debug line");
  flush_logs();
  EXPECT_NE(read_text(dir.file("log.rank2.txt")).find("[debug] rank two debug line"), std::string::npos);
  EXPECT_FALSE(fs::exists(dir.file("log.txt")));
}

TEST_F(Logging, CanBeSetUpTwiceConsoleFirstThenRunDir) {
  TempDir dir;
  setup_logging("", 0, "warn");
  spdlog::warn("before the run dir exists");
  setup_logging(dir.file("run"), 0, "info");
  spdlog::info("after");
  setup_logging(dir.file("run"), 0, "info");  // again on the same file: appends
  spdlog::info("again");
  flush_logs();
  std::string text = read_text(dir.file("run/log.txt"));
  EXPECT_EQ(text.find("before the run dir exists"), std::string::npos);
  EXPECT_NE(text.find("] after"), std::string::npos) << text;
  EXPECT_LT(text.find("] after"), text.find("] again")) << text;
}

TEST_F(Logging, UnknownLevelIsAConfigError) {
  EXPECT_THROW(setup_logging("", 0, "verbose"), ConfigError);
  SEGKD_EXPECT_THROW_MSG(setup_logging("", 0, "verbose"), "log.level = \"verbose\"");
}

TEST(RunDir, CreatesNestedDirectoryAndLeavesNoProbe) {
  TempDir dir;
  std::string run = dir.file("a/b/c");
  prepare_run_dir(run);
  EXPECT_TRUE(fs::is_directory(run));
  EXPECT_TRUE(fs::is_empty(run));
  prepare_run_dir(run);  // existing directory is fine
}

TEST(RunDir, UnusablePathNamesKeyAndDirectory) {
  TempDir dir;
  write_text(dir.file("file"), "x");
  std::string run = dir.file("file/sub");
  std::string msg;
  try {
    prepare_run_dir(run, "run.work_dir");
  } catch (const ConfigError& e) {
    msg = e.what();
  }
  EXPECT_NE(msg.find("run.work_dir"), std::string::npos) << msg;
  EXPECT_NE(msg.find(run), std::string::npos) << msg;
}

TEST(WriteFileAtomic, WritesReplacesAndLeavesNoTemporaries) {
  TempDir dir;
  std::string path = dir.file("config.toml");
  write_file_atomic(path, "first");
  EXPECT_EQ(read_text(path), "first");
  std::string big(1 << 20, 'x');
  write_file_atomic(path, big);
  EXPECT_EQ(read_text(path), big);
  size_t entries = 0;
  for (const auto& e : fs::directory_iterator(dir.path())) {
    ++entries;
    EXPECT_EQ(e.path().filename(), "config.toml");
  }
  EXPECT_EQ(entries, 1u);
}

TEST(WriteFileAtomic, MissingDirectoryIsAnErrorNamingThePath) {
  TempDir dir;
  std::string path = dir.file("missing/config.toml");
  SEGKD_EXPECT_THROW_MSG(write_file_atomic(path, "x"), "(ENOENT) creating a temporary file to write " + path);
  EXPECT_FALSE(fs::exists(path));
}

TEST(WriteFileAtomic, DiskFullNamesTheErrorLeavesNoTemporaryAndKeepsThePreviousFile) {
  segkd::testing::SmallTmpfs disk("1m");
  if (!disk.mounted()) GTEST_SKIP() << disk.error();
  const std::string path = disk.file("summary.json");
  write_file_atomic(path, "previous good contents");
  std::string too_big(2 << 20, 'x');  // 2 MiB into a 1 MiB file system
  SEGKD_EXPECT_THROW_MSG(write_file_atomic(path, too_big), "disk full (ENOSPC) writing " + path);
  EXPECT_EQ(read_text(path), "previous good contents");
  EXPECT_EQ(segkd::testing::list_dir(disk.path()), std::vector<std::string>{"summary.json"});
}

TEST(WriteFileAtomic, TemporaryNamesAreUniquePerWriterInTheTargetDirectory) {
  std::string a = atomic_temp_name("/data/run/config.toml"), b = atomic_temp_name("/data/run/config.toml");
  EXPECT_NE(a, b);
  EXPECT_EQ(fs::path(a).parent_path(), "/data/run");
  EXPECT_EQ(fs::path(a).filename().string().rfind(".config.toml.tmp." + std::to_string(::getpid()) + ".", 0), 0u) << a;
}

TEST(WriteFileAtomic, ErrnoReasonNamesTheSymbol) {
  EXPECT_EQ(errno_reason(ENOSPC), "disk full (ENOSPC)");
  EXPECT_NE(errno_reason(EACCES).find("(EACCES)"), std::string::npos);
}

}  // namespace
}  // namespace segkd

// ---- one-line errors and out-of-memory ----------------------------------------------------------------------------

TEST(OneLineWhat, LibTorchErrorsLoseTheirStackTraceAndFailedAllocationsNameTheirSize) {
  // 2^50 bytes exceeds the x86-64 user address space (2^47): refused at once, whatever the overcommit policy.
  try {
    auto t = torch::empty({int64_t{1} << 48}, torch::kFloat32);
    FAIL() << "allocated " << t.numel() << " floats";
  } catch (const std::exception& e) {
    ASSERT_TRUE(segkd::out_of_memory_request(e).has_value()) << e.what();
    EXPECT_EQ(*segkd::out_of_memory_request(e), int64_t{1} << 50);
    EXPECT_EQ(segkd::one_line_what(e), "out of memory allocating 1048576.00 GiB");
  }
  try {
    (void)torch::ones({2, 3}).matmul(torch::ones({2, 3}));
    FAIL() << "matmul of mismatched shapes succeeded";
  } catch (const c10::Error& e) {
    EXPECT_NE(std::string(e.what()).find('\n'), std::string::npos);  // LibTorch's what() carries frames
    const std::string line = segkd::one_line_what(e);
    EXPECT_EQ(line.find('\n'), std::string::npos) << line;
    EXPECT_NE(line.find("cannot be multiplied"), std::string::npos) << line;
    EXPECT_FALSE(segkd::out_of_memory_request(e).has_value());
  }
  EXPECT_EQ(segkd::one_line_what(std::bad_alloc()), "out of memory");
  EXPECT_EQ(segkd::one_line_what(segkd::InputError("a\nb")), "a");
  EXPECT_FALSE(segkd::out_of_memory_request(segkd::Error("out of memory")).has_value());
  EXPECT_EQ(segkd::format_bytes(512), "512 bytes");
  EXPECT_EQ(segkd::format_bytes(int64_t{3} << 19), "1.5 MiB");
  EXPECT_EQ(segkd::format_bytes(int64_t{3} << 29), "1.50 GiB");
}
