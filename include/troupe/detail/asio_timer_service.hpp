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
      timer_task* raw = task.release();
      raw->due_ = at;
      raw->sequence_ = sequence_++;
      raw->handle_ = handle;
      if (handle != nullptr) *handle = raw;
      heap_.push_back(raw);
      sift_up(heap_.size() - 1);
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
    if (stopped_ || task == nullptr || task->heap_index_ == npos) return nullptr;
    remove_at(task->heap_index_);
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
      leftovers.swap(heap_);
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
  static constexpr std::size_t npos = static_cast<std::size_t>(-1);

  static bool earlier(const timer_task* a, const timer_task* b) noexcept {
    return a->due_ != b->due_ ? a->due_ < b->due_ : a->sequence_ < b->sequence_;
  }
  // Under the lock: the holder of the handle must no longer reach the task.
  static void forget(timer_task* task) noexcept {
    if (task->handle_ != nullptr) *task->handle_ = nullptr;
    task->handle_ = nullptr;
  }
  void place(std::size_t i, timer_task* t) noexcept {
    heap_[i] = t;
    t->heap_index_ = i;
  }
  void sift_up(std::size_t i) noexcept {
    timer_task* t = heap_[i];
    while (i > 0) {
      const std::size_t parent = (i - 1) / 2;
      if (!earlier(t, heap_[parent])) break;
      place(i, heap_[parent]);
      i = parent;
    }
    place(i, t);
  }
  void sift_down(std::size_t i) noexcept {
    timer_task* t = heap_[i];
    const std::size_t n = heap_.size();
    for (;;) {
      std::size_t child = 2 * i + 1;
      if (child >= n) break;
      if (child + 1 < n && earlier(heap_[child + 1], heap_[child])) ++child;
      if (!earlier(heap_[child], t)) break;
      place(i, heap_[child]);
      i = child;
    }
    place(i, t);
  }
  timer_task* remove_at(std::size_t i) noexcept {
    timer_task* removed = heap_[i];
    timer_task* last = heap_.back();
    heap_.pop_back();
    if (i < heap_.size()) {
      place(i, last);
      sift_down(i);
      sift_up(last->heap_index_);
    }
    removed->heap_index_ = npos;
    return removed;
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
      first = heap_.front()->due_;
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
      while (!heap_.empty() && heap_.front()->due_ <= current) due.push_back(remove_at(0));
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
  std::vector<timer_task*> heap_;  // a binary min-heap; each task knows its index
  std::uint64_t sequence_ = 0;
  time_point armed_for_ = time_point::max();
  bool stopped_ = false;
  std::thread thread_;  // last: starts after everything above is constructed
};

}  // namespace troupe::detail
