// troupe-bench: the deterministic simulation (troupe/simulation.hpp), one thread.
//
//   simulation:        two actors play ping-pong in a simulation (seed 1, one message per
//                      activation, no faults, no trace lines): messages handled per second of
//                      real time.
//   simulation_seeds:  simulated runs per second of a small faulty system: 20 items over a link
//                      that drops, duplicates and delays (each run builds and shuts down its own
//                      simulation, as sim::check does per seed).
//   simulation_saga:   seeds per second of the order_saga example's shop (examples/order_saga.hpp)
//                      on four nodes over a network that drops, duplicates, delays and reorders:
//                      the scenario tests/sim_check_test.cpp checks over many seeds.
#include <chrono>
#include <cstdint>
#include <latch>
#include <string>
#include <vector>

#include <troupe/sim_check.hpp>

#include "../examples/order_saga.hpp"
#include "bench.hpp"

namespace troupe_bench {
namespace {

struct ball {
  std::uint64_t left;
};
struct partner;

class paddle {
 public:
  void on(const partner& p);
  void on(ball b);

 private:
  std::vector<troupe::ref<paddle>> other_;  // a vector: paddle is incomplete here
};
struct partner {
  troupe::ref<paddle> other;
};
void paddle::on(const partner& p) {
  other_.push_back(p.other);
}
void paddle::on(ball b) {
  if (b.left != 0) other_.front().send(ball{b.left - 1});
}

std::uint64_t sim_size(const config& c) {
  return sized(c, 200'000, 5'000'000);
}
std::uint64_t seeds_size(const config& c) {
  return sized(c, 50, 1'000);
}

double run_simulation(const config& c) {
  const std::uint64_t n = sim_size(c);
  troupe::simulation sim({.seed = 1});
  auto& rt = sim.runtime();
  auto a = rt.spawn<paddle>();
  auto b = rt.spawn<paddle>();
  a.send(partner{b});
  b.send(partner{a});
  sim.run();
  const auto t0 = clock::now();
  a.send(ball{n - 1});
  sim.run();
  const auto t1 = clock::now();
  const auto counters = rt.counters();
  expect(counters.handled == n + 2, "simulation: " + std::to_string(counters.handled) +
                                        " messages handled, expected " + std::to_string(n + 2));
  return static_cast<double>(n) / seconds_between(t0, t1);
}

struct item {
  int seq;
};
class sink {
 public:
  void on(item) { ++seen_; }

 private:
  int seen_ = 0;
};
struct go {};
class source {
 public:
  explicit source(troupe::ref<sink> to) : to_(std::move(to)) {}
  void on(go) {
    for (int i = 0; i < 20; ++i) to_.send(item{i});
  }

 private:
  troupe::ref<sink> to_;
};

double run_seeds(const config& c) {
  using namespace std::chrono_literals;
  const std::uint64_t n = seeds_size(c);
  troupe::simulation_options o;
  o.faults = {.drop = 0.05, .duplicate = 0.05, .delay = 0.5, .min_delay = 1ms, .max_delay = 20ms};
  const auto t0 = clock::now();
  for (std::uint64_t seed = 1; seed <= n; ++seed) {
    o.seed = seed;
    troupe::simulation sim(o);
    auto s = sim.spawn_on<sink>("b");
    auto src = sim.spawn_on<source>("a", s);
    src.send(go{});
    sim.run();
    const auto counters = sim.runtime().counters();
    expect(counters.sent == counters.handled + counters.dead_lettered + counters.rejected,
           "simulation_seeds: a message unaccounted for");
  }
  const auto t1 = clock::now();
  return static_cast<double>(n) / seconds_between(t0, t1);
}

std::uint64_t saga_size(const config& c) {
  return sized(c, 20, 300);
}

double run_saga(const config& c) {
  using namespace std::chrono_literals;
  using namespace order_saga;
  const std::uint64_t n = saga_size(c);
  troupe::simulation_options o;
  o.faults = {.drop = 0.05,
              .duplicate = 0.05,
              .delay = 0.3,
              .min_delay = 1ms,
              .max_delay = 300ms,
              .reorder = true};
  o.runtime.on_failure = [](const troupe::address&, std::string_view) {};
  const saga_timing timing{.check_every = 100ms, .resend_after = 1s, .payment_deadline = 5s};
  std::uint64_t events = 0;
  const auto t0 = clock::now();
  for (std::uint64_t seed = 1; seed <= n; ++seed) {
    o.seed = seed;
    const std::vector<place_order> orders = demo_orders();
    std::latch finished(static_cast<std::ptrdiff_t>(orders.size()));
    payment_provider provider;
    charge_attempts attempts;
    {
      troupe::simulation sim(o);
      shop s = open_shop(sim.runtime(), provider, attempts, finished, timing);
      sim.assign(s.coordinator, "orders");
      sim.assign(s.dead_letters, "orders");
      sim.assign(s.inventory, "warehouse");
      sim.assign(s.gateways, "payments");
      sim.assign(s.refunds, "payments");
      sim.assign(s.shipping, "shipping");
      for (const auto& order : orders) s.coordinator.send(order);
      sim.run();
      expect(finished.try_wait(), "simulation_saga: an order did not end");
      events += sim.events();
      s.subscriptions.clear();
      sim.runtime().shutdown();
    }
  }
  const auto t1 = clock::now();
  expect(events > n, "simulation_saga: nothing ran");
  return static_cast<double>(n) / seconds_between(t0, t1);
}

}  // namespace

void add_simulation_workloads(std::vector<workload>& out) {
  out.push_back({"simulation", "simulation", "msgs/s", false, false,
                 [](const config& c) {
                   return std::to_string(sim_size(c)) + " ping-pong messages in a simulation";
                 },
                 run_simulation});
  out.push_back({"simulation_seeds", "simulation", "runs/s", false, false,
                 [](const config& c) {
                   return std::to_string(seeds_size(c)) + " seeds of 20 items over a faulty link";
                 },
                 run_seeds});
  out.push_back({"simulation_saga", "simulation", "seeds/s", false, false,
                 [](const config& c) {
                   return std::to_string(saga_size(c)) +
                          " seeds of the order_saga shop on a faulty network";
                 },
                 run_saga});
}

}  // namespace troupe_bench
