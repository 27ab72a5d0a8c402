// troupe-bench: ring and latency (DESIGN §5).
//
//   ring:     503 actors in a ring pass one token; the driver hands it to the first with N hops
//             left, each actor passes it on with one hop fewer, the one that gets it with none
//             left signals the end. ns per hop, from the driver's send to the end.
//   latency:  one-way send->handle latency at a fixed offered load: the driver thread sends
//             one message every 100 us (10,000/s) to one receiver actor, each stamped with the
//             time it was meant to be sent (the sender sleeps, then spins, until then; a sender
//             that falls behind sends the late ones at once, still with their intended time). The
//             receiver stores handle time - intended time; after an unrecorded warm-up, the
//             exact nearest-rank p50, p99 and p99.9 of the stored samples are reported as the
//             rows latency_p50, latency_p99, latency_p999 (ns).
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <troupe/troupe.hpp>

#include "bench.hpp"
#include "runtime_checks.hpp"

namespace troupe_bench {
namespace {

// ---- ring ------------------------------------------------------------------------------------

struct token {
  std::uint64_t left;
};
struct link;  // carries the next node's ref; defined once `node` is complete

class node {
 public:
  explicit node(done_signal* done) : done_(done) {}
  void on(link l);
  void on(token t) {
    if (t.left == 0) {
      done_->set();
    } else {
      next_->send(token{t.left - 1});
    }
  }

 private:
  done_signal* done_;
  std::unique_ptr<troupe::ref<node>> next_;  // behind a pointer: see `player` in actor_bench.cpp
};

struct link {
  troupe::ref<node> next;
};

void node::on(link l) {
  next_ = std::make_unique<troupe::ref<node>>(std::move(l.next));
}

double run_ring(const config& c) {
  const std::uint64_t hops = ring_size(c);
  done_signal done;
  troupe::runtime rt{options_for(c)};
  std::vector<troupe::ref<node>> nodes;
  nodes.reserve(ring_actors);
  for (std::uint64_t i = 0; i < ring_actors; ++i) nodes.push_back(rt.spawn<node>(&done));
  for (std::uint64_t i = 0; i < ring_actors; ++i) nodes[i].send(link{nodes[(i + 1) % ring_actors]});
  const auto t0 = clock::now();
  nodes.front().send(token{hops});
  expect_done(done.wait_for(run_timeout), "ring");
  const auto t1 = clock::now();
  nodes.clear();
  rt.shutdown();
  expect_all_handled(rt.counters(), ring_actors + hops + 1, "ring");
  return seconds_between(t0, t1) * 1e9 / static_cast<double>(hops);
}

// ---- latency ---------------------------------------------------------------------------------

struct stamp {
  clock::time_point intended;
  std::uint64_t index;
};

struct latency_state {
  std::uint64_t warmup = 0;
  std::uint64_t last = 0;  // index of the last message
  std::vector<std::int64_t>* samples = nullptr;
  done_signal done;
};

class stamp_receiver {
 public:
  explicit stamp_receiver(latency_state* s) : state_(s) {}
  void on(stamp s) {
    const auto now = clock::now();
    if (s.index >= state_->warmup) {
      (*state_->samples)[s.index - state_->warmup] =
          std::chrono::duration_cast<std::chrono::nanoseconds>(now - s.intended).count();
    }
    if (s.index == state_->last) state_->done.set();
  }

 private:
  latency_state* state_;
};

std::vector<double> run_latency(const config& c) {
  const std::uint64_t n = latency_message_count(c);
  latency_state state;
  state.warmup = latency_warmup_count(c);
  state.last = state.warmup + n - 1;
  std::vector<std::int64_t> samples(n, -1);  // written now: no page fault in a timed handler
  state.samples = &samples;
  troupe::runtime rt{options_for(c)};
  auto rx = rt.spawn<stamp_receiver>(&state);
  const latency_sender_scope sender_scope;
  const auto start = clock::now() + std::chrono::milliseconds(1);
  for (std::uint64_t i = 0; i <= state.last; ++i) {
    const auto intended = start + i * latency_interval;
    pace_until(intended);
    rx.send(stamp{intended, i});
  }
  expect_done(state.done.wait_for(run_timeout), "latency");
  rt.shutdown();
  expect_all_handled(rt.counters(), state.last + 1, "latency");
  expect(std::none_of(samples.begin(), samples.end(), [](std::int64_t v) { return v < 0; }),
         "latency: a message was not recorded");
  std::sort(samples.begin(), samples.end());
  return {percentile_of_sorted(samples, 500), percentile_of_sorted(samples, 990),
          percentile_of_sorted(samples, 999)};
}

}  // namespace

void add_ring_workloads(std::vector<workload>& out) {
  out.push_back({"ring", "actors", "ns/hop", true, false,
                 [](const config& c) {
                   return std::to_string(ring_actors) + " actors pass a token " +
                          std::to_string(ring_size(c)) + " hops";
                 },
                 run_ring});
}

void add_latency_workloads(std::vector<workload>& out) {
  workload w{"latency", "actors", "ns", true, false, latency_size, nullptr};
  w.rows = latency_rows;
  w.run_rows = run_latency;
  out.push_back(std::move(w));
}

}  // namespace troupe_bench
