// Internal: the scheduler interface and the thread-pool scheduler behind it.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <thread>
#include <vector>

#include <concurrentqueue/concurrentqueue.h>

#include <troupe/detail/actor_cell.hpp>
#include <troupe/detail/config.hpp>
#include <troupe/detail/counters.hpp>

namespace troupe::detail {

// Runs actors that became runnable. Behind an interface so that a deterministic, seeded,
// single-threaded scheduler can replace the thread pool (the planned simulation mode).
class scheduler {
 public:
  scheduler() = default;
  scheduler(const scheduler&) = delete;
  scheduler& operator=(const scheduler&) = delete;
  virtual ~scheduler() = default;
  // Any thread: `cell` became runnable; the caller owned the right to schedule it.
  virtual void schedule(actor_cell* cell) noexcept = 0;
  // True if no actor is runnable or running right now (best effort, for shutdown's drain).
  [[nodiscard]] virtual bool idle() const noexcept = 0;
  // Joins the threads; every actor must have finished. Idempotent.
  virtual void stop() noexcept = 0;
  [[nodiscard]] virtual std::size_t thread_count() const noexcept = 0;
  // Starts the threads, if it has any (runtime_core::attach calls it once).
  virtual void start() {}
  // The counter block of thread `i` (< thread_count()), which counters_here() hands its actors.
  [[nodiscard]] virtual const counter_slot& counters_of(std::size_t i) const noexcept = 0;
};

// Per-worker FIFO run queues (moodycamel ConcurrentQueue: the owner enqueues with its token,
// the owner and thieves dequeue), a global injection queue for threads outside the pool, and a
// `next` slot per worker for the actor a running actor just woke: the woken actor runs next on
// the same core while its message is hot in cache (the ping-pong case). A worker with nothing
// to do spins briefly, stealing, then parks on an atomic (futex) until work is published.
class worker_pool final : public scheduler {
 public:
  struct alignas(cache_line) worker {
    explicit worker(worker_pool* p, std::size_t i) : pool(p), index(i), token(queue) {
      counters.single_writer = true;
    }
    worker_pool* pool;
    std::size_t index;
    moodycamel::ConcurrentQueue<actor_cell*> queue;
    moodycamel::ProducerToken token;
    actor_cell* next = nullptr;  // owner only
    unsigned streak = 0;         // owner only: consecutive runs taken from `next`
    std::size_t steal_from = 0;  // owner only
    counter_slot counters;
    std::thread thread;
    unsigned since_injection = 0;  // owner only: local picks since the injection queue came first
  };

  using idle_hook = void (*)(const void* core) noexcept;

  worker_pool(const void* core, std::size_t threads, std::size_t batch, idle_hook on_idle)
      : core_(core), batch_(batch == 0 ? 1 : batch), on_idle_(on_idle) {
    if (threads == 0) threads = std::max(1U, std::thread::hardware_concurrency());
    workers_.reserve(threads);
    for (std::size_t i = 0; i < threads; ++i) {
      workers_.push_back(std::make_unique<worker>(this, i));
    }
  }

  ~worker_pool() override { stop(); }

  void start() override {
    for (auto& w : workers_) {
      w->thread = std::thread([this, raw = w.get()] { loop(*raw); });
    }
  }

  [[nodiscard]] worker& at(std::size_t i) noexcept { return *workers_[i]; }
  [[nodiscard]] std::size_t thread_count() const noexcept override { return workers_.size(); }
  [[nodiscard]] const counter_slot& counters_of(std::size_t i) const noexcept override {
    return workers_[i]->counters;
  }

  // The worker the calling thread is, if it belongs to this pool.
  [[nodiscard]] worker* current() const noexcept {
    auto* w = static_cast<worker*>(this_thread_identity.worker);
    return w != nullptr && w->pool == this ? w : nullptr;
  }

  void schedule(actor_cell* cell) noexcept override {
    if (worker* w = current()) {
      if (w->next != nullptr) push_local(*w, w->next);
      w->next = cell;
      return;
    }
    if (!injection_.enqueue(cell)) std::terminate();  // out of memory: nowhere to put the actor
    notify_if_idle();
  }

  // Counts only workers asleep (sleeping_), not those in the parking sequence: a worker whose
  // final look took an actor is still in parked_ until it leaves, but it is not idle.
  [[nodiscard]] bool idle() const noexcept override {
    if (sleeping_.load(std::memory_order_seq_cst) != workers_.size()) return false;
    if (injection_.size_approx() != 0) return false;
    for (const auto& w : workers_) {
      if (w->queue.size_approx() != 0) return false;
    }
    return true;
  }

  void stop() noexcept override {
    if (stopping_.exchange(true)) return;
    epoch_.fetch_add(1, std::memory_order_seq_cst);
    epoch_.notify_all();
    for (auto& w : workers_) {
      if (w->thread.joinable()) w->thread.join();
    }
  }

 private:
  static constexpr unsigned max_streak = 64;  // `next` runs before the FIFO queue gets a turn
  // Local picks before the injection queue gets a turn first (61: prime, as Go's scheduler uses,
  // so it does not beat in step with batch sizes).
  static constexpr unsigned injection_interval = 61;
  static constexpr int spin_rounds = 64;

  void push_local(worker& w, actor_cell* cell, bool wake_a_thief = true) noexcept {
    if (!w.queue.enqueue(w.token, cell)) std::terminate();
    if (wake_a_thief) notify_if_idle();
  }

  // Pairs with the parking sequence in park(): either the parking worker's final look finds the
  // work, or this sees it parked and bumps the epoch it sleeps on.
  void notify_if_idle() noexcept {
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (parked_.load(std::memory_order_relaxed) != 0) {
      epoch_.fetch_add(1, std::memory_order_seq_cst);
      epoch_.notify_one();
    }
  }

  actor_cell* find_work(worker& w) noexcept {
    actor_cell* cell = nullptr;
    if (w.next != nullptr) {
      if (w.streak < max_streak) {
        ++w.streak;
        return std::exchange(w.next, nullptr);
      }
      // Fairness only: this worker takes it (or an older entry) from its own queue next, so
      // waking a parked worker to steal it would cost a futex call for nothing (it showed as
      // the p99 tail of ping-pong and asks).
      push_local(w, std::exchange(w.next, nullptr), false);
    }
    w.streak = 0;
    // Fairness: now and then the injection queue comes first. Otherwise a worker whose own queue
    // never empties (an actor that keeps sending to itself) would never run what the timer
    // thread or a plain thread woke: an ask's timeout, a sleep's end, a send from outside.
    if (++w.since_injection >= injection_interval) {
      w.since_injection = 0;
      if (injection_.try_dequeue(cell)) return cell;
    }
    if (w.queue.try_dequeue_from_producer(w.token, cell)) return cell;
    if (injection_.try_dequeue(cell)) return cell;
    const std::size_t n = workers_.size();
    for (std::size_t k = 1; k < n; ++k) {
      w.steal_from = (w.steal_from + 1) % n;
      if (w.steal_from == w.index) w.steal_from = (w.steal_from + 1) % n;
      if (workers_[w.steal_from]->queue.try_dequeue(cell)) return cell;
    }
    return nullptr;
  }

  actor_cell* park(worker& w) noexcept {
    for (int i = 0; i < spin_rounds; ++i) {
      if (actor_cell* cell = find_work(w)) return cell;
      if (stopping_.load(std::memory_order_relaxed)) return nullptr;
      if (i < spin_rounds / 2) {
        cpu_relax();
      } else {
        std::this_thread::yield();
      }
    }
    for (;;) {
      const std::uint32_t seen = epoch_.load(std::memory_order_seq_cst);
      parked_.fetch_add(1, std::memory_order_seq_cst);
      std::atomic_thread_fence(std::memory_order_seq_cst);
      if (actor_cell* cell = find_work(w)) {
        parked_.fetch_sub(1, std::memory_order_seq_cst);
        return cell;
      }
      if (stopping_.load(std::memory_order_seq_cst)) {
        parked_.fetch_sub(1, std::memory_order_seq_cst);
        return nullptr;
      }
      // Asleep from here until the wait returns: only now may idle() count this worker, and
      // it stops counting it before the worker looks for work again.
      sleeping_.fetch_add(1, std::memory_order_seq_cst);
      on_idle_(core_);
      epoch_.wait(seen, std::memory_order_seq_cst);
      sleeping_.fetch_sub(1, std::memory_order_seq_cst);
      parked_.fetch_sub(1, std::memory_order_seq_cst);
      if (actor_cell* cell = find_work(w)) return cell;
    }
  }

  void loop(worker& w) {
    this_thread_identity = thread_identity{core_, &w.counters, &w};
    for (;;) {
      actor_cell* cell = find_work(w);
      if (cell == nullptr) cell = park(w);
      if (cell == nullptr) break;  // stopping
      this_thread_identity.cell = cell;
      const activation outcome = cell->run(batch_);
      this_thread_identity.cell = nullptr;
      if (outcome == activation::yielded) push_local(w, cell);
    }
  }

  const void* core_;
  std::size_t batch_;
  idle_hook on_idle_;
  std::vector<std::unique_ptr<worker>> workers_;
  moodycamel::ConcurrentQueue<actor_cell*> injection_;
  // Workers in the parking sequence (the wake-up protocol with notify_if_idle).
  alignas(cache_line) std::atomic<std::size_t> parked_{0};
  // Workers asleep on epoch_ after a final look found nothing (idle()); written only when a
  // worker falls asleep or wakes, so it shares parked_'s line.
  std::atomic<std::size_t> sleeping_{0};
  alignas(cache_line) std::atomic<std::uint32_t> epoch_{0};
  std::atomic<bool> stopping_{false};
};

}  // namespace troupe::detail
