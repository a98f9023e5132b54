// OrderedProducer: order, the window bound, error propagation, synchronous mode, early stop. No sleeps: workers
// are held back with a gate the test opens, so every interleaving checked here is forced, not hoped for.
#include <gtest/gtest.h>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>

#include "common/error.h"
#include "data/ordered_producer.h"

using segkd::data::OrderedProducer;

namespace {

/// Workers block in wait() until the test opens the gate.
class Gate {
 public:
  void wait() {
    std::unique_lock<std::mutex> lock(mutex_);
    cv_.wait(lock, [&] { return open_; });
  }
  void open() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      open_ = true;
    }
    cv_.notify_all();
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool open_ = false;
};

}  // namespace

TEST(OrderedProducer, ReturnsItemsInOrderWhateverTheTiming) {
  // Uneven work: item i spins i % 7 * 20000 times, so later items often finish first.
  OrderedProducer<int64_t> p(
      [](int64_t i) {
        volatile int64_t sink = 0;
        for (int64_t k = 0; k < (i % 7) * 20000; ++k) sink = sink + k;
        return i * i;
      },
      /*workers=*/3, /*window=*/5, /*first=*/10, /*end=*/60);
  for (int64_t i = 10; i < 60; ++i) {
    EXPECT_EQ(p.position(), i);
    EXPECT_EQ(p.next(), i * i);
  }
  EXPECT_THROW(p.next(), segkd::Error);  // past the end
}

TEST(OrderedProducer, NeverClaimsMoreThanTheWindowAhead) {
  std::atomic<int64_t> max_claimed{-1};
  {
    OrderedProducer<int64_t> p(
        [&](int64_t i) {
          int64_t prev = max_claimed.load();
          while (prev < i && !max_claimed.compare_exchange_weak(prev, i)) {
          }
          return i;
        },
        /*workers=*/4, /*window=*/3);
    for (int64_t i = 0; i < 20; ++i) {
      EXPECT_EQ(p.next(), i);
      // After i+1 items were returned, claims reach at most item (i+1) + window - 1.
      EXPECT_LE(max_claimed.load(), i + 3);
    }
  }  // endless producer: the destructor stops the workers
  EXPECT_GE(max_claimed.load(), 19);
}

TEST(OrderedProducer, RethrowsAnErrorWhenItsItemIsDueAfterEarlierItems) {
  OrderedProducer<std::string> p(
      [](int64_t i) -> std::string {
        if (i == 4 || i == 6) throw std::runtime_error("bad item " + std::to_string(i));
        return "item " + std::to_string(i);
      },
      /*workers=*/2, /*window=*/8, /*first=*/0, /*end=*/8);
  for (int64_t i = 0; i < 4; ++i) EXPECT_EQ(p.next(), "item " + std::to_string(i));
  try {
    p.next();
    FAIL() << "item 4 should have thrown";
  } catch (const std::runtime_error& e) {
    EXPECT_STREQ(e.what(), "bad item 4");  // the first error by index, not whichever thread failed first
  }
  EXPECT_EQ(p.next(), "item 5");
}

TEST(OrderedProducer, ZeroWorkersProducesOnTheCallersThread) {
  const auto caller = std::this_thread::get_id();
  OrderedProducer<int64_t> p(
      [&](int64_t i) {
        EXPECT_EQ(std::this_thread::get_id(), caller);
        return 2 * i;
      },
      /*workers=*/0, /*window=*/1, /*first=*/5);
  EXPECT_EQ(p.next(), 10);
  EXPECT_EQ(p.next(), 12);
}

TEST(OrderedProducer, StopsWorkersHeldInsideProduce) {
  // stop() is requested from another thread while workers may be held inside produce() by the gate; it returns
  // once they finished those items (it would hang if it did not wake and join them), and starts nothing new.
  Gate gate;
  std::atomic<int> started{0};
  OrderedProducer<int64_t> p(
      [&](int64_t i) {
        ++started;
        gate.wait();
        return i;
      },
      /*workers=*/2, /*window=*/2);
  std::thread stopper([&] { p.stop(); });
  gate.open();
  stopper.join();
  EXPECT_LE(started.load(), 2);  // the window: nothing was consumed, so at most 2 items were ever claimed
  EXPECT_THROW(OrderedProducer<int>([](int64_t) { return 0; }, /*workers=*/-1, /*window=*/1), segkd::Error);
  EXPECT_THROW(OrderedProducer<int>([](int64_t) { return 0; }, /*workers=*/1, /*window=*/0), segkd::Error);
}
