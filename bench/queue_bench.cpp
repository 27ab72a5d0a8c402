// troupe-bench: work queues — queue: 4 consumer actors compete for 10,000,000 items pushed by
// the driver thread; items per second, from the first push until the last item is handled.
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include <troupe/troupe.hpp>

#include "bench.hpp"
#include "runtime_checks.hpp"

namespace troupe_bench {
namespace {

struct item {
  std::uint64_t n;
};

struct queue_run {
  std::atomic<std::uint64_t> remaining{0};
  done_signal done;
};

struct drainer {
  queue_run* run;
  std::uint64_t sum = 0;
  void on(const item& i) {
    sum += i.n;
    if (run->remaining.fetch_sub(1, std::memory_order_acq_rel) == 1) run->done.set();
  }
};

std::uint64_t item_count(const config& c) {
  return sized(c, 20'000, 10'000'000);
}
constexpr int consumers = 4;

double run_queue(const config& c) {
  const std::uint64_t items = item_count(c);
  queue_run run;
  run.remaining = items;
  troupe::runtime rt{options_for(c)};
  auto q = rt.make_queue<item>({.name = "bench"});
  for (int i = 0; i < consumers; ++i) q.add_consumer(rt.spawn<drainer>(&run));
  const auto t0 = clock::now();
  for (std::uint64_t i = 0; i < items; ++i) q.push(item{i});
  expect_done(run.done.wait_for(run_timeout), "queue");
  const auto t1 = clock::now();
  rt.shutdown();
  expect_all_handled(rt.counters(), items, "queue");
  return static_cast<double>(items) / seconds_between(t0, t1);
}

}  // namespace

void add_queue_workloads(std::vector<workload>& out) {
  out.push_back({"queue", "queues", "items/s", false, false,
                 [](const config& c) {
                   return std::to_string(item_count(c)) + " items, " + std::to_string(consumers) +
                          " competing consumers";
                 },
                 run_queue});
}

}  // namespace troupe_bench
