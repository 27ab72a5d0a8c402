// troupe::runtime_options: how a runtime is configured.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string_view>

#include <troupe/detail/fwd.hpp>
#include <troupe/tracing.hpp>

namespace troupe {

struct dead_letter;
struct supervision_event;

// Configuration of a troupe::runtime, fixed at construction. Designated initialisers read
// well: troupe::runtime rt({.workers = 2, .ask_timeout = 1s});
struct runtime_options {
  // Worker threads; 0 means std::thread::hardware_concurrency().
  std::size_t workers = 0;
  // Messages an actor may handle per activation before others get the worker (fairness).
  std::size_t batch = 32;
  // How long shutdown() waits for actors to go quiet (and suspended handlers to finish)
  // before stopping them anyway. shutdown() returns after this plus the time to stop the actors
  // (running handlers finish, queued messages are dead-lettered; see the guide's Shutdown).
  std::chrono::milliseconds shutdown_timeout{5000};
  // The timeout of an ask that names none.
  std::chrono::milliseconds ask_timeout{5000};
  // Called for every dead letter, on whichever thread produced it; must be thread-safe and
  // must not block. Dead letters are counted whether or not this is set.
  std::function<void(const dead_letter&)> on_dead_letter{};
  // Called when an actor fails (an exception escaped a handler, on_start or on_stop), with the
  // actor's address and the exception's text; any thread. Unset: one line on stderr.
  std::function<void(const address&, std::string_view what)> on_failure{};
  // Called for every supervision event (child started, failed, restarted, stopped; a
  // supervisor giving up); any thread, must be thread-safe and not block.
  std::function<void(const supervision_event&)> on_supervision{};
  // Collect runtime metrics (runtime::metrics(): per-actor counts, per actor type x message type
  // queue-wait and service-time histograms, ask round trips, topic deliveries). Off: the message
  // path pays one predictable branch; on: see docs/performance.md for the cost.
  bool metrics = false;
  // Sees every message sent, started and finished (see tracing.hpp); null: no tracing.
  std::shared_ptr<trace_hook> trace{};
};

}  // namespace troupe
