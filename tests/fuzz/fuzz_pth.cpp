// libFuzzer target for the .pth reader (models/weights.cpp: zip container, pickle machine, storage views).
// Built only with -DSEGKD_BUILD_FUZZ=ON and clang; run by hand, e.g.
//   build-fuzz/tests/fuzz/fuzz_pth -max_total_time=300 tests/fuzz/corpus/pth
// Any input must end in a StateDict or a segkd::Error; a crash, hang or sanitizer report is a bug.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

#include "common/error.h"
#include "models/weights.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = "/tmp/segkd-fuzz-pth-" + std::to_string(::getpid()) + ".pth";
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return 0;
  std::fwrite(data, 1, size, f);
  std::fclose(f);
  try {
    segkd::models::read_pth(path);
  } catch (const segkd::Error&) {
    // the expected outcome for damaged input
  }
  return 0;
}
