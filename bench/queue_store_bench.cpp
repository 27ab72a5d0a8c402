// troupe-bench: the work queue's store of pending items, measured in isolation — DESIGN §3 calls
// moodycamel ConcurrentQueue the natural home for multi-consumer queues; this shows what the
// store alone would gain.
//
//   queue_store_mutex_deque   std::deque under a std::mutex (what queue.hpp uses today)
//   queue_store_moodycamel    moodycamel::ConcurrentQueue (implicit producer, no tokens: any
//                             thread may push to a work queue and a consumer actor may run on
//                             any worker, so neither side could keep a token)
//
// One producer thread pushes `items` items while 4 consumer threads pop one at a time (a work
// queue consumer takes the next item when it finishes one), yielding when the store is empty.
// Items per second from the first push until the last pop. The consumers check that every item
// arrived exactly once (count and sum). Only the store: the real queue also keeps each
// consumer's busy flag under its mutex (see docs/performance.md, "Work queues").
#include <atomic>
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <concurrentqueue.h>

#include "bench.hpp"

namespace troupe_bench {
namespace {

constexpr int store_consumers = 4;

std::uint64_t store_items(const config& c) {
  return sized(c, 50'000, 10'000'000);
}

class mutex_deque_store {
 public:
  void push(std::uint64_t v) {
    std::lock_guard lock(mutex_);
    items_.push_back(v);
  }
  bool try_pop(std::uint64_t& v) {
    std::lock_guard lock(mutex_);
    if (items_.empty()) return false;
    v = items_.front();
    items_.pop_front();
    return true;
  }

 private:
  std::mutex mutex_;
  std::deque<std::uint64_t> items_;
};

class moodycamel_store {
 public:
  void push(std::uint64_t v) { items_.enqueue(v); }
  bool try_pop(std::uint64_t& v) { return items_.try_dequeue(v); }

 private:
  moodycamel::ConcurrentQueue<std::uint64_t> items_;
};

template <class Store>
double run_store(const config& c, const char* name) {
  const std::uint64_t items = store_items(c);
  // After the items, one stop value per consumer: each consumer counts and sums locally and
  // publishes its totals once, so the timed pops share nothing but the store.
  constexpr std::uint64_t stop = ~std::uint64_t{0};
  Store store;
  std::atomic<std::uint64_t> popped{0};
  std::atomic<std::uint64_t> sum{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> consumers;
  for (int i = 0; i < store_consumers; ++i) {
    consumers.emplace_back([&] {
      while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
      std::uint64_t local_sum = 0;
      std::uint64_t local_count = 0;
      std::uint64_t v = 0;
      for (;;) {
        if (!store.try_pop(v)) {
          std::this_thread::yield();
        } else if (v == stop) {
          break;
        } else {
          local_sum += v;
          ++local_count;
        }
      }
      popped.fetch_add(local_count, std::memory_order_relaxed);
      sum.fetch_add(local_sum, std::memory_order_relaxed);
    });
  }
  const auto t0 = clock::now();
  go.store(true, std::memory_order_release);
  for (std::uint64_t i = 0; i < items; ++i) store.push(i);
  for (int i = 0; i < store_consumers; ++i) store.push(stop);
  for (auto& t : consumers) t.join();
  const auto t1 = clock::now();
  expect(popped.load() == items, std::string(name) + ": popped " + std::to_string(popped.load()) +
                                     " of " + std::to_string(items));
  expect(sum.load() == items * (items - 1) / 2,
         std::string(name) + ": an item was lost or doubled");
  return static_cast<double>(items) / seconds_between(t0, t1);
}

}  // namespace

void add_queue_store_workloads(std::vector<workload>& out) {
  auto size = [](const config& c) {
    return std::to_string(store_items(c)) + " items, 1 producer, " +
           std::to_string(store_consumers) + " consumers popping one at a time";
  };
  out.push_back({"queue_store_mutex_deque", "queue_store", "items/s", false, false, size,
                 [](const config& c) { return run_store<mutex_deque_store>(c, "mutex_deque"); }});
  out.push_back({"queue_store_moodycamel", "queue_store", "items/s", false, false, size,
                 [](const config& c) { return run_store<moodycamel_store>(c, "moodycamel"); }});
}

}  // namespace troupe_bench
