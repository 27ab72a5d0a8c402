// Internal: the clock and timers, behind a small interface so that a simulated clock can
// replace real time (the deterministic simulation mode the design plans for).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <memory>
#include <ratio>
#include <type_traits>

namespace troupe::detail {

// Durations and deadlines that cannot overflow. Timeouts and delays come from users, who may
// write nanoseconds::max() or milliseconds::max() for "never": converting those to the clock's
// nanoseconds, or adding them to now, would overflow a signed integer (undefined behaviour,
// and in practice a deadline in the past). Instead they saturate: a duration beyond the
// clock's range becomes its maximum, and a deadline beyond it becomes time_point::max(), which
// no timer reaches ("practically never": the clock's range is about 292 years).
template <class Rep, class Period>
requires std::is_integral_v<Rep>
[[nodiscard]] constexpr std::chrono::steady_clock::duration saturating_duration(
    std::chrono::duration<Rep, Period> d) noexcept {
  using target = std::chrono::steady_clock::duration;
  using source = std::chrono::duration<Rep, Period>;
  if constexpr (std::ratio_divide<Period, target::period>::den == 1) {
    // A whole number of clock ticks per unit (seconds, milliseconds, ...): compare against the
    // largest representable span in the source unit, then convert exactly. Integer only: this
    // is on the path of every ask that uses the default timeout.
    constexpr source hi = std::chrono::floor<source>(target::max());
    constexpr source lo = std::chrono::ceil<source>(target::min());
    if (d > hi) return target::max();
    if (d < lo) return target::min();
    return std::chrono::duration_cast<target>(d);
  } else {
    using limits = std::numeric_limits<target::rep>;
    // Exact for every 64-bit count where long double has a 64-bit mantissa (x86); elsewhere
    // the comparison is merely rounded, never undefined.
    const long double scaled = static_cast<long double>(d.count()) *
                               (static_cast<long double>(Period::num) * target::period::den) /
                               (static_cast<long double>(Period::den) * target::period::num);
    if (scaled >= static_cast<long double>(limits::max())) return target::max();
    if (scaled <= static_cast<long double>(limits::min())) return target::min();
    return target(static_cast<target::rep>(scaled));
  }
}

// now + d, saturated: time_point::max() when that is past the clock's range, and `now` for a
// negative or zero d (what is due already is due now).
[[nodiscard]] constexpr std::chrono::steady_clock::time_point deadline_after(
    std::chrono::steady_clock::time_point now, std::chrono::steady_clock::duration d) noexcept {
  using time_point = std::chrono::steady_clock::time_point;
  if (d <= d.zero()) return now;
  const auto since = now.time_since_epoch();
  if (since > since.zero() && d > time_point::max().time_since_epoch() - since) {
    return time_point::max();
  }
  return now + d;
}

// Work to do at a time. fire() runs on the timer thread and must not block; a task that never
// fires (the runtime shut down first) is destroyed instead, and its destructor must account for
// whatever it carried.
class timer_task {
 public:
  timer_task() = default;
  timer_task(const timer_task&) = delete;
  timer_task& operator=(const timer_task&) = delete;
  virtual ~timer_task() = default;
  virtual void fire() noexcept = 0;

  // Bookkeeping of the service that holds the task (guarded by that service's lock).
  std::chrono::steady_clock::time_point due_{};
  std::uint64_t sequence_ = 0;
  std::size_t heap_index_ = static_cast<std::size_t>(-1);
  timer_task** handle_ = nullptr;
};

class timer_service {
 public:
  using time_point = std::chrono::steady_clock::time_point;
  timer_service() = default;
  timer_service(const timer_service&) = delete;
  timer_service& operator=(const timer_service&) = delete;
  virtual ~timer_service() = default;

  [[nodiscard]] virtual time_point now() const noexcept = 0;
  // Thread-safe. Tasks due at the same time fire in the order they were scheduled. The service
  // owns the task until it fires (then destroys it) or until cancel() hands it back. If
  // `handle` is given, the service keeps *handle pointing at the task while it is pending and
  // nulls it (under its lock) before the task is destroyed, so cancel(handle) never touches a
  // destroyed task.
  virtual void schedule(time_point at, std::unique_ptr<timer_task> task,
                        timer_task** handle = nullptr) = 0;
  // Thread-safe. Takes back the task *handle refers to if it has not started firing; returns
  // null if it fired, is firing, or the service stopped.
  virtual std::unique_ptr<timer_task> cancel(timer_task** handle) noexcept = 0;
  // Stops the timer thread; pending tasks are destroyed without firing. Idempotent.
  virtual void stop() noexcept = 0;
  // Number of tasks waiting to fire.
  [[nodiscard]] virtual std::size_t pending() const noexcept = 0;
};

}  // namespace troupe::detail
