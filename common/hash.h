#pragma once
/// The one non-cryptographic hash of segkd: 64-bit FNV-1a. It names a resolved config (`Config::hash`, stored in
/// checkpoints and summary.json, so its values must never change) and checksums module state across ranks
/// (`dist::module_checksum`). The counter-based random keys of the data pipeline are a different job (a bijective
/// integer mix) and live in data/random.h.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

namespace segkd {

/// Incremental 64-bit FNV-1a: for each byte, h = (h XOR byte) * prime, starting from the offset basis.
class Fnv1a64 {
 public:
  /// The published 64-bit offset basis and prime.
  static constexpr uint64_t kOffsetBasis = 14695981039346656037ULL;
  static constexpr uint64_t kPrime = 1099511628211ULL;

  /// A fresh hash (the offset basis).
  Fnv1a64() = default;

  /// Mixes `n` bytes, one at a time (the published FNV-1a: update("a") on a fresh hash is af63dc4c8601ec8c).
  Fnv1a64& update(const void* data, size_t n) {
    const auto* p = static_cast<const unsigned char*>(data);
    for (size_t i = 0; i < n; ++i) h_ = (h_ ^ p[i]) * kPrime;
    return *this;
  }
  /// Mixes the bytes of `text`.
  Fnv1a64& update(const std::string& text) { return update(text.data(), text.size()); }

  /// Mixes `n` bytes as whole 64-bit words (host byte order), then the tail bytes one at a time: the same
  /// construction with 8x fewer multiplications, for bulk data such as parameter tensors. Not equal to update()
  /// over the same bytes; use one or the other for a given kind of input.
  Fnv1a64& update_words(const void* data, size_t n) {
    const auto* p = static_cast<const unsigned char*>(data);
    const size_t words = n / 8;
    for (size_t i = 0; i < words; ++i) {
      uint64_t w;
      std::memcpy(&w, p + 8 * i, 8);
      h_ = (h_ ^ w) * kPrime;
    }
    return update(p + 8 * words, n - 8 * words);
  }

  /// The hash so far.
  uint64_t value() const { return h_; }
  /// The hash so far as 16 lower-case hex digits.
  std::string hex() const {
    static const char* kDigits = "0123456789abcdef";
    std::string out(16, '0');
    for (int i = 0; i < 16; ++i) out[15 - i] = kDigits[(h_ >> (4 * i)) & 0xf];
    return out;
  }

 private:
  uint64_t h_ = kOffsetBasis;
};

}  // namespace segkd
