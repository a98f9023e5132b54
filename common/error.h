#pragma once
/// Error types and check helpers shared by every segkd library.
///
/// Errors are exceptions whose message names what is wrong and where (file, key, line, rank, tensor shape).
/// `SEGKD_CHECK(cond, ...)` throws `segkd::Error` with the streamed message parts; the backend-specific
/// `SEGKD_MPI_CHECK` / `SEGKD_NCCL_CHECK` / `SEGKD_CUDA_CHECK` live in distributed/ and forward to
/// `throw_located()` so the message carries file, line, rank and hostname.
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

/// Throws `segkd::DistributedError` whose message is "<what> (rank R on HOST, FILE:LINE)".
[[noreturn]] void throw_located(const char* file, int line, const std::string& what);

}  // namespace segkd

/// Throws segkd::Error built from the streamed arguments when `cond` is false.
#define SEGKD_CHECK(cond, ...)                                \
  do {                                                        \
    if (!(cond)) throw ::segkd::Error(::segkd::str_cat(__VA_ARGS__)); \
  } while (0)
