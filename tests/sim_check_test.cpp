// Tests of troupe::sim::check, check_determinism and shrink (include/troupe/sim_check.hpp), and
// the order_saga example's actors checked under faults over many seeds.
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <latch>
#include <map>
#include <string>
#include <vector>

#include <troupe/sim_check.hpp>

#include "../examples/order_saga.hpp"
#include "support.hpp"

using namespace std::chrono_literals;

namespace {

struct item {
  int seq;
};
struct get_seen {};
class sink {
 public:
  void on(item i) { seen_.push_back(i.seq); }
  std::vector<int> on(get_seen) const { return seen_; }

 private:
  std::vector<int> seen_;
};

struct go {};
class source {
 public:
  source(troupe::ref<sink> to, int n) : to_(std::move(to)), n_(n) {}
  void on(go) {
    for (int i = 0; i < n_; ++i) to_.send(item{i});
  }

 private:
  troupe::ref<sink> to_;
  int n_;
};

// 20 messages over a lossy, duplicating, slow link. The property "exactly once, in order" is
// broken by any drop or duplicate; delays alone keep it.
void exactly_once(troupe::simulation& sim) {
  auto s = sim.spawn_on<sink>("b");
  auto src = sim.spawn_on<source>("a", s, 20);
  src.send(go{});
  sim.run();
  const auto seen = s.ask(get_seen{}).get();
  std::vector<int> expected(20);
  for (int i = 0; i < 20; ++i) expected[static_cast<std::size_t>(i)] = i;
  troupe::sim::require(seen == expected, "received " + std::to_string(seen.size()) +
                                             " items, not each of the 20 once in order");
}

troupe::simulation_options lossy() {
  troupe::simulation_options o;
  o.faults = {.drop = 0.05, .duplicate = 0.05, .delay = 0.5, .min_delay = 1ms, .max_delay = 20ms};
  return o;
}

}  // namespace

TEST_CASE("sim::check passes a property that holds on every seed") {
  troupe::simulation_options o;
  o.faults = {.delay = 0.5, .min_delay = 1ms, .max_delay = 20ms};  // delays only: still FIFO
  const auto r = troupe::sim::check({.seeds = 50, .base = o}, exactly_once);
  INFO(r.report);
  REQUIRE(r.passed);
  REQUIRE(r.seeds_run == 50);
}

TEST_CASE("sim::check reports the failing seed, how to rerun it, and shrinks its faults") {
  const auto r = troupe::sim::check({.seeds = 200, .base = lossy()}, exactly_once);
  INFO(r.report);
  REQUIRE_FALSE(r.passed);
  REQUIRE(r.failing_seed.has_value());
  REQUIRE(r.report.find("TROUPE_SIM_SEED=" + std::to_string(*r.failing_seed)) != std::string::npos);
  REQUIRE(r.failure.find("not each of the 20") != std::string::npos);
  // One drop or one duplicate is enough to break the property: the essential fault.
  REQUIRE(r.shrunk_faults.size() == 1);
  REQUIRE(r.shrunk_faults.front().kind != troupe::fault_kind::delay);
  REQUIRE(r.faults.size() > r.shrunk_faults.size());

  // The shrunk schedule replays: the seed with only that fault still fails, without it passes.
  troupe::simulation_options replay = lossy();
  replay.seed = *r.failing_seed;
  replay.replay_faults = r.shrunk_faults;
  const auto again = troupe::sim::run_once(replay, exactly_once);
  REQUIRE(again.failed);
  REQUIRE(again.faults.size() == 1);
  replay.replay_faults = std::vector<troupe::fault_record>{};
  REQUIRE_FALSE(troupe::sim::run_once(replay, exactly_once).failed);

  // TROUPE_SIM_SEED reruns that one seed.
  const std::string seed = std::to_string(*r.failing_seed);
  ::setenv("TROUPE_SIM_SEED", seed.c_str(), 1);
  const auto rerun =
      troupe::sim::check({.seeds = 200, .shrink = false, .base = lossy()}, exactly_once);
  ::unsetenv("TROUPE_SIM_SEED");
  REQUIRE(rerun.seeds_run == 1);
  REQUIRE(rerun.failing_seed == r.failing_seed);
}

TEST_CASE("sim::check_determinism: one seed, one trace") {
  troupe::simulation_options o = lossy();
  for (std::uint64_t seed : {1U, 2U, 3U}) {
    o.seed = seed;
    REQUIRE(troupe::sim::check_determinism(o, exactly_once));
  }
  o.seed = 1;
  const auto a = troupe::sim::run_once(o, exactly_once);
  o.seed = 2;
  const auto b = troupe::sim::run_once(o, exactly_once);
  REQUIRE(a.trace_hash != b.trace_hash);
}

// ---- the point of it all: examples/order_saga.hpp's actors, unchanged, under faults ----

namespace {

// Seeds per run of the saga checks: enough to meet the faults that matter in CI (each seed is a
// whole run of the shop); TROUPE_SAGA_SEEDS=<n> runs more.
std::uint64_t saga_seeds(std::uint64_t fallback) {
  const char* env = std::getenv("TROUPE_SAGA_SEEDS");
  return env != nullptr && *env != '\0' ? std::strtoull(env, nullptr, 10) : fallback;
}

// The shop's services on four nodes; every message between them crosses a network that drops,
// duplicates, delays and reorders.
troupe::simulation_options faulty_network() {
  troupe::simulation_options o;
  o.faults = {.drop = 0.05,
              .duplicate = 0.05,
              .delay = 0.3,
              .min_delay = 1ms,
              .max_delay = 300ms,
              .reorder = true};
  o.runtime.on_failure = [](const troupe::address&, std::string_view) {};  // expected failures
  return o;
}

// Places the demo's orders (and one retried placement), runs until nothing is left to do, and
// checks the saga's invariants: every order ended (none lost), none is both charged and
// cancelled, a completed order is charged its price, the stock matches the completed orders, the
// business outcomes that faults cannot change hold, and every message is accounted for.
void shop_under_faults(troupe::simulation& sim, order_saga::unanswered_charge policy) {
  using namespace order_saga;
  const std::vector<place_order> orders = demo_orders();
  std::latch finished(static_cast<std::ptrdiff_t>(orders.size()));
  payment_provider provider;
  charge_attempts attempts;
  troupe::runtime& rt = sim.runtime();
  // The actors hold pointers to the three above: stop them before those go, even if a
  // property fails below.
  struct stop_first {
    troupe::runtime& rt;
    ~stop_first() { rt.shutdown(); }
  } guard{rt};

  const saga_timing timing{.check_every = 100ms,
                           .resend_after = 1s,
                           .payment_deadline = 5s,
                           .on_unanswered_charge = policy};
  shop s = open_shop(rt, provider, attempts, finished, timing);
  sim.assign(s.coordinator, "orders");
  sim.assign(s.dead_letters, "orders");
  sim.assign(s.inventory, "warehouse");
  sim.assign(s.gateways, "payments");  // its gateways follow it
  sim.assign(s.refunds, "payments");
  sim.assign(s.shipping, "shipping");

  for (const auto& o : orders) s.coordinator.send(o);
  s.coordinator.send(orders[0]);
  sim.run();

  const std::map<int, std::string> outcomes = s.coordinator.ask(get_outcomes{}).get();
  const std::string lamps = s.inventory.ask(stock_of{"lamp"}).get();
  const std::string sofas = s.inventory.ask(stock_of{"sofa"}).get();
  s.subscriptions.clear();
  rt.shutdown();

  int lamps_sold = 0;
  for (const place_order& o : orders) {
    auto it = outcomes.find(o.order);
    const std::string outcome = it == outcomes.end() ? std::string() : it->second;
    const std::string name = "order " + std::to_string(o.order);
    troupe::sim::require(!outcome.empty(), name + " was lost (it never completed nor cancelled)");
    const int charged = provider.net_cents(std::to_string(o.order) + "/charge");
    if (outcome == "completed") {
      troupe::sim::require(charged == o.cents,
                           name + " completed but charged " + std::to_string(charged) + " cents");
      if (o.sku == "lamp") lamps_sold += o.quantity;
    } else {
      troupe::sim::require(charged == 0, name + " both charged (" + std::to_string(charged) +
                                             " cents) and " + outcome);
    }
    if (o.order == 1002 || o.order == 1003 || o.order == 1005 || o.order == 1006) {
      troupe::sim::require(outcome != "completed", name + " completed");
    }
  }
  troupe::sim::require(finished.try_wait(), "an order ended twice or not at all");
  troupe::sim::require(lamps == "lamp " + std::to_string(10 - lamps_sold),
                       "stock " + lamps + " after " + std::to_string(lamps_sold) + " sold");
  troupe::sim::require(sofas == "sofa 1", "stock " + sofas);
  const auto c = rt.counters();
  troupe::sim::require(c.sent == c.handled + c.dead_lettered + c.rejected,
                       "a message unaccounted for");
}

}  // namespace

TEST_CASE("order_saga under faults: its invariants hold over many seeds") {
  troupe::simulation_options o = faulty_network();
  std::size_t faults = 0;
  const auto r = troupe::sim::check(
      {.seeds = saga_seeds(1000), .base = o}, [&faults](troupe::simulation& sim) {
        shop_under_faults(sim, order_saga::unanswered_charge::void_it);
        faults += sim.faults().size();
      });
  INFO(r.report);
  REQUIRE(r.passed);
  // The network was not quiet: the invariants held through many faults of every kind.
  REQUIRE(faults > r.seeds_run * 5);
}

TEST_CASE("order_saga under faults: a coordinator that trusts silence is caught and shrunk") {
  const troupe::simulation_options o = faulty_network();
  const auto careless = [](troupe::simulation& sim) {
    shop_under_faults(sim, order_saga::unanswered_charge::assume_not_charged);
  };
  const auto r = troupe::sim::check({.seeds = saga_seeds(300), .base = o}, careless);
  INFO(r.report);
  REQUIRE_FALSE(r.passed);
  REQUIRE(r.failure.find("both charged") != std::string::npos);
  // Its essence: a payment's answer lost on the way back (one drop), or every attempt lost after
  // the one that charged (drops only).
  REQUIRE_FALSE(r.shrunk_faults.empty());
  REQUIRE(r.shrunk_faults.size() <= 2);
  for (const auto& f : r.shrunk_faults) REQUIRE(f.kind == troupe::fault_kind::drop);
  REQUIRE(r.faults.size() > r.shrunk_faults.size());
  // The shrunk schedule replays the failure; the same seed without faults passes.
  troupe::simulation_options replay = o;
  replay.seed = *r.failing_seed;
  replay.replay_faults = r.shrunk_faults;
  REQUIRE(troupe::sim::run_once(replay, careless).failed);
  replay.replay_faults = std::vector<troupe::fault_record>{};
  REQUIRE_FALSE(troupe::sim::run_once(replay, careless).failed);
}
