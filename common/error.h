#pragma once
/// Error types and check helpers shared by every segkd library.
///
/// Errors are exceptions whose message names what is wrong and where (file, key, line, rank, tensor shape).
/// `SEGKD_CHECK(cond, ...)` throws `segkd::Error` with the streamed message parts; the backend-specific
/// `SEGKD_MPI_CHECK` / `SEGKD_NCCL_CHECK` / `SEGKD_CUDA_CHECK` live in distributed/ and forward to
/// `throw_located()` so the message carries file, line, rank and hostname.
#include <cstdint>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>

namespace segkd {

/// Base class of every error segkd raises on purpose; `what()` is a one-line, user-facing reason.
class Error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

/// A configuration problem: unknown key, wrong type, value out of range, unreadable or malformed file.
class ConfigError : public Error {
 public:
  using Error::Error;
};

/// A problem with an input file (dataset, weights, image, checkpoint).
class InputError : public Error {
 public:
  using Error::Error;
};

/// A failure of the distributed runtime (collective error, timeout, ranks that disagree).
class DistributedError : public Error {
 public:
  using Error::Error;
};

namespace detail {
inline void stream_all(std::ostringstream&) {}
template <typename T, typename... Rest>
void stream_all(std::ostringstream& os, const T& first, const Rest&... rest) {
  os << first;
  stream_all(os, rest...);
}
}  // namespace detail

/// Concatenates every argument with operator<< into one string.
template <typename... Args>
std::string str_cat(const Args&... args) {
  std::ostringstream os;
  detail::stream_all(os, args...);
  return os.str();
}

/// This process's world rank as set by the distributed runtime (-1 before it is known), and the host name.
/// Used to locate errors on multi-node jobs.
int error_context_rank();
void set_error_context_rank(int rank);
const std::string& error_context_host();

/// One line for any exception: a segkd::Error's message; LibTorch's c10::Error without the C++ stack trace its
/// what() carries (its first line); out_of_memory_message() for a failed allocation. What every top-level handler
/// prints.
std::string one_line_what(const std::exception& e);

/// When `e` reports a failed memory allocation (std::bad_alloc, c10::OutOfMemoryError, LibTorch's CPU allocator
/// "can't allocate memory"), the bytes requested if the message names them, otherwise 0; nullopt for any other error.
std::optional<int64_t> out_of_memory_request(const std::exception& e);

/// "N bytes" as "1.50 GiB", "12.0 MiB", "512 bytes".
std::string format_bytes(int64_t bytes);

/// The one-line error for an allocation that failed: "out of memory allocating 1.50 GiB" (or "out of memory" when
/// the size is unknown) followed by `context`, e.g. " with data.crop = [...]".
std::string out_of_memory_message(int64_t requested, const std::string& context);

/// Throws `segkd::DistributedError` whose message is "<what> (rank R on HOST, FILE:LINE)".
[[noreturn]] void throw_located(const char* file, int line, const std::string& what);

}  // namespace segkd

/// Throws segkd::Error built from the streamed arguments when `cond` is false.
#define SEGKD_CHECK(cond, ...)                                \
  do {                                                        \
    if (!(cond)) throw ::segkd::Error(::segkd::str_cat(__VA_ARGS__)); \
  } while (0)
