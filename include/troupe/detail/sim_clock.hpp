// Internal: the simulation's clock and timers (virtual time, one thread) and its random numbers.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include <troupe/detail/timer_heap.hpp>
#include <troupe/detail/timer_service.hpp>

namespace troupe::detail {

// xoshiro256** seeded through splitmix64: fast, small, and the same sequence on every platform
// (the standard library's distributions are not, so none is used).
class sim_rng {
 public:
  explicit sim_rng(std::uint64_t seed) noexcept {
    for (auto& word : s_) {
      seed += 0x9e3779b97f4a7c15ULL;
      std::uint64_t z = seed;
      z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
      z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
      word = z ^ (z >> 31);
    }
  }
  std::uint64_t next() noexcept {
    const std::uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const std::uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
  }
  // Uniform in [0, n) for 0 < n < 2^32: multiply-shift (no division), bias below n / 2^32.
  std::size_t below(std::size_t n) noexcept {
    return static_cast<std::size_t>(((next() >> 32) * static_cast<std::uint64_t>(n)) >> 32);
  }
  // Uniform in [0, 1).
  double unit() noexcept { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

 private:
  static std::uint64_t rotl(std::uint64_t x, int k) noexcept { return (x << k) | (x >> (64 - k)); }
  std::uint64_t s_[4];
};

// Timers on a virtual clock: a binary heap ordered by (due, sequence), the position of each task
// kept in the task so that cancel() removes it in O(log n). Only the simulation's thread uses it,
// so there is no lock. now() moves only when the simulation advances it.
class sim_timer_service final : public timer_service {
 public:
  explicit sim_timer_service(time_point start) noexcept : now_(start) {}
  ~sim_timer_service() override { stop(); }

  [[nodiscard]] time_point now() const noexcept override { return now_; }

  void schedule(time_point at, std::unique_ptr<timer_task> task,
                timer_task** handle = nullptr) override {
    if (stopped_) return;  // destroyed unfired: its destructor accounts for it
    heap_.reserve_one();
    timer_task* t = task.release();
    t->due_ = at < now_ ? now_ : at;
    t->handle_ = handle;
    if (handle != nullptr) *handle = t;
    heap_.push(t);
  }

  std::unique_ptr<timer_task> cancel(timer_task** handle) noexcept override {
    if (handle == nullptr || *handle == nullptr) return nullptr;
    timer_task* t = *handle;
    *handle = nullptr;
    t->handle_ = nullptr;
    heap_.remove(t);
    return std::unique_ptr<timer_task>(t);
  }

  void stop() noexcept override {
    stopped_ = true;
    // Destroying a task may schedule or cancel others: take them one at a time.
    while (!heap_.empty()) {
      timer_task* t = heap_.pop();
      if (t->handle_ != nullptr) *t->handle_ = nullptr;
      delete t;
    }
  }

  [[nodiscard]] std::size_t pending() const noexcept override { return heap_.size(); }

  // The simulation's side.
  [[nodiscard]] bool empty() const noexcept { return heap_.empty(); }
  [[nodiscard]] time_point next_due() const noexcept { return heap_.top()->due_; }
  void advance_to(time_point t) noexcept {
    if (t > now_) now_ = t;
  }
  // Takes the earliest task off the heap and advances the clock to its time; the caller fires
  // and destroys it.
  std::unique_ptr<timer_task> pop_due() noexcept {
    timer_task* t = heap_.pop();
    if (t->handle_ != nullptr) *t->handle_ = nullptr;
    t->handle_ = nullptr;
    advance_to(t->due_);
    return std::unique_ptr<timer_task>(t);
  }

 private:
  time_point now_;
  timer_heap<timer_task> heap_;
  bool stopped_ = false;
};

}  // namespace troupe::detail
