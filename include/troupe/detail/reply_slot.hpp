// Internal: the shared state of one ask — where the reply (or the error) lands, exactly once.
#pragma once

#include <atomic>
#include <cstdint>
#include <exception>
#include <functional>
#include <optional>
#include <string>
#include <utility>

#include <troupe/detail/address.hpp>
#include <troupe/detail/fwd.hpp>
#include <troupe/detail/pool.hpp>
#include <troupe/error.hpp>

namespace troupe::detail {

class timer_task;
class driver;

// Completion is a claim (one CAS from pending: the winner alone writes the result), then a
// publish (an exchange to done; a futex notify only if a thread sleeps in wait()), then the
// waiter: a suspended actor to wake or a callback to run. The waiter and the publisher meet on
// `waiter_`: whichever of them comes second fires the waiter, so it fires exactly once whatever
// the order. Reference-counted: the asker's reply<R>, the request envelope (or the promise that
// replaced it) and the timeout task each hold one.
//
// The timeout is a task on the runtime's timer service (its own thread), wherever the ask was
// made: it fires even while a handler blocks the asker's worker (docs/design.md, Timers).
class reply_slot_base {
 public:
  // Retains `target` (and so the runtime core) for the slot's lifetime.
  inline reply_slot_base(actor_cell* target, std::uint64_t correlation, address asker) noexcept;
  reply_slot_base(const reply_slot_base&) = delete;
  reply_slot_base& operator=(const reply_slot_base&) = delete;
  inline virtual ~reply_slot_base();

  void retain() noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }
  void release() noexcept {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
      before_free();  // a deadlock search may be reading this slot: let it finish
      delete this;
    }
  }

  // Completes with an error unless already complete. Any thread.
  inline bool fail(errc code, const std::string& text, std::exception_ptr cause = {}) noexcept;

  [[nodiscard]] bool done() const noexcept {
    return (state_.load(std::memory_order_acquire) & state_mask) == state_done;
  }
  // wait(), or in a simulation run its events until the ask completes (ask_path.hpp).
  inline void wait_or_drive();
  // Blocks the calling (non-runtime) thread until done.
  // Why a flag: the standard library's atomic wait table has 16 buckets shared by every waiter
  // in the process (parked workers, other blocked get()s). A notify_all() on every completion
  // costs a futex system call whenever this slot hashes to a bucket that has any sleeper —
  // 1.5-1.9 us per ask instead of ~0.25. So the publisher notifies only when a sleeper has
  // said so. The sleeper sets `sleeper` with a CAS before it blocks; the publisher's exchange
  // to done reads the flag. Both are read-modify-writes of state_, so one precedes the other in
  // its modification order: either the exchange sees the flag (and notifies after storing
  // done, which unblocks a wait that saw the flagged value: [atomics.wait]), or the CAS fails
  // because the state is done already (and the sleeper never blocks). No wake-up is lost.
  void wait() noexcept {
    std::uint32_t s = state_.load(std::memory_order_acquire);
    while ((s & state_mask) != state_done) {
      if ((s & sleeper) == 0) {
        if (!state_.compare_exchange_weak(s, s | sleeper, std::memory_order_seq_cst,
                                          std::memory_order_acquire)) {
          continue;  // s reloaded: done meanwhile, or another bit changed
        }
        s |= sleeper;
      }
      state_.wait(s, std::memory_order_acquire);
      s = state_.load(std::memory_order_acquire);
    }
  }

  // The waiter: resume a suspended actor...
  // The slot keeps the awaiting actor alive: the actor may be stopped (its task abandoned)
  // while the reply is still on its way. `cell` is the actor awaiting in a task handler: it
  // is also entered in the wait-for graph (await_graph.hpp), and if the target awaits it in
  // turn (a cycle), the ask fails at once with error(deadlock) instead of waiting it out.
  inline void await_from(actor_cell* cell, std::uint64_t generation) noexcept;
  // The awaiting actor resumed (or dropped the reply): it no longer waits on this slot.
  inline void end_await() noexcept;
  // ...or run a callback (on the completing thread, or here if already complete).
  void call_when_done(std::function<void()> callback) noexcept {
    callback_ = std::move(callback);
    register_waiter();
  }

  [[nodiscard]] std::uint64_t correlation() const noexcept { return correlation_; }
  [[nodiscard]] const std::exception_ptr& error() const noexcept { return error_; }
  [[nodiscard]] inline runtime_core* core() const noexcept;
  [[nodiscard]] const address& asker() const noexcept { return asker_; }
  [[nodiscard]] actor_cell* target() const noexcept { return target_; }
  // The actor suspended on this slot (null if none): set once, before the slot is entered in
  // the wait-for graph, so that a deadlock search that finds the slot there may read it.
  [[nodiscard]] actor_cell* awaiting_cell() const noexcept { return wake_cell_; }
  // Still waiting for a reply that only the target's handler can give: not complete, not even
  // claimed, and not handed to a troupe::promise (which anyone may fulfil). Deadlock search.
  [[nodiscard]] bool awaits_handler() const noexcept {
    return (state_.load(std::memory_order_seq_cst) & (state_mask | promised)) == state_pending;
  }
  // The target's handler took a troupe::promise for this ask.
  void mark_promised() noexcept { state_.fetch_or(promised, std::memory_order_seq_cst); }
  // The reply no longer depends on the target's handler: a promise holds it (mark_promised), or
  // a simulated network does (delayed or lost; ask_path.hpp). relaxed: read on the thread that
  // set it (the request envelope's destructor, after the handler).
  [[nodiscard]] bool handed_off() const noexcept {
    return (state_.load(std::memory_order_relaxed) & promised) != 0;
  }

  // Pending timeout task; read and written only under the timer service's lock.
  timer_task* timer_ = nullptr;

  // Metrics on: when the request was queued, and which entry of the runtime's message table
  // (index + 1) records the round trip on completion.
  // The timer thread may complete the ask meanwhile (a timeout): the entry is published last.
  void time_round_trip(std::uint32_t entry, std::int64_t asked) noexcept {
    asked_ = asked;
    round_trip_entry_.store(entry, std::memory_order_release);
  }

 protected:
  bool claim() noexcept {
    std::uint32_t s = state_.load(std::memory_order_relaxed);
    while ((s & state_mask) == state_pending) {
      // seq_cst (free on x86): the deadlock search reasons about one order of all state changes.
      if (state_.compare_exchange_weak(s, (s & ~state_mask) | state_claimed,
                                       std::memory_order_seq_cst, std::memory_order_relaxed)) {
        return true;
      }
    }
    return false;
  }
  inline void publish() noexcept;
  std::exception_ptr error_;

 private:
  // state_: the completion state in the low bits, and two flags.
  static constexpr std::uint32_t state_pending = 0;
  static constexpr std::uint32_t state_claimed = 1;
  static constexpr std::uint32_t state_done = 2;
  static constexpr std::uint32_t state_mask = 3;
  static constexpr std::uint32_t sleeper = 4;   // a thread blocks in wait(): notify it
  static constexpr std::uint32_t promised = 8;  // a troupe::promise answers for the reply
  static constexpr std::uint32_t waiter_none = 0;
  static constexpr std::uint32_t waiter_registered = 1;
  static constexpr std::uint32_t waiter_fired = 2;

  void register_waiter() noexcept {
    if (waiter_.exchange(waiter_registered, std::memory_order_acq_rel) == waiter_fired) fire();
  }
  inline void fire() noexcept;
  [[gnu::cold]] inline void fail_deadlock(actor_cell* cell, bool self) noexcept;
  static inline void retain_cell(actor_cell* cell) noexcept;
  static inline void before_free() noexcept;

  std::atomic<std::uint32_t> refs_{1};
  std::atomic<std::uint32_t> state_{state_pending};
  std::atomic<std::uint32_t> waiter_{waiter_none};
  // Metrics: 0, or the message-table entry + 1 that records this ask's round trip. A 32-bit
  // index fills what would be padding.
  std::atomic<std::uint32_t> round_trip_entry_{0};
  actor_cell* target_;
  std::uint64_t correlation_;
  address asker_;
  actor_cell* wake_cell_ = nullptr;
  std::uint64_t wake_generation_ = 0;
  std::function<void()> callback_;
  std::int64_t asked_ = 0;
};

template <class R>
class reply_slot final : public reply_slot_base {
 public:
  using reply_slot_base::reply_slot_base;

  // One per ask: recycled through the pool like envelopes, not malloc'd.
  static void* operator new(std::size_t n) { return block_pool::allocate(n); }
  static void operator delete(void* p, std::size_t n) noexcept { block_pool::deallocate(p, n); }

  // Delivers the reply unless the ask already completed (timed out, say): then the late reply
  // is dead-lettered as expired. Any thread. Counted as a message either way.
  inline bool deliver(R&& value) noexcept;
  // deliver() past the simulation's network (or without one): completes now.
  inline bool complete(R&& value) noexcept;

  // Consumer side, after done(): the value, or the error rethrown.
  R take() {
    if (error_) std::rethrow_exception(error_);
    return std::move(*value_);
  }

 private:
  [[gnu::noinline]] inline bool deliver_through(driver* d, R&& value) noexcept;
  std::optional<R> value_;
};

}  // namespace troupe::detail
