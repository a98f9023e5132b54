#pragma once
/// Shared test helpers: a seeding fixture, tolerance-aware tensor comparison, temporary directories.
#include <gtest/gtest.h>
#include <torch/torch.h>

#include <string>
#include <vector>

namespace segkd::testing {

/// Seeds torch's generator before every test so random inputs are reproducible.
class Seeded : public ::testing::Test {
 protected:
  void SetUp() override { torch::manual_seed(1234); }
};

/// Max |a-b| <= atol + rtol*|b| elementwise, with a message naming the worst element.
::testing::AssertionResult tensors_close(const torch::Tensor& actual, const torch::Tensor& expected,
                                         double rtol = 1e-5, double atol = 1e-8);

/// A fresh, empty temporary directory, removed when the object dies.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

/// A size-limited tmpfs mounted on a fresh temporary directory (disk-full tests), unmounted when the object dies.
/// `mounted()` is false with `error()` set where mounting is not permitted (no root, a container without
/// CAP_SYS_ADMIN): tests then GTEST_SKIP() with that reason.
class SmallTmpfs {
 public:
  explicit SmallTmpfs(const std::string& size = "2m");
  ~SmallTmpfs();
  SmallTmpfs(const SmallTmpfs&) = delete;
  SmallTmpfs& operator=(const SmallTmpfs&) = delete;
  bool mounted() const { return mounted_; }
  const std::string& error() const { return error_; }
  const std::string& path() const { return dir_.path(); }
  std::string file(const std::string& name) const { return dir_.file(name); }

 private:
  TempDir dir_;
  bool mounted_ = false;
  std::string error_;
};

/// The names in directory `dir` (not recursive), sorted.
std::vector<std::string> list_dir(const std::string& dir);

/// Writes `text` to `path` (creating parent directories).
void write_text(const std::string& path, const std::string& text);
std::string read_text(const std::string& path);

/// The source tree (from SEGKD_SOURCE_DIR set by ctest) and the build tree.
std::string source_dir();
std::string binary_dir();

/// Runs a shell command, returns its exit status; stdout+stderr go to `output` when given.
int run_command(const std::string& command, std::string* output = nullptr);

/// The segkd executable of the build tree, for end-to-end tests.
std::string segkd_bin();
/// The command prefix that launches `n` ranks on this machine (root allowed, 1 thread per rank, oversubscribed,
/// unbound), ending in a space: `mpirun(2) + segkd_bin() + " train ..."`.
std::string mpirun(int n);

}  // namespace segkd::testing

/// EXPECT that `statement` throws an exception (any std::exception) whose what() contains `substring`.
#define SEGKD_EXPECT_THROW_MSG(statement, substring)                                                \
  do {                                                                                              \
    try {                                                                                           \
      statement;                                                                                    \
      ADD_FAILURE() << "expected an exception containing \"" << (substring) << "\"";               \
    } catch (const std::exception& e_) {                                                           \
      EXPECT_NE(std::string(e_.what()).find(substring), std::string::npos)                         \
          << "message: " << e_.what() << "\nexpected to contain: " << (substring);                  \
    }                                                                                               \
  } while (0)
