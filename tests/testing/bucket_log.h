#pragma once
/// BucketLog: a GradReducerListener for tests that records bucket starts and completions, plus marks the test adds
/// itself (e.g. "backward_end" right after backward returns), in one ordered log.
#include <mutex>
#include <string>
#include <vector>

#include "distributed/grad_reducer.h"

namespace segkd::testing {

/// Thread-safe: the reducer calls it from backward's thread, the test from its own.
class BucketLog : public dist::GradReducerListener {
 public:
  /// One entry; the log's order is the order things happened.
  struct Event {
    int bucket;        ///< bucket index, -1 for a mark()
    std::string what;  ///< "start" | "done" | the text given to mark()
  };
  void bucket_started(size_t bucket) override { add(static_cast<int>(bucket), "start"); }
  void bucket_done(size_t bucket) override { add(static_cast<int>(bucket), "done"); }
  /// Appends a marker of the test's own.
  void mark(const std::string& what) { add(-1, what); }
  /// A copy of the log so far.
  std::vector<Event> events() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return events_;
  }
  /// Empties the log (e.g. at the start of each step).
  void clear() {
    std::lock_guard<std::mutex> lock(mutex_);
    events_.clear();
  }

 private:
  void add(int bucket, const std::string& what) {
    std::lock_guard<std::mutex> lock(mutex_);
    events_.push_back({bucket, what});
  }
  mutable std::mutex mutex_;
  std::vector<Event> events_;
};

}  // namespace segkd::testing
