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
//   wake_tag    as 0, and something other than a message arrived (a stop or restart request, a
//               message of a drop_oldest mailbox, which is held elsewhere): the consumer may
//               not go idle before it has looked at its requests again
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

  // Any thread, after publishing a request (a flag, a held message) that the consumer reads at
  // its next message boundary: if the actor is idle, mark it scheduled (returns true: the caller
  // now owns scheduling it); if it is running with an empty mailbox, set wake_tag so that its
  // try_idle fails and it looks at its requests before going idle. Either way the request cannot
  // be missed, and the consumer needs no re-check after going idle (which would read the record
  // when another thread may already have freed it).
  // Why: if the consumer's try_idle succeeds, it read 0, so this operation either came after
  // (it finds idle_tag and claims) or came before and found a pointer (messages the consumer
  // had not yet taken: its exchange in pop and its request check at the next loop turn both
  // follow this operation in the seq_cst order, so the check sees the request), or it found
  // wake_tag or set it (then the consumer's try_idle read wake_tag, not 0, unless the consumer
  // cleared it, in try_idle, after which it checks its requests: acquiring this release).
  // seq_cst: the request's own store, this operation and the consumer's exchange, try_idle and
  // request check are one store-then-load pattern on each side (Dekker).
  bool claim_or_flag() noexcept {
    std::uintptr_t head = head_.load(std::memory_order_seq_cst);
    for (;;) {
      std::uintptr_t next;
      if (head == idle_tag) {
        next = 0;
      } else if (head == 0) {
        next = wake_tag;
      } else {
        return false;  // messages waiting, already flagged, or closed: nothing to do
      }
      if (head_.compare_exchange_weak(head, next, std::memory_order_seq_cst,
                                      std::memory_order_seq_cst)) {
        return next == 0;
      }
    }
  }

  // Consumer only: the oldest envelope, or null if none is waiting right now.
  envelope* pop() noexcept {
    if (cache_ == nullptr) {
      // relaxed: a cheap peek. Seeing a tag (0 or wake_tag; never idle or closed while the
      // consumer runs) only sends the caller to try_idle, whose seq_cst CAS fails if a push came
      // in meanwhile. The tag is left in place: try_idle consumes wake_tag.
      if (is_tag(head_.load(std::memory_order_relaxed))) return nullptr;
      // seq_cst (acquire would do for the envelopes: it pairs with the pushes' CAS, so their
      // contents and next links are visible here): claim_or_flag's argument needs this
      // exchange in the single total order. On x86 and ARMv8 it is the same instruction.
      std::uintptr_t taken = head_.exchange(0, std::memory_order_seq_cst);
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
  // will schedule it. Returns false if messages or requests (wake_tag) arrived meanwhile; the
  // caller then looks at its requests and its mailbox again. Once this returns true the actor
  // is no longer the caller's: another thread may claim, run, stop and free it.
  // seq_cst: see push and claim_or_flag.
  bool try_idle() noexcept {
    if (cache_ != nullptr) return false;
    std::uintptr_t expected = 0;
    if (head_.compare_exchange_strong(expected, idle_tag, std::memory_order_seq_cst)) return true;
    // Consume the flag (a push may have replaced it with a message: then the CAS fails, and
    // the message is found at the next pop).
    if (expected == wake_tag) head_.compare_exchange_strong(expected, 0, std::memory_order_seq_cst);
    return false;
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

  // Consumer only: nothing is waiting (a relaxed peek, exact only when no other thread pushes:
  // the simulation's one thread uses it to let an actor go idle without being picked again).
  [[nodiscard]] bool looks_empty() const noexcept {
    return cache_ == nullptr && is_tag(head_.load(std::memory_order_relaxed));
  }

  // seq_cst: see close(). (A plain load on x86 and ARMv8, so the senders that check it pay
  // nothing for the order.)
  [[nodiscard]] bool closed() const noexcept {
    return head_.load(std::memory_order_seq_cst) == closed_tag;
  }

 private:
  static constexpr std::uintptr_t idle_tag = 1;
  static constexpr std::uintptr_t closed_tag = 2;
  static constexpr std::uintptr_t wake_tag = 3;
  static bool is_tag(std::uintptr_t v) noexcept { return v < 8; }

  std::atomic<std::uintptr_t> head_{0};  // a new actor starts scheduled, to run on_start
  envelope* cache_ = nullptr;            // consumer-private, oldest first
};

}  // namespace troupe::detail
