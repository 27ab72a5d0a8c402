// Tests of troupe::simulation (include/troupe/simulation.hpp): unchanged actors on one thread,
// seeded schedules, virtual time, the trace and its hash, and faults between nodes.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <troupe/simulation.hpp>

#include "support.hpp"

using namespace std::chrono_literals;

namespace {

// ---- actors written for the threaded runtime; nothing here knows about the simulation ----

struct ping {
  int n;
};
struct get_count {};

class counter {
 public:
  void on(ping) { ++count_; }
  int on(get_count) const { return count_; }

 private:
  int count_ = 0;
};

// Collects (sender, sequence) pairs in arrival order.
struct tagged {
  int sender;
  int seq;
};
struct get_log {};
class collector {
 public:
  void on(tagged t) { log_.push_back(t); }
  std::vector<tagged> on(get_log) const { return log_; }

 private:
  std::vector<tagged> log_;
};

struct go {};
class producer {
 public:
  producer(int id, troupe::ref<collector> to, int count) : id_(id), to_(std::move(to)), n_(count) {}
  void on(go) {
    for (int i = 0; i < n_; ++i) to_.send(tagged{id_, i});
  }

 private:
  int id_;
  troupe::ref<collector> to_;
  int n_;
};

// Sleeps a virtual minute in a task handler, then answers.
struct nap {
  std::chrono::milliseconds length;
};
class sleeper {
 public:
  explicit sleeper(troupe::context& ctx) : ctx_(ctx) {}
  troupe::task<std::int64_t> on(nap n) {
    const auto before = ctx_.now();
    co_await ctx_.sleep_for(n.length);
    co_return std::chrono::duration_cast<std::chrono::milliseconds>(ctx_.now() - before).count();
  }

 private:
  troupe::context& ctx_;
};

// Never answers (keeps the promise until it stops): asks to it time out.
struct never {};
class black_hole {
 public:
  void on(never, troupe::promise<int> p) { kept_.push_back(std::move(p)); }

 private:
  std::vector<troupe::promise<int>> kept_;
};

// Asks another actor from a task handler and reports what came back.
struct relay_request {
  std::chrono::milliseconds timeout;
};
class relay {
 public:
  explicit relay(troupe::ref<black_hole> target) : target_(std::move(target)) {}
  troupe::task<std::string> on(relay_request r) {
    try {
      co_await target_.ask(never{}, r.timeout);
      co_return "reply";
    } catch (const troupe::error& e) {
      co_return e.code() == troupe::errc::timeout ? "timeout" : "other";
    }
  }

 private:
  troupe::ref<black_hole> target_;
};

std::vector<std::pair<int, int>> arrival_order(std::uint64_t seed) {
  troupe::simulation sim({.seed = seed});
  auto& rt = sim.runtime();
  auto c = rt.spawn<collector>();
  std::vector<troupe::ref<producer>> ps;
  for (int i = 0; i < 4; ++i) ps.push_back(rt.spawn<producer>(i, c, 5));
  for (auto& p : ps) p.send(go{});
  sim.run();
  std::vector<std::pair<int, int>> out;
  for (const tagged& t : c.ask(get_log{}).get()) out.emplace_back(t.sender, t.seq);
  return out;
}

}  // namespace

TEST_CASE("simulation: unchanged actors run on the calling thread; get() drives the run") {
  troupe::simulation sim({.seed = 1});
  troupe::runtime& rt = sim.runtime();
  REQUIRE(rt.worker_count() == 1);
  auto c = rt.spawn<counter>();
  for (int i = 0; i < 100; ++i) c.send(ping{i});
  REQUIRE(sim.events() == 0);  // nothing runs until the simulation is driven
  REQUIRE(c.ask(get_count{}).get() == 100);
  REQUIRE(sim.events() > 0);
  sim.run();
  const auto counters = rt.counters();
  test::require_accounted(counters);
  REQUIRE(counters.handled == 100 + 1 + 1);  // the pings, the ask and its reply
}

TEST_CASE("simulation: per-pair FIFO holds and the seed picks the interleaving") {
  const auto a = arrival_order(7);
  REQUIRE(a.size() == 20);
  // Per pair FIFO: each producer's messages arrive in the order it sent them.
  std::map<int, int> next;
  for (const auto& [sender, seq] : a) REQUIRE(seq == next[sender]++);
  // Same seed, same order.
  REQUIRE(arrival_order(7) == a);
  // Different seeds: different interleavings (20 distinct orders out of 20 seeds is not needed;
  // several is enough, and with 4 senders one order repeating 20 times is impossible here).
  std::set<std::vector<std::pair<int, int>>> orders;
  for (std::uint64_t s = 1; s <= 20; ++s) orders.insert(arrival_order(s));
  REQUIRE(orders.size() >= 5);
}

TEST_CASE("simulation: virtual time: a minute of sleep and timeouts runs at once") {
  troupe::simulation sim({.seed = 3});
  auto& rt = sim.runtime();
  auto s = rt.spawn<sleeper>();
  const auto wall = std::chrono::steady_clock::now();
  REQUIRE(s.ask(nap{60s}, 120s).get() == 60000);
  REQUIRE(sim.elapsed() >= 60s);
  REQUIRE(sim.elapsed() < 61s);

  // An ask nobody answers times out after exactly its timeout, in virtual time.
  auto hole = rt.spawn<black_hole>();
  const auto before = sim.elapsed();
  try {
    hole.ask(never{}, 30s).get();
    FAIL("the ask should have timed out");
  } catch (const troupe::error& e) {
    REQUIRE(e.code() == troupe::errc::timeout);
  }
  REQUIRE(sim.elapsed() - before == 30s);

  // The same from inside an actor (co_await).
  auto r = rt.spawn<relay>(hole);
  REQUIRE(r.ask(relay_request{10s}, 60s).get() == "timeout");

  // send_after lands at its time.
  auto c = rt.spawn<counter>();
  rt.send_after(5s, c, ping{1});
  sim.run_for(4s);
  REQUIRE(c.ask(get_count{}).get() == 0);
  sim.run_for(2s);
  REQUIRE(c.ask(get_count{}).get() == 1);
  // Generous: all of this is virtual; the real time is a tiny fraction of the two minutes.
  REQUIRE(std::chrono::steady_clock::now() - wall < 30s);
  sim.run();
  test::require_accounted(rt.counters());
}

TEST_CASE("simulation: the trace and its hash") {
  auto run = [](std::uint64_t seed) {
    troupe::simulation sim({.seed = seed, .trace = true});
    auto& rt = sim.runtime();
    auto c = rt.spawn<collector>();
    auto p1 = rt.spawn<producer>(1, c, 3);
    auto p2 = rt.spawn<producer>(2, c, 3);
    p1.send(go{});
    p2.send(go{});
    sim.run();
    return std::make_pair(sim.trace_hash(), sim.trace());
  };
  const auto [h1, lines1] = run(11);
  const auto [h2, lines2] = run(11);
  REQUIRE(h1 == h2);
  REQUIRE(lines1 == lines2);
  REQUIRE_FALSE(lines1.empty());
  // Every handled message has its line.
  const auto handled = std::count_if(lines1.begin(), lines1.end(), [](const std::string& l) {
    return l.find("handle ") != std::string::npos;
  });
  REQUIRE(handled == 2 + 6);
  bool differs = false;
  for (std::uint64_t s = 12; s < 20 && !differs; ++s) differs = run(s).first != h1;
  REQUIRE(differs);

  troupe::simulation sim({.seed = 5, .trace = true});
  auto c = sim.runtime().spawn<counter>();
  c.send(ping{1});
  sim.run();
  const std::string path = "simulation_test_trace.txt";
  sim.write_trace(path);
  std::ifstream in(path);
  std::string first;
  std::getline(in, first);
  REQUIRE(first == sim.trace().front());
}

// ---- faults between nodes ----

namespace {

struct fault_observer {
  std::vector<test::recorded_dead_letter> dead;
  std::vector<std::string> failures;
  troupe::runtime_options options() {
    troupe::runtime_options o;
    o.on_dead_letter = [this](const troupe::dead_letter& d) {
      dead.push_back({d.target.id(), std::string(d.message_type), d.reason, d.detail});
    };
    o.on_failure = [this](const troupe::address&, std::string_view what) {
      failures.emplace_back(what);
    };
    return o;
  }
  std::size_t count(troupe::dead_letter_reason r) const {
    return static_cast<std::size_t>(
        std::count_if(dead.begin(), dead.end(),
                      [r](const test::recorded_dead_letter& d) { return d.reason == r; }));
  }
};

std::size_t count_kind(const std::vector<troupe::fault_record>& faults, troupe::fault_kind k) {
  return static_cast<std::size_t>(std::count_if(
      faults.begin(), faults.end(), [k](const troupe::fault_record& f) { return f.kind == k; }));
}

}  // namespace

TEST_CASE("simulation faults: drop between nodes, never within one") {
  fault_observer obs;
  troupe::simulation sim({.seed = 9, .faults = {.drop = 1.0}, .runtime = obs.options()});
  auto& rt = sim.runtime();
  auto far = sim.spawn_on<collector>("b");
  auto near = sim.spawn_on<collector>("a");
  auto p1 = sim.spawn_on<producer>("a", 1, far, 10);
  auto p2 = sim.spawn_on<producer>("a", 2, near, 10);
  p1.send(go{});  // from outside any actor: never faulted
  p2.send(go{});
  sim.run();
  REQUIRE(far.ask(get_log{}).get().empty());
  REQUIRE(near.ask(get_log{}).get().size() == 10);
  REQUIRE(obs.count(troupe::dead_letter_reason::dropped) == 10);
  REQUIRE(obs.dead.front().detail == "dropped by simulation");
  REQUIRE(to_string(troupe::dead_letter_reason::dropped) == "dropped by simulation");
  REQUIRE(count_kind(sim.faults(), troupe::fault_kind::drop) == 10);
  REQUIRE(sim.node_of(far) == "b");
  sim.run();
  test::require_accounted(rt.counters());
}

TEST_CASE("simulation faults: partition and heal") {
  fault_observer obs;
  troupe::simulation sim({.seed = 4, .runtime = obs.options()});
  auto c = sim.spawn_on<collector>("b");
  auto p = sim.spawn_on<producer>("a", 1, c, 3);
  sim.partition("a", "b");
  p.send(go{});
  sim.run();
  REQUIRE(c.ask(get_log{}).get().empty());
  REQUIRE(obs.count(troupe::dead_letter_reason::dropped) == 3);
  REQUIRE(count_kind(sim.faults(), troupe::fault_kind::partition) == 3);
  sim.heal("a", "b");
  p.send(go{});
  sim.run();
  REQUIRE(c.ask(get_log{}).get().size() == 3);
  test::require_accounted(sim.runtime().counters());
}

TEST_CASE("simulation faults: duplicates are delivered and counted") {
  troupe::simulation sim({.seed = 5, .faults = {.duplicate = 1.0}});
  auto c = sim.spawn_on<collector>("b");
  auto p = sim.spawn_on<producer>("a", 1, c, 4);
  p.send(go{});
  sim.run();
  const auto log = c.ask(get_log{}).get();
  REQUIRE(log.size() == 8);
  for (std::size_t i = 0; i < log.size(); ++i) REQUIRE(log[i].seq == static_cast<int>(i / 2));
  REQUIRE(count_kind(sim.faults(), troupe::fault_kind::duplicate) == 4);
  const auto counters = sim.runtime().counters();
  test::require_accounted(counters);
}

TEST_CASE("simulation faults: delays keep a pair FIFO unless reordering is allowed") {
  const troupe::link_faults slow{.delay = 1.0, .min_delay = 10ms, .max_delay = 50ms};
  {
    troupe::simulation sim({.seed = 6, .faults = slow});
    auto c = sim.spawn_on<collector>("b");
    auto p = sim.spawn_on<producer>("a", 1, c, 20);
    p.send(go{});
    sim.run();
    const auto log = c.ask(get_log{}).get();
    REQUIRE(log.size() == 20);
    for (std::size_t i = 0; i < log.size(); ++i) REQUIRE(log[i].seq == static_cast<int>(i));
    REQUIRE(sim.elapsed() >= 10ms);
    REQUIRE(count_kind(sim.faults(), troupe::fault_kind::delay) == 20);
  }
  troupe::link_faults shuffled = slow;
  shuffled.reorder = true;
  bool reordered = false;
  for (std::uint64_t seed = 1; seed <= 5 && !reordered; ++seed) {
    troupe::simulation sim({.seed = seed});
    sim.link("a", "b", shuffled);  // only this direction of this link
    auto c = sim.spawn_on<collector>("b");
    auto p = sim.spawn_on<producer>("a", 1, c, 20);
    p.send(go{});
    sim.run();
    const auto log = c.ask(get_log{}).get();
    REQUIRE(log.size() == 20);
    for (std::size_t i = 1; i < log.size(); ++i) reordered |= log[i].seq < log[i - 1].seq;
  }
  REQUIRE(reordered);
}

TEST_CASE("simulation faults: a lost request times out, as over a network") {
  fault_observer obs;
  troupe::simulation sim({.seed = 2, .faults = {.drop = 1.0}, .runtime = obs.options()});
  auto hole = sim.spawn_on<black_hole>("b");
  auto c = sim.spawn_on<counter>("b");
  auto r = sim.spawn_on<relay>("a", hole);
  REQUIRE(r.ask(relay_request{2s}).get() == "timeout");
  REQUIRE(sim.elapsed() >= 2s);
  REQUIRE(obs.count(troupe::dead_letter_reason::dropped) == 1);
  (void)c;
  sim.run();
  test::require_accounted(sim.runtime().counters());
}

TEST_CASE("simulation faults: a crash is a failure its supervisor handles") {
  fault_observer obs;
  std::vector<troupe::supervision_event> events;
  troupe::runtime_options o = obs.options();
  o.on_supervision = [&events](const troupe::supervision_event& e) { events.push_back(e); };
  troupe::simulation sim({.seed = 8, .runtime = o});
  auto& rt = sim.runtime();
  auto sup = sim.spawn_on<troupe::supervisor>(
      "svc", troupe::one_for_one{.backoff = {.min = 100ms, .max = 1s}});
  auto child = troupe::start_child<counter>(sup, {.name = "c"});
  REQUIRE(sim.node_of(child) == "svc");  // follows its supervisor
  child.send(ping{1});
  sim.crash(child, "power cut");
  child.send(ping{2});
  sim.run();
  REQUIRE(obs.failures.size() == 1);
  REQUIRE(obs.failures.front() == "power cut");
  // Restarted after the backoff, on virtual time; the message after the crash reached the new
  // instance.
  REQUIRE(sim.elapsed() >= 100ms);
  REQUIRE(child.ask(get_count{}).get() == 1);
  REQUIRE(std::count_if(events.begin(), events.end(), [](const troupe::supervision_event& e) {
            return e.what == troupe::supervision_event::kind::restarted;
          }) == 1);
  REQUIRE(count_kind(sim.faults(), troupe::fault_kind::crash) == 1);
  REQUIRE(sim.crash_node("svc") == 1);  // the supervisor itself (children follow, not assigned)
  sim.run();
  test::require_accounted(rt.counters());
}

namespace {
struct tick {};
struct get_ticks {};
// Re-arms a one-second timer forever.
class metronome {
 public:
  explicit metronome(troupe::context& ctx) : ctx_(ctx) {}
  void on_start() { ctx_.send_after(1s, ctx_.self_as<metronome>(), tick{}); }
  void on(tick) {
    ++ticks_;
    ctx_.send_after(1s, ctx_.self_as<metronome>(), tick{});
  }
  int on(get_ticks) const { return ticks_; }

 private:
  troupe::context& ctx_;
  int ticks_ = 0;
};
}  // namespace

TEST_CASE("simulation: a timer that re-arms forever: run_for bounds it, run() refuses it") {
  troupe::simulation sim({.seed = 1, .max_events = 10'000});
  auto m = sim.runtime().spawn<metronome>();
  sim.run_for(10s);
  REQUIRE(sim.elapsed() == 10s);
  REQUIRE(m.ask(get_ticks{}).get() == 10);
  REQUIRE_THROWS_AS(sim.run(), troupe::error);
  REQUIRE(sim.run_until([&] { return sim.elapsed() >= 20s; }));
  // The destructor shuts down: the drain runs on virtual time up to shutdown_timeout, then stops
  // the actor; the last delayed tick is dead-lettered, every message accounted for.
}

TEST_CASE("simulation faults: random crashes are replayable and accounted for") {
  auto run = [](std::uint64_t seed) {
    fault_observer obs;
    troupe::simulation sim({.seed = seed, .crash = 0.2, .runtime = obs.options()});
    auto sup = sim.runtime().spawn<troupe::supervisor>(
        troupe::one_for_one{.max_restarts = 1000, .within = 1000ms});
    auto c = troupe::start_child<collector>(sup, {.name = "c"});
    sim.assign(c, "svc");  // the child crashes at random, its supervisor (no node) never
    auto p = sim.spawn_on<producer>("client", 1, c, 30);
    p.send(go{});
    sim.run();
    const std::size_t crashes = count_kind(sim.faults(), troupe::fault_kind::crash);
    REQUIRE(obs.failures.size() == crashes);
    sim.run();
    test::require_accounted(sim.runtime().counters());
    return std::make_pair(crashes, sim.trace_hash());
  };
  std::size_t total = 0;
  for (std::uint64_t seed = 1; seed <= 5; ++seed) {
    const auto a = run(seed);
    REQUIRE(run(seed) == a);
    total += a.first;
  }
  REQUIRE(total > 0);
}
