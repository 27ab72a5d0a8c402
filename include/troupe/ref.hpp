// troupe::address and troupe::ref<A>: untyped and typed handles to an actor.
#pragma once

#include <troupe/detail/address.hpp>
#include <troupe/detail/fwd.hpp>
#include <troupe/error.hpp>
#include <troupe/handler.hpp>

#include <compare>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string_view>
#include <type_traits>
#include <utility>

namespace troupe {

// A typed, copyable handle to an actor of class A. send() compiles only for messages A has a
// handler for. Thread-safe: any thread may send through any copy.
template <class A>
class ref : public address {
  static_assert(Actor<A>, "troupe::ref<A>: A must be a non-abstract, non-const class type");

 public:
  ref() noexcept = default;

  // Point-to-point, fire-and-forget. Messages from one sender to one actor arrive in order.
  // Returns true when the message was queued. Returns false when it was not: dead-lettered
  // because the actor has stopped, or rejected because the runtime is shutting down and the
  // sender is not one of its actors. Either way it is counted. Throws error(invalid_ref) on an
  // empty ref.
  template <class M>
  bool send(M&& message) const {
    using message_type = std::remove_cvref_t<M>;
    static_assert(Message<message_type>, "troupe: a message must be a movable object type");
    static_assert(detail::actor_has_handler_for_message<A, message_type>::value,
                  "troupe: send(): the actor has no on(...) handler for this message type");
    if constexpr (Handles<A, message_type>) {
      return detail::send_message<A>(cell_, std::forward<M>(message));
    } else {
      return false;
    }
  }

 private:
  friend struct detail::access;
};

}  // namespace troupe

template <class A>
struct std::hash<troupe::ref<A>> : std::hash<troupe::address> {};

#include <troupe/detail/core.hpp>
