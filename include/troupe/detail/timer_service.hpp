// Internal: the clock and timers, behind a small interface so that a simulated clock can
// replace real time (the deterministic simulation mode the design plans for).
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>

namespace troupe::detail {

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
