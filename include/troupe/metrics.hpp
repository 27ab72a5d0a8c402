// Runtime counters (the accounting that lets a test prove sent = handled + dead + rejected) and
// the metrics snapshot of a runtime with runtime_options::metrics on.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <troupe/latency_histogram.hpp>

namespace troupe {

// A snapshot of a runtime's message and actor counters (runtime::counters()). Exact once the
// runtime is quiet or shut down; while messages fly, each field is a recent value.
struct runtime_counters {
  std::uint64_t sent = 0;           // every send attempt of a user message
  std::uint64_t handled = 0;        // handlers that returned (or whose task completed) normally
  std::uint64_t dead_lettered = 0;  // messages that reached the dead letters
  std::uint64_t rejected = 0;       // sends refused and reported to the sender
  std::uint64_t spawned = 0;        // actors spawned
  std::uint64_t stopped = 0;        // actors that have stopped (normally, failed or at shutdown)
  std::uint64_t failed = 0;         // actors that failed (an exception escaped)
  std::uint64_t open_asks = 0;      // asks whose reply state is still alive
  std::uint64_t published = 0;      // topic publishes
  std::uint64_t unrouted = 0;       // publishes that matched no subscriber (not an error)

  // Messages neither handled nor dead-lettered nor rejected: queued or being handled.
  [[nodiscard]] std::int64_t in_flight() const noexcept {
    return static_cast<std::int64_t>(sent) -
           static_cast<std::int64_t>(handled + dead_lettered + rejected);
  }
};

// One live actor's metrics. `name` is "<type>#<id>" (actors have no other name).
struct actor_metrics {
  std::uint64_t id = 0;
  std::string type;
  std::string name;
  std::uint64_t handled = 0;             // messages whose handler finished normally
  std::uint64_t failed = 0;              // failures (an exception escaped a handler or hook)
  std::uint64_t restarts = 0;            // restarts by its supervisor
  std::uint64_t dead_letters = 0;        // messages to it that reached the dead letters
  std::uint64_t mailbox_depth = 0;       // messages queued now
  std::uint64_t mailbox_high_water = 0;  // the most ever queued at once
};

// Latencies of one message type handled by one actor type, in nanoseconds.
struct message_metrics {
  std::string actor_type;
  std::string message_type;
  latency_histogram queue_wait;      // enqueued -> handler start
  latency_histogram service_time;    // handler start -> handler end (a task handler's suspensions
                                     // included)
  latency_histogram ask_round_trip;  // ask request queued -> reply (or error) available
  std::uint64_t failed = 0;          // handlers that threw
};

// Deliveries per topic subject (as published, not as subscribed).
struct topic_metrics {
  std::string subject;
  std::uint64_t published = 0;
  std::uint64_t deliveries = 0;
};

// What runtime::metrics() returns. Empty lists (and enabled false) when the runtime was built
// without runtime_options::metrics. Like runtime_counters, exact once the runtime is quiet.
struct metrics_snapshot {
  bool enabled = false;
  runtime_counters counters;
  std::vector<actor_metrics> actors;      // live actors, by id
  std::vector<message_metrics> messages;  // by actor type, then message type
  std::vector<topic_metrics> topics;      // by subject
};

}  // namespace troupe
