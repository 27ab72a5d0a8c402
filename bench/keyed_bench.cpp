// troupe-bench: ordering by key (troupe/keyed.hpp) beside the unkeyed consumer group.
//   unkeyed_group  events published on one subject to a plain consumer group of 4 members
//   keyed_group    the same events to a keyed queue of 4 consumers subscribed to the subject
//                  (a keyed consumer group), 10,000 keys: key = event number mod 10,000
//   keyed_queue    the same events pushed straight to the keyed queue (no topic)
//   keyed_cost     keyed_group's time / unkeyed_group's time, measured back to back in one
//                  run (the machine's load moves both alike)
// Events per second, from the first publish until the last event is handled.
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include <troupe/troupe.hpp>

#include "bench.hpp"
#include "runtime_checks.hpp"

namespace troupe_bench {
namespace {

struct keyed_event {
  std::uint64_t key;
  std::uint64_t n;
};

struct keyed_run {
  std::atomic<std::uint64_t> remaining{0};
  done_signal done;
};

struct keyed_member {
  keyed_run* run;
  std::uint64_t sum = 0;
  void on(const keyed_event& e) {
    sum += e.n;
    if (run->remaining.fetch_sub(1, std::memory_order_acq_rel) == 1) run->done.set();
  }
};

constexpr int members = 4;
constexpr std::uint64_t keys = 10'000;

std::uint64_t event_count(const config& c) {
  return sized(c, 20'000, 1'000'000);
}

enum class mode { group, keyed_group, keyed_queue };

// One run of `m`: seconds from the first publish until the last event is handled.
double timed(const config& c, mode m) {
  const std::uint64_t events = event_count(c);
  keyed_run run;
  run.remaining = events;
  troupe::runtime rt{options_for(c)};
  auto q = rt.make_keyed_queue<keyed_event>({.name = "bench"}, &keyed_event::key);
  std::vector<troupe::subscription> subs;
  for (int i = 0; i < members; ++i) {
    auto member = rt.spawn<keyed_member>(&run);
    if (m == mode::group) {
      subs.push_back(rt.subscribe<keyed_event>("bench.orders", member, troupe::group{"g"}));
    } else {
      q.add_consumer(member);
    }
  }
  if (m == mode::keyed_group) subs.push_back(q.subscribe("bench.orders"));
  const auto t0 = clock::now();
  for (std::uint64_t i = 0; i < events; ++i) {
    if (m == mode::keyed_queue) {
      q.push(keyed_event{i % keys, i});
    } else {
      expect(rt.publish("bench.orders", keyed_event{i % keys, i}) == 1,
             "keyed: a publish reached no group");
    }
  }
  expect_done(run.done.wait_for(run_timeout), "keyed");
  const auto t1 = clock::now();
  subs.clear();
  rt.shutdown();
  expect_all_handled(rt.counters(), events, "keyed");
  return seconds_between(t0, t1);
}

std::string keyed_size(const config& c) {
  return std::to_string(event_count(c)) + " events, " + std::to_string(members) + " members, " +
         std::to_string(keys) + " keys";
}

}  // namespace

void add_keyed_workloads(std::vector<workload>& out) {
  auto rate = [](mode m) {
    return [m](const config& c) { return static_cast<double>(event_count(c)) / timed(c, m); };
  };
  out.push_back(
      {"unkeyed_group", "keyed", "events/s", false, false, keyed_size, rate(mode::group)});
  out.push_back(
      {"keyed_group", "keyed", "events/s", false, false, keyed_size, rate(mode::keyed_group)});
  out.push_back(
      {"keyed_queue", "keyed", "events/s", false, false, keyed_size, rate(mode::keyed_queue)});
  out.push_back({"keyed_cost", "keyed", "x", true, false, keyed_size, [](const config& c) {
                   const double unkeyed = timed(c, mode::group);
                   return timed(c, mode::keyed_group) / unkeyed;
                 }});
}

}  // namespace troupe_bench
