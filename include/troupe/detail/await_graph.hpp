// Internal: deadlock detection for asks — which actor is suspended awaiting which ask, and the
// search for a cycle when an actor suspends on an ask.
// Internal: included only through detail/ask_path.hpp; never by users.
//
// Handlers are not reentrant: an actor suspended in a task handler, awaiting the reply of an
// ask to Y, handles nothing else until that reply comes. So if X awaits an ask to Y while Y
// (directly or through others) awaits an ask to X, no reply in the cycle can ever come; before
// this, each ask waited out its whole timeout. Now the ask that closes the cycle fails at once
// with error(deadlock), whose text names the cycle ("A#1 -> B#2 -> A#1").
//
// The graph: an actor suspended on an ask is entered in a table keyed by the actor (address
// hashed to one of 4,096 entries), pointing at the reply slot it awaits; the slot knows its
// target. Cost on the common path: one CAS to enter, one load of the target's entry (is it
// awaiting too?), one CAS to leave, and one load of `walkers_` when a slot is freed. A search
// happens only when the target is itself entered: it takes one process-wide mutex.
//
// Why a false "cycle" is impossible. A search from X (awaiting the slot S0 to T1) follows
// entries T1 -> S1 -> T2 -> ... and reports a cycle only if it comes back to X and then, in a
// second pass, finds every link unchanged: the same slot still entered for its actor, still
// pending (not claimed by a reply, a timeout or a failure) and not handed to a promise. A slot
// leaves pending once and never returns, and an actor enters a given slot once (a reply is
// awaited once); slots seen by a search are not freed until it ends (below), so no address is
// recycled under it. Hence each link held throughout the interval between its two reads, and
// all of them at the moment between the two passes (every operation involved is seq_cst, so
// the moments are those of one total order). At that moment each Ti was suspended on a pending
// ask that only T(i+1)'s handler could answer, and that handler could not run before Ti+1's
// own ask was answered; the last one awaits X, which is suspending now. Nothing but a timeout,
// a stop or shutdown could have ended that: a real deadlock. (A reply taken over by a promise
// may be fulfilled by anyone, so such a link ends the search.) Two asks that close the same
// cycle at the same moment may both fail with deadlock; each named a real cycle.
//
// Missed cycles, which then time out as before: two actors hashed to the same entry (only the
// first is entered), a chain longer than max_hops, and a race in which the closing ask's search
// runs before the last link is entered — but an actor enters the table before it searches, so
// of two asks that close a cycle concurrently, the later search sees the earlier's entry.
//
// Memory safety: a search reads slots that other actors may drop at any moment. An actor
// leaves the table (seq_cst) before it drops its reply, so the slot's last release, and the
// `walkers_` check that precedes freeing it, come after the leave. A search counts itself in
// `walkers_` (seq_cst) before reading any entry. Either the freeing thread's check sees the
// count (it then waits for the search to end, on the mutex the search holds), or the check
// precedes the count in the total order — and then so does the leave, and the search cannot
// find the slot in the table. Actors reached by a search are alive: each is the target of a
// slot found alive, and a slot holds a reference to its target.
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>

#include <troupe/detail/actor_cell.hpp>
#include <troupe/detail/reply_slot.hpp>

namespace troupe::detail {

class await_graph {
 public:
  static constexpr std::size_t table_bits = 12;
  static constexpr int max_hops = 64;

  // `self` suspends on `slot`. False if its entry is taken (another actor with the same hash):
  // it is then not entered, and cycles through it are not detected (they time out as before).
  static bool enter(const actor_cell* self, reply_slot_base* slot) noexcept {
    reply_slot_base* expected = nullptr;
    return entry(self).compare_exchange_strong(expected, slot, std::memory_order_seq_cst,
                                               std::memory_order_relaxed);
  }
  // `self` no longer waits on `slot` (a no-op if it was not entered with it).
  static void leave(const actor_cell* self, reply_slot_base* slot) noexcept {
    std::atomic<reply_slot_base*>& e = entry(self);
    if (e.load(std::memory_order_relaxed) != slot) return;  // only `self` enters `slot` here
    static_cast<void>(e.compare_exchange_strong(slot, nullptr, std::memory_order_seq_cst,
                                                std::memory_order_relaxed));
  }
  // Whether `cell` may be awaiting an ask (its entry is taken): the cheap test before search().
  [[nodiscard]] static bool maybe_awaiting(const actor_cell* cell) noexcept {
    return entry(cell).load(std::memory_order_seq_cst) != nullptr;
  }

  // `self` is suspending on `slot` (already entered, if it could be). Returns the cycle's text
  // if the slot's target awaits `self` through a chain of pending asks; empty otherwise.
  static std::string search(const actor_cell* self, const reply_slot_base* slot) noexcept {
    std::lock_guard lock(mutex_);
    walkers_.fetch_add(1, std::memory_order_seq_cst);
    struct link {
      const actor_cell* cell;
      const reply_slot_base* awaited;
    };
    std::array<link, max_hops> chain;
    std::size_t n = 0;
    bool closed = false;
    for (const actor_cell* at = slot->target(); n < chain.size();) {
      const reply_slot_base* s = entry(at).load(std::memory_order_seq_cst);
      if (s == nullptr || s->awaiting_cell() != at || !s->awaits_handler()) break;
      chain[n++] = {at, s};
      at = s->target();
      if (at == self) {
        closed = true;
        break;
      }
    }
    // Second pass: every link still holds (see the header comment).
    for (std::size_t i = 0; closed && i < n; ++i) {
      closed = entry(chain[i].cell).load(std::memory_order_seq_cst) == chain[i].awaited &&
               chain[i].awaited->awaits_handler();
    }
    std::string text;
    if (closed) {
      try {
        text = name(self);
        for (std::size_t i = 0; i < n; ++i) text += " -> " + name(chain[i].cell);
        text += " -> " + name(self);
      } catch (...) {  // out of memory: still a deadlock, unnamed
        text = "(a cycle)";
      }
    }
    walkers_.fetch_sub(1, std::memory_order_seq_cst);
    return text;
  }

  // Before a reply slot's memory is freed: wait for a search that may be reading it.
  static void before_free() noexcept {
    if (walkers_.load(std::memory_order_seq_cst) != 0) [[unlikely]] {
      std::lock_guard lock(mutex_);
    }
  }

  static std::string name(const actor_cell* cell) {
    return std::string(cell->ops()->type_name) + "#" + std::to_string(cell->id());
  }

 private:
  static std::atomic<reply_slot_base*>& entry(const actor_cell* cell) noexcept {
    // Actor records are pool blocks of 128 bytes or more: drop the low bits, then Fibonacci
    // hashing spreads consecutive records over the table.
    const auto key = static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(cell) >> 7);
    return table_[(key * 0x9E3779B97F4A7C15ULL) >> (64 - table_bits)];
  }

  // Process-wide (actor addresses are unique across runtimes): 32 KiB, zero-initialised.
  inline static std::atomic<reply_slot_base*> table_[std::size_t{1} << table_bits]{};
  inline static std::atomic<std::size_t> walkers_{0};
  inline static std::mutex mutex_;
};

}  // namespace troupe::detail
