// troupe::context: what an actor sees of the runtime; and the lifecycle an actor class can hook.
//
// An actor is a plain class whose on(...) overloads are its handlers:
//
//   class counter {
//    public:
//     explicit counter(troupe::context& ctx) : ctx_(ctx) {}  // optional first parameter
//     void on(increment) { ++n_; }
//     troupe::task<void> on(tick) { co_await ctx_.sleep_for(5ms); }  // suspends, never blocks
//     void on_start();  // optional: runs on the actor's worker before the first message
//     void on_stop();   // optional: runs after the last handler, before destruction
//    private:
//     troupe::context& ctx_;
//     int n_ = 0;
//   };
//
// The runtime calls the handlers of one actor one at a time, never concurrently, including
// across the suspensions of a task handler. An exception escaping a handler (or on_start) fails
// the actor: the message is dead-lettered with the exception's text and the actor stops.
#pragma once

#include <chrono>
#include <cstddef>
#include <string_view>

#include <troupe/detail/fwd.hpp>
#include <troupe/error.hpp>
#include <troupe/handler.hpp>
#include <troupe/task.hpp>

namespace troupe {

// The actor's window on the runtime. Passed to the constructor of an actor that asks for it;
// valid for the actor's lifetime. Call it only from the actor's own handlers (it is the actor's
// state, not thread-safe), except runtime(), which may be shared.
class context {
 public:
  context(const context&) = delete;
  context& operator=(const context&) = delete;

  // This actor's untyped address.
  [[nodiscard]] address self() const noexcept;

  // This actor's typed handle; throws error(bad_actor_type) if A is not this actor's class.
  template <Actor A>
  [[nodiscard]] ref<A> self_as() const;

  // The runtime this actor lives in.
  [[nodiscard]] troupe::runtime& runtime() const noexcept;

  // Spawns a new actor on the same runtime; throws error(runtime_stopped) during shutdown.
  template <Actor A, class... Args>
  ref<A> spawn(Args&&... args) const;

  // Stops this actor once the current handler returns; messages still queued are dead-lettered.
  void stop() noexcept;

  // Awaitable in a task handler: resumes the actor, on its own scheduler, at or after the time.
  // A delay of zero or less does not suspend; one past the clock's range (~292 years) saturates.
  [[nodiscard]] detail::sleep_awaiter sleep_for(std::chrono::nanoseconds delay) const;
  [[nodiscard]] detail::sleep_awaiter sleep_until(std::chrono::steady_clock::time_point when) const;

  // Sends `message` to `target` after `delay`; it counts as sent now. Undeliverable when due,
  // it is a dead letter (the sender is gone): shutdown first (reason shutdown), a full bounded
  // mailbox (mailbox_full). A delay of zero or less sends at once; nanoseconds::max() never.
  template <Actor A, class M>
  void send_after(std::chrono::nanoseconds delay, const ref<A>& target, M&& message) const;

  // Death watch: when `target` stops, this actor receives a troupe::down message (at once if
  // it already has). This actor needs an on(troupe::down) handler: otherwise throws
  // error(no_down_handler). Throws error(invalid_ref) on an empty address.
  monitor_handle monitor(const address& target);
  // Cancels a monitor. Returns false if the down message was already sent (it still arrives).
  bool demonitor(const monitor_handle& handle);

  // Links this actor with `other`, both ways (see link.hpp): when either stops for good, the
  // other receives a troupe::exit_signal if it has an on(exit_signal) handler, and otherwise
  // fails if the stop was a failure. At once if `other` already stopped. Linking twice makes one
  // link. Throws error(invalid_ref) on an empty address or on this actor's own.
  void link(const address& other);
  // Undoes a link; false if there was none. A signal already sent still arrives.
  bool unlink(const address& other);

  // Publishes `event` on `subject` (see topic.hpp); returns the number of deliveries. Throws
  // error(invalid_subject) for a malformed subject.
  template <class E>
  std::size_t publish(std::string_view subject, E&& event) const;

  // The runtime's clock (replaceable, e.g. by a simulated clock).
  [[nodiscard]] std::chrono::steady_clock::time_point now() const noexcept;

 protected:
  context() = default;
  ~context() = default;
};

}  // namespace troupe

#include <troupe/detail/core.hpp>
