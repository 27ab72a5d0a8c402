// Internal: part of runtime_core (detail/runtime_core.hpp includes it at its end); never
// included by users.
// The shutdown path: drain until quiet (no runnable actor, no suspended handler, no delayed send)
// within the timeout, stop every actor, join the threads; and the background shutdown of a
// runtime destroyed inside its own handler.
#pragma once

#include <troupe/detail/runtime_core.hpp>

namespace troupe::detail {

inline void runtime_core::worker_idle(const void* raw) noexcept {
  auto* self = static_cast<const runtime_core*>(raw);
  if (self->phase_.load(std::memory_order_acquire) == phase::draining) {
    std::lock_guard lock(self->registry_mutex_);
    self->state_cv_.notify_all();
  }
}

inline void runtime_core::shutdown(std::chrono::nanoseconds timeout) {
  if (internal_thread()) {
    throw error(errc::shutdown_from_worker,
                "shutdown() joins the runtime's threads, so it must be called from outside them "
                "(an actor can stop itself with ctx.stop())");
  }
  std::lock_guard serial(shutdown_mutex_);
  if (phase_.load() == phase::stopped) return;
  // Saturating: shutdown(nanoseconds::max()) means "wait as long as it takes", not an overflow.
  const auto deadline =
      deadline_after(std::chrono::steady_clock::now(), saturating_duration(timeout));
  std::vector<actor_cell*> cells;
  {
    std::unique_lock lock(registry_mutex_);
    accepting_.store(false, std::memory_order_seq_cst);
    phase_.store(phase::draining, std::memory_order_seq_cst);
    if (driver_ != nullptr) {  // simulated: no threads; run the actors here, on virtual time
      lock.unlock();
      driver_->run_until(&runtime_core::quiet_of, this, timeout);
      lock.lock();
    }
    while (!quiet() && std::chrono::steady_clock::now() < deadline) {
      if (driver_ != nullptr) break;
      // Parking workers notify; the short bound only covers a notification that raced ahead.
      state_cv_.wait_until(lock, std::min(deadline, std::chrono::steady_clock::now() +
                                                        std::chrono::milliseconds(5)));
    }
    phase_.store(phase::stopping, std::memory_order_seq_cst);
    for (actor_cell* c = registry_head_; c != nullptr; c = c->registry_next_) {
      c->retain();
      cells.push_back(c);
    }
  }
  for (actor_cell* c : cells) {
    c->raise_request(actor_cell::req_shutdown, std::memory_order_relaxed);
    c->request_stop(true);
    c->release();
  }
  if (driver_ != nullptr) driver_->run_until(&runtime_core::all_stopped, this, {});
  {
    std::unique_lock lock(registry_mutex_);
    // Unbounded only if a synchronous handler never returns: C++ cannot preempt it.
    state_cv_.wait(lock, [this] { return live_ == 0; });
  }
  scheduler_->stop();
  timers_->stop();
  phase_.store(phase::stopped, std::memory_order_seq_cst);
}

inline void runtime_core::shutdown_in_background() noexcept {
  owner_.store(nullptr, std::memory_order_release);
  accepting_.store(false, std::memory_order_seq_cst);
  retain();  // the shutdown thread's reference
  try {
    std::thread([this] {
      try {
        shutdown(options_.shutdown_timeout);
      } catch (const std::exception& e) {  // a thread could not be joined: say so
        std::fprintf(stderr, "troupe: background shutdown failed: %s\n", e.what());
      }
      release();
    }).detach();
  } catch (...) {
    std::fputs(
        "troupe: the runtime was destroyed inside one of its handlers and no thread could be "
        "started to shut it down; destroy it from a thread outside the runtime (or call "
        "shutdown() there first)\n",
        stderr);
    std::abort();
  }
}

inline std::int64_t runtime_core::suspended_handlers() const noexcept {
  std::uint64_t resumes = shared_counters_.resumes.load(std::memory_order_acquire);
  for (std::size_t i = 0; i < scheduler_->thread_count(); ++i) {
    resumes += scheduler_->counters_of(i).resumes.load(std::memory_order_acquire);
  }
  std::atomic_thread_fence(std::memory_order_seq_cst);
  std::uint64_t suspends = shared_counters_.suspends.load(std::memory_order_relaxed);
  for (std::size_t i = 0; i < scheduler_->thread_count(); ++i) {
    suspends += scheduler_->counters_of(i).suspends.load(std::memory_order_relaxed);
  }
  return static_cast<std::int64_t>(suspends - resumes);
}

}  // namespace troupe::detail
