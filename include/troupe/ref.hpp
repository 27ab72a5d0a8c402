// troupe::address and troupe::ref<A>: untyped and typed handles to an actor.
#pragma once

#include <chrono>
#include <compare>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string_view>
#include <type_traits>
#include <utility>

#include <troupe/detail/address.hpp>
#include <troupe/detail/fwd.hpp>
#include <troupe/error.hpp>
#include <troupe/handler.hpp>

namespace troupe {

// A typed, copyable handle to an actor of class A. send() compiles only for messages A has a
// handler for. Thread-safe: any thread may send through any copy. A may be incomplete where
// the ref is declared, so an actor can hold refs of its own class.
template <class A>
class ref : public address {
 public:
  // An empty ref: sending through it throws error(invalid_ref).
  ref() noexcept = default;

  // Point-to-point, fire-and-forget. Messages from one sender to one actor arrive in order.
  // Returns true when the message was queued. Returns false when it was not: dead-lettered
  // because the actor has stopped, or rejected because the runtime is shutting down and the
  // sender is not one of its actors. Either way it is counted. Throws error(invalid_ref) on an
  // empty ref.
  template <class M>
  bool send(M&& message) const {
    using message_type = std::remove_cvref_t<M>;
    static_assert(Actor<A>, "troupe::ref<A>: A must be a non-abstract, non-const class type");
    static_assert(Message<message_type>, "troupe: a message must be a movable object type");
    static_assert(detail::actor_has_handler_for_message<A, message_type>::value,
                  "troupe: send(): the actor has no on(...) handler for this message type");
    if constexpr (Handles<A, message_type>) {
      return detail::send_message<A>(cell_, std::forward<M>(message));
    } else {
      return false;
    }
  }

  // Flow control for actor senders: co_await in a task handler; sends `message` as soon as the
  // target's bounded mailbox has room (at once for an unbounded one), suspending only that
  // handler meanwhile. If the target stops, the message is dead-lettered.
  template <class M>
  task<void> send_when_ready(M&& message) const {
    using message_type = std::remove_cvref_t<M>;
    static_assert(Message<message_type>, "troupe: a message must be a movable object type");
    static_assert(detail::actor_has_handler_for_message<A, message_type>::value,
                  "troupe: send_when_ready(): the actor has no on(...) handler for this message "
                  "type");
    if (cell_ == nullptr) throw error(errc::invalid_ref, "send_when_ready() through an empty ref");
    return detail::send_when_ready<A, message_type>(cell_, message_type(std::forward<M>(message)));
  }

  // Request-reply: sends `message` and returns a troupe::reply<R> for the handler's reply (see
  // ask.hpp). Compiles only if A has a handler for the message that replies. The first form
  // uses runtime_options::ask_timeout. The timeout must be positive: zero or negative throws
  // error(invalid_argument) and sends nothing; one past the clock's range (nanoseconds::max())
  // never fires. Throws error(invalid_ref) on an empty ref; every other failure completes the
  // reply with an error instead (deadlock at once when the target awaits this actor).
  template <class M>
  auto ask(M&& message) const {
    return ask_impl(std::forward<M>(message), std::chrono::nanoseconds{0}, true);
  }
  template <class M>
  auto ask(M&& message, std::chrono::nanoseconds timeout) const {
    return ask_impl(std::forward<M>(message), timeout, false);
  }

 private:
  friend struct detail::access;

  template <class M>
  auto ask_impl(M&& message, std::chrono::nanoseconds timeout, bool use_default) const {
    using message_type = std::remove_cvref_t<M>;
    static_assert(Message<message_type>, "troupe: a message must be a movable object type");
    static_assert(detail::actor_has_replying_handler_for_message<A, message_type>::value,
                  "troupe: ask(): the actor has no on(...) handler for this message that replies "
                  "(returns a value or a task<T>, or takes a troupe::promise<T>)");
    if constexpr (detail::actor_has_replying_handler_for_message<A, message_type>::value) {
      return detail::ask_message<A, message_type>(
          cell_, std::forward<M>(message),
          std::chrono::duration_cast<detail::clock::duration>(timeout), use_default);
    }
  }
};

}  // namespace troupe

template <class A>
struct std::hash<troupe::ref<A>> : std::hash<troupe::address> {};

#include <troupe/detail/core.hpp>
