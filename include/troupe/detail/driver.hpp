// Internal: what runs a runtime's actors when there are no threads to run them (the
// deterministic simulation, troupe/simulation.hpp). A threaded runtime has none.
#pragma once

#include <chrono>

namespace troupe::detail {

class actor_cell;
struct envelope;

class driver {
 public:
  driver() = default;
  driver(const driver&) = delete;
  driver& operator=(const driver&) = delete;
  virtual ~driver() = default;

  // Runs events on the calling thread until done(arg) holds, nothing is left to run, or (if
  // `budget` > 0) that much virtual time has passed. Returns done(arg).
  virtual bool run_until(bool (*done)(const void*), const void* arg,
                         std::chrono::nanoseconds budget) = 0;
  // The send path hands it every counted message before queuing it: it queues it
  // (runtime_core::enqueue), delays, duplicates or drops it, and consumes it in any case.
  virtual bool intercept(actor_cell* target, envelope* e) noexcept = 0;
};

}  // namespace troupe::detail
