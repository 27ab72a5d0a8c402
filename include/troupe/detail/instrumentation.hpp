// Internal: the storage behind runtime metrics — per-actor counters and, per actor type x
// message type, latency histograms in a fixed lock-free table.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <new>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>

#include <troupe/detail/fwd.hpp>
#include <troupe/detail/trace_context.hpp>
#include <troupe/latency_histogram.hpp>

namespace troupe::detail {

struct envelope_ops;

// Metrics time: steady_clock nanoseconds, read only when metrics or tracing are on.
inline std::int64_t metrics_now() noexcept {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}
inline std::chrono::steady_clock::time_point metrics_time(std::int64_t ns) noexcept {
  return std::chrono::steady_clock::time_point(
      std::chrono::duration_cast<std::chrono::steady_clock::duration>(
          std::chrono::nanoseconds(ns)));
}
inline std::uint64_t elapsed_ns(std::int64_t from, std::int64_t to) noexcept {
  return to > from ? static_cast<std::uint64_t>(to - from) : 0;
}

// One actor's counters. handled is written by the worker running the actor; the rest by any
// thread (relaxed atomic adds: metrics need no ordering).
struct actor_stats {
  std::atomic<std::uint64_t> handled{0};
  std::atomic<std::uint64_t> failed{0};
  std::atomic<std::uint64_t> restarts{0};
  std::atomic<std::uint64_t> dead_letters{0};
  std::atomic<std::int64_t> depth{0};
  std::atomic<std::int64_t> high_water{0};

  void queued() noexcept {
    const std::int64_t d = depth.fetch_add(1, std::memory_order_relaxed) + 1;
    std::int64_t h = high_water.load(std::memory_order_relaxed);
    while (d > h && !high_water.compare_exchange_weak(h, d, std::memory_order_relaxed)) {
    }
  }
  void dequeued() noexcept { depth.fetch_sub(1, std::memory_order_relaxed); }
};

// One actor type x message type (one envelope_ops table: a plain send, an ask, an event or a
// work-queue item of that pair each have their own; the snapshot merges equal names).
struct message_stats {
  std::string_view actor_type;
  std::string_view message_type;
  latency_histogram queue_wait;
  latency_histogram service_time;
  latency_histogram ask_round_trip;
  std::atomic<std::uint64_t> failed{0};
};

// Open addressing on the envelope_ops address, insert-only, lock-free lookups. A pair seen for
// the first time allocates its histograms (once); past `capacity` pairs, the rest are not
// timed (find returns null).
class message_table {
 public:
  static constexpr std::size_t capacity = 1024;

  message_table() = default;
  message_table(const message_table&) = delete;
  message_table& operator=(const message_table&) = delete;
  ~message_table() {
    for (auto& s : slots_) delete s.stats.load(std::memory_order_relaxed);
  }

  message_stats* find(const envelope_ops* ops, std::string_view actor_type,
                      std::string_view message_type) noexcept {
    const std::size_t i = index_of(ops, actor_type, message_type);
    return i < capacity ? at(i) : nullptr;
  }
  // The entry at an index that index_of returned (null if its allocation failed).
  message_stats* at(std::size_t i) noexcept {
    return slots_[i].stats.load(std::memory_order_acquire);
  }
  // The index of the entry of `ops`, inserted if new; capacity if the table is full.
  std::size_t index_of(const envelope_ops* ops, std::string_view actor_type,
                       std::string_view message_type) noexcept {
    std::size_t i = hash(ops);
    for (std::size_t probe = 0; probe < capacity; ++probe, i = (i + 1) % capacity) {
      slot& s = slots_[i];
      const envelope_ops* key = s.key.load(std::memory_order_acquire);
      if (key == nullptr) {
        if (s.key.compare_exchange_strong(key, ops, std::memory_order_acq_rel)) {
          auto* stats = new (std::nothrow) message_stats;
          if (stats != nullptr) {
            stats->actor_type = actor_type;
            stats->message_type = message_type;
          }
          s.stats.store(stats, std::memory_order_release);
          s.ready.store(true, std::memory_order_release);
          return i;
        }
      }
      if (key == ops) {
        // Another thread claimed the slot and is allocating: the wait is once per pair, and
        // yields, since on 2 cores that thread may be the one waiting for a core.
        while (!s.ready.load(std::memory_order_acquire)) std::this_thread::yield();
        return i;
      }
    }
    return capacity;
  }

  template <class F>
  void for_each(F&& f) const {
    for (const auto& s : slots_) {
      if (!s.ready.load(std::memory_order_acquire)) continue;
      if (const message_stats* m = s.stats.load(std::memory_order_acquire)) f(*m);
    }
  }

 private:
  struct slot {
    std::atomic<const envelope_ops*> key{nullptr};
    std::atomic<message_stats*> stats{nullptr};
    std::atomic<bool> ready{false};
  };
  static std::size_t hash(const envelope_ops* p) noexcept {
    return static_cast<std::size_t>(
               (reinterpret_cast<std::uintptr_t>(p) >> 3) * 0x9E3779B97F4A7C15ULL >> 40) %
           capacity;
  }
  slot slots_[capacity];
};

// Publishes and deliveries per subject; a mutex, paid once per publish, only with metrics on.
class topic_stats {
 public:
  void count(std::string_view subject, std::size_t deliveries) noexcept {
    try {
      std::lock_guard lock(mutex_);
      auto it = by_subject_.find(subject);
      if (it == by_subject_.end()) it = by_subject_.emplace(std::string(subject), entry{}).first;
      ++it->second.published;
      it->second.deliveries += deliveries;
    } catch (...) {  // out of memory: this publish goes uncounted here (runtime_counters has it)
    }
  }
  template <class F>
  void for_each(F&& f) const {
    std::lock_guard lock(mutex_);
    for (const auto& [subject, e] : by_subject_) f(subject, e.published, e.deliveries);
  }

 private:
  struct entry {
    std::uint64_t published = 0;
    std::uint64_t deliveries = 0;
  };
  mutable std::mutex mutex_;
  std::map<std::string, entry, std::less<>> by_subject_;
};

// The trace of each message between its queueing and its handler's end, by message id; kept only
// when a trace hook is installed. Not in the envelope: its 40-byte header has no room left while
// the message waits in a mailbox (a 48-byte header would move every ask, and messages of 17 to
// 24 bytes, to the next pool block size), and a runtime without a hook should pay nothing.
// Striped mutexes: the hook's own cost (a virtual call per point, usually a lock) dominates.
class trace_table {
 public:
  void put(std::uint64_t message, trace_id trace) noexcept {
    stripe& s = stripe_of(message);
    try {
      std::lock_guard lock(s.mutex);
      s.traces[message] = trace;
    } catch (...) {  // out of memory: the message's handler starts a trace of its own
    }
  }
  // The message's trace; if unknown (a simulation's duplicate, or out of memory), a root's.
  [[nodiscard]] trace_id find(std::uint64_t message) noexcept {
    stripe& s = stripe_of(message);
    std::lock_guard lock(s.mutex);
    const auto it = s.traces.find(message);
    return it != s.traces.end() ? it->second : root_trace_of(message);
  }
  void erase(std::uint64_t message) noexcept {
    stripe& s = stripe_of(message);
    std::lock_guard lock(s.mutex);
    s.traces.erase(message);
  }
  [[nodiscard]] std::size_t size() noexcept {
    std::size_t n = 0;
    for (stripe& s : stripes_) {
      std::lock_guard lock(s.mutex);
      n += s.traces.size();
    }
    return n;
  }

 private:
  struct alignas(64) stripe {
    std::mutex mutex;
    std::unordered_map<std::uint64_t, trace_id> traces;
  };
  stripe& stripe_of(std::uint64_t message) noexcept { return stripes_[message % 16]; }
  stripe stripes_[16];
};

}  // namespace troupe::detail
