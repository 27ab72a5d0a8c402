// troupe-bench: request-reply (DESIGN §5 "ask") — ask, ask_latency_*, ask_from_thread.
//
//   ask:             an asker actor's task handler awaits N sequential asks to a server actor
//                    (`sum += co_await server.ask(req{i})`); ns per ask, timed inside the
//                    handler from before the first ask until the last reply is in.
//   ask_latency:     the same loop, each co_await bracketed by steady_clock::now(); the round
//                    trips go into a preallocated vector, sorted afterwards: p50, p99, p99.9 and
//                    max, reported as four rows (ask_latency_p50, _p99, _p999, _max) of one run.
//                    A short untimed warm-up comes first. Every sample includes the time between
//                    the two clock reads that is not the ask (≈ 20 ns on the reference machine:
//                    what two back-to-back steady_clock::now() calls measure there).
//   ask_from_thread: a plain thread (the driver's) does N sequential `server.ask(req{i}).get()`:
//                    how non-actor code uses ask. Each one blocks the thread on the reply (a
//                    futex wait after a short spin) and wakes a worker to run the server, so
//                    this measures thread wake-ups as much as troupe.
//   ask_beside_blocked: the `ask` loop while 16 plain threads are blocked in get() on asks that
//                    a holder actor answers only after the loop. Blocked get()s park in the
//                    standard library's futex wait table (16 buckets, shared by every atomic
//                    wait in the process); an ask whose completion notifies unconditionally
//                    then makes a futex system call whenever its reply state hashes to a bucket
//                    with a sleeper — with 16 sleepers, nearly always. The plain `ask` meets
//                    the same cliff only when a slot lands in a parked worker's bucket.
//
// Every ask uses the default timeout (runtime_options::ask_timeout), so each one also arms and
// cancels a timer. The server replies i + 1 to req{i}; the asker sums the replies and the sum
// is checked (N(N+1)/2). After each run: no timer left pending, and after shutdown every
// message (requests, replies, the start message) was sent and handled, none dead-lettered or
// rejected, no actor failed, and no ask is still open (runtime_counters::open_asks == 0).

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <troupe/troupe.hpp>

#include "bench.hpp"
#include "runtime_checks.hpp"

namespace troupe_bench {
namespace {

struct req {
  std::uint64_t value;
};

class server {
 public:
  std::uint64_t on(req r) const { return r.value + 1; }
};

// What the asker hands back to the driving thread.
struct ask_outcome {
  std::uint64_t sum = 0;
  double seconds = 0;
  std::string error;  // the text of a failed ask (timeout, ...); empty if all replied
};

// Asks `count` times, timing the whole loop.
struct run_asks {
  std::uint64_t count;
};
// Asks `warmup` times untimed, then once per element of *samples, timing each ask.
struct time_asks {
  std::uint64_t warmup;
  std::vector<std::int64_t>* samples;
};

class asker {
 public:
  asker(troupe::ref<server> target, ask_outcome* out, done_signal* done)
      : server_(std::move(target)), out_(out), done_(done) {}

  troupe::task<> on(run_asks m) {
    try {
      std::uint64_t sum = 0;
      const auto t0 = clock::now();
      for (std::uint64_t i = 0; i < m.count; ++i) sum += co_await server_.ask(req{i});
      const auto t1 = clock::now();
      out_->sum = sum;
      out_->seconds = seconds_between(t0, t1);
    } catch (const std::exception& e) {
      out_->error = e.what();
    }
    done_->set();
  }

  troupe::task<> on(time_asks m) {
    try {
      std::uint64_t sum = 0;
      std::uint64_t i = 0;
      for (; i < m.warmup; ++i) sum += co_await server_.ask(req{i});
      std::vector<std::int64_t>& samples = *m.samples;
      for (std::int64_t& sample : samples) {
        const auto t0 = clock::now();
        sum += co_await server_.ask(req{i++});
        const auto t1 = clock::now();
        sample = std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count();
      }
      out_->sum = sum;
    } catch (const std::exception& e) {
      out_->error = e.what();
    }
    done_->set();
  }

 private:
  troupe::ref<server> server_;
  ask_outcome* out_;
  done_signal* done_;
};

std::uint64_t sum_of_replies(std::uint64_t asks) {
  return asks * (asks + 1) / 2;  // replies 1, 2, ..., asks
}

void expect_replies(const ask_outcome& o, std::uint64_t asks, const std::string& workload) {
  expect(o.error.empty(), workload + ": an ask failed: " + o.error);
  expect(o.sum == sum_of_replies(asks), workload + ": the replies sum to " + std::to_string(o.sum) +
                                            ", expected " + std::to_string(sum_of_replies(asks)));
}

// Before shutdown: every ask's timeout timer was cancelled when its reply came.
void expect_no_timers(const troupe::runtime& rt, const std::string& workload) {
  expect(rt.pending_timers() == 0, workload + ": " + std::to_string(rt.pending_timers()) +
                                       " timers still pending after the last reply");
}

// After shutdown: `asks` requests and as many replies, plus `others` plain messages, all sent
// and handled; no ask left open.
void expect_ask_counters(const troupe::runtime_counters& c, std::uint64_t asks,
                         std::uint64_t others, const std::string& workload) {
  expect_all_handled(c, 2 * asks + others, workload);
  expect(c.open_asks == 0, workload + ": asks still open after shutdown: " + describe(c));
}

// ---- ask -------------------------------------------------------------------------------------

std::uint64_t ask_count(const config& c) {
  return ask_size(c);
}

double run_ask(const config& c) {
  const std::uint64_t n = ask_count(c);
  ask_outcome outcome;
  done_signal done;
  troupe::runtime rt{options_for(c)};
  auto s = rt.spawn<server>();
  auto a = rt.spawn<asker>(s, &outcome, &done);
  a.send(run_asks{n});
  expect_done(done.wait_for(run_timeout), "ask");
  expect_replies(outcome, n, "ask");
  expect_no_timers(rt, "ask");
  rt.shutdown();
  expect_ask_counters(rt.counters(), n, 1, "ask");
  return outcome.seconds * 1e9 / static_cast<double>(n);
}

// ---- ask_latency -----------------------------------------------------------------------------

std::uint64_t latency_samples(const config& c) {
  return sized(c, 50'000, 1'000'000);
}
std::uint64_t latency_warmup(const config& c) {
  return c.quick ? 1'000 : 10'000;  // not --size: the size is the number of samples
}

// The nearest-rank percentile of sorted samples, in per mille (500: the median, 999: p99.9):
// the smallest sample that at least that share of all samples does not exceed.
double percentile(const std::vector<std::int64_t>& sorted, std::size_t per_mille) {
  const std::size_t rank = (sorted.size() * per_mille + 999) / 1000;  // ceil, 1-based
  return static_cast<double>(sorted[std::max<std::size_t>(rank, 1) - 1]);
}

std::vector<double> run_ask_latency(const config& c) {
  const std::uint64_t warmup = latency_warmup(c);
  // Zero-filled now, so that no page fault lands inside a timed ask.
  std::vector<std::int64_t> samples(latency_samples(c));
  ask_outcome outcome;
  done_signal done;
  troupe::runtime rt{options_for(c)};
  auto s = rt.spawn<server>();
  auto a = rt.spawn<asker>(s, &outcome, &done);
  a.send(time_asks{warmup, &samples});
  expect_done(done.wait_for(run_timeout), "ask_latency");
  const std::uint64_t asks = warmup + samples.size();
  expect_replies(outcome, asks, "ask_latency");
  expect_no_timers(rt, "ask_latency");
  rt.shutdown();
  expect_ask_counters(rt.counters(), asks, 1, "ask_latency");
  std::sort(samples.begin(), samples.end());
  return {percentile(samples, 500), percentile(samples, 990), percentile(samples, 999),
          static_cast<double>(samples.back())};
}

// ---- ask_from_thread -------------------------------------------------------------------------

std::uint64_t thread_ask_count(const config& c) {
  return sized(c, 5'000, 200'000);
}

double run_ask_from_thread(const config& c) {
  const std::uint64_t n = thread_ask_count(c);
  troupe::runtime rt{options_for(c)};
  auto s = rt.spawn<server>();
  ask_outcome outcome;
  try {
    const auto t0 = clock::now();
    for (std::uint64_t i = 0; i < n; ++i) outcome.sum += s.ask(req{i}).get();
    const auto t1 = clock::now();
    outcome.seconds = seconds_between(t0, t1);
  } catch (const std::exception& e) {
    outcome.error = e.what();
  }
  expect_replies(outcome, n, "ask_from_thread");
  expect_no_timers(rt, "ask_from_thread");
  rt.shutdown();
  expect_ask_counters(rt.counters(), n, 0, "ask_from_thread");
  return outcome.seconds * 1e9 / static_cast<double>(n);
}

// ---- ask_beside_blocked ----------------------------------------------------------------------

constexpr std::size_t blocked_getters = 16;

struct hold {};
struct release_held {};

// Keeps every hold's promise until release_held; counts the holds it has.
class holder {
 public:
  explicit holder(std::atomic<std::size_t>* held) : held_(held) {}
  void on(hold, troupe::promise<std::uint64_t> p) {
    promises_.push_back(std::move(p));
    held_->fetch_add(1, std::memory_order_release);
  }
  void on(release_held) {
    for (auto& p : promises_) static_cast<void>(p.set_value(1));
    promises_.clear();
  }

 private:
  std::atomic<std::size_t>* held_;
  std::vector<troupe::promise<std::uint64_t>> promises_;
};

double run_ask_beside_blocked(const config& c) {
  const std::uint64_t n = ask_count(c);
  ask_outcome outcome;
  done_signal done;
  std::atomic<std::size_t> held{0};
  std::atomic<std::size_t> released{0};
  troupe::runtime rt{options_for(c)};
  auto h = rt.spawn<holder>(&held);
  std::vector<std::thread> getters;
  for (std::size_t i = 0; i < blocked_getters; ++i) {
    getters.emplace_back([&h, &released] {
      try {
        // Far longer than any run: these asks end only when the holder releases them.
        if (h.ask(hold{}, std::chrono::minutes(10)).get() == 1) {
          released.fetch_add(1, std::memory_order_relaxed);
        }
      } catch (const std::exception&) {  // counted as not released, reported below
      }
    });
  }
  // Every getter's ask is with the holder; the getters are then in get() (a short spin, then
  // the futex wait), for the whole timed loop.
  while (held.load(std::memory_order_acquire) < blocked_getters) std::this_thread::yield();
  auto s = rt.spawn<server>();
  auto a = rt.spawn<asker>(s, &outcome, &done);
  a.send(run_asks{n});
  const bool finished = done.wait_for(run_timeout);
  h.send(release_held{});
  for (auto& t : getters) t.join();
  expect_done(finished, "ask_beside_blocked");
  expect_replies(outcome, n, "ask_beside_blocked");
  expect(released.load() == blocked_getters, "ask_beside_blocked: a blocked get() failed");
  expect_no_timers(rt, "ask_beside_blocked");
  rt.shutdown();
  // The timed asks and their replies, the getters' asks and their replies, run_asks and
  // release_held.
  expect_ask_counters(rt.counters(), n + blocked_getters, 2, "ask_beside_blocked");
  return outcome.seconds * 1e9 / static_cast<double>(n);
}

}  // namespace

void add_ask_workloads(std::vector<workload>& out) {
  out.push_back({"ask", "actors", "ns/ask", true, false,
                 [](const config& c) {
                   return std::to_string(ask_count(c)) +
                          " sequential asks from an actor's task handler to another actor";
                 },
                 run_ask});
  workload latency{"ask_latency",
                   "actors",
                   "ns",
                   true,
                   false,
                   [](const config& c) {
                     return std::to_string(latency_samples(c)) +
                            " sequential asks between two actors, each timed (after " +
                            std::to_string(latency_warmup(c)) + " untimed)";
                   },
                   nullptr};
  latency.rows = {"ask_latency_p50", "ask_latency_p99", "ask_latency_p999", "ask_latency_max"};
  latency.run_rows = run_ask_latency;
  out.push_back(std::move(latency));
  out.push_back({"ask_from_thread", "actors", "ns/ask", true, false,
                 [](const config& c) {
                   return std::to_string(thread_ask_count(c)) +
                          " sequential blocking asks (get()) from a plain thread to an actor";
                 },
                 run_ask_from_thread});
  out.push_back({"ask_beside_blocked", "actors", "ns/ask", true, false,
                 [](const config& c) {
                   return std::to_string(ask_count(c)) +
                          " sequential asks between two actors while " +
                          std::to_string(blocked_getters) + " plain threads block in get()";
                 },
                 run_ask_beside_blocked});
}

}  // namespace troupe_bench
