// The send path: build an envelope, push it on the target's mailbox (bounded or not), schedule
// the target if it was idle; the awaiter for room in a full bounded mailbox.
// Internal: included only through detail/core.hpp; never by users.
#pragma once

#include <troupe/detail/runtime_core.hpp>
#include <troupe/detail/timer_tasks.hpp>

namespace troupe::detail {

// The envelope of a plain send of `message` to an actor of class A.
template <class A, class M>
envelope* make_envelope(M&& message) {
  using message_type = std::remove_cvref_t<M>;
  return new message_envelope<message_type>(&message_ops<A, message_type>,
                                            std::forward<M>(message));
}

// Awaits room in a bounded mailbox (or its actor's end): every waiter is woken when a message
// leaves the mailbox, and retries.
class room_awaiter {
 public:
  using troupe_awaitable = void;
  explicit room_awaiter(actor_cell* target) noexcept : target_(target) {}
  [[nodiscard]] bool await_ready() const noexcept { return has_room(); }
  void await_suspend(std::coroutine_handle<> awaiting) {
    actor_cell* self = this_thread_identity.cell;
    watch_state* x = target_->extras();
    const std::uint64_t generation = self->arm_suspension(awaiting);
    {
      std::lock_guard lock(runtime_core::monitor_lock(target_));
      x->room_waiters.emplace_back(self, generation);
      self->retain();
      x->room_waiter_count.fetch_add(1, std::memory_order_seq_cst);
    }
    // A message that left between our look and our registration woke nobody: look again.
    if (has_room() || target_->closed()) target_->wake_room_waiters();
  }
  void await_resume() const noexcept {}

 private:
  [[nodiscard]] bool has_room() const noexcept {
    return target_->extras()->depth.load(std::memory_order_seq_cst) <
           target_->ops()->mailbox.capacity;
  }
  actor_cell* target_;
};

template <class A, class M>
task<void> send_when_ready(actor_cell* target, M message) {
  bool reserved = false;
  const std::size_t capacity = target->ops()->mailbox.capacity;
  if (capacity != 0) {
    std::atomic<std::size_t>& depth = target->extras()->depth;
    while (!target->closed()) {
      if (depth.fetch_add(1, std::memory_order_seq_cst) < capacity) {
        reserved = true;
        break;
      }
      depth.fetch_sub(1, std::memory_order_seq_cst);
      co_await room_awaiter(target);
    }
  }
  envelope* e = make_envelope<A>(std::move(message));
  if (reserved) {
    target->core()->post_reserved(target, e);
  } else {
    target->core()->post(target, e, true);
  }
}

template <class A, class M>
bool send_message(actor_cell* target, M&& message) {
  if (target == nullptr) throw error(errc::invalid_ref, "send() through an empty ref");
  envelope* e = make_envelope<A>(std::forward<M>(message));
  return target->core()->post(target, e, true);
}

// send_message for a message that does not come from this thread's handler: a transport's
// thread hands over a message from the wire with the causation (and trace) it carried, so that a
// trace hook follows the chain across processes (see message_origin). The thread's own identity
// is neither read nor changed; without metrics or tracing, `from` is ignored.
template <class A, class M>
bool send_message_from(actor_cell* target, M&& message, const message_origin& from) {
  if (target == nullptr) throw error(errc::invalid_ref, "send() through an empty ref");
  envelope* e = make_envelope<A>(std::forward<M>(message));
  return target->core()->post_from(target, e, from);
}

// False: refused now (shutdown has begun), counted as rejected. Once scheduled, the sender is
// gone: a delayed send that cannot be delivered is a dead letter (see delayed_send_task).
template <class A, class M>
bool send_message_after(actor_cell* target, clock::duration delay, M&& message) {
  if (target == nullptr) throw error(errc::invalid_ref, "send_after() through an empty ref");
  runtime_core* core = target->core();
  if (!core->accepting() && !core->internal_thread()) {
    core->count_rejected_send();
    return false;
  }
  envelope* e = make_envelope<A>(std::forward<M>(message));
  counter_slot& counters = core->counters_here();
  counters.add(counters.sent);
  // From here the task owns the envelope: fired, it posts it; destroyed unfired, it
  // dead-letters it.
  core->timers().schedule(deadline_after(core->now(), delay),
                          std::make_unique<delayed_send_task>(target, e));
  return true;
}

}  // namespace troupe::detail
