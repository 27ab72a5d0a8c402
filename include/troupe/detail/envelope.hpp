// Internal: the envelope that carries one message through a mailbox.
#pragma once

#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <new>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include <troupe/dead_letter_reason.hpp>
#include <troupe/detail/fwd.hpp>
#include <troupe/detail/pool.hpp>
#include <troupe/error.hpp>
#include <troupe/task.hpp>

namespace troupe::detail {

struct envelope;
class reply_slot_base;

// What starting a handler produced: nothing to drive (it returned) or a task frame to drive.
struct handler_start {
  std::coroutine_handle<> frame;    // the handler's task, not yet started; null if it returned
  promise_base* promise = nullptr;  // the same frame's promise, for its exception
};

// One table per (actor class, message type): how to call the handler and destroy the message.
struct envelope_ops {
  handler_start (*invoke)(actor_cell& cell, envelope& e);
  void (*destroy)(envelope* e) noexcept;
  std::string_view message_type;
  // Asks only (null for plain sends): a task handler finished, so move its result into the
  // reply (may throw: the handler then counts as failed); or the request will not be handled,
  // so complete the reply with this error. (Durable messages, troupe/nats/, use both too: a
  // finished task acknowledges; abort, called before reroute, keeps a throw's text.)
  void (*task_done)(envelope& e, promise_base& result) = nullptr;
  void (*abort)(envelope& e, errc code, const std::string& detail,
                const std::exception_ptr& cause) noexcept = nullptr;
  // Work-queue items only: the item was not handled; the queue takes it back (to redeliver it)
  // and says how to record this attempt (handler_failed, or retries_exhausted on the last).
  dead_letter_reason (*reroute)(envelope& e, dead_letter_reason reason) noexcept = nullptr;
  // Asks only: the reply state (metrics time the round trip on it).
  reply_slot_base* (*reply_of)(envelope& e) noexcept = nullptr;
  // Plain sends of copyable messages: a copy (the simulation's duplicate fault); may throw.
  envelope* (*clone)(const envelope& e) = nullptr;
};

// A message in flight. `next` links it into a mailbox; it is written by the sender before the
// mailbox's publishing CAS (release) and read by the receiver after its acquire, so it needs no
// atomic of its own. Messages of up to 24 bytes fit with this 40-byte header in one 64-byte
// pool block.
struct envelope {
  envelope() noexcept : next(nullptr) {}
  envelope(envelope* n, const envelope_ops* o, std::uint64_t c) noexcept
      : next(n), ops(o), correlation(c) {}

  union {
    envelope* next;
    // Metrics and tracing: once popped (the mailbox no longer links it), when its handler
    // started (metrics_now()).
    std::int64_t started;
  };
  const envelope_ops* ops = nullptr;
  std::uint64_t correlation = 0;
  // Metrics and tracing only, so left unwritten (no cost) by runtimes without them: written by
  // the send path and read by the handling worker of a runtime with them, and by no one else.
  // `causation`: the id of the message whose handler sent this one (0: none). `queued`: when it
  // was queued (metrics_now()).
  std::uint64_t causation;
  std::int64_t queued;

  void destroy() noexcept { ops->destroy(this); }
};

template <class M>
struct message_envelope final : envelope {
  static_assert(alignof(M) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__,
                "troupe: over-aligned message types are not supported");

  template <class... Args>
  explicit message_envelope(const envelope_ops* o, Args&&... args)
      : envelope{nullptr, o, 0}, message(std::forward<Args>(args)...) {}

  static void* operator new(std::size_t n) { return block_pool::allocate(n); }
  static void operator delete(void* p, std::size_t n) noexcept { block_pool::deallocate(p, n); }

  M message;
};

template <class M>
void destroy_envelope(envelope* e) noexcept {
  delete static_cast<message_envelope<M>*>(e);
}

template <class M>
envelope* clone_envelope(const envelope& e) {
  const auto& original = static_cast<const message_envelope<M>&>(e);
  return new message_envelope<M>(original.ops, original.message);
}

// clone_envelope<M> if M can be copied, else null.
template <class M>
constexpr envelope* (*clone_of())(const envelope&) {
  if constexpr (std::is_copy_constructible_v<M>) {
    return &clone_envelope<M>;
  } else {
    return nullptr;
  }
}

}  // namespace troupe::detail
