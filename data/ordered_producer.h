#pragma once
/// OrderedProducer: items made in parallel, handed out in order. The one windowed producer behind the training
/// loader (endless batches) and the dataset writers (a fixed number of samples).
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "common/error.h"

namespace segkd::data {

/// Produces items first, first+1, ... (up to but excluding `end`, or without end when `end` < 0) with
/// `produce(i)` on `workers` threads; next() returns them strictly in index order, whatever the thread timing.
/// At most `window` items are claimed ahead of the consumer (claimed but not yet returned by next()), which bounds
/// memory. An exception thrown by produce(i) is re-thrown by the next() that would have returned item i, so items
/// before it are still delivered and the first error by index wins. `workers` = 0: next() produces on the
/// caller's thread. The destructor stops the workers (after the items they are producing) and joins them.
template <typename T>
class OrderedProducer {
 public:
  /// Starts `workers` threads on items [first, end). Throws segkd::Error for workers < 0 or window <= 0.
  OrderedProducer(std::function<T(int64_t)> produce, int64_t workers, int64_t window, int64_t first = 0,
                  int64_t end = -1)
      : produce_(std::move(produce)), window_(window), end_(end), next_claim_(first), next_return_(first) {
    SEGKD_CHECK(workers >= 0, "OrderedProducer: workers = ", workers, " < 0");
    SEGKD_CHECK(window > 0, "OrderedProducer: window = ", window, " must be > 0");
    for (int64_t t = 0; t < workers; ++t) threads_.emplace_back([this] { worker_loop(); });
  }
  /// Stops and joins the workers (see stop()).
  ~OrderedProducer() { stop(); }
  OrderedProducer(const OrderedProducer&) = delete;
  OrderedProducer& operator=(const OrderedProducer&) = delete;

  /// The next item in order (blocks until it is ready); re-throws its producer's exception. Throws segkd::Error
  /// past `end`.
  T next() {
    SEGKD_CHECK(end_ < 0 || next_return_ < end_, "OrderedProducer: next() past the end (", end_, " items)");
    if (threads_.empty()) return produce_(next_return_++);
    Result result;
    {
      std::unique_lock<std::mutex> lock(mutex_);
      produced_.wait(lock, [&] { return ready_.count(next_return_) > 0; });
      auto it = ready_.find(next_return_);
      result = std::move(it->second);
      ready_.erase(it);
      ++next_return_;
    }
    consumed_.notify_all();
    if (result.error) std::rethrow_exception(result.error);
    return std::move(*result.item);
  }

  /// Index of the item the next call to next() returns.
  int64_t position() const { return next_return_; }

  /// Stops the workers once their current item is done and joins them (idempotent; next() must not follow).
  void stop() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    consumed_.notify_all();
    for (auto& t : threads_) t.join();
    threads_.clear();
  }

 private:
  struct Result {
    std::optional<T> item;
    std::exception_ptr error;
  };

  bool exhausted() const { return end_ >= 0 && next_claim_ >= end_; }

  void worker_loop() {
    for (;;) {
      int64_t i;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        consumed_.wait(lock, [&] { return stop_ || exhausted() || next_claim_ < next_return_ + window_; });
        if (stop_ || exhausted()) return;
        i = next_claim_++;
      }
      Result result;
      try {
        result.item.emplace(produce_(i));
      } catch (...) {
        result.error = std::current_exception();
      }
      {
        std::lock_guard<std::mutex> lock(mutex_);
        ready_.emplace(i, std::move(result));
      }
      produced_.notify_all();
    }
  }

  std::function<T(int64_t)> produce_;
  int64_t window_, end_;
  std::mutex mutex_;
  std::condition_variable produced_, consumed_;
  int64_t next_claim_;   // next item a worker starts
  int64_t next_return_;  // next item next() hands out
  std::map<int64_t, Result> ready_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

}  // namespace segkd::data
