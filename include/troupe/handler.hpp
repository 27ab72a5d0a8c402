// What makes a class an actor and a type a message: the concepts send() and spawn() check.
#pragma once

#include <string_view>
#include <type_traits>
#include <utility>

#include <troupe/task.hpp>

namespace troupe {

// A message is a movable object type; it travels by value (moved into the envelope).
template <class M>
concept Message = std::is_object_v<M> && !std::is_array_v<M> && std::is_move_constructible_v<M> &&
                  std::is_destructible_v<M>;

// An actor is a plain class; its on(...) overloads are its handlers.
template <class A>
concept Actor = std::is_class_v<A> && !std::is_abstract_v<A> && std::is_destructible_v<A> &&
                !std::is_const_v<A>;

// A has a handler for M: `a.on(std::move(m))` is well formed. The handler may take M by value,
// by const reference or by rvalue reference, and may return anything or a task<T>.
template <class A, class M>
concept Handles = requires(A& actor, M&& message) {
  actor.on(std::move(message));
};

namespace detail {

// Spelled as a class template so that compilers print both type names when it is false.
template <class ActorType, class MessageType>
struct actor_has_handler_for_message {
  static constexpr bool value = Handles<ActorType, MessageType>;
};

template <class A, class M>
using handler_result_t = decltype(std::declval<A&>().on(std::declval<M&&>()));

// The type's name as the compiler spells it, for dead letters and diagnostics.
template <class T>
constexpr std::string_view type_name() noexcept {
  std::string_view pretty = __PRETTY_FUNCTION__;
  const auto start = pretty.find("T = ");
  if (start == std::string_view::npos) return pretty;
  const auto end = pretty.find_first_of(";]", start + 4);
  return pretty.substr(start + 4, end - start - 4);
}

}  // namespace detail

}  // namespace troupe
