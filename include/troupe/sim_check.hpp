// troupe::sim::check, check_determinism and shrink: properties of a simulated system over many
// seeds, and a failing run's faults cut down to the few that matter.
//
//   auto result = troupe::sim::check({.seeds = 200}, [](troupe::simulation& sim) {
//     ... spawn, send, sim.run() ...
//     troupe::sim::require(invariant_holds, "no order both charged and cancelled");
//   });
//   INFO(result.report);
//   REQUIRE(result.passed);
//
// A scenario fails by throwing (sim::require throws sim::property_failed). TROUPE_SIM_SEED=<n>
// in the environment makes check() run that one seed only (to rerun a reported failure).
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <troupe/simulation.hpp>

namespace troupe::sim {

using scenario = std::function<void(simulation&)>;

// What a scenario throws when a property does not hold.
class property_failed : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Throws property_failed(what) unless `holds`.
inline void require(bool holds, const std::string& what) {
  if (!holds) throw property_failed(what);
}

// The outcome of one run: the exception's text if it failed, its hash and its faults.
struct run_result {
  bool failed = false;
  std::string failure;
  std::uint64_t trace_hash = 0;
  std::vector<fault_record> faults;
};

// Runs `s` once in a simulation made from `options` (the simulation is shut down before this
// returns). Exceptions of the scenario become run_result::failure; none escapes.
inline run_result run_once(const simulation_options& options, const scenario& s) {
  run_result r;
  try {
    simulation sim(options);
    try {
      s(sim);
    } catch (const std::exception& e) {
      r.failed = true;
      r.failure = e.what();
    } catch (...) {
      r.failed = true;
      r.failure = "an exception not derived from std::exception";
    }
    r.trace_hash = sim.trace_hash();
    r.faults = sim.faults();
  } catch (const std::exception& e) {  // the simulation's own construction or shutdown
    r.failed = true;
    r.failure = e.what();
  }
  return r;
}

// Runs `s` twice with `options` (its seed) and compares the trace hashes: true if equal.
inline bool check_determinism(const simulation_options& options, const scenario& s) {
  const run_result a = run_once(options, s);
  const run_result b = run_once(options, s);
  return a.trace_hash == b.trace_hash && a.failed == b.failed;
}

// Given the faults of a failing run of `options` (its seed), finds a smaller list of the random
// faults with which the run still fails (delta debugging: replays with subsets, each run with
// simulation_options::replay_faults). Returns the smallest failing list found (the original
// one if no subset fails). At most `max_runs` replays.
inline std::vector<fault_record> shrink(simulation_options options, const scenario& s,
                                        std::vector<fault_record> faults,
                                        std::size_t max_runs = 200) {
  std::vector<fault_record> current;
  for (auto& f : faults) {
    if (f.random) current.push_back(std::move(f));
  }
  std::size_t runs = 0;
  auto fails = [&](const std::vector<fault_record>& subset) {
    ++runs;
    options.replay_faults = subset;
    return run_once(options, s).failed;
  };
  if (current.empty()) return current;
  if (fails({})) return {};
  std::size_t n = 2;
  while (current.size() >= 2 && runs < max_runs) {
    const std::size_t chunk = (current.size() + n - 1) / n;
    bool reduced = false;
    // Try each chunk, then each complement.
    for (std::size_t start = 0; start < current.size() && !reduced && runs < max_runs;
         start += chunk) {
      const auto first = current.begin() + static_cast<std::ptrdiff_t>(start);
      const auto last =
          current.begin() + static_cast<std::ptrdiff_t>(std::min(current.size(), start + chunk));
      std::vector<fault_record> piece(first, last);
      if (fails(piece)) {
        current = std::move(piece);
        n = 2;
        reduced = true;
        break;
      }
      if (n == 2) continue;  // with two chunks the complement is the other chunk
      std::vector<fault_record> rest(current.begin(), first);
      rest.insert(rest.end(), last, current.end());
      if (fails(rest)) {
        current = std::move(rest);
        n = std::max<std::size_t>(n - 1, 2);
        reduced = true;
      }
    }
    if (!reduced) {
      if (n >= current.size()) break;
      n = std::min(current.size(), n * 2);
    }
  }
  if (current.size() == 1 && runs < max_runs && fails({})) return {};
  return current;
}

struct check_options {
  // How many seeds: first_seed, first_seed + 1, ...
  std::uint64_t seeds = 100;
  std::uint64_t first_seed = 1;
  // If > 0, also stop once this much real time has passed (at least one seed runs).
  std::chrono::milliseconds budget{0};
  // Shrink the first failure's faults.
  bool shrink = true;
  // The options of every run; its seed is replaced.
  simulation_options base{};
};

struct check_result {
  bool passed = true;
  std::uint64_t seeds_run = 0;
  std::optional<std::uint64_t> failing_seed;
  std::string failure;                      // what the failing run threw
  std::vector<fault_record> faults;         // the failing run's faults
  std::vector<fault_record> shrunk_faults;  // the smallest failing subset found
  std::string report;                       // all of it, for a person: seed, rerun, faults
  explicit operator bool() const noexcept { return passed; }
};

namespace detail {
inline std::string describe_faults(const std::vector<fault_record>& faults) {
  std::string out;
  for (const fault_record& f : faults) {
    out += "    " + std::string(to_string(f.kind)) + " at " +
           std::to_string(std::chrono::duration_cast<std::chrono::microseconds>(f.at).count()) +
           " us: " + f.text + "\n";
  }
  return out;
}
}  // namespace detail

// Runs `s` for each seed (or only $TROUPE_SIM_SEED if set) until one fails; shrinks that
// failure's faults. Never throws for a failing scenario: the result says what failed and how to
// rerun it. Throws std::invalid_argument if TROUPE_SIM_SEED is not a number.
inline check_result check(const check_options& o, const scenario& s) {
  check_result result;
  std::uint64_t first = o.first_seed;
  std::uint64_t count = o.seeds;
  if (const char* env = std::getenv("TROUPE_SIM_SEED"); env != nullptr && *env != '\0') {
    char* end = nullptr;
    first = std::strtoull(env, &end, 10);
    if (end == env || *end != '\0') {
      throw std::invalid_argument(std::string("TROUPE_SIM_SEED is not a number: ") + env);
    }
    count = 1;
  }
  const auto started = std::chrono::steady_clock::now();
  simulation_options options = o.base;
  for (std::uint64_t k = 0; k < count; ++k) {
    if (k > 0 && o.budget.count() > 0 && std::chrono::steady_clock::now() - started > o.budget) {
      break;
    }
    options.seed = first + k;
    options.replay_faults.reset();
    run_result r = run_once(options, s);
    ++result.seeds_run;
    if (!r.failed) continue;
    result.passed = false;
    result.failing_seed = options.seed;
    result.failure = r.failure;
    result.faults = r.faults;
    std::size_t random = 0;
    for (const auto& f : r.faults) random += f.random ? 1 : 0;
    result.report = "troupe::sim::check: seed " + std::to_string(options.seed) + " failed (after " +
                    std::to_string(result.seeds_run) + " seeds): " + r.failure +
                    "\n  rerun it alone: TROUPE_SIM_SEED=" + std::to_string(options.seed) +
                    " <the test>\n  faults injected: " + std::to_string(r.faults.size()) + "\n";
    if (o.shrink && random > 0) {
      result.shrunk_faults = shrink(options, s, r.faults);
      result.report += "  the run still fails with only these " +
                       std::to_string(result.shrunk_faults.size()) + " of its " +
                       std::to_string(random) +
                       " random faults (replay: simulation_options::replay_faults):\n" +
                       detail::describe_faults(result.shrunk_faults);
    } else {
      result.report += detail::describe_faults(r.faults);
    }
    return result;
  }
  result.report = "troupe::sim::check: " + std::to_string(result.seeds_run) + " seeds passed";
  return result;
}

}  // namespace troupe::sim
