// Internal: timer_service on a standalone Asio io_context run by one runtime-owned thread.
// One asio::steady_timer tracks the earliest deadline of a heap of tasks, so a timer costs a
// heap entry, not an Asio operation, and an ask timeout that is never reached costs little.
#pragma once

#include <troupe/detail/counters.hpp>
#include <troupe/detail/timer_service.hpp>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>

#include <algorithm>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

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

  [[nodiscard]] time_point now() const noexcept override { return std::chrono::steady_clock::now(); }

  void schedule(time_point at, std::unique_ptr<timer_task> task) override {
    bool rearm = false;
    {
      std::lock_guard lock(mutex_);
      if (stopped_) return;  // destroying the task accounts for it
      heap_.push_back(entry{at, sequence_++, std::move(task)});
      std::push_heap(heap_.begin(), heap_.end(), later);
      if (at < armed_for_) {
        armed_for_ = at;
        rearm = true;
      }
    }
    if (rearm) asio::post(io_, [this] { arm(); });
  }

  void stop() noexcept override {
    std::vector<entry> leftovers;
    {
      std::lock_guard lock(mutex_);
      if (stopped_) return;
      stopped_ = true;
      leftovers.swap(heap_);
    }
    guard_.reset();
    io_.stop();
    if (thread_.joinable()) thread_.join();
    leftovers.clear();  // destructors account for what the tasks carried
  }

  [[nodiscard]] std::size_t pending() const noexcept override {
    std::lock_guard lock(mutex_);
    return heap_.size();
  }

 private:
  struct entry {
    time_point at;
    std::uint64_t sequence;
    std::unique_ptr<timer_task> task;
  };
  static bool later(const entry& a, const entry& b) noexcept {
    return a.at != b.at ? a.at > b.at : a.sequence > b.sequence;
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
      first = heap_.front().at;
      armed_for_ = first;
    }
    timer_.expires_at(first);  // cancels a previous wait: its handler sees operation_aborted
    timer_.async_wait([this](const std::error_code& ec) {
      if (!ec) expire();
    });
  }

  // Timer thread: fire everything due, outside the lock, then re-arm.
  void expire() {
    std::vector<std::unique_ptr<timer_task>> due;
    {
      std::lock_guard lock(mutex_);
      const time_point current = now();
      while (!heap_.empty() && heap_.front().at <= current) {
        std::pop_heap(heap_.begin(), heap_.end(), later);
        due.push_back(std::move(heap_.back().task));
        heap_.pop_back();
      }
    }
    for (auto& task : due) task->fire();
    due.clear();
    arm();
  }

  asio::io_context io_{1};
  asio::steady_timer timer_{io_};
  asio::executor_work_guard<asio::io_context::executor_type> guard_;
  mutable std::mutex mutex_;
  std::vector<entry> heap_;
  std::uint64_t sequence_ = 0;
  time_point armed_for_ = time_point::max();
  bool stopped_ = false;
  std::thread thread_;  // last: starts after everything above is constructed
};

}  // namespace troupe::detail
