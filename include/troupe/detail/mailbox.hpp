// Internal: the actor mailbox, a lock-free multi-producer single-consumer queue whose one
// atomic word also says whether the actor is idle, so that a send both enqueues and, when the
// actor was idle, claims the right to schedule it, in a single compare-and-swap.
#pragma once

#include <atomic>
#include <cstdint>

#include <troupe/detail/envelope.hpp>

namespace troupe::detail {

// The head word holds either a tag or a pointer to the newest envelope (a LIFO list that the
// consumer reverses in batches):
//   idle_tag    empty, and the actor is idle: the next push must schedule it
//   0           empty, and the actor is scheduled, running or suspended in a handler
//   closed_tag  the actor has stopped: pushes fail
//   pointer     messages waiting, and the actor is scheduled, running or suspended
// Envelopes are at least 8-byte aligned, so the tags never collide with a pointer.
// Producers only CAS a new envelope in; the single consumer exchanges the whole list out, so the
// ABA problem cannot arise. Memory per mailbox: two words.
class mailbox {
 public:
  enum class push_result { queued, woke, closed };

  // Any thread. `woke` means the caller now owns scheduling the actor.
  push_result push(envelope* e) noexcept {
    std::uintptr_t head = head_.load(std::memory_order_relaxed);
    for (;;) {
      if (head == closed_tag) return push_result::closed;
      e->next = is_tag(head) ? nullptr : reinterpret_cast<envelope*>(head);
      // seq_cst, not just release: pairs with the consumer's try_idle and the stop flag check
      // (see actor_cell::run); on x86 the CAS is a full barrier anyway.
      if (head_.compare_exchange_weak(head, reinterpret_cast<std::uintptr_t>(e),
                                      std::memory_order_seq_cst, std::memory_order_relaxed)) {
        return head == idle_tag ? push_result::woke : push_result::queued;
      }
    }
  }

  // Any thread: if the actor is idle, mark it scheduled without a message (used to deliver a
  // stop request). Returns true if the caller now owns scheduling it.
  bool claim_if_idle() noexcept {
    std::uintptr_t expected = idle_tag;
    return head_.compare_exchange_strong(expected, 0, std::memory_order_seq_cst);
  }

  // Consumer only: the oldest envelope, or null if none is waiting right now.
  envelope* pop() noexcept {
    if (cache_ == nullptr) {
      if (head_.load(std::memory_order_relaxed) == 0) return nullptr;
      std::uintptr_t taken = head_.exchange(0, std::memory_order_acquire);
      // Reverse the LIFO list into FIFO order.
      envelope* fifo = nullptr;
      auto* e = reinterpret_cast<envelope*>(taken);
      while (e != nullptr) {
        envelope* next = e->next;
        e->next = fifo;
        fifo = e;
        e = next;
      }
      cache_ = fifo;
      if (cache_ == nullptr) return nullptr;
    }
    envelope* e = cache_;
    cache_ = e->next;
    return e;
  }

  // Consumer only: if nothing is waiting, mark the actor idle and return true; the next push
  // will schedule it. Returns false if messages arrived meanwhile.
  bool try_idle() noexcept {
    if (cache_ != nullptr) return false;
    std::uintptr_t expected = 0;
    return head_.compare_exchange_strong(expected, idle_tag, std::memory_order_seq_cst);
  }

  // Consumer only (or any thread once no consumer can run): refuse further pushes and return
  // what was still queued, oldest first.
  envelope* close() noexcept {
    std::uintptr_t taken = head_.exchange(closed_tag, std::memory_order_acq_rel);
    envelope* newest = is_tag(taken) ? nullptr : reinterpret_cast<envelope*>(taken);
    envelope* fifo = nullptr;
    while (newest != nullptr) {
      envelope* next = newest->next;
      newest->next = fifo;
      fifo = newest;
      newest = next;
    }
    // Cached envelopes are older than anything in the head list.
    if (cache_ != nullptr) {
      envelope* tail = cache_;
      while (tail->next != nullptr) tail = tail->next;
      tail->next = fifo;
      fifo = cache_;
      cache_ = nullptr;
    }
    return fifo;
  }

  [[nodiscard]] bool closed() const noexcept {
    return head_.load(std::memory_order_acquire) == closed_tag;
  }

 private:
  static constexpr std::uintptr_t idle_tag = 1;
  static constexpr std::uintptr_t closed_tag = 2;
  static bool is_tag(std::uintptr_t v) noexcept { return v < 8; }

  std::atomic<std::uintptr_t> head_{0};  // a new actor starts scheduled, to run on_start
  envelope* cache_ = nullptr;            // consumer-private, oldest first
};

}  // namespace troupe::detail
