// Tests of troupe::simulation (include/troupe/simulation.hpp): unchanged actors on one thread,
// seeded schedules, virtual time, the trace and its hash, and faults between nodes.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <unistd.h>
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
  // Into a fresh directory under the system's temp directory (TMPDIR), never the working one.
  std::string dir_template =
      (std::filesystem::temp_directory_path() / "troupe_simulation_test_XXXXXX").string();
  REQUIRE(::mkdtemp(dir_template.data()) != nullptr);
  const std::filesystem::path dir(dir_template);
  const std::string path = (dir / "trace.txt").string();
  sim.write_trace(path);
  {
    std::ifstream in(path);
    std::string first;
    std::getline(in, first);
    REQUIRE(first == sim.trace().front());
  }
  std::filesystem::remove_all(dir);
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

namespace {
struct slot_item {
  int seq;
};
struct get_items {};
// A bounded mailbox: senders that wait for room reserve a slot first (send_when_ready).
class narrow_sink {
 public:
  static constexpr troupe::mailbox_options mailbox{.capacity = 2};
  void on(slot_item i) { seen_.push_back(i.seq); }
  std::vector<int> on(get_items) const { return seen_; }

 private:
  std::vector<int> seen_;
};
class patient_sender {
 public:
  patient_sender(troupe::ref<narrow_sink> to, int n) : to_(std::move(to)), n_(n) {}
  troupe::task<void> on(go) {
    for (int i = 0; i < n_; ++i) co_await to_.send_when_ready(slot_item{i});
  }

 private:
  troupe::ref<narrow_sink> to_;
  int n_;
};
}  // namespace

TEST_CASE("simulation faults: send_when_ready's reserved sends cross the network like any other") {
  {
    troupe::simulation sim(
        {.seed = 3, .faults = {.delay = 1.0, .min_delay = 5ms, .max_delay = 5ms}});
    auto sink = sim.spawn_on<narrow_sink>("b");
    auto sender = sim.spawn_on<patient_sender>("a", sink, 10);
    sender.send(go{});
    sim.run();
    std::vector<int> expected(10);
    for (int i = 0; i < 10; ++i) expected[static_cast<std::size_t>(i)] = i;
    REQUIRE(sink.ask(get_items{}).get() == expected);
    // Each reserved send was delayed by the link (it used to skip the simulation's network).
    REQUIRE(count_kind(sim.faults(), troupe::fault_kind::delay) == 10);
    REQUIRE(sim.elapsed() >= 5ms);
    sim.run();
    test::require_accounted(sim.runtime().counters());
  }
  {
    fault_observer obs;
    troupe::simulation sim({.seed = 4, .runtime = obs.options()});
    auto sink = sim.spawn_on<narrow_sink>("b");
    auto sender = sim.spawn_on<patient_sender>("a", sink, 5);
    sim.partition("a", "b");
    sender.send(go{});
    sim.run();
    REQUIRE(sink.ask(get_items{}).get().empty());
    REQUIRE(obs.count(troupe::dead_letter_reason::dropped) == 5);
    // Each dropped message gave its reserved slot back: after the heal all five get through.
    sim.heal();
    sender.send(go{});
    sim.run();
    REQUIRE(sink.ask(get_items{}).get().size() == 5);
    test::require_accounted(sim.runtime().counters());
  }
}

namespace {
// Records every trace event's point, message type and time.
struct recording_hook final : troupe::trace_hook {
  struct entry {
    troupe::trace_point point;
    std::string message_type;
    std::chrono::steady_clock::time_point time;
  };
  void on_event(const troupe::trace_event& t) noexcept override {
    try {
      events.push_back({t.point, std::string(t.message_type), t.time});
    } catch (...) {
    }
  }
  std::vector<entry> events;
};
}  // namespace

TEST_CASE("simulation: metrics and trace timestamps are virtual time") {
  auto hook = std::make_shared<recording_hook>();
  troupe::simulation_options o{.seed = 2,
                               .faults = {.delay = 1.0, .min_delay = 7ms, .max_delay = 7ms}};
  o.runtime.metrics = true;
  o.runtime.trace = hook;
  troupe::simulation sim(o);
  const auto start = sim.now();
  auto c = sim.spawn_on<collector>("b");
  auto p = sim.spawn_on<producer>("a", 1, c, 3);
  sim.run_for(1s);  // a virtual second passes before the first message
  p.send(go{});
  sim.run();
  const auto end = sim.now();
  REQUIRE(end - start >= 1s + 7ms);
  // Every event carries the simulation's clock, not the machine's: between its start and now.
  REQUIRE_FALSE(hook->events.empty());
  for (const auto& e : hook->events) {
    REQUIRE(e.time >= start);
    REQUIRE(e.time <= end);
  }
  // Each tagged message waited exactly the link's 7 ms between its send and its handler.
  const auto metrics = sim.runtime().metrics();
  bool found = false;
  for (const auto& m : metrics.messages) {
    if (m.message_type.find("tagged") == std::string::npos) continue;
    found = true;
    REQUIRE(m.queue_wait.count() == 3);
    REQUIRE(m.queue_wait.min() >= 7ms);
    REQUIRE(m.queue_wait.max() <= 8ms);  // the histogram's bucket precision
  }
  REQUIRE(found);
}

namespace {
struct question {};
class oracle {
 public:
  int on(question) { return ++asked_; }

 private:
  int asked_ = 0;
};
// Asks the oracle from an actor (so the reply crosses from the oracle's node to this one's).
struct consult {
  std::chrono::milliseconds timeout;
};
class client {
 public:
  client(troupe::context& ctx, troupe::ref<oracle> o) : ctx_(ctx), oracle_(std::move(o)) {}
  troupe::task<std::string> on(consult c) {
    const auto before = ctx_.now();
    try {
      const int n = co_await oracle_.ask(question{}, c.timeout);
      const auto waited =
          std::chrono::duration_cast<std::chrono::milliseconds>(ctx_.now() - before).count();
      co_return "answer " + std::to_string(n) + " after " + std::to_string(waited) + " ms";
    } catch (const troupe::error& e) {
      co_return e.code() == troupe::errc::timeout ? "timeout" : "other";
    }
  }

 private:
  troupe::context& ctx_;
  troupe::ref<oracle> oracle_;
};
}  // namespace

TEST_CASE("simulation faults: replies crossing nodes are dropped, delayed and duplicated") {
  SECTION("dropped: the request arrives, the asker times out") {
    fault_observer obs;
    troupe::simulation sim({.seed = 1, .runtime = obs.options()});
    sim.link("b", "a", {.drop = 1.0});  // only the way back
    auto o = sim.spawn_on<oracle>("b");
    auto c = sim.spawn_on<client>("a", o);
    REQUIRE(c.ask(consult{2s}).get() == "timeout");
    REQUIRE(o.ask(question{}).get() == 2);  // the lost request was handled (and from outside
                                            // the way back is never faulted)
    REQUIRE(obs.count(troupe::dead_letter_reason::dropped) == 1);
    REQUIRE(count_kind(sim.faults(), troupe::fault_kind::drop) == 1);
    REQUIRE(sim.faults().front().text.find("reply") == 0);
    sim.run();
    test::require_accounted(sim.runtime().counters());
  }
  SECTION("delayed: it arrives late, or after the timeout as an expired dead letter") {
    fault_observer obs;
    troupe::simulation sim({.seed = 1, .runtime = obs.options()});
    sim.link("b", "a", {.delay = 1.0, .min_delay = 40ms, .max_delay = 40ms});
    auto o = sim.spawn_on<oracle>("b");
    auto c = sim.spawn_on<client>("a", o);
    REQUIRE(c.ask(consult{1s}).get() == "answer 1 after 40 ms");
    REQUIRE(c.ask(consult{10ms}).get() == "timeout");
    sim.run();
    REQUIRE(obs.count(troupe::dead_letter_reason::expired) == 1);
    REQUIRE(count_kind(sim.faults(), troupe::fault_kind::delay) == 2);
    test::require_accounted(sim.runtime().counters());
  }
  SECTION("duplicated: the copy finds the ask complete") {
    fault_observer obs;
    troupe::simulation sim({.seed = 1, .runtime = obs.options()});
    sim.link("b", "a", {.duplicate = 1.0});
    auto o = sim.spawn_on<oracle>("b");
    auto c = sim.spawn_on<client>("a", o);
    REQUIRE(c.ask(consult{1s}).get() == "answer 1 after 0 ms");
    sim.run();
    REQUIRE(obs.count(troupe::dead_letter_reason::expired) == 1);
    REQUIRE(count_kind(sim.faults(), troupe::fault_kind::duplicate) == 1);
    test::require_accounted(sim.runtime().counters());
  }
}

namespace {
// Sends `n` pings to a counter each time it is told to go.
class pinger {
 public:
  pinger(troupe::ref<counter> to, int n) : to_(std::move(to)), n_(n) {}
  void on(go) {
    for (int i = 0; i < n_; ++i) to_.send(ping{i});
  }

 private:
  troupe::ref<counter> to_;
  int n_;
};
}  // namespace

TEST_CASE("simulation: a crashed node is down until it restarts; supervisors and hooks respawn") {
  fault_observer obs;
  troupe::simulation sim({.seed = 12, .runtime = obs.options()});
  auto& rt = sim.runtime();
  // A supervised counter on "db" (its supervisor elsewhere), an unsupervised one on "db", and a
  // client on "app" that pings the supervised one.
  auto sup = rt.spawn<troupe::supervisor>(troupe::one_for_one{});
  auto kept = troupe::start_child<counter>(sup, {.name = "kept"});
  sim.assign(kept, "db");
  auto lone = sim.spawn_on<counter>("db");
  auto app = sim.spawn_on<pinger>("app", kept, 3);
  app.send(go{});
  sim.run();
  REQUIRE(kept.ask(get_count{}).get() == 3);

  troupe::ref<counter> respawned;
  int hook_runs = 0;
  sim.on_restart("db", [&] {
    ++hook_runs;
    respawned = sim.spawn_on<counter>("db");  // what had no supervisor comes back fresh
  });

  REQUIRE(sim.crash_node("db") == 2);
  REQUIRE(sim.node_down("db"));
  sim.run();
  REQUIRE(obs.failures.size() == 2);  // both crashed; the supervisor restarts its child...
  // ...but not while its node is down: nothing there runs (an ask cannot complete).
  REQUIRE_THROWS_AS(kept.ask(get_count{}).get(), troupe::error);
  app.send(go{});  // lost on the way to the down node
  sim.run();
  REQUIRE(obs.count(troupe::dead_letter_reason::dropped) == 3);
  REQUIRE(count_kind(sim.faults(), troupe::fault_kind::crash) == 2 + 3);

  REQUIRE(sim.restart_node("db") == 1);
  REQUIRE_FALSE(sim.node_down("db"));
  REQUIRE(sim.restart_node("db") == 0);  // it was up
  REQUIRE(hook_runs == 1);
  app.send(go{});
  sim.run();
  // The restarted instance began afresh (the crash lost its count), kept its mailbox and its
  // refs: the ask queued while the node was down is answered too.
  REQUIRE(kept.ask(get_count{}).get() == 3);
  REQUIRE(respawned.ask(get_count{}).get() == 0);
  REQUIRE_THROWS_AS(lone.ask(get_count{}).get(), troupe::error);  // unsupervised: gone for good
  sim.run();
  test::require_accounted(rt.counters());
}
