// troupe-bench: topics — broadcast (DESIGN §5): 100,000 events published on one subject with 100
// subscribers; deliveries per second, from the first publish until every subscriber has handled
// every event. The driver thread publishes; each event is built once and shared.
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include <troupe/troupe.hpp>

#include "bench.hpp"
#include "runtime_checks.hpp"

namespace troupe_bench {
namespace {

struct tick {
  std::uint64_t n;
};

struct broadcast_state {
  std::atomic<std::uint64_t> remaining{0};
  done_signal done;
};

struct listener {
  broadcast_state* state;
  std::uint64_t sum = 0;
  void on(const tick& t) {
    sum += t.n;
    if (state->remaining.fetch_sub(1, std::memory_order_acq_rel) == 1) state->done.set();
  }
};

std::uint64_t event_count(const config& c) {
  return broadcast_size(c);
}
constexpr std::uint64_t subscribers = broadcast_subscribers;

double run_broadcast(const config& c) {
  const std::uint64_t events = event_count(c);
  broadcast_state state;
  state.remaining = events * subscribers;
  troupe::runtime rt{options_for(c)};
  std::vector<troupe::subscription> subs;
  for (std::uint64_t i = 0; i < subscribers; ++i) {
    subs.push_back(rt.subscribe<tick>("bench.ticks", rt.spawn<listener>(&state)));
  }
  const auto t0 = clock::now();
  for (std::uint64_t i = 0; i < events; ++i) {
    expect(rt.publish("bench.ticks", tick{i}) == subscribers, "broadcast: a delivery failed");
  }
  expect_done(state.done.wait_for(run_timeout), "broadcast");
  const auto t1 = clock::now();
  subs.clear();
  rt.shutdown();
  expect_all_handled(rt.counters(), events * subscribers, "broadcast");
  return static_cast<double>(events * subscribers) / seconds_between(t0, t1);
}

}  // namespace

void add_topic_workloads(std::vector<workload>& out) {
  out.push_back({"broadcast", "topics", "deliveries/s", false, false,
                 [](const config& c) {
                   return std::to_string(event_count(c)) + " events to a topic with " +
                          std::to_string(subscribers) + " subscribers";
                 },
                 run_broadcast});
}

}  // namespace troupe_bench
