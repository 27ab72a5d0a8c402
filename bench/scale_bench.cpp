// troupe-bench: the scale workloads (DESIGN §5 "scale", issue 16) — each grows one dimension of
// the work and reports the cost per unit at each size, so that a cost that grows faster than the
// work shows as a row that moves:
//   scale_broadcast      one topic with 10 / 100 / 1,000 / 10,000 subscribers: deliveries/s
//   scale_subscriptions  10 / 10,000 / 1,000,000 wildcard subscriptions on distinct subjects:
//                        ns per published event (each event reaches one of them)
//   scale_actors_1m,     1,000,000 and 10,000,000 idle actors: resident bytes per actor and
//   scale_actors_10m     spawn time per actor (each in a fresh process)
//   scale_pairs          independent ping-pong pairs on 1 worker and on every hardware thread:
//                        round trips/s each, and the speedup
//   scale_queue          a work queue with 1 / 4 / 64 consumers: items/s
// Row names carry the full size; --quick divides the large sizes (see each `size` text), so
// quick figures only show that everything runs.
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <troupe/troupe.hpp>

#include "bench.hpp"
#include "runtime_checks.hpp"

namespace troupe_bench {
namespace {

// ---- broadcast: subscribers grow -------------------------------------------------------------

struct scale_tick {
  std::uint64_t n;
};

struct fan_state {
  std::atomic<std::uint64_t> remaining{0};
  done_signal done;
};

// Counts locally; only the last event of a run touches the shared countdown, so that the
// figure is the runtime's, not a shared counter's (which would grow with the subscribers).
struct fan_listener {
  fan_state* state;
  std::uint64_t expected;
  std::uint64_t seen = 0;
  std::uint64_t sum = 0;
  void on(const scale_tick& t) {
    sum += t.n;
    if (++seen == expected && state->remaining.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      state->done.set();
    }
  }
};

constexpr std::uint64_t broadcast_fanouts[] = {10, 100, 1'000, 10'000};

// Deliveries per row: the same for every fan-out, so that each row does the same work.
std::uint64_t broadcast_deliveries(const config& c) {
  return sized(c, 100'000, 10'000'000);
}

double broadcast_at(const config& c, std::uint64_t subscribers) {
  const std::uint64_t events = std::max<std::uint64_t>(1, broadcast_deliveries(c) / subscribers);
  fan_state state;
  state.remaining = subscribers;
  troupe::runtime rt{options_for(c)};
  std::vector<troupe::subscription> subs;
  subs.reserve(subscribers);
  for (std::uint64_t i = 0; i < subscribers; ++i) {
    subs.push_back(rt.subscribe<scale_tick>("scale.ticks", rt.spawn<fan_listener>(&state, events)));
  }
  const auto t0 = clock::now();
  for (std::uint64_t i = 0; i < events; ++i) {
    expect(rt.publish("scale.ticks", scale_tick{i}) == subscribers,
           "scale_broadcast: a delivery failed");
  }
  expect_done(state.done.wait_for(run_timeout), "scale_broadcast");
  const auto t1 = clock::now();
  subs.clear();
  rt.shutdown();
  expect_all_handled(rt.counters(), events * subscribers, "scale_broadcast");
  return static_cast<double>(events * subscribers) / seconds_between(t0, t1);
}

std::vector<double> run_scale_broadcast(const config& c) {
  std::vector<double> out;
  for (std::uint64_t s : broadcast_fanouts) out.push_back(broadcast_at(c, s));
  return out;
}

// ---- subscriptions grow ----------------------------------------------------------------------
// N subscriptions "scale.s<i>.*", each on its own subject; the driver publishes E events on
// "scale.s<k>.x" for k walking all N subjects in turn (so with many subscriptions most publishes
// find no cached route), each reaching exactly one subscription. Timed until all are handled.

struct sub_state {
  std::atomic<std::uint64_t> handled{0};
  std::uint64_t expected = 0;
  done_signal done;
};

struct sub_sink {
  sub_state* state;
  void on(const scale_tick&) {
    if (state->handled.fetch_add(1, std::memory_order_relaxed) + 1 == state->expected) {
      state->done.set();
    }
  }
};

constexpr std::uint64_t subscription_counts[] = {10, 10'000, 1'000'000};
constexpr std::uint64_t subscription_sinks = 64;

std::uint64_t subscription_count(const config& c, std::uint64_t full) {
  return c.quick ? std::min<std::uint64_t>(full, 10'000) : full;
}
std::uint64_t subscription_events(const config& c) {
  return sized(c, 20'000, 1'000'000);
}

double subscriptions_at(const config& c, std::uint64_t n) {
  const std::uint64_t events = subscription_events(c);
  sub_state state;
  state.expected = events;
  troupe::runtime rt{options_for(c)};
  std::vector<troupe::ref<sub_sink>> sinks;
  for (std::uint64_t i = 0; i < subscription_sinks; ++i)
    sinks.push_back(rt.spawn<sub_sink>(&state));
  std::vector<troupe::subscription> subs;
  subs.reserve(n);
  for (std::uint64_t i = 0; i < n; ++i) {
    subs.push_back(rt.subscribe<scale_tick>("scale.s" + std::to_string(i) + ".*",
                                            sinks[i % subscription_sinks]));
  }
  // The subjects are built before the clock starts: the figure is the publish, not to_string.
  const std::uint64_t distinct = std::min(n, events);
  std::vector<std::string> subjects;
  subjects.reserve(distinct);
  for (std::uint64_t i = 0; i < distinct; ++i) {
    subjects.push_back("scale.s" + std::to_string(i * (n / distinct)) + ".x");
  }
  const auto t0 = clock::now();
  for (std::uint64_t i = 0; i < events; ++i) {
    expect(rt.publish(subjects[i % distinct], scale_tick{i}) == 1,
           "scale_subscriptions: an event did not reach its one subscriber");
  }
  expect_done(state.done.wait_for(run_timeout), "scale_subscriptions");
  const auto t1 = clock::now();
  subs.clear();
  rt.shutdown();
  expect_all_handled(rt.counters(), events, "scale_subscriptions");
  return seconds_between(t0, t1) * 1e9 / static_cast<double>(events);
}

std::vector<double> run_scale_subscriptions(const config& c) {
  std::vector<double> out;
  for (std::uint64_t n : subscription_counts)
    out.push_back(subscriptions_at(c, subscription_count(c, n)));
  return out;
}

// ---- actors grow -----------------------------------------------------------------------------
// N idle actors spawned from the driver thread: resident-set growth per actor, and the time per
// actor from the first spawn until every one has run on_start (so has been scheduled once and
// gone idle). A fresh process per run, as for idle_actor_bytes.

countdown* scale_started = nullptr;

struct scale_idle {
  void on(const scale_tick&) {}
  void on_start() { scale_started->arrive(); }
};

std::uint64_t actor_count(const config& c, std::uint64_t full) {
  return c.quick ? full / 50 : full;
}

std::vector<double> actors_at(const config& c, std::uint64_t full) {
  const std::uint64_t n = actor_count(c, full);
  countdown started(n);
  scale_started = &started;
  troupe::runtime rt{options_for(c)};
  const std::size_t before = resident_bytes();
  const auto t0 = clock::now();
  for (std::uint64_t i = 0; i < n; ++i) rt.spawn<scale_idle>();
  expect_done(started.wait_for(run_timeout), "scale_actors");
  const auto t1 = clock::now();
  const std::size_t after = resident_bytes();
  const std::size_t live = rt.live_actors();
  rt.shutdown();
  scale_started = nullptr;
  const troupe::runtime_counters counters = rt.counters();
  expect(before != 0 && after >= before, "scale_actors: cannot read the resident set size");
  expect(live == n && counters.spawned == n && counters.stopped == n && counters.failed == 0,
         "scale_actors: expected " + std::to_string(n) +
             " live actors, got live=" + std::to_string(live) + " " + describe(counters));
  return {static_cast<double>(after - before) / static_cast<double>(n),
          seconds_between(t0, t1) * 1e9 / static_cast<double>(n)};
}

// ---- cores: independent pairs ----------------------------------------------------------------
// P pairs of actors, each pair bouncing a ball M round trips, no pair ever talking to another:
// the work divides perfectly, so round trips/s should grow with the workers. Run once with one
// worker and once with one per hardware thread (--workers is ignored); the third row is the
// ratio. On a larger machine the same command shows the curve's far end.

struct pair_ball {
  std::uint64_t left;
};
struct pair_meet;

class pair_player {
 public:
  explicit pair_player(countdown* done) : done_(done) {}
  void on(pair_meet m);
  void on(pair_ball b) {
    if (b.left == 0) {
      done_->arrive();
    } else {
      peer_->send(pair_ball{b.left - 1});
    }
  }

 private:
  countdown* done_;
  std::unique_ptr<troupe::ref<pair_player>> peer_;
};

struct pair_meet {
  troupe::ref<pair_player> peer;
};

void pair_player::on(pair_meet m) {
  peer_ = std::make_unique<troupe::ref<pair_player>>(std::move(m.peer));
}

std::size_t hardware_threads() {
  return std::max<std::size_t>(1, std::thread::hardware_concurrency());
}
// Enough pairs that every worker has several (stealing can balance them) on any machine.
std::uint64_t pair_count() {
  return 4 * hardware_threads();
}
std::uint64_t pair_trips(const config& c) {  // round trips per pair
  return sized(c, 20'000, 500'000);
}

double pairs_with(const config& c, std::size_t workers) {
  const std::uint64_t pairs = pair_count();
  const std::uint64_t trips = pair_trips(c);
  countdown done(pairs);
  troupe::runtime_options o = options_for(c);
  o.workers = workers;
  troupe::runtime rt{o};
  std::vector<troupe::ref<pair_player>> firsts;
  for (std::uint64_t p = 0; p < pairs; ++p) {
    auto a = rt.spawn<pair_player>(&done);
    auto b = rt.spawn<pair_player>(&done);
    a.send(pair_meet{b});
    b.send(pair_meet{a});
    firsts.push_back(a);
  }
  const auto t0 = clock::now();
  for (const auto& a : firsts) a.send(pair_ball{2 * trips - 1});
  expect_done(done.wait_for(run_timeout), "scale_pairs");
  const auto t1 = clock::now();
  firsts.clear();
  rt.shutdown();
  expect_all_handled(rt.counters(), pairs * (2 * trips + 2), "scale_pairs");
  return static_cast<double>(pairs * trips) / seconds_between(t0, t1);
}

std::vector<double> run_scale_pairs(const config& c) {
  const double one = pairs_with(c, 1);
  const double all = pairs_with(c, hardware_threads());
  return {one, all, all / one};
}

// ---- work queue: consumers grow --------------------------------------------------------------

struct scale_item {
  std::uint64_t n;
};

struct queue_state {
  std::atomic<std::uint64_t> remaining{0};
  done_signal done;
};

struct scale_drainer {
  queue_state* state;
  std::uint64_t sum = 0;
  void on(const scale_item& i) {
    sum += i.n;
    if (state->remaining.fetch_sub(1, std::memory_order_acq_rel) == 1) state->done.set();
  }
};

constexpr int queue_consumers[] = {1, 4, 64};

std::uint64_t queue_items(const config& c) {
  return sized(c, 20'000, 2'000'000);
}

double queue_with(const config& c, int consumers) {
  const std::uint64_t items = queue_items(c);
  queue_state state;
  state.remaining = items;
  troupe::runtime rt{options_for(c)};
  auto q = rt.make_queue<scale_item>({.name = "scale"});
  for (int i = 0; i < consumers; ++i) q.add_consumer(rt.spawn<scale_drainer>(&state));
  const auto t0 = clock::now();
  for (std::uint64_t i = 0; i < items; ++i) q.push(scale_item{i});
  expect_done(state.done.wait_for(run_timeout), "scale_queue");
  const auto t1 = clock::now();
  rt.shutdown();
  expect_all_handled(rt.counters(), items, "scale_queue");
  return static_cast<double>(items) / seconds_between(t0, t1);
}

std::vector<double> run_scale_queue(const config& c) {
  std::vector<double> out;
  for (int n : queue_consumers) out.push_back(queue_with(c, n));
  return out;
}

}  // namespace

void add_scale_workloads(std::vector<workload>& out) {
  {
    workload w{"scale_broadcast",
               "scale",
               "deliveries/s",
               false,
               false,
               [](const config& c) {
                 return std::to_string(broadcast_deliveries(c)) +
                        " deliveries per row: events = deliveries / subscribers, one topic with "
                        "10, 100, 1000, 10000 subscribers";
               },
               {}};
    w.rows = {"scale_broadcast_10", "scale_broadcast_100", "scale_broadcast_1k",
              "scale_broadcast_10k"};
    w.run_rows = run_scale_broadcast;
    out.push_back(std::move(w));
  }
  {
    workload w{"scale_subscriptions",
               "scale",
               "ns/event",
               true,
               false,
               [](const config& c) {
                 return std::to_string(subscription_events(c)) + " events, each to one of " +
                        std::to_string(subscription_count(c, 10)) + ", " +
                        std::to_string(subscription_count(c, 10'000)) + ", " +
                        std::to_string(subscription_count(c, 1'000'000)) +
                        " wildcard subscriptions on distinct subjects";
               },
               {}};
    w.rows = {"scale_subscriptions_10", "scale_subscriptions_10k", "scale_subscriptions_1m"};
    w.run_rows = run_scale_subscriptions;
    out.push_back(std::move(w));
  }
  for (const std::uint64_t full : {std::uint64_t{1'000'000}, std::uint64_t{10'000'000}}) {
    const std::string tag = full == 1'000'000 ? "1m" : "10m";
    workload w{"scale_actors_" + tag,
               "scale",
               "bytes/actor",
               true,
               true,
               [full](const config& c) {
                 return std::to_string(actor_count(c, full)) +
                        " idle actors spawned: RSS growth and spawn-to-started time per actor";
               },
               {}};
    w.rows = {"scale_actors_" + tag + "_bytes", "scale_actors_" + tag + "_spawn"};
    w.row_units = {"bytes/actor", "ns/actor"};
    w.run_rows = [full](const config& c) { return actors_at(c, full); };
    out.push_back(std::move(w));
  }
  {
    workload w{"scale_pairs",
               "scale",
               "round trips/s",
               false,
               false,
               [](const config& c) {
                 return std::to_string(pair_count()) + " independent pairs x " +
                        std::to_string(pair_trips(c)) + " round trips, 1 worker and " +
                        std::to_string(hardware_threads()) + " workers";
               },
               {}};
    w.rows = {"scale_pairs_1w", "scale_pairs_all", "scale_pairs_speedup"};
    w.row_units = {"round trips/s", "round trips/s", "x"};
    w.run_rows = run_scale_pairs;
    out.push_back(std::move(w));
  }
  {
    workload w{"scale_queue",
               "scale",
               "items/s",
               false,
               false,
               [](const config& c) {
                 return std::to_string(queue_items(c)) + " items, 1, 4, 64 competing consumers";
               },
               {}};
    w.rows = {"scale_queue_1", "scale_queue_4", "scale_queue_64"};
    w.run_rows = run_scale_queue;
    out.push_back(std::move(w));
  }
}

}  // namespace troupe_bench
