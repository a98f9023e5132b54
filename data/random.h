#pragma once
/// Counter-based randomness for the data pipeline: every draw is a pure function of its key (seed, epoch, sample
/// index, ...), so results never depend on thread timing and resume is exact. Not cryptographic.
#include <cstdint>

namespace segkd::data {

/// SplitMix64's increment (2^64 / golden ratio).
constexpr uint64_t kGamma = 0x9e3779b97f4a7c15ULL;

/// SplitMix64 step: adds kGamma, then the finaliser (a bijective 64-bit mix with good avalanche). mix64(s) is the
/// value a SplitMix64 generator in state s returns next.
inline uint64_t mix64(uint64_t x) {
  x += kGamma;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

/// Hashes a key of several integers into one 64-bit value (order matters).
inline uint64_t hash_key(uint64_t a, uint64_t b = 0, uint64_t c = 0, uint64_t d = 0) {
  uint64_t h = mix64(a ^ 0x5851f42d4c957f2dULL);
  h = mix64(h ^ b);
  h = mix64(h ^ (c + 0x14057b7ef767814fULL));
  return mix64(h ^ (d + 0x2545f4914f6cdd1dULL));
}

/// A small deterministic generator (SplitMix64 stream) with portable helpers — unlike std::uniform_*_distribution,
/// the results are the same with every standard library.
class Rng {
 public:
  explicit Rng(uint64_t state) : state_(state) {}
  /// The next value of the stream: mix64 of the state, which then advances by mix64's increment.
  uint64_t next() {
    const uint64_t z = mix64(state_);
    state_ += kGamma;
    return z;
  }
  /// Uniform in [0, 1).
  double uniform() { return static_cast<double>(next() >> 11) * (1.0 / 9007199254740992.0); }
  /// Uniform in [lo, hi).
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }
  /// Uniform integer in [0, n), n > 0 (rejection sampling, unbiased).
  uint64_t below(uint64_t n) {
    const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t r;
    do r = next();
    while (r >= limit);
    return r % n;
  }
  bool coin(double p = 0.5) { return uniform() < p; }

 private:
  uint64_t state_;
};

}  // namespace segkd::data
