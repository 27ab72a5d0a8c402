// The failure path: a handler that threw fails its actor; a supervised actor is parked for its
// supervisor and restarted in place; everything else stops, dead-letters its mailbox and tells
// its watchers. Also the awaiter for an actor's final stop.
// Internal: included only through detail/core.hpp; never by users.
#pragma once

#include <troupe/detail/runtime_core.hpp>
#include <troupe/detail/timer_tasks.hpp>

namespace troupe::detail {

// link_path.hpp: tells `to` that its linked actor `from` stopped.
inline void send_exit_signal(actor_cell* to, actor_cell* from, stop_cause cause,
                             const std::string& detail) noexcept;

// A stop request reached a message boundary. A supervised permanent child is not stopped but
// restarted (its supervisor decides when); everything else stops for good.
inline activation actor_cell::stop_now() noexcept {
  if (supervised_restartable(false)) {
    drop_instance();
    take_request(req_stop, std::memory_order_seq_cst);
    park_for_supervisor(false, "stopped");
    return activation::suspended;
  }
  finalize();
  return activation::finished;
}

inline bool actor_cell::supervised_restartable(bool failed) const noexcept {
  if (watch_ == nullptr || watch_->supervisor == nullptr) return false;
  if (requested(req_final | req_force | req_shutdown)) {
    return false;
  }
  return watch_->restart == restart_kind::permanent ||
         (failed && watch_->restart == restart_kind::transient);
}

// The instance is gone; the mailbox stays and keeps filling. The actor waits, counted as
// suspended, until its supervisor restarts it (request_restart) or stops it.
//
// Invariant (no lost final stop): a request that ends the wait for good — request_final_stop
// (req_final) or a forced stop (req_force) — made while this actor is failing either finds
// it parked and wakes it, or is seen here and stops it now. Both sides are a store then a load,
// all seq_cst (Dekker):
//   requester: set req_final / req_force; load req_parked, load wake_ (kick_parked,
//              request_stop)
//   parker:    set req_parked, store wake_ = suspended; load req_final, req_force
// (The request bits share one atomic byte, so the flag half of this is also plain coherence:
// both sides read-modify-write that byte.)
// In the single total order of seq_cst operations, if the requester's load of parked_ or wake_
// misses the park, that load comes before the parker's store, so the requester's flag store
// comes before the parker's load of the flag, which sees it. Both may see each other: both then
// CAS the same parked wake word away from `suspended`, and only one wins. (Acquire/release
// would not do: it orders nothing between a store and a later load of another variable.)
// A supervisor that is already stopping also dead-letters the exit notice; supervisor::
// notify_exit then stops the child for good (see there), so the wait never outlives it.
inline void actor_cell::park_for_supervisor(bool failed, const std::string& reason) noexcept {
  // Once parked, the actor may be restarted or stopped (and freed) elsewhere: keep it alive
  // until this function is done with it.
  retain();
  raise_request(req_parked, std::memory_order_seq_cst);
  core_->add_suspended(1);
  const std::uint64_t generation = (wake_.load(std::memory_order_relaxed) >> 2) + 1;
  std::uint64_t parked_word = generation << 2 | wake_suspended;
  wake_.store(parked_word, std::memory_order_seq_cst);
  if (requested(req_force | req_final) &&
      wake_.compare_exchange_strong(parked_word, generation << 2 | wake_running,
                                    std::memory_order_acq_rel)) {
    // Shutdown or the supervisor's final stop raced with the failure: stop for good now (its
    // wake-up found the actor not yet parked).
    core_->add_suspended(-1);
    take_request(req_parked, std::memory_order_relaxed);
    finalize();
    release();
    return;
  }
  watch_->notify(watch_->supervisor, this, failed, true, reason);
  release();
}

inline void actor_cell::drop_instance() noexcept {
  if (!instance_alive_) return;
  if (start_ran_) {
    try {
      ops_->on_stop(*this);
    } catch (...) {
      std::string what;
      try {
        what = "on_stop: " + describe(std::current_exception());
      } catch (...) {
      }
      core_->report_failure(this, what);
    }
  }
  ops_->destroy_instance(*this);
  instance_alive_ = false;
  start_ran_ = false;
}

// Builds a fresh instance from the factory and runs on_start; a throw there is a failure like
// any other (the supervisor counts it towards its restart intensity).
inline bool actor_cell::restart_instance() noexcept {
  drop_instance();
  try {
    if (actor_stats* a = core_->actor_stats_of(this)) {
      a->restarts.fetch_add(1, std::memory_order_relaxed);
    }
    watch_->factory(*this);
    instance_alive_ = true;
    started_ = true;
    ops_->on_start(*this);
    start_ran_ = true;
  } catch (...) {
    fail(std::current_exception(), nullptr);
    return false;
  }
  return true;
}

inline void actor_cell::request_restart() noexcept {
  raise_request(req_restart, std::memory_order_seq_cst);
  if (mailbox_.claim_or_flag()) {
    core_->schedule(this);
    return;
  }
  kick_parked();
}

// seq_cst loads: the requester's half of park_for_supervisor's invariant.
inline void actor_cell::kick_parked() noexcept {
  if (!requested(req_parked)) return;
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
}

inline void actor_cell::fail(std::exception_ptr error, envelope* failing) noexcept {
  std::string what;
  try {
    what = describe(error);
  } catch (...) {
  }
  if (failing != nullptr) {
    core_->dead_letter_out(this, failing, dead_letter_reason::handler_failed, what, error);
  }
  core_->report_failure(this, what);
  if (actor_stats* a = core_->actor_stats_of(this))
    a->failed.fetch_add(1, std::memory_order_relaxed);
  {
    std::lock_guard lock(runtime_core::monitor_lock(this));
    try {
      if (watch_ == nullptr) watch_ = new watch_state;
      watch_->failure = what;
    } catch (...) {
    }
  }
  if (supervised_restartable(true)) {
    if (instance_alive_) {
      try {
        ops_->on_failure(*this, error);  // sees the failure before the restart
      } catch (...) {
      }
    }
    drop_instance();
    park_for_supervisor(true, what);
    return;
  }
  cause_ = stop_cause::failed;
  finalize();
}

inline void actor_cell::abandon_task() noexcept {
  envelope* e = task_->current_;
  task_->handler_frame_.destroy();  // also the frames it awaits; their pending wake-ups go stale
  task_ = nullptr;
  if (e != nullptr) {
    core_->dead_letter_out(this, e, dead_letter_reason::shutdown,
                           "the handler was still suspended when the runtime shut down");
  }
}

inline void actor_cell::finalize() noexcept {
  if (task_) abandon_task();
  core_->dead_letter_backlog(this, runtime_core::stop_reason_of(this));
  drop_instance();
  if (watch_ != nullptr && watch_->room_waiter_count.load(std::memory_order_seq_cst) != 0) {
    wake_room_waiters();  // senders waiting for room: the message is dead-lettered instead
  }
  if (cause_ == stop_cause::none) {
    cause_ = requested(req_shutdown, std::memory_order_relaxed) ? stop_cause::shutdown
                                                                : stop_cause::requested;
  }
  notify_watchers();
  // A supervisor that stopped its child (or a runtime shutting down) needs no report.
  if (watch_ != nullptr && watch_->supervisor != nullptr && watch_->notify != nullptr &&
      !requested(req_final | req_shutdown, std::memory_order_relaxed)) {
    std::string reason;
    try {
      reason = cause_ == stop_cause::failed ? watch_->failure : "stopped";
    } catch (...) {
    }
    watch_->notify(watch_->supervisor, this, cause_ == stop_cause::failed, false, reason);
  }
  core_->unregister_cell(this);
  release();  // the runtime's reference
}

inline void actor_cell::notify_watchers() noexcept {
  std::vector<watch_entry> watchers;
  std::string detail;
  {
    std::lock_guard lock(runtime_core::monitor_lock(this));
    exit_cause_ = cause_;
    if (watch_ == nullptr) return;
    watchers.swap(watch_->entries);
    try {
      // A supervised actor keeps the text of a failure it was restarted after: only a stop
      // that is itself a failure carries one.
      if (cause_ == stop_cause::failed) detail = watch_->failure;
    } catch (...) {
    }
  }
  for (const watch_entry& w : watchers) {
    if (w.link) {
      if (drop_link_back(w.watcher)) send_exit_signal(w.watcher, this, cause_, detail);
    } else if (w.wake_generation != 0) {
      w.watcher->wake(w.wake_generation);
    } else {
      core_->deliver_down(w.watcher, this, cause_, detail, w.id);
    }
    w.watcher->release();
  }
}

// Awaitable in a task handler: resumes when `target` has stopped for good, or at `deadline`;
// yields whether it stopped.
class stopped_awaiter {
 public:
  using troupe_awaitable = void;
  stopped_awaiter(actor_cell* target, clock::time_point deadline) noexcept
      : target_(target), deadline_(deadline) {}

  [[nodiscard]] bool await_ready() const noexcept { return stopped(); }
  void await_suspend(std::coroutine_handle<> awaiting) {
    actor_cell* self = this_thread_identity.cell;
    auto timeout = std::make_unique<wake_task>(self);
    const std::uint64_t generation = self->arm_suspension(awaiting);
    timeout->arm(generation);
    bool already = false;
    {
      std::lock_guard lock(runtime_core::monitor_lock(target_));
      if (target_->sealed()) {
        already = true;
      } else {
        if (target_->watch_ == nullptr) target_->watch_ = new watch_state;
        self->retain();
        target_->watch_->entries.push_back({self, 0, generation});
      }
    }
    if (already) {
      self->wake(generation);
      return;
    }
    self->core()->timers().schedule(deadline_, std::move(timeout));
  }
  [[nodiscard]] bool await_resume() const noexcept { return stopped(); }

 private:
  [[nodiscard]] bool stopped() const noexcept {
    std::lock_guard lock(runtime_core::monitor_lock(target_));
    return target_->sealed();
  }
  actor_cell* target_;
  clock::time_point deadline_;
};

}  // namespace troupe::detail
