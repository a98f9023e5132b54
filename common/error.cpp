#include "common/error.h"

#include <unistd.h>

#include <c10/util/Exception.h>

#include <atomic>
#include <cstdio>
#include <new>

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

std::string one_line_what(const std::exception& e) {
  if (auto requested = out_of_memory_request(e)) return out_of_memory_message(*requested, "");
  std::string what;
  if (const auto* c10 = dynamic_cast<const c10::Error*>(&e)) {
    what = c10->what_without_backtrace();
  } else {
    what = e.what();
  }
  // LibTorch messages may continue with "Exception raised from ... (most recent call first)" and frames.
  const auto nl = what.find('\n');
  if (nl != std::string::npos) what.erase(nl);
  while (!what.empty() && (what.back() == ' ' || what.back() == '\r')) what.pop_back();
  return what;
}

std::optional<int64_t> out_of_memory_request(const std::exception& e) {
  if (dynamic_cast<const std::bad_alloc*>(&e) != nullptr) return 0;
  const auto* c10 = dynamic_cast<const c10::Error*>(&e);
  if (c10 == nullptr) return std::nullopt;
  const std::string what = c10->what_without_backtrace();
  const bool oom = dynamic_cast<const c10::OutOfMemoryError*>(&e) != nullptr ||
                   what.find("can't allocate memory") != std::string::npos ||
                   what.find("not enough memory") != std::string::npos ||
                   what.find("out of memory") != std::string::npos;
  if (!oom) return std::nullopt;
  // "DefaultCPUAllocator: can't allocate memory: you tried to allocate 960000000000 bytes. Error code 12 (...)"
  const std::string marker = "tried to allocate ";
  const auto at = what.find(marker);
  if (at == std::string::npos) return 0;
  long long bytes = 0;
  if (std::sscanf(what.c_str() + at + marker.size(), "%lld bytes", &bytes) != 1 || bytes < 0) return 0;
  return static_cast<int64_t>(bytes);
}

std::string format_bytes(int64_t bytes) {
  char buf[64];
  const double b = static_cast<double>(bytes);
  if (b >= 1024.0 * 1024 * 1024) {
    std::snprintf(buf, sizeof(buf), "%.2f GiB", b / (1024.0 * 1024 * 1024));
  } else if (b >= 1024.0 * 1024) {
    std::snprintf(buf, sizeof(buf), "%.1f MiB", b / (1024.0 * 1024));
  } else {
    std::snprintf(buf, sizeof(buf), "%lld bytes", static_cast<long long>(bytes));
  }
  return buf;
}

std::string out_of_memory_message(int64_t requested, const std::string& context) {
  return (requested > 0 ? "out of memory allocating " + format_bytes(requested) : std::string("out of memory")) +
         context;
}

}  // namespace segkd
