// troupe::trace_id, the W3C trace-id a traced message carries, and (internal) where a message
// comes from when it is not sent from the current thread's handler: message_origin.
#pragma once

#include <cstdint>

namespace troupe {

// A W3C trace-id: 16 bytes, as two big-endian halves (high holds the first 8 bytes of the hex
// form). All zeros is not a trace (W3C: invalid).
struct trace_id {
  std::uint64_t high = 0;
  std::uint64_t low = 0;
  explicit constexpr operator bool() const noexcept { return (high | low) != 0; }
  friend constexpr bool operator==(const trace_id&, const trace_id&) noexcept = default;
};

// The trace a root message (one sent from outside any handler) starts: its low half is the
// message's id, unique in the runtime (and, with a NATS node, across processes: a node gives its
// runtime a random range of ids); the high half is a mix of it (W3C asks for random-looking
// bytes rather than zeros). A function of the id only, so a simulation stays deterministic.
[[nodiscard]] constexpr trace_id root_trace_of(std::uint64_t message_id) noexcept {
  std::uint64_t z = message_id + 0x9E3779B97F4A7C15ULL;  // splitmix64
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  z ^= z >> 31;
  return {z | 1, message_id};  // never zero
}

namespace detail {

// Where a message comes from when the sending thread is not running its cause: a transport's
// thread handing over a message from the wire (troupe/nats/). `causation`: the id of the message
// whose handler sent it (0: none); `trace`: its trace (empty: a root, a new trace). Read only by
// runtimes with metrics or tracing on; others ignore it.
struct message_origin {
  std::uint64_t causation = 0;
  trace_id trace{};
};

}  // namespace detail
}  // namespace troupe
