// Internal: message counters, one block per worker thread plus one shared block.
#pragma once

#include <atomic>
#include <cstdint>

#include <troupe/detail/config.hpp>
#include <troupe/detail/fwd.hpp>
#include <troupe/detail/trace_context.hpp>

namespace troupe::detail {

// A worker's block has a single writer, so increments are a plain load and store (no locked
// instruction on the hot path); the shared block, used by every other thread, uses fetch_add.
// Readers sum all blocks with relaxed loads: exact once the writers are quiet or joined.
struct alignas(cache_line) counter_slot {
  std::atomic<std::uint64_t> sent{0};
  std::atomic<std::uint64_t> handled{0};
  std::atomic<std::uint64_t> dead{0};
  std::atomic<std::uint64_t> rejected{0};
  std::atomic<std::uint64_t> asks_opened{0};
  std::atomic<std::uint64_t> asks_closed{0};
  // Task handlers suspended and resumed (or abandoned) by this thread: the difference, summed
  // over every block, is how many are suspended now (runtime_core::suspended_handlers). Two
  // monotonic counts rather than one that goes up and down, so that a reader can bound the sum
  // from below with one pass over each (the resumes first).
  std::atomic<std::uint64_t> suspends{0};
  std::atomic<std::uint64_t> resumes{0};
  bool single_writer = false;

  void add(std::atomic<std::uint64_t>& counter, std::uint64_t n = 1) noexcept {
    if (single_writer) {
      counter.store(counter.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
    } else {
      counter.fetch_add(n, std::memory_order_relaxed);
    }
  }
};

// Who the current thread is, for the runtime that asks: one of its workers or its timer thread
// (an "internal" thread, whose sends are accepted during shutdown), or anyone else.
struct thread_identity {
  const void* core = nullptr;
  counter_slot* counters = nullptr;  // null on internal threads without their own block
  void* worker = nullptr;
  actor_cell* cell = nullptr;  // the actor this worker is running right now
  // Metrics or tracing on: the id of the message whose handler runs now (the causation of the
  // messages it sends); 0 outside handlers.
  std::uint64_t message = 0;
  // Tracing on: the trace of that message (meaningful only while `message` is not 0).
  trace_id trace{};
};
inline thread_local constinit thread_identity this_thread_identity;

}  // namespace troupe::detail
