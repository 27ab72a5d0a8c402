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

// Completion is a claim (one CAS from pending: the winner alone writes the result), then a
// publish (release store of done, futex notify for blocking waiters), then the waiter: a
// suspended actor to wake or a callback to run. The waiter and the publisher meet on `waiter_`:
// whichever of them comes second fires the waiter, so it fires exactly once whatever the order.
// Reference-counted: the asker's reply<R>, the request envelope (or the promise that replaced
// it) and the timeout task each hold one.
class reply_slot_base {
 public:
  // Retains `target` (and so the runtime core) for the slot's lifetime.
  inline reply_slot_base(actor_cell* target, std::uint64_t correlation, address asker) noexcept;
  reply_slot_base(const reply_slot_base&) = delete;
  reply_slot_base& operator=(const reply_slot_base&) = delete;
  inline virtual ~reply_slot_base();

  void retain() noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }
  void release() noexcept {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  // Completes with an error unless already complete. Any thread.
  inline bool fail(errc code, const std::string& text, std::exception_ptr cause = {}) noexcept;

  [[nodiscard]] bool done() const noexcept {
    return state_.load(std::memory_order_acquire) == state_done;
  }
  // wait(), or in a simulation run its events until the ask completes (ask_path.hpp).
  inline void wait_or_drive() const;
  void wait() const noexcept {
    for (std::uint32_t s = state_.load(std::memory_order_acquire); s != state_done;
         s = state_.load(std::memory_order_acquire)) {
      state_.wait(s, std::memory_order_acquire);
    }
  }

  // The waiter: resume a suspended actor...
  // The slot keeps the awaiting actor alive: the actor may be stopped (its task abandoned)
  // while the reply is still on its way.
  void wake_when_done(actor_cell* cell, std::uint64_t generation) noexcept {
    retain_cell(cell);
    wake_cell_ = cell;
    wake_generation_ = generation;
    register_waiter();
  }
  // ...or run a callback (on the completing thread, or here if already complete).
  void call_when_done(std::function<void()> callback) noexcept {
    callback_ = std::move(callback);
    register_waiter();
  }

  [[nodiscard]] std::uint64_t correlation() const noexcept { return correlation_; }
  [[nodiscard]] const std::exception_ptr& error() const noexcept { return error_; }
  [[nodiscard]] inline runtime_core* core() const noexcept;
  [[nodiscard]] const address& asker() const noexcept { return asker_; }

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
    std::uint32_t expected = state_pending;
    return state_.compare_exchange_strong(expected, state_claimed, std::memory_order_acq_rel);
  }
  inline void publish() noexcept;
  std::exception_ptr error_;

 private:
  static constexpr std::uint32_t state_pending = 0;
  static constexpr std::uint32_t state_claimed = 1;
  static constexpr std::uint32_t state_done = 2;
  static constexpr std::uint32_t waiter_none = 0;
  static constexpr std::uint32_t waiter_registered = 1;
  static constexpr std::uint32_t waiter_fired = 2;

  void register_waiter() noexcept {
    if (waiter_.exchange(waiter_registered, std::memory_order_acq_rel) == waiter_fired) fire();
  }
  inline void fire() noexcept;
  static inline void retain_cell(actor_cell* cell) noexcept;

  std::atomic<std::uint32_t> refs_{1};
  std::atomic<std::uint32_t> state_{state_pending};
  std::atomic<std::uint32_t> waiter_{waiter_none};
  // Metrics: 0, or the message-table entry + 1 that records this ask's round trip. A 32-bit
  // index fills padding, so that with asked_ a reply_slot<int> still fits a 128-byte block.
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

  // Consumer side, after done(): the value, or the error rethrown.
  R take() {
    if (error_) std::rethrow_exception(error_);
    return std::move(*value_);
  }

 private:
  std::optional<R> value_;
};

}  // namespace troupe::detail
