// Internal: each worker's own timers, for the timeouts of the asks its actors make. Arming and
// cancelling one on the worker that armed it touches only that worker's memory: no lock, no
// allocation, no shared line (the shared timer thread's heap and mutex did that for every ask).
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>

#include <troupe/detail/config.hpp>
#include <troupe/detail/timer_heap.hpp>

namespace troupe::detail {

class worker_timers;

// A timer embedded in what it times (a reply slot), so that arming it allocates nothing.
// Armed and fired only by its owner, the worker that armed it; cancelled by whichever thread
// completes what it times (see worker_timers).
struct local_timer {
  // On the owner: `fire` true when the deadline passed (the timer is out of the heap), false to
  // drop the reference a remote cancel took (cancel_remote).
  using hook_fn = void (*)(local_timer*, bool fire) noexcept;

  explicit constexpr local_timer(hook_fn hook) noexcept : hook_(hook) {}

  std::chrono::steady_clock::time_point due_{};
  std::uint64_t sequence_ = 0;
  std::size_t heap_index_ = timer_heap<local_timer>::npos;  // owner only
  // Set once when armed, before the timed object is handed to another thread; null if the
  // timer was never armed locally.
  worker_timers* owner_ = nullptr;
  local_timer* remote_next_ = nullptr;  // the owner's stack of remote cancels
  hook_fn hook_;
};

// One worker's timers: a heap only the worker touches. Other threads never reach into it: a
// thread that completes an ask armed here pushes the timer onto `remote_` (one CAS on a line
// of this object, and only when the completion happens on another thread — which crossed cores
// anyway), and the owner takes it out when it next polls.
//
// When a timer fires: the owner polls every poll_interval activations and before it parks, with
// steady_clock::now(). A worker that parks with timers armed first schedules a wake-up on the
// runtime's timer thread for the earliest (worker_pool::park). So a timeout fires no earlier
// than its deadline, and at most the activations the worker runs before its next poll later
// (or the timer thread's own lateness while it sleeps). Handlers are not preempted: a handler
// that runs for a second on the owner delays that worker's timeouts by up to a second.
class worker_timers {
 public:
  using time_point = std::chrono::steady_clock::time_point;
  using duration = std::chrono::steady_clock::duration;
  static constexpr unsigned poll_interval = 16;  // activations between two polls

  worker_timers() noexcept = default;
  worker_timers(const worker_timers&) = delete;
  worker_timers& operator=(const worker_timers&) = delete;

  // Owner. The deadline of a timeout `d` from now, saturated (time_point::max() means never).
  // steady_clock::now() (a vDSO read, no system call): the kernel's coarse clock was cheaper,
  // but on this VM under load it lagged by more than its resolution, so a deadline padded by
  // the resolution still fired early (docs/performance.md).
  [[nodiscard]] static time_point deadline_after(duration d) noexcept {
    const time_point now = std::chrono::steady_clock::now();
    if (d >= time_point::max() - now) return time_point::max();
    return now + d;
  }

  // Owner: makes room for one more timer, so that arm() cannot throw. May throw bad_alloc.
  void reserve_one() { heap_.reserve_one(); }

  // Owner, after reserve_one(): arms `t` for `due`.
  void arm(local_timer* t, time_point due) noexcept {
    t->owner_ = this;
    t->due_ = due;
    heap_.push(t);
    size_.store(heap_.size(), std::memory_order_relaxed);
  }

  // Owner: what `t` timed completed on this thread; `t` no longer fires.
  void disarm(local_timer* t) noexcept {
    if (t->heap_index_ == timer_heap<local_timer>::npos) return;  // firing now, or fired
    heap_.remove(t);
    size_.store(heap_.size(), std::memory_order_relaxed);
  }

  // Any other thread: what `t` timed completed. Hands `t` to the owner, who takes it out of
  // its heap and then calls its hook with fire = false, which must drop a reference the caller
  // took for the purpose. Returns false (the caller keeps that reference) once the owner has
  // stopped: its timers will never fire.
  bool cancel_remote(local_timer* t) noexcept {
    // Counted first, so that pending() never counts a cancelled timer as armed.
    queued_.fetch_add(1, std::memory_order_relaxed);
    local_timer* head = remote_.load(std::memory_order_relaxed);
    do {
      if (head == closed_marker()) {
        queued_.fetch_sub(1, std::memory_order_relaxed);
        return false;
      }
      t->remote_next_ = head;
      // release: the owner's acquire exchange sees remote_next_ and the completed state.
    } while (!remote_.compare_exchange_weak(head, t, std::memory_order_release,
                                            std::memory_order_relaxed));
    return true;
  }

  // Owner: anything to do at a poll (timers armed, or remote cancels to take out)?
  [[nodiscard]] bool active() const noexcept {
    return !heap_.empty() || remote_.load(std::memory_order_relaxed) != nullptr;
  }
  // One load of a line the owner writes: checked after every activation.
  [[nodiscard]] bool armed() const noexcept { return size_.load(std::memory_order_relaxed) != 0; }
  [[nodiscard]] time_point next_due() const noexcept { return heap_.top()->due_; }

  // Owner: takes out remote cancels, then fires every timer due at `now`. A hook may arm or
  // disarm other timers of this worker. Returns true if any fired.
  bool poll(time_point now) noexcept {
    drain(remote_.exchange(nullptr, std::memory_order_acquire));
    bool fired = false;
    while (!heap_.empty() && heap_.top()->due_ <= now) {
      local_timer* t = heap_.pop();
      size_.store(heap_.size(), std::memory_order_relaxed);
      t->hook_(t, true);
      fired = true;
    }
    return fired;
  }

  // Owner, as its thread ends: takes out remote cancels and refuses further ones. Timers still
  // armed never fire; whoever completes what they time finds the owner stopped.
  void close() noexcept {
    drain(remote_.exchange(closed_marker(), std::memory_order_acquire));
    static_cast<void>(heap_.take_all());
    size_.store(0, std::memory_order_relaxed);
  }

  // Any thread: timers armed and not cancelled (exact when the owner and the cancelling
  // threads are quiet).
  [[nodiscard]] std::size_t pending() const noexcept {
    // queued_ first: a drain between the two loads can then only make the difference smaller.
    const std::int64_t queued = queued_.load(std::memory_order_relaxed);
    const auto armed = static_cast<std::int64_t>(size_.load(std::memory_order_relaxed));
    return armed > queued ? static_cast<std::size_t>(armed - queued) : 0;
  }

 private:
  static local_timer* closed_marker() noexcept { return &closed_; }
  static constinit inline local_timer closed_{nullptr};

  void drain(local_timer* list) noexcept {
    std::int64_t n = 0;
    while (list != nullptr) {
      local_timer* next = list->remote_next_;  // the hook may free the timer
      if (list->heap_index_ != timer_heap<local_timer>::npos) heap_.remove(list);
      list->hook_(list, false);
      list = next;
      ++n;
    }
    if (n != 0) {
      size_.store(heap_.size(), std::memory_order_relaxed);
      queued_.fetch_sub(n, std::memory_order_relaxed);
    }
  }

  // Owner's line: the heap, and its size for pending() (written by the owner only).
  timer_heap<local_timer> heap_;
  std::atomic<std::size_t> size_{0};
  // Written by other threads (remote cancels): a line of its own.
  alignas(cache_line) std::atomic<local_timer*> remote_{nullptr};
  std::atomic<std::int64_t> queued_{0};  // remote cancels not yet taken out
};

}  // namespace troupe::detail
