// Internal: forward declarations that let the public headers refer to one another.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

#include <troupe/task.hpp>

namespace troupe {

class runtime;
class context;
class address;
template <class A>
class ref;
template <class R>
class reply;
template <class R>
class promise;
struct down;
struct monitor_handle;

namespace detail {

class actor_cell;
class runtime_core;
class sleep_awaiter;
struct access;

using clock = std::chrono::steady_clock;

// Defined in detail/core.hpp, after the types they need are complete.
template <class A, class M>
bool send_message(actor_cell* target, M&& message);
template <class A, class M>
bool send_message_after(actor_cell* target, clock::duration delay, M&& message);
template <class A, class M, class Arg>
auto ask_message(actor_cell* target, Arg&& message, clock::duration timeout, bool use_default);
template <class ActorType, class MessageType>
struct actor_has_replying_handler_for_message;
template <class A, class M>
task<void> send_when_ready(actor_cell* target, M message);
template <class E>
std::size_t publish_event(runtime_core* core, std::string_view subject,
                          std::shared_ptr<const E> event);

}  // namespace detail
}  // namespace troupe
