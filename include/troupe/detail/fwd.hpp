// Internal: forward declarations that let the public headers refer to one another.
#pragma once

#include <chrono>
#include <cstdint>

namespace troupe {

class runtime;
class context;
class address;
template <class A>
class ref;

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
void send_message_after(actor_cell* target, clock::duration delay, M&& message);

}  // namespace detail
}  // namespace troupe
