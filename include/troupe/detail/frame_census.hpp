// Internal: how many task frames are alive in the process, counted per thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>

namespace troupe::detail {

// Every task frame's allocation adds one and its release subtracts one, in a tally of the
// calling thread: a plain load and store on a line that thread owns, where one process-wide
// counter made every worker write the same line per frame. A frame freed on another thread
// than the one that made it moves two tallies; the sum over all threads (and over the threads
// that ended, folded into retired_) is exact once the threads are quiet.
class frame_census {
 public:
  static void add(std::int64_t n) noexcept {
    tally* t = mine_;
    if (t == nullptr) [[unlikely]] {
      t = enrol();
      if (t == nullptr) {  // the thread is ending and its tally is gone
        retired_.fetch_add(n, std::memory_order_relaxed);
        return;
      }
    }
    // Single writer (this thread): no locked instruction. Relaxed: alive() is a statistic.
    t->live.store(t->live.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }

  // Any thread: frames alive in the process.
  [[nodiscard]] static std::int64_t alive() noexcept {
    std::lock_guard lock(mutex_);
    std::int64_t n = retired_.load(std::memory_order_relaxed);
    for (const tally* t = head_; t != nullptr; t = t->next) {
      n += t->live.load(std::memory_order_relaxed);
    }
    return n;
  }

 private:
  struct tally {
    std::atomic<std::int64_t> live{0};
    tally* prev = nullptr;
    tally* next = nullptr;
  };
  // The calling thread's tally, listed while the thread lives.
  struct enrolment {
    tally mine;
    enrolment() noexcept {
      std::lock_guard lock(mutex_);
      mine.next = head_;
      if (head_ != nullptr) head_->prev = &mine;
      head_ = &mine;
    }
    ~enrolment() {
      std::lock_guard lock(mutex_);
      retired_.fetch_add(mine.live.load(std::memory_order_relaxed), std::memory_order_relaxed);
      if (mine.prev != nullptr) {
        mine.prev->next = mine.next;
      } else {
        head_ = mine.next;
      }
      if (mine.next != nullptr) mine.next->prev = mine.prev;
      mine_ = nullptr;
      ended_ = true;
    }
    enrolment(const enrolment&) = delete;
    enrolment& operator=(const enrolment&) = delete;
  };

  // Out of line: once per thread. Null once the thread's tally has been folded away.
  [[gnu::noinline]] static tally* enrol() noexcept {
    if (ended_) return nullptr;
    static thread_local enrolment e;
    mine_ = &e.mine;
    return mine_;
  }

  // constinit: the hot path reads them without a TLS wrapper call.
  static inline thread_local constinit tally* mine_ = nullptr;
  static inline thread_local constinit bool ended_ = false;
  static inline std::mutex mutex_;
  static inline tally* head_ = nullptr;                 // guarded by mutex_
  static inline std::atomic<std::int64_t> retired_{0};  // ended threads, and ending ones
};

}  // namespace troupe::detail
