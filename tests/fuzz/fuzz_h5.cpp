// libFuzzer target for the HDF5 dataset reader (data/dataset.cpp: attributes, /index bounds, sample reads).
// Built only with -DSEGKD_BUILD_FUZZ=ON and clang; run by hand, e.g.
//   build-fuzz/tests/fuzz/fuzz_h5 -max_total_time=300 tests/fuzz/corpus/h5
// Any input must open and read, or end in a segkd::Error; a crash, hang or sanitizer report is a bug.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <string>

#include "common/error.h"
#include "data/dataset.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = "/tmp/segkd-fuzz-h5-" + std::to_string(::getpid()) + ".h5";
  FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return 0;
  std::fwrite(data, 1, size, f);
  std::fclose(f);
  try {
    segkd::data::H5Dataset ds({path});
    for (int64_t i = 0; i < ds.size() && i < 16; ++i) ds.get(i);
  } catch (const segkd::Error&) {
    // the expected outcome for damaged input
  }
  return 0;
}
