// Tests of troupe::sim::check, check_determinism and shrink (include/troupe/sim_check.hpp).
#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <string>
#include <vector>

#include <troupe/sim_check.hpp>

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
