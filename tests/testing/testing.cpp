#include "tests/testing/testing.h"

#include <sys/mount.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/env.h"

namespace fs = std::filesystem;

namespace segkd::testing {

::testing::AssertionResult tensors_close(const torch::Tensor& actual, const torch::Tensor& expected, double rtol,
                                         double atol) {
  if (actual.sizes() != expected.sizes()) {
    return ::testing::AssertionFailure() << "shape " << actual.sizes() << " != expected " << expected.sizes();
  }
  auto a = actual.detach().to(torch::kDouble).cpu();
  auto b = expected.detach().to(torch::kDouble).cpu();
  if (!torch::isfinite(a).all().item<bool>()) return ::testing::AssertionFailure() << "actual has non-finite values";
  auto excess = (a - b).abs() - (atol + rtol * b.abs());
  auto worst = excess.flatten().argmax().item<int64_t>();
  if (excess.flatten()[worst].item<double>() > 0) {
    return ::testing::AssertionFailure() << "element " << worst << ": " << a.flatten()[worst].item<double>()
                                         << " vs expected " << b.flatten()[worst].item<double>()
                                         << " (rtol " << rtol << ", atol " << atol << ")";
  }
  return ::testing::AssertionSuccess();
}

TempDir::TempDir() {
  std::string tmpl = (fs::temp_directory_path() / "segkd-test-XXXXXX").string();
  char* made = mkdtemp(tmpl.data());
  if (made == nullptr) throw std::runtime_error("mkdtemp failed for " + tmpl);
  path_ = made;
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

SmallTmpfs::SmallTmpfs(const std::string& size) {
  const std::string options = "size=" + size;
  if (::mount("tmpfs", dir_.path().c_str(), "tmpfs", 0, options.c_str()) == 0) {
    mounted_ = true;
  } else {
    error_ = "cannot mount a " + size + " tmpfs on " + dir_.path() + " (" + std::strerror(errno) +
             "): disk-full test needs root or CAP_SYS_ADMIN";
  }
}

SmallTmpfs::~SmallTmpfs() {
  if (mounted_) ::umount2(dir_.path().c_str(), MNT_DETACH);
}

std::vector<std::string> list_dir(const std::string& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.push_back(e.path().filename().string());
  std::sort(names.begin(), names.end());
  return names;
}

void write_text(const std::string& path, const std::string& text) {
  auto parent = fs::path(path).parent_path();
  if (!parent.empty()) fs::create_directories(parent);
  std::ofstream out(path, std::ios::binary);
  out << text;
  if (!out) throw std::runtime_error("cannot write " + path);
}

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

static std::string env_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v ? std::string(v) : std::string(fallback);
}

std::string source_dir() { return env_or(env::kTestSourceDir, "."); }
std::string binary_dir() { return env_or(env::kTestBinaryDir, "."); }

std::string segkd_bin() { return binary_dir() + "/segkd"; }

std::string mpirun(int n) {
  return "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 "
         "mpiexec -n " + std::to_string(n) + " --oversubscribe --bind-to none ";
}

int run_command(const std::string& command, std::string* output) {
  std::string full = command + " 2>&1";
  FILE* pipe = popen(full.c_str(), "r");
  if (!pipe) return -1;
  std::array<char, 4096> buf{};
  std::string out;
  size_t n;
  while ((n = fread(buf.data(), 1, buf.size(), pipe)) > 0) out.append(buf.data(), n);
  int status = pclose(pipe);
  if (output) *output = out;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

}  // namespace segkd::testing
