// troupe-bench: supervision — restart, restart_probe_*.
//
//   restart:        a child under a one_for_one supervisor fails N times in a row (the driver
//                   sends N messages whose handler throws); restarts per second, from the first
//                   send until the N-th new instance is built. Each restart: the failing
//                   message dead-lettered, the instance destroyed, the supervisor told (a
//                   message), the child rebuilt in place from its factory.
//   restart_probe:  the latency a message sees when it is queued behind a failure: the driver
//                   sends a failing message and then a timestamped probe, waits for the probe to
//                   be handled (by the new instance), K times; p50 and p99 of send→handle. The
//                   row probe_p50_no_restart is the same probe with no failure before it.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include <troupe/troupe.hpp>

#include "bench.hpp"
#include "runtime_checks.hpp"

namespace troupe_bench {
namespace {

struct boom {};
struct probe {
  clock::time_point sent;
};

struct shared_state {
  std::atomic<std::uint64_t> constructions{0};
  std::uint64_t target = 0;
  done_signal done;
  std::vector<std::int64_t>* samples = nullptr;
  std::atomic<std::uint64_t> probes{0};
};

class flaky {
 public:
  explicit flaky(shared_state* s) : state_(s) {
    if (state_->constructions.fetch_add(1) + 1 == state_->target) state_->done.set();
  }
  void on(boom) { throw std::runtime_error("boom"); }
  void on(probe p) {
    const auto now = clock::now();
    state_->samples->push_back(
        std::chrono::duration_cast<std::chrono::nanoseconds>(now - p.sent).count());
    state_->probes.fetch_add(1);
    state_->probes.notify_one();
  }

 private:
  shared_state* state_;
};

troupe::runtime_options quiet_options(const config& c) {
  troupe::runtime_options o = options_for(c);
  o.on_failure = [](const troupe::address&, std::string_view) {};  // N failures, on purpose
  return o;
}

troupe::one_for_one tolerant() {
  return troupe::one_for_one{.max_restarts = 1'000'000'000, .within = std::chrono::seconds(1)};
}

std::uint64_t restart_count(const config& c) {
  return sized(c, 2'000, 100'000);
}

double run_restart(const config& c) {
  const std::uint64_t n = restart_count(c);
  shared_state state;
  state.target = n + 1;
  troupe::runtime rt{quiet_options(c)};
  auto sup = rt.spawn<troupe::supervisor>(tolerant());
  auto child = troupe::start_child<flaky>(sup, {.name = "flaky"}, &state);
  const auto t0 = clock::now();
  for (std::uint64_t i = 0; i < n; ++i) child.send(boom{});
  expect_done(state.done.wait_for(run_timeout), "restart");
  const auto t1 = clock::now();
  rt.shutdown();
  const auto counters = rt.counters();
  expect(counters.sent == counters.handled + counters.dead_lettered + counters.rejected,
         "restart: messages unaccounted for: " + describe(counters));
  expect(counters.failed == n,
         "restart: expected " + std::to_string(n) + " failures: " + describe(counters));
  return static_cast<double>(n) / seconds_between(t0, t1);
}

std::uint64_t probe_count(const config& c) {
  return sized(c, 500, 20'000);
}

double percentile(std::vector<std::int64_t> v, std::size_t per_mille) {
  std::sort(v.begin(), v.end());
  const std::size_t rank = (v.size() * per_mille + 999) / 1000;
  return static_cast<double>(v[std::max<std::size_t>(rank, 1) - 1]);
}

std::vector<double> run_restart_probe(const config& c) {
  const std::uint64_t k = probe_count(c);
  std::vector<std::int64_t> behind_failure;
  std::vector<std::int64_t> baseline;
  behind_failure.reserve(k);
  baseline.reserve(k);
  shared_state state;
  state.target = 0;
  troupe::runtime rt{quiet_options(c)};
  auto sup = rt.spawn<troupe::supervisor>(tolerant());
  auto child = troupe::start_child<flaky>(sup, {.name = "flaky"}, &state);
  for (int pass = 0; pass < 2; ++pass) {
    state.samples = pass == 0 ? &baseline : &behind_failure;
    for (std::uint64_t i = 0; i < k; ++i) {
      const std::uint64_t before = state.probes.load();
      if (pass == 1) child.send(boom{});
      child.send(probe{clock::now()});
      for (std::uint64_t seen = before; seen == before; seen = state.probes.load()) {
        state.probes.wait(seen);
      }
    }
  }
  rt.shutdown();
  const auto counters = rt.counters();
  expect(counters.sent == counters.handled + counters.dead_lettered + counters.rejected,
         "restart_probe: messages unaccounted for: " + describe(counters));
  expect(behind_failure.size() == k && baseline.size() == k, "restart_probe: probes missing");
  return {percentile(behind_failure, 500), percentile(behind_failure, 990),
          percentile(baseline, 500)};
}

}  // namespace

void add_restart_workloads(std::vector<workload>& out) {
  out.push_back({"restart", "supervision", "restarts/s", false, false,
                 [](const config& c) {
                   return std::to_string(restart_count(c)) +
                          " failures of one child under one_for_one, each restarted in place";
                 },
                 run_restart});
  workload probes{"restart_probe",
                  "supervision",
                  "ns",
                  true,
                  false,
                  [](const config& c) {
                    return std::to_string(probe_count(c)) +
                           " probes, each sent right behind a failing message (and as many "
                           "without one)";
                  },
                  nullptr};
  probes.rows = {"restart_probe_p50", "restart_probe_p99", "probe_p50_no_restart"};
  probes.run_rows = run_restart_probe;
  out.push_back(std::move(probes));
}

}  // namespace troupe_bench
