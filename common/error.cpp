#include "common/error.h"

#include <unistd.h>

#include <atomic>

namespace segkd {
namespace {
std::atomic<int> g_rank{-1};
}

int error_context_rank() { return g_rank.load(); }
void set_error_context_rank(int rank) { g_rank.store(rank); }

const std::string& error_context_host() {
  static const std::string host = [] {
    char buf[256] = {0};
    if (gethostname(buf, sizeof(buf) - 1) != 0) return std::string("unknown-host");
    return std::string(buf);
  }();
  return host;
}

void throw_located(const char* file, int line, const std::string& what) {
  throw DistributedError(str_cat(what, " (rank ", error_context_rank(), " on ", error_context_host(), ", ", file,
                                 ":", line, ")"));
}

}  // namespace segkd
