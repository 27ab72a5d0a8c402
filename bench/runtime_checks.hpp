// troupe-bench: what the workloads that run a troupe::runtime share (actor_bench.cpp,
// ask_bench.cpp): the runtime's options for a run, and the checks made after it.
#pragma once

#include <cstdint>
#include <string>

#include <troupe/troupe.hpp>

#include "bench.hpp"

namespace troupe_bench {

inline troupe::runtime_options options_for(const config& c) {
  troupe::runtime_options o;
  o.workers = c.workers;
  return o;
}

inline std::string describe(const troupe::runtime_counters& c) {
  return "sent=" + std::to_string(c.sent) + " handled=" + std::to_string(c.handled) +
         " dead_lettered=" + std::to_string(c.dead_lettered) +
         " rejected=" + std::to_string(c.rejected) + " spawned=" + std::to_string(c.spawned) +
         " stopped=" + std::to_string(c.stopped) + " failed=" + std::to_string(c.failed) +
         " open_asks=" + std::to_string(c.open_asks);
}

// After shutdown: exactly `messages` were sent and all of them handled; nothing was lost.
inline void expect_all_handled(const troupe::runtime_counters& c, std::uint64_t messages,
                               const std::string& workload) {
  expect(c.sent == messages && c.handled == messages && c.dead_lettered == 0 && c.rejected == 0 &&
             c.failed == 0,
         workload + ": expected " + std::to_string(messages) + " messages sent and handled, got " +
             describe(c));
}

inline void expect_done(bool done, const std::string& workload) {
  expect(done, workload + ": timed out after " + std::to_string(run_timeout.count()) + " s");
}

}  // namespace troupe_bench
