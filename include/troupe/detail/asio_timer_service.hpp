// Internal: timer_service on a standalone Asio io_context run by one runtime-owned thread.
// One asio::steady_timer tracks the earliest deadline of a heap of tasks, so a timer costs a
// heap entry, not an Asio operation, and an ask timeout that is never reached costs little.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>

#include <troupe/detail/counters.hpp>
#include <troupe/detail/timer_heap.hpp>
#include <troupe/detail/timer_service.hpp>

namespace troupe::detail {

class asio_timer_service final : public timer_service {
 public:
  // `core` tags the timer thread as internal to that runtime.
  explicit asio_timer_service(const void* core)
      : guard_(asio::make_work_guard(io_)), thread_([this, core] {
          this_thread_identity.core = core;
          io_.run();
        }) {}

  ~asio_timer_service() override { stop(); }
  asio_timer_service(const asio_timer_service&) = delete;
  asio_timer_service& operator=(const asio_timer_service&) = delete;

  [[nodiscard]] time_point now() const noexcept override {
    return std::chrono::steady_clock::now();
  }

  void schedule(time_point at, std::unique_ptr<timer_task> task,
                timer_task** handle = nullptr) override {
    bool rearm = false;
    {
      std::lock_guard lock(mutex_);
      if (stopped_) return;  // destroying the task accounts for it
      heap_.reserve_one();   // may throw, before anything changes
      timer_task* raw = task.release();
      raw->due_ = at;
      raw->handle_ = handle;
      if (handle != nullptr) *handle = raw;
      heap_.push(raw);
      if (at < armed_for_) {
        armed_for_ = at;
        rearm = true;
      }
    }
    if (rearm) asio::post(io_, [this] { arm(); });
  }

  std::unique_ptr<timer_task> cancel(timer_task** handle) noexcept override {
    std::lock_guard lock(mutex_);
    timer_task* task = *handle;
    if (stopped_ || task == nullptr || task->heap_index_ == heap::npos) return nullptr;
    heap_.remove(task);
    forget(task);
    // The Asio timer may stay armed for the removed deadline: it then finds nothing due.
    return std::unique_ptr<timer_task>(task);
  }

  void stop() noexcept override {
    std::vector<timer_task*> leftovers;
    {
      std::lock_guard lock(mutex_);
      if (stopped_) return;
      stopped_ = true;
      leftovers = heap_.take_all();
      for (timer_task* task : leftovers) forget(task);
    }
    guard_.reset();
    io_.stop();
    if (thread_.joinable()) thread_.join();
    for (timer_task* task : leftovers) delete task;  // destructors account for their cargo
  }

  [[nodiscard]] std::size_t pending() const noexcept override {
    std::lock_guard lock(mutex_);
    return heap_.size();
  }

 private:
  using heap = timer_heap<timer_task>;

  // Under the lock: the holder of the handle must no longer reach the task.
  static void forget(timer_task* task) noexcept {
    if (task->handle_ != nullptr) *task->handle_ = nullptr;
    task->handle_ = nullptr;
  }

  // Timer thread: point the Asio timer at the earliest deadline.
  void arm() {
    time_point first;
    {
      std::lock_guard lock(mutex_);
      if (heap_.empty()) {
        armed_for_ = time_point::max();
        return;
      }
      first = heap_.top()->due_;
      armed_for_ = first;
    }
    timer_.expires_at(first);  // cancels a previous wait: its handler sees operation_aborted
    timer_.async_wait([this](const std::error_code& ec) {
      if (!ec) expire();
    });
  }

  // Timer thread: fire everything due, outside the lock, then re-arm.
  void expire() {
    std::vector<timer_task*> due;
    {
      std::lock_guard lock(mutex_);
      const time_point current = now();
      while (!heap_.empty() && heap_.top()->due_ <= current) due.push_back(heap_.pop());
    }
    for (timer_task* task : due) {
      task->fire();
      {
        std::lock_guard lock(mutex_);
        forget(task);
      }
      delete task;
    }
    arm();
  }

  asio::io_context io_{1};
  asio::steady_timer timer_{io_};
  asio::executor_work_guard<asio::io_context::executor_type> guard_;
  mutable std::mutex mutex_;
  heap heap_;
  time_point armed_for_ = time_point::max();
  bool stopped_ = false;
  std::thread thread_;  // last: starts after everything above is constructed
};

}  // namespace troupe::detail
