// troupe-bench: the pieces shared by the workload files (actor_bench.cpp, ask_bench.cpp, ...),
// the driver (driver.hpp) and the peer executables (peers/floor, peers/caf), which include only
// this header and driver.hpp, never troupe.
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
#include <cstdio>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <unistd.h>
#if defined(__linux__)
#include <pthread.h>
#include <sched.h>
#include <sys/prctl.h>
#endif
#include <vector>

namespace troupe_bench {

struct config {
  bool quick = false;       // smaller sizes, for the smoke test
  std::size_t workers = 0;  // runtime worker threads; 0: hardware concurrency
  std::uint64_t size = 0;   // --size: the workload's main count; 0: its default
};

// A workload's main count: --size if given, else its quick or full default.
inline std::uint64_t sized(const config& c, std::uint64_t quick, std::uint64_t full) {
  return c.size != 0 ? c.size : (c.quick ? quick : full);
}

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
  // Rows in different units (the scale workloads: bytes per actor beside spawn time): one unit
  // and direction per row; empty: every row has the workload's.
  std::vector<std::string> row_units{};
  std::vector<bool> row_lower_is_better{};
};

void add_actor_workloads(std::vector<workload>& out);
void add_ask_workloads(std::vector<workload>& out);
void add_ring_workloads(std::vector<workload>& out);
void add_latency_workloads(std::vector<workload>& out);
void add_restart_workloads(std::vector<workload>& out);
void add_topic_workloads(std::vector<workload>& out);
void add_queue_workloads(std::vector<workload>& out);
void add_keyed_workloads(std::vector<workload>& out);
void add_mailbox_workloads(std::vector<workload>& out);
void add_queue_store_workloads(std::vector<workload>& out);
void add_metrics_workloads(std::vector<workload>& out);
void add_simulation_workloads(std::vector<workload>& out);
void add_scale_workloads(std::vector<workload>& out);

using clock = std::chrono::steady_clock;

inline double seconds_between(clock::time_point from, clock::time_point to) {
  return std::chrono::duration<double>(to - from).count();
}

// How long one run may wait for its actors before it is declared hung.
inline constexpr std::chrono::seconds run_timeout{300};

// The process's resident set size in bytes (/proc/self/statm); 0 if unavailable.
inline std::size_t resident_bytes() {
  std::FILE* f = std::fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  unsigned long long size = 0;
  unsigned long long resident = 0;
  const int n = std::fscanf(f, "%llu %llu", &size, &resident);
  std::fclose(f);
  if (n != 2) return 0;
  const long page = sysconf(_SC_PAGESIZE);
  return static_cast<std::size_t>(resident) * static_cast<std::size_t>(page > 0 ? page : 4096);
}

// The nearest-rank percentile of sorted samples, in per mille (500: the median, 999: p99.9):
// the smallest sample that at least that share of all samples does not exceed.
template <class T>
double percentile_of_sorted(const std::vector<T>& sorted, std::size_t per_mille) {
  if (sorted.empty()) throw failure("percentile of no samples");
  std::size_t rank = (sorted.size() * per_mille + 999) / 1000;  // ceil, 1-based
  if (rank == 0) rank = 1;
  return static_cast<double>(sorted[rank - 1]);
}

// ---- sizes of the DESIGN §5 workloads, shared by troupe-bench and the peers -------------------
// (quick size, full size); --size replaces the one that applies.
inline std::uint64_t pingpong_size(const config& c) {  // round trips
  return sized(c, 100'000, 1'000'000);
}
inline std::uint64_t ask_size(const config& c) {  // sequential asks
  return sized(c, 50'000, 1'000'000);
}
inline constexpr std::uint64_t fanin_senders = 100;
inline std::uint64_t fanin_size(const config& c) {  // messages per sender
  return sized(c, 2'000, 100'000);
}
inline constexpr std::uint64_t broadcast_subscribers = 100;
inline std::uint64_t broadcast_size(const config& c) {  // events
  return sized(c, 2'000, 100'000);
}
inline std::uint64_t spawn_size(const config& c) {  // actors
  return sized(c, 50'000, 1'000'000);
}
inline std::uint64_t idle_size(const config& c) {  // idle actors
  return sized(c, 50'000, 1'000'000);
}
inline constexpr std::uint64_t ring_actors = 503;
inline std::uint64_t ring_size(const config& c) {  // hops
  return sized(c, 100'000, 10'000'000);
}

// The offered load of the `latency` workload (every peer uses the same): one message every
// latency_interval from one plain sender thread, each stamped with the time it was *meant* to be
// sent. The receiver records handle time - intended time, so a sender (or receiver) that falls
// behind adds its backlog to the samples instead of hiding it (coordinated omission corrected).
// 10,000/s, so that the sender can sleep between sends: a sender spinning at a higher rate is a
// CPU hog that a loaded 2-core machine deschedules for whole time slices, which the correction
// then (rightly) charges to every message behind it.
inline constexpr std::chrono::nanoseconds latency_interval{100'000};  // 10,000 messages/s
inline std::uint64_t latency_message_count(const config& c) {
  return sized(c, 5'000, 100'000);
}
inline std::uint64_t latency_warmup_count(const config& c) {
  return c.quick ? 500 : 2'000;
}
inline std::string latency_size(const config& c) {
  return std::to_string(latency_message_count(c)) + " messages (after " +
         std::to_string(latency_warmup_count(c)) +
         " unrecorded) from a plain thread at 10,000/s to one receiver, one-way send->handle "
         "from the intended send time";
}
inline const std::vector<std::string> latency_rows = {"latency_p50", "latency_p99", "latency_p999"};

// The latency sender thread's scheduling for the duration of a run: precise sleeps (Linux: 1 ns
// timer slack instead of the default 50 us) and, where permitted (root), SCHED_FIFO priority 1,
// so that the load generator is not the thread the OS deschedules on a busy machine (measured
// here under load: sender lateness p99 0.34 ms and p99.9 3 ms as a normal thread, 22 us and
// 0.3 ms as SCHED_FIFO). The previous policy is restored on destruction. Not permitted: the
// thread stays a normal one, silently.
class latency_sender_scope {
 public:
  latency_sender_scope() {
#if defined(__linux__)
    prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
    if (pthread_getschedparam(pthread_self(), &old_policy_, &old_param_) == 0) {
      sched_param p{};
      p.sched_priority = 1;
      raised_ = pthread_setschedparam(pthread_self(), SCHED_FIFO, &p) == 0;
    }
#endif
  }
  ~latency_sender_scope() {
#if defined(__linux__)
    if (raised_) pthread_setschedparam(pthread_self(), old_policy_, &old_param_);
    prctl(PR_SET_TIMERSLACK, 0UL, 0UL, 0UL, 0UL);  // 0: back to the default slack
#endif
  }
  latency_sender_scope(const latency_sender_scope&) = delete;
  latency_sender_scope& operator=(const latency_sender_scope&) = delete;

 private:
#if defined(__linux__)
  int old_policy_ = 0;
  sched_param old_param_{};
  bool raised_ = false;
#endif
};

// The latency sender's pacing: sleeps until shortly before `t`, then spins until `t`.
inline void pace_until(clock::time_point t) {
  const clock::time_point spin_from = t - std::chrono::microseconds(20);
  if (clock::now() < spin_from) std::this_thread::sleep_until(spin_from);
  while (clock::now() < t) {
  }
}

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
