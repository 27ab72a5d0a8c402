// troupe-bench: the pieces shared by the workload files (actor_bench.cpp, ask_bench.cpp,
// mailbox_bench.cpp) and the driver (main.cpp).
//
// A workload is a function that performs ONE run and returns ONE figure (in the workload's
// unit), or one figure per row for a workload with rows (workload::rows). It throws
// troupe_bench::failure when the run cannot be trusted (a message went missing, a count does not
// add up, a wait timed out); the driver then reports the workload as failed and exits non-zero.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

namespace troupe_bench {

struct config {
  bool quick = false;       // smaller sizes, for the smoke test
  std::size_t workers = 0;  // runtime worker threads; 0: hardware concurrency
};

// A run whose result cannot be trusted.
class failure : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

inline void expect(bool ok, const std::string& what) {
  if (!ok) throw failure(what);
}

struct workload {
  std::string name;
  std::string group;  // selectable on the command line as a whole (e.g. "mailbox")
  std::string unit;
  bool lower_is_better = true;
  // Run each repetition in a new process (measurements of resident memory, which a heap
  // that earlier workloads already grew would understate).
  bool fresh_process = false;
  std::function<std::string(const config&)> size;  // what one run does, for the JSON report
  std::function<double(const config&)> run;        // one run: the figure, in `unit`
  // A workload whose one run yields several figures (the percentiles of one latency
  // distribution) names them here and sets `run_rows` instead of `run`: each run returns one
  // figure per row, in this order. Every row is reported like a workload of its own (a line of
  // the table, an entry of the JSON report, with this workload's group, unit and size), and all
  // rows are taken from the same runs. The workload's name, its group or any row name selects it.
  std::vector<std::string> rows{};
  std::function<std::vector<double>(const config&)> run_rows{};
};

void add_actor_workloads(std::vector<workload>& out);
void add_ask_workloads(std::vector<workload>& out);
void add_restart_workloads(std::vector<workload>& out);
void add_topic_workloads(std::vector<workload>& out);
void add_queue_workloads(std::vector<workload>& out);
void add_mailbox_workloads(std::vector<workload>& out);
void add_metrics_workloads(std::vector<workload>& out);

using clock = std::chrono::steady_clock;

inline double seconds_between(clock::time_point from, clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

// How long one run may wait for its actors before it is declared hung.
inline constexpr std::chrono::seconds run_timeout{300};

// The process's resident set size in bytes (/proc/self/statm); 0 if unavailable.
std::size_t resident_bytes();

// Set once, from any thread; waited for, with a timeout, by the driving thread. A mutex and a
// condition variable rather than a spin: the waiting thread must not take a core from the
// runtime's workers (this machine may have only two).
class done_signal {
 public:
  void set() {
    {
      std::lock_guard lock(mutex_);
      done_ = true;
    }
    cv_.notify_all();
  }
  [[nodiscard]] bool wait_for(std::chrono::nanoseconds timeout) {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, timeout, [this] { return done_; });
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool done_ = false;
};

// Counts arrivals down from n; the last arrival sets the signal.
class countdown {
 public:
  explicit countdown(std::uint64_t n) : left_(n) {
    if (n == 0) done_.set();
  }
  void arrive() {
    if (left_.fetch_sub(1, std::memory_order_acq_rel) == 1) done_.set();
  }
  [[nodiscard]] bool wait_for(std::chrono::nanoseconds timeout) { return done_.wait_for(timeout); }
  [[nodiscard]] std::uint64_t left() const noexcept {
    return left_.load(std::memory_order_relaxed);
  }

 private:
  std::atomic<std::uint64_t> left_;
  done_signal done_;
};

}  // namespace troupe_bench
