// Internal: the actor mailbox, a lock-free multi-producer single-consumer queue whose one
// atomic word also says whether the actor is idle, so that a send both enqueues and, when the
// actor was idle, claims the right to schedule it, in a single compare-and-swap.
#pragma once

#include <atomic>
#include <cstdint>
#include <utility>

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
    // relaxed: only a first guess for the CAS, which re-reads the word if it is wrong.
    std::uintptr_t head = head_.load(std::memory_order_relaxed);
    for (;;) {
      if (head == closed_tag) return push_result::closed;
      e->next = is_tag(head) ? nullptr : reinterpret_cast<envelope*>(head);
      // seq_cst, not just release: release publishes the envelope's contents to the consumer's
      // exchange in pop(); seq_cst puts the CAS in the single total order with try_idle and
      // the stop flag (actor_cell::run, request_stop), so that a send and a consumer going idle
      // cannot both miss each other. On x86 the CAS is a full barrier anyway. relaxed on
      // failure: the retry publishes nothing.
      if (head_.compare_exchange_weak(head, reinterpret_cast<std::uintptr_t>(e),
                                      std::memory_order_seq_cst, std::memory_order_relaxed)) {
        return head == idle_tag ? push_result::woke : push_result::queued;
      }
    }
  }

  // Any thread: if the actor is idle, mark it scheduled without a message (used to deliver a
  // stop request). Returns true if the caller now owns scheduling it.
  // seq_cst: the caller stored a flag (stop, restart) before; this CAS and the consumer's
  // try_idle + flag re-check form the same pattern as push/try_idle.
  bool claim_if_idle() noexcept {
    std::uintptr_t expected = idle_tag;
    return head_.compare_exchange_strong(expected, 0, std::memory_order_seq_cst);
  }

  // Consumer only: the oldest envelope, or null if none is waiting right now.
  envelope* pop() noexcept {
    if (cache_ == nullptr) {
      // relaxed: a cheap peek. Seeing 0 here only sends the caller to try_idle, whose seq_cst
      // CAS fails if a push came in meanwhile.
      if (head_.load(std::memory_order_relaxed) == 0) return nullptr;
      // acquire: pairs with the pushes' CAS (release part), so the envelopes' contents and
      // next links written before each push are visible here.
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
  // seq_cst: see push.
  bool try_idle() noexcept {
    if (cache_ != nullptr) return false;
    std::uintptr_t expected = 0;
    return head_.compare_exchange_strong(expected, idle_tag, std::memory_order_seq_cst);
  }

  // Consumer only (or any thread once no consumer can run): refuse further pushes and return
  // what was still queued, oldest first.
  // seq_cst (not just acq_rel: acquire to take the envelopes, like pop): close() and closed()
  // are one side each of a store-then-load pattern. The closing actor closes, then reads
  // whether senders wait for room (finalize); a send_when_ready waiter registers, then reads
  // closed(). Only if all four operations are seq_cst does the C++ memory model forbid both
  // reads missing the other side's write (then the waiter would sleep forever).
  envelope* close() noexcept {
    std::uintptr_t taken = head_.exchange(closed_tag, std::memory_order_seq_cst);
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

  // close() for a caller that does not need the order (it only frees and counts): calls
  // `each(envelope*)` for every queued envelope, without the pass that reverses the list, which
  // on a backlog of millions of cold envelopes costs as much as freeing them.
  template <class Each>
  void close_unordered(Each each) noexcept {
    // seq_cst: see close().
    std::uintptr_t taken = head_.exchange(closed_tag, std::memory_order_seq_cst);
    for (envelope* e = is_tag(taken) ? nullptr : reinterpret_cast<envelope*>(taken);
         e != nullptr;) {
      envelope* next = e->next;
      each(e);
      e = next;
    }
    for (envelope* e = std::exchange(cache_, nullptr); e != nullptr;) {
      envelope* next = e->next;
      each(e);
      e = next;
    }
  }

  // seq_cst: see close(). (A plain load on x86 and ARMv8, so the senders that check it pay
  // nothing for the order.)
  [[nodiscard]] bool closed() const noexcept {
    return head_.load(std::memory_order_seq_cst) == closed_tag;
  }

 private:
  static constexpr std::uintptr_t idle_tag = 1;
  static constexpr std::uintptr_t closed_tag = 2;
  static bool is_tag(std::uintptr_t v) noexcept { return v < 8; }

  std::atomic<std::uintptr_t> head_{0};  // a new actor starts scheduled, to run on_start
  envelope* cache_ = nullptr;            // consumer-private, oldest first
};

}  // namespace troupe::detail
