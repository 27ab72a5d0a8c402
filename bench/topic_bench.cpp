// troupe-bench: topics — broadcast (DESIGN §5): 100,000 events published on one subject with 100
// subscribers; deliveries per second, from the first publish until every subscriber has handled
// every event. The driver thread publishes; each event is built once and shared.
// Also: route_churn (publishes to a 1,000-member group while an unrelated pattern is subscribed
// and unsubscribed between publishes: what a change elsewhere costs a cached route) and
// unsubscribe_drain (80,000 subscriptions to one pattern, then all unsubscribed: per unsubscribe).
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

struct counter_sink {
  std::atomic<std::uint64_t>* handled;
  void on(const tick&) { handled->fetch_add(1, std::memory_order_relaxed); }
};

constexpr std::uint64_t churn_members = 1'000;

std::uint64_t churn_size(const config& c) {
  return sized(c, 2'000, 20'000);
}

// Each round: subscribe to an unrelated pattern, publish once on the hot subject, unsubscribe.
double run_route_churn(const config& c) {
  const std::uint64_t rounds = churn_size(c);
  std::atomic<std::uint64_t> handled{0};
  troupe::runtime rt{options_for(c)};
  std::vector<troupe::subscription> members;
  for (std::uint64_t i = 0; i < churn_members; ++i) {
    members.push_back(rt.subscribe<tick>("bench.hot", rt.spawn<counter_sink>(&handled),
                                         troupe::group{"workers"}));
  }
  auto bystander = rt.spawn<counter_sink>(&handled);
  expect(rt.publish("bench.hot", tick{0}) == 1, "route_churn: the group got no delivery");
  const auto t0 = clock::now();
  for (std::uint64_t i = 0; i < rounds; ++i) {
    auto other = rt.subscribe<tick>("bench.cold." + std::to_string(i % 64), bystander);
    expect(rt.publish("bench.hot", tick{i}) == 1, "route_churn: the group got no delivery");
  }
  const auto t1 = clock::now();
  members.clear();
  rt.shutdown();
  expect_all_handled(rt.counters(), rounds + 1, "route_churn");
  return static_cast<double>(rounds) / seconds_between(t0, t1);
}

std::uint64_t drain_size(const config& c) {
  return sized(c, 10'000, 80'000);
}

// Subscribes one actor `drain_size` times to one pattern, then unsubscribes all, oldest first;
// the figure is the mean time of one unsubscribe.
double run_unsubscribe_drain(const config& c) {
  const std::uint64_t n = drain_size(c);
  std::atomic<std::uint64_t> handled{0};
  troupe::runtime rt{options_for(c)};
  auto sink = rt.spawn<counter_sink>(&handled);
  std::vector<troupe::subscription> subs;
  subs.reserve(n);
  for (std::uint64_t i = 0; i < n; ++i) subs.push_back(rt.subscribe<tick>("bench.drain", sink));
  const auto t0 = clock::now();
  for (auto& s : subs) s.unsubscribe();
  const auto t1 = clock::now();
  expect(rt.publish("bench.drain", tick{0}) == 0, "unsubscribe_drain: a subscription is left");
  rt.shutdown();
  return seconds_between(t0, t1) * 1e9 / static_cast<double>(n);
}

}  // namespace

void add_topic_workloads(std::vector<workload>& out) {
  out.push_back({"broadcast", "topics", "deliveries/s", false, false,
                 [](const config& c) {
                   return std::to_string(event_count(c)) + " events to a topic with " +
                          std::to_string(subscribers) + " subscribers";
                 },
                 run_broadcast});
  out.push_back({"route_churn", "topics", "publishes/s", false, false,
                 [](const config& c) {
                   return std::to_string(churn_size(c)) + " publishes to a group of " +
                          std::to_string(churn_members) +
                          " members, an unrelated pattern subscribed and unsubscribed around each";
                 },
                 run_route_churn});
  out.push_back({"unsubscribe_drain", "topics", "ns/unsubscribe", true, false,
                 [](const config& c) {
                   return std::to_string(drain_size(c)) +
                          " subscriptions to one pattern, all unsubscribed, oldest first";
                 },
                 run_unsubscribe_drain});
}

}  // namespace troupe_bench
