// Death watch: ctx.monitor(target) delivers a troupe::down message when the target stops.
//
//   class watcher {
//    public:
//     explicit watcher(troupe::context& ctx) : ctx_(ctx) {}
//     void on(watch w) { handle_ = ctx_.monitor(w.target); }
//     void on(const troupe::down& d) { /* d.who stopped; d.reason says why */ }
//     ...
//   };
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <troupe/detail/address.hpp>

namespace troupe {

// Why a monitored actor stopped (down::reason).
enum class down_reason {
  normal,    // stopped on request (ctx.stop(), address::stop())
  failed,    // an exception escaped a handler, on_start or on_stop
  shutdown,  // the runtime shut down
  // Death watch across processes (troupe/nats): the actor's node fell silent (missed
  // heartbeats), nobody exposes the name, or this node closed. It may still be running.
  unreachable,
};

// A short English name of the reason.
[[nodiscard]] constexpr std::string_view to_string(down_reason r) noexcept {
  switch (r) {
    case down_reason::normal:
      return "normal";
    case down_reason::failed:
      return "failed";
    case down_reason::shutdown:
      return "shutdown";
    case down_reason::unreachable:
      return "unreachable";
  }
  return "unknown";
}

// The message a monitoring actor receives once, when the monitored actor stops.
struct down {
  // The actor that stopped; empty for a remote actor (troupe/nats: detail names it).
  address who;
  down_reason reason = down_reason::normal;
  std::string detail;  // the failure's text for down_reason::failed; for a remote actor, which
                       // one and why
  // The id of the monitor_handle this answers.
  std::uint64_t monitor_id = 0;
};

// What ctx.monitor() returns; pass it to ctx.demonitor() to cancel.
struct monitor_handle {
  // The monitored actor.
  address target;
  // Unique per monitor call; 0 in a default-constructed handle.
  std::uint64_t id = 0;
};

}  // namespace troupe

#include <troupe/detail/core.hpp>
