// Internal: what runs a runtime's actors when there are no threads to run them (the
// deterministic simulation, troupe/simulation.hpp). A threaded runtime has none.
#pragma once

#include <chrono>
#include <string_view>

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

  // What the network does to a reply of type `type` that the calling thread's actor sends to
  // `asker` (reply_slot::deliver asks before completing an ask): lose it, delay it, or deliver
  // a duplicate too (which finds the ask complete: an expired dead letter).
  struct reply_fate {
    bool drop = false;
    bool duplicate = false;
    std::chrono::nanoseconds delay{0};
  };
  virtual reply_fate reply_fault(const actor_cell* asker, std::string_view type) noexcept = 0;
};

}  // namespace troupe::detail
