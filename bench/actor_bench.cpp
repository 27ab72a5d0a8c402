// troupe-bench: the actor workloads of DESIGN §5 — pingpong, fanin, spawn, idle_actor_bytes.
//
// Every run builds its own runtime, times only the work the workload defines (not the
// runtime's construction or shutdown), then shuts the runtime down and checks its counters:
// every message sent was handled, none was dead-lettered or rejected, no actor failed.

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <troupe/troupe.hpp>

#include "bench.hpp"
#include "runtime_checks.hpp"

namespace troupe_bench {
namespace {

// ---- pingpong --------------------------------------------------------------------------------
// Two actors of one class bounce a `ball` whose counter says how many hops are left; the actor
// that receives the ball with 0 left signals the end. 2N hops = N round trips.

struct ball {
  std::uint64_t left;
};
struct serve {
  std::uint64_t hops;
};
struct meet;  // carries the peer's ref; defined once `player` is complete

class player {
 public:
  explicit player(done_signal* done) : done_(done) {}
  void on(meet m);
  void on(serve s) { peer_->send(ball{s.hops - 1}); }
  void on(ball b) {
    if (b.left == 0) {
      done_->set();
    } else {
      peer_->send(ball{b.left - 1});
    }
  }

 private:
  done_signal* done_;
  // Behind a pointer so that this compiles with the core of commit d47245d too, where ref<A>
  // checked the Actor concept (std::is_abstract_v<A>) in its class body and so could not be a
  // member of A itself. (The cost, one more load per send, does not show.)
  std::unique_ptr<troupe::ref<player>> peer_;
};

struct meet {
  troupe::ref<player> peer;
};

void player::on(meet m) {
  peer_ = std::make_unique<troupe::ref<player>>(std::move(m.peer));
}

std::uint64_t pingpong_trips(const config& c) {
  return pingpong_size(c);
}

double run_pingpong(const config& c) {
  const std::uint64_t trips = pingpong_trips(c);
  done_signal done;
  troupe::runtime rt{options_for(c)};
  auto a = rt.spawn<player>(&done);
  auto b = rt.spawn<player>(&done);
  a.send(meet{b});
  b.send(meet{a});
  const auto t0 = clock::now();
  a.send(serve{2 * trips});
  expect_done(done.wait_for(run_timeout), "pingpong");
  const auto t1 = clock::now();
  rt.shutdown();
  expect_all_handled(rt.counters(), 2 * trips + 3, "pingpong");
  return seconds_between(t0, t1) * 1e9 / static_cast<double>(trips);
}

// ---- fanin -----------------------------------------------------------------------------------
// S sender actors, on a `go` from main, each send M messages in one handler to one receiver,
// which counts them. Timed from the first `go` until the receiver has counted S × M.

struct item {
  std::uint64_t value;
};
struct go {};

struct fanin_result {
  std::uint64_t count = 0;
  std::uint64_t sum = 0;
};

class sink {
 public:
  sink(std::uint64_t expected, fanin_result* out, done_signal* done)
      : expected_(expected), out_(out), done_(done) {}
  void on(item i) {
    sum_ += i.value;
    if (++count_ == expected_) {
      out_->count = count_;
      out_->sum = sum_;
      done_->set();
    }
  }

 private:
  std::uint64_t expected_;
  fanin_result* out_;
  done_signal* done_;
  std::uint64_t count_ = 0;
  std::uint64_t sum_ = 0;
};

class source {
 public:
  source(troupe::ref<sink> target, std::uint64_t count)
      : target_(std::move(target)), count_(count) {}
  void on(go) {
    for (std::uint64_t i = 0; i < count_; ++i) target_.send(item{i});
  }

 private:
  troupe::ref<sink> target_;
  std::uint64_t count_;
};

std::uint64_t fanin_per_sender(const config& c) {
  return fanin_size(c);
}

double run_fanin(const config& c) {
  const std::uint64_t per = fanin_per_sender(c);
  const std::uint64_t total = fanin_senders * per;
  done_signal done;
  fanin_result result;
  troupe::runtime rt{options_for(c)};
  auto receiver = rt.spawn<sink>(total, &result, &done);
  std::vector<troupe::ref<source>> senders;
  senders.reserve(fanin_senders);
  for (std::uint64_t i = 0; i < fanin_senders; ++i)
    senders.push_back(rt.spawn<source>(receiver, per));
  const auto t0 = clock::now();
  for (const auto& s : senders) s.send(go{});
  expect_done(done.wait_for(run_timeout), "fanin");
  const auto t1 = clock::now();
  senders.clear();
  rt.shutdown();
  expect_all_handled(rt.counters(), total + fanin_senders, "fanin");
  const std::uint64_t expected_sum = fanin_senders * (per * (per - 1) / 2);
  expect(result.count == total && result.sum == expected_sum,
         "fanin: the receiver counted " + std::to_string(result.count) + " messages summing to " +
             std::to_string(result.sum) + ", expected " + std::to_string(total) + " summing to " +
             std::to_string(expected_sum));
  return static_cast<double>(total) / seconds_between(t0, t1);
}

// ---- spawn -----------------------------------------------------------------------------------
// The main thread spawns N actors and sends each one message; each stops itself in its handler
// (ctx.stop()). Timed from the first spawn until every actor has stopped (on_stop ran for all,
// and the runtime no longer counts any as live).

struct poke {};

class one_shot {
 public:
  one_shot(troupe::context& ctx, countdown* stopped) : ctx_(ctx), stopped_(stopped) {}
  void on(poke) { ctx_.stop(); }
  void on_stop() { stopped_->arrive(); }

 private:
  troupe::context& ctx_;
  countdown* stopped_;
};

std::uint64_t spawn_count(const config& c) {
  return spawn_size(c);
}

double run_spawn(const config& c) {
  const std::uint64_t n = spawn_count(c);
  countdown stopped(n);
  troupe::runtime rt{options_for(c)};
  const auto t0 = clock::now();
  for (std::uint64_t i = 0; i < n; ++i) {
    rt.spawn<one_shot>(&stopped).send(poke{});
  }
  expect_done(stopped.wait_for(run_timeout), "spawn");
  // on_stop runs just before the runtime unregisters the actor: wait out that short tail.
  while (rt.live_actors() != 0) std::this_thread::yield();
  const auto t1 = clock::now();
  rt.shutdown();
  const troupe::runtime_counters counters = rt.counters();
  expect_all_handled(counters, n, "spawn");
  expect(counters.spawned == n && counters.stopped == n, "spawn: expected " + std::to_string(n) +
                                                             " actors spawned and stopped, got " +
                                                             describe(counters));
  return seconds_between(t0, t1);
}

// ---- idle_actor_bytes ------------------------------------------------------------------------
// N idle actors alive: resident-set growth from just before the first spawn until every actor
// has run on_start (and so has been scheduled once and gone idle), divided by N. The refs are
// dropped: a running actor is kept alive by the runtime. Run in a fresh process, so that memory
// freed by earlier workloads does not hide the growth.

countdown* idle_started = nullptr;  // one runtime per process in this workload

struct idle_actor {
  void on(poke) {}
  void on_start() { idle_started->arrive(); }
};

std::uint64_t idle_count(const config& c) {
  return idle_size(c);
}

double run_idle_actor_bytes(const config& c) {
  const std::uint64_t n = idle_count(c);
  countdown started(n);
  idle_started = &started;
  troupe::runtime rt{options_for(c)};
  const std::size_t before = resident_bytes();
  for (std::uint64_t i = 0; i < n; ++i) rt.spawn<idle_actor>();
  expect_done(started.wait_for(run_timeout), "idle_actor_bytes");
  const std::size_t after = resident_bytes();
  const std::size_t live = rt.live_actors();
  rt.shutdown();
  idle_started = nullptr;
  const troupe::runtime_counters counters = rt.counters();
  expect(before != 0 && after >= before, "idle_actor_bytes: cannot read the resident set size");
  expect(live == n && counters.spawned == n && counters.stopped == n && counters.failed == 0,
         "idle_actor_bytes: expected " + std::to_string(n) + " live actors, then " +
             std::to_string(n) + " stopped; got live=" + std::to_string(live) + " " +
             describe(counters));
  return static_cast<double>(after - before) / static_cast<double>(n);
}

}  // namespace

void add_actor_workloads(std::vector<workload>& out) {
  out.push_back({"pingpong", "actors", "ns/round trip", true, false,
                 [](const config& c) {
                   return std::to_string(pingpong_trips(c)) + " round trips between two actors";
                 },
                 run_pingpong});
  out.push_back({"fanin", "actors", "msgs/s", false, false,
                 [](const config& c) {
                   return std::to_string(fanin_senders) + " senders x " +
                          std::to_string(fanin_per_sender(c)) + " messages to one receiver";
                 },
                 run_fanin});
  out.push_back({"spawn", "actors", "s", true, false,
                 [](const config& c) {
                   return std::to_string(spawn_count(c)) +
                          " actors spawned, one message each, each then stops";
                 },
                 run_spawn});
  out.push_back({"idle_actor_bytes", "actors", "bytes/actor", true, true,
                 [](const config& c) {
                   return std::to_string(idle_count(c)) + " idle actors alive, RSS growth / " +
                          std::to_string(idle_count(c));
                 },
                 run_idle_actor_bytes});
}

}  // namespace troupe_bench
