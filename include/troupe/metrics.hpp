// Runtime counters: the accounting that lets a test prove sent = handled + dead + rejected.
#pragma once

#include <cstdint>

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

}  // namespace troupe
