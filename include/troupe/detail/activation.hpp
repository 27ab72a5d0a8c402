// The actor record at work: run a batch of its mailbox, dispatch each envelope to its handler,
// settle a handler that suspended, wake it, and take stop requests at message boundaries.
// Internal: included only through detail/core.hpp; never by users.
#pragma once

#include <troupe/detail/runtime_core.hpp>

namespace troupe::detail {

inline void actor_cell::release() noexcept {
  if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) destroy_self();
}

inline void actor_cell::destroy_self() noexcept {
  runtime_core* core = core_;
  if (watch_ != nullptr && watch_->supervisor != nullptr) watch_->supervisor->release();
  delete watch_;
  ops_->delete_cell(this);
  core->release();
}

inline activation actor_cell::run(std::size_t batch) {
  if (requested(req_parked, std::memory_order_acquire)) {
    // Woken while waiting for its supervisor: to be restarted in place, or stopped.
    take_request(req_parked, std::memory_order_relaxed);
    wake_.store((wake_.load(std::memory_order_acquire) & ~std::uint64_t{3}) | wake_running,
                std::memory_order_relaxed);
    if (requested(req_stop) || !requested(req_restart)) {
      finalize();
      return activation::finished;
    }
    take_request(req_restart);
    if (!restart_instance()) return activation::suspended;
  } else if (task_) {
    // A suspended task handler was woken (or is being abandoned at shutdown).
    wake_.store((wake_.load(std::memory_order_acquire) & ~std::uint64_t{3}) | wake_running,
                std::memory_order_relaxed);
    if (requested(req_force, std::memory_order_acquire)) {
      finalize();
      return activation::finished;
    }
    int settled;
    if (instrumented_) [[unlikely]] {
      this_thread_identity.message = task_->current_->correlation;  // causation of its sends
      if (core_->tracing())
        this_thread_identity.trace = core_->trace_of_message(this_thread_identity.message);
      task_->resume_point_.resume();
      settled = settle_task();
      this_thread_identity.message = 0;
    } else {
      task_->resume_point_.resume();
      settled = settle_task();
    }
    if (settled < 0) return activation::finished;
    if (settled == 0) return after_suspension();
  }
  if (!started_) {
    started_ = true;
    if (!requested(req_stop, std::memory_order_acquire)) {
      try {
        ops_->on_start(*this);
        start_ran_ = true;
      } catch (...) {
        start_ran_ = false;
        fail(std::current_exception(), nullptr);
        return activation::finished;
      }
    }
  }
  const bool bounded = ops_->mailbox.capacity != 0;  // once per activation, not per message
  const bool held = bounded && ops_->mailbox.overflow == overflow::drop_oldest;
  for (std::size_t n = 0; n < batch; ++n) {
    // One load for both requests (they share a byte); seq_cst: see push in mailbox.hpp.
    if ((requests_.load(std::memory_order_seq_cst) & (req_stop | req_restart)) != 0) [[unlikely]] {
      if (requested(req_stop)) return stop_now();
      if (take_request(req_restart) && !restart_instance()) return activation::suspended;
    }
    envelope* e = held ? pop_held() : mailbox_.pop();
    if (e == nullptr) {
      // A stop or restart request, or a message a drop_oldest sender holds elsewhere, that
      // raced with going idle is not lost: its requester marks the mailbox word after making
      // it (claim_or_flag), so try_idle fails and the loop looks again. Once try_idle succeeds
      // the actor is no longer this worker's (another may claim, run, stop and free it), so
      // nothing here reads the record after it.
      if (!mailbox_.try_idle()) continue;
      return activation::idle;
    }
    if (bounded) [[unlikely]]
      account_bounded_pop(held);
    const int outcome = instrumented_ ? dispatch_instrumented(e) : dispatch(e);
    if (outcome < 0) return activation::finished;
    if (outcome == 0) return after_suspension();
  }
  return activation::yielded;
}

// A bounded mailbox gave up a message: update its depth (unless pop_held did, under its lock)
// and let actors waiting for room retry.
inline void actor_cell::account_bounded_pop(bool depth_taken) noexcept {
  watch_state* x = watch_;
  if (!depth_taken) x->depth.fetch_sub(1, std::memory_order_seq_cst);
  if (x->room_waiter_count.load(std::memory_order_seq_cst) != 0) wake_room_waiters();
}

// drop_oldest: the oldest message held, or null. The depth goes down under the lock, with the
// list, so that a sender never sees a full depth with a slot already free (post_held).
inline envelope* actor_cell::pop_held() noexcept {
  watch_state* x = watch_;
  std::lock_guard lock(x->held_lock);
  envelope* e = x->held_head;
  if (e != nullptr) {
    x->held_head = e->next;
    if (x->held_head == nullptr) x->held_tail = nullptr;
    x->depth.fetch_sub(1, std::memory_order_seq_cst);
  }
  return e;
}

inline void actor_cell::wake_room_waiters() noexcept {
  std::vector<std::pair<actor_cell*, std::uint64_t>> waiters;
  {
    std::lock_guard lock(runtime_core::monitor_lock(this));
    waiters.swap(watch_->room_waiters);
    watch_->room_waiter_count.store(0, std::memory_order_seq_cst);
  }
  // All of them retry; those that lose the race for the free slots wait again.
  for (const auto& [cell, generation] : waiters) {
    cell->wake(generation);
    cell->release();
  }
}

// The handler just suspended. If a forced stop arrived meanwhile, take the actor back now
// rather than waiting for whatever it sleeps on.
// Called with the reference settle_task took before publishing the suspension: from that
// moment another thread may wake, run, stop and free the actor, so this one keeps it alive.
inline activation actor_cell::after_suspension() noexcept {
  activation result = activation::suspended;
  if (requested(req_force)) {
    std::uint64_t w = wake_.load(std::memory_order_acquire);
    if ((w & 3) == wake_suspended &&
        wake_.compare_exchange_strong(w, (w & ~std::uint64_t{3}) | wake_running,
                                      std::memory_order_acq_rel)) {
      core_->add_suspended(-1);
      finalize();
      result = activation::finished;
    }
  }
  release();
  return result;
}

inline int actor_cell::dispatch(envelope* e) {
  handler_start started;
  try {
    started = e->ops->invoke(*this, *e);
  } catch (...) {
    fail(std::current_exception(), e);
    return -1;
  }
  if (!started.frame) {
    finish_message(e);
    return 1;
  }
  return begin_task(started, e);
}

// A handler returned a task: run it to its first suspension or its end.
inline int actor_cell::begin_task(const handler_start& started, envelope* e) {
  task_ = started.promise;
  task_->handler_frame_ = started.frame;
  task_->current_ = e;
  task_->resume_point_ = started.frame;
  started.frame.resume();
  return settle_task();
}

// dispatch with metrics or tracing: the handler's start and end are timed and reported, and
// the messages it sends name it as their causation.
inline int actor_cell::dispatch_instrumented(envelope* e) {
  message_stats* const stats = core_->on_handler_start(this, e);
  this_thread_identity.message = e->correlation;
  handler_start started;
  try {
    started = e->ops->invoke(*this, *e);
  } catch (...) {
    this_thread_identity.message = 0;
    core_->on_handler_end(this, e, true, stats);
    fail(std::current_exception(), e);
    return -1;
  }
  if (!started.frame) {
    this_thread_identity.message = 0;
    core_->on_handler_end(this, e, false, stats);
    finish_message(e);
    return 1;
  }
  const int settled = begin_task(started, e);
  this_thread_identity.message = 0;
  return settled;
}

inline int actor_cell::settle_task() {
  for (;;) {
    promise_base* const promise = task_;
    if (promise->handler_frame_.done()) {
      envelope* e = promise->current_;
      std::exception_ptr error = promise->error();
      if (!error && e->ops->task_done != nullptr) {
        try {
          e->ops->task_done(*e, *promise);  // the reply of an ask
        } catch (...) {
          error = std::current_exception();
        }
      }
      promise->handler_frame_.destroy();  // the promise goes with it
      task_ = nullptr;
      if (instrumented_) [[unlikely]]
        core_->on_handler_end(this, e, error != nullptr);
      if (error) {
        fail(std::move(error), e);
        return -1;
      }
      finish_message(e);
      return 1;
    }
    std::uint64_t w = wake_.load(std::memory_order_acquire);
    const std::uint64_t generation_bits = w & ~std::uint64_t{3};
    if ((w & 3) == wake_armed) {
      core_->add_suspended(1);
      retain();  // released by after_suspension: see there
      if (wake_.compare_exchange_strong(w, generation_bits | wake_suspended,
                                        std::memory_order_acq_rel, std::memory_order_acquire)) {
        return 0;
      }
      release();  // not the last reference: this worker still runs the actor
      core_->add_suspended(-1);
    }
    if ((w & 3) == wake_woken) {
      // The wake-up beat us to it: resume in place.
      wake_.store(generation_bits | wake_running, std::memory_order_relaxed);
      promise->resume_point_.resume();
      continue;
    }
    // Suspended without arming: await_transform admits only troupe awaitables, so this is a
    // bug in one of them. Nothing could ever resume the handler.
    std::fputs("troupe: internal error: a task handler suspended with no wake-up armed\n", stderr);
    std::terminate();
  }
}

inline void actor_cell::wake(std::uint64_t generation) noexcept {
  std::uint64_t w = wake_.load(std::memory_order_acquire);
  for (;;) {
    if ((w >> 2) != generation) return;  // a stale wake-up of an earlier suspension
    const std::uint64_t state = w & 3;
    if (state != wake_armed && state != wake_suspended) return;
    if (wake_.compare_exchange_weak(w, generation << 2 | wake_woken, std::memory_order_acq_rel,
                                    std::memory_order_acquire)) {
      if (state == wake_suspended) {
        // Scheduled first, counted as resumed second: a quiet() check between the two then sees
        // it suspended still, never neither suspended nor runnable (shutdown's drain would end
        // early). Once scheduled the actor may run, stop and be freed elsewhere: only the core,
        // which outlives every thread that can wake an actor, is touched after.
        runtime_core* const core = core_;
        core->schedule(this);
        core->add_suspended(-1);
      }
      return;
    }
  }
}

inline void actor_cell::request_stop(bool force) noexcept {
  // seq_cst: the request and claim_if_idle's CAS below, against try_idle and run's re-check.
  raise_request(force ? req_stop | req_force : req_stop);
  if (mailbox_.claim_or_flag()) {
    core_->schedule(this);
    return;
  }
  if (force) {
    // seq_cst: a failing actor about to park must see force_stop_ or be found parked here
    // (park_for_supervisor's invariant).
    std::uint64_t w = wake_.load(std::memory_order_seq_cst);
    if ((w & 3) == wake_suspended &&
        wake_.compare_exchange_strong(w, (w & ~std::uint64_t{3}) | wake_woken,
                                      std::memory_order_acq_rel)) {
      // Scheduled first, counted as resumed second: a quiet() check between the two then sees
      // it suspended still, never neither suspended nor runnable (shutdown's drain would end
      // early). Once scheduled the actor may run, stop and be freed elsewhere: only the core,
      // which outlives every thread that can wake an actor, is touched after.
      runtime_core* const core = core_;
      core->schedule(this);
      core->add_suspended(-1);
    }
    return;
  }
  kick_parked();  // waiting for its supervisor: a stop ends the wait
}

inline void actor_cell::finish_message(envelope* e) noexcept {
  counter_slot& counters = core_->counters_here();
  counters.add(counters.handled);
  e->destroy();
}

}  // namespace troupe::detail
