// The state shared by a runtime, its actors, threads and timers: registry, counters, metrics,
// tracing, dead letters, topics, shutdown.
// Internal: included only through detail/core.hpp; never by users.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include <troupe/actor.hpp>
#include <troupe/ask.hpp>
#include <troupe/dead_letter.hpp>
#include <troupe/detail/actor_cell.hpp>
#include <troupe/detail/counters.hpp>
#include <troupe/detail/driver.hpp>
#include <troupe/detail/instrumentation.hpp>
#include <troupe/detail/reply_slot.hpp>
#include <troupe/detail/scheduler.hpp>
#include <troupe/detail/timer_service.hpp>
#include <troupe/detail/topic_registry.hpp>
#include <troupe/metrics.hpp>
#include <troupe/monitor.hpp>
#include <troupe/ref.hpp>
#include <troupe/runtime_options.hpp>
#include <troupe/tracing.hpp>

namespace troupe::detail {

struct access {
  static address make_address(actor_cell* cell) noexcept {
    address a;
    if (cell != nullptr) cell->retain();
    a.cell_ = cell;
    return a;
  }
  template <class A>
  static ref<A> make_ref(actor_cell* cell) noexcept {
    ref<A> r;
    if (cell != nullptr) cell->retain();
    r.cell_ = cell;
    return r;
  }
  // Takes over a reference the caller already holds.
  template <class A>
  static ref<A> adopt_ref(actor_cell* cell) noexcept {
    ref<A> r;
    r.cell_ = cell;
    return r;
  }
  static actor_cell* cell_of(const address& a) noexcept { return a.cell_; }
};

inline std::string describe(const std::exception_ptr& error) {
  try {
    std::rethrow_exception(error);
  } catch (const std::exception& e) {
    return e.what();
  } catch (...) {
    return "unknown exception (not derived from std::exception)";
  }
}

// Shared by a runtime, its actors, threads and timers. Reference-counted: the runtime holds one
// reference and every actor record one, so a ref that outlives its runtime stays safe to use
// (its sends are rejected and counted).
class runtime_core {
 public:
  enum class phase : int { running, draining, stopping, stopped };

  runtime_core(troupe::runtime* owner, runtime_options options)
      : owner_(owner),
        options_(std::move(options)),
        trace_(options_.trace.get()),
        metrics_on_(options_.metrics),
        instrumented_(options_.metrics || options_.trace != nullptr) {
    if (metrics_on_) {
      message_stats_ = std::make_unique<message_table>();
      topic_stats_ = std::make_unique<topic_stats>();
    }
    if (trace_ != nullptr) traces_ = std::make_unique<trace_table>();
  }
  runtime_core(const runtime_core&) = delete;
  runtime_core& operator=(const runtime_core&) = delete;

  // Wires the threads; they start running here.
  void attach(std::unique_ptr<timer_service> timers, std::unique_ptr<scheduler> pool) {
    timers_ = std::move(timers);
    pool_ = std::move(pool);
    scheduler_ = pool_.get();
    pool_->start();
  }

  // The simulation's (before attach): `d` runs the actors when an outside thread would wait
  // for them (reply::get, shutdown), and sees every send first.
  void set_driver(driver* d) noexcept {
    driver_ = d;
    hooked_ = true;
  }
  [[nodiscard]] driver* current_driver() const noexcept { return driver_; }

  void retain() noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }
  void release() noexcept {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  // The runtime object; null once it is destroyed (possibly before the core, which refs keep).
  [[nodiscard]] troupe::runtime* owner() const noexcept {
    return owner_.load(std::memory_order_acquire);
  }
  [[nodiscard]] const runtime_options& options() const noexcept { return options_; }
  [[nodiscard]] timer_service& timers() noexcept { return *timers_; }
  [[nodiscard]] clock::time_point now() const noexcept { return timers_->now(); }
  [[nodiscard]] std::size_t worker_count() const noexcept { return scheduler_->thread_count(); }
  [[nodiscard]] bool accepting() const noexcept {
    return accepting_.load(std::memory_order_acquire);
  }

  void schedule(actor_cell* cell) noexcept { scheduler_->schedule(cell); }

  [[nodiscard]] bool internal_thread() const noexcept { return this_thread_identity.core == this; }

  counter_slot& counters_here() noexcept {
    const thread_identity& id = this_thread_identity;
    if (id.core == this && id.counters != nullptr) return *id.counters;
    return shared_counters_;
  }

  template <class A, class... Args>
  typed_cell<A>* spawn(Args&&... args) {
    return create<A>(
        "spawn", [&](typed_cell<A>& cell) { cell.construct(std::forward<Args>(args)...); }, nullptr,
        nullptr);
  }

  // Spawns an actor under a supervisor: built (now and at every restart) by `factory`.
  template <class A>
  typed_cell<A>* spawn_supervised(std::function<void(actor_cell&)> factory, actor_cell* supervisor,
                                  restart_kind restart, exit_notifier notify) {
    auto extras = std::make_unique<watch_state>();
    extras->factory = std::move(factory);
    extras->restart = restart;
    extras->notify = notify;
    watch_state& x = *extras;
    return create<A>(
        "start_child", [&x](typed_cell<A>& cell) { x.factory(cell); }, std::move(extras),
        supervisor);
  }

  // Builds the actor record and the instance (on the calling thread, so that the constructor's
  // exceptions reach the caller), registers it and schedules its first activation (which runs
  // on_start: a new mailbox starts "scheduled", not idle). Refused once shutdown has begun.
  template <class A, class Build>
  typed_cell<A>* create(const char* what, Build&& build, std::unique_ptr<watch_state> extras,
                        actor_cell* supervisor) {
    auto refuse = [what] {
      return error(errc::runtime_stopped, std::string(what) + "<" + std::string(type_name<A>()) +
                                              ">() after shutdown began");
    };
    if (!accepting()) throw refuse();
    auto* cell =
        new typed_cell<A>(this, next_id_.fetch_add(1, std::memory_order_relaxed), instrumented_);
    try {
      build(*cell);
    } catch (...) {
      delete cell;  // the instance was never constructed
      throw;
    }
    {
      std::lock_guard lock(registry_mutex_);
      if (!accepting()) {
        cell->ops()->destroy_instance(*cell);
        delete cell;
        throw refuse();
      }
      if (extras == nullptr && (cell->ops()->mailbox.capacity != 0 || metrics_on_)) {
        extras = std::make_unique<watch_state>();
      }
      if (supervisor != nullptr) {
        supervisor->retain();
        extras->supervisor = supervisor;
      }
      cell->set_extras(extras.release());
      link(cell);
    }
    retain();        // the actor record's reference to the core
    cell->retain();  // the caller's ref
    spawned_.fetch_add(1, std::memory_order_relaxed);
    schedule(cell);
    return cell;
  }

  // The send path. Counts the attempt (unless it was counted when a delayed send was made),
  // then queues, dead-letters or rejects the envelope, which it always consumes.
  bool post(actor_cell* target, envelope* e, bool count_sent) noexcept {
    return post_impl(target, e, count_sent, nullptr);
  }
  // post() for a message that does not come from this thread's handler: `from` says where it
  // comes from (see message_origin; only metrics and tracing read it). A function of its own so
  // that a plain send passes no extra argument: in post(), `from` is a constant null.
  bool post_from(actor_cell* target, envelope* e, const message_origin& from) noexcept {
    return post_impl(target, e, true, &from);
  }
  [[gnu::always_inline]] inline bool post_impl(actor_cell* target, envelope* e, bool count_sent,
                                               const message_origin* from) noexcept {
    counter_slot& counters = counters_here();
    if (count_sent) counters.add(counters.sent);
    if (!accepting_.load(std::memory_order_relaxed) && !internal_thread()) {
      counters.add(counters.rejected);
      if (e->ops->abort != nullptr) {
        e->ops->abort(*e, errc::runtime_stopped, "the runtime is shutting down", {});
      }
      if (e->ops->reroute != nullptr) e->ops->reroute(*e, dead_letter_reason::shutdown);
      e->destroy();
      // Senders that keep sending into a runtime that is shutting down would otherwise take
      // the cores from the workers that stop the actors and dead-letter their backlogs
      // (shutdown ran for seconds past its timeout with 50 such threads on 2 cores): a sender
      // told "no" gives up the rest of its time slice.
      std::this_thread::yield();
      return false;
    }
    if (target->ops()->mailbox.capacity != 0) [[unlikely]] {
      if (target->ops()->mailbox.overflow == overflow::drop_oldest) {
        if (instrumented_) [[unlikely]]
          on_queued(target, e, from);
        return post_held(target, e, false);
      }
      // A delayed send (count_sent false) has no sender left to tell of a rejection.
      if (!admit_bounded(target, e, count_sent)) return false;
    }
    if (hooked_) [[unlikely]]
      return post_hooked(target, e, from);
    return enqueue(target, e);
  }

  // Metrics, tracing or a simulation see the message before it is queued. Out of line: the
  // plain send path pays only the branch on hooked_ (which replaced the one on instrumented_).
  [[gnu::noinline]] bool post_hooked(actor_cell* target, envelope* e,
                                     const message_origin* from = nullptr) noexcept {
    if (instrumented_) on_queued(target, e, from);
    if (driver_ != nullptr) return driver_->intercept(target, e);
    return enqueue(target, e);
  }

  // send_when_ready's send: a slot of the bounded mailbox is already reserved.
  bool post_reserved(actor_cell* target, envelope* e) noexcept {
    counter_slot& counters = counters_here();
    counters.add(counters.sent);
    if (!accepting_.load(std::memory_order_relaxed) && !internal_thread()) {
      target->extras()->depth.fetch_sub(1, std::memory_order_seq_cst);
      counters.add(counters.rejected);
      e->destroy();
      return false;
    }
    if (target->ops()->mailbox.overflow == overflow::drop_oldest) {
      if (instrumented_) [[unlikely]]
        on_queued(target, e);
      return post_held(target, e, true);
    }
    // As post(): a simulation's driver sees it (its node's faults, its seeded schedule).
    if (hooked_) [[unlikely]]
      return post_hooked(target, e);
    return enqueue(target, e);
  }

  // A send to a drop_oldest mailbox (watch_state::held_*): queue `e`; if that makes more than
  // `capacity` messages, the sender takes the oldest out and dead-letters it (mailbox_full) —
  // the bound holds at the send, whatever the receiver is doing. Returns true (the new message
  // is queued) unless the actor has stopped. `reserved`: send_when_ready's slot, already
  // counted in depth. The consumer pops under the same lock (pop_held); depth counts held
  // messages plus outstanding send_when_ready reservations and, reservations aside, changes
  // only under the lock, so each send that finds the mailbox full drops exactly one message.
  [[gnu::noinline, gnu::cold]] bool post_held(actor_cell* target, envelope* e,
                                              bool reserved) noexcept {
    watch_state& x = *target->extras();
    const std::size_t capacity = target->ops()->mailbox.capacity;
    envelope* dropped = nullptr;
    bool closed = false;
    {
      std::lock_guard lock(x.held_lock);
      if (x.held_closed) {
        closed = true;
      } else {
        if (!reserved && x.depth.fetch_add(1, std::memory_order_seq_cst) >= capacity &&
            x.held_head != nullptr) {
          // Full: the oldest goes (if every slot is a reservation not yet sent, nothing is
          // held to drop, and the bound is exceeded by the reservations in flight at most).
          dropped = x.held_head;
          x.held_head = dropped->next;
          if (x.held_head == nullptr) x.held_tail = nullptr;
          x.depth.fetch_sub(1, std::memory_order_seq_cst);
        }
        e->next = nullptr;
        if (x.held_tail != nullptr) {
          x.held_tail->next = e;
        } else {
          x.held_head = e;
        }
        x.held_tail = e;
      }
    }
    if (closed) {
      if (metrics_on_) x.stats.dequeued();
      dead_letter_out(target, e, stop_reason_of(target), {});
      return false;
    }
    if (dropped != nullptr) {
      if (metrics_on_) x.stats.dequeued();
      dead_letter_out(target, dropped, dead_letter_reason::mailbox_full,
                      "dropped as the oldest message of a full mailbox");
    }
    // After adding (the lock released it): either this claims the idle actor, or it flags the
    // running one so that it looks again before going idle (mailbox::claim_or_flag).
    if (target->mailbox_.claim_or_flag()) schedule(target);
    return true;
  }

  bool enqueue(actor_cell* target, envelope* e) noexcept {
    switch (target->mailbox_.push(e)) {
      case mailbox::push_result::queued:
        return true;
      case mailbox::push_result::woke:
        schedule(target);
        return true;
      case mailbox::push_result::closed:
        break;
    }
    if (metrics_on_) target->extras()->stats.dequeued();
    dead_letter_out(target, e, stop_reason_of(target), {});
    return false;
  }

  // A bounded mailbox's admission: reserve a slot, or apply the overflow policy (and consume
  // the envelope). Out of line: unbounded sends never pay for it.
  [[gnu::noinline, gnu::cold]] bool admit_bounded(actor_cell* target, envelope* e,
                                                  bool sender_told) noexcept {
    counter_slot& counters = counters_here();
    const mailbox_options& bound = target->ops()->mailbox;
    std::atomic<std::size_t>& depth = target->extras()->depth;
    if (depth.fetch_add(1, std::memory_order_seq_cst) < bound.capacity) return true;
    depth.fetch_sub(1, std::memory_order_seq_cst);
    if (bound.overflow == overflow::reject && sender_told) {
      counters.add(counters.rejected);
      if (e->ops->abort != nullptr)
        e->ops->abort(*e, errc::mailbox_full, "the mailbox is full", {});
      if (e->ops->reroute != nullptr) e->ops->reroute(*e, dead_letter_reason::mailbox_full);
      e->destroy();
    } else {
      dead_letter_out(target, e, dead_letter_reason::mailbox_full, "the mailbox is full");
    }
    return false;
  }

  // Counts, reports and destroys a message that will not be handled; an ask's reply completes
  // with the matching error at once (not after its timeout).
  void dead_letter_out(actor_cell* target, envelope* e, dead_letter_reason reason,
                       const std::string& detail, const std::exception_ptr& cause = {}) noexcept;

  // Closes a stopped actor's mailbox and dead-letters what it still held with `reason`, oldest
  // first. When nobody looks at dead letters one by one (no on_dead_letter hook, no metrics, no
  // dead-letter topic subscriber) and a message needs no reply or reroute, it is only counted
  // and freed, in any order: a backlog of millions left at shutdown's deadline then costs about
  // a free per message, which keeps shutdown close to its timeout.
  void dead_letter_backlog(actor_cell* target, dead_letter_reason reason) noexcept;

  // Counts and reports a dead letter (the message itself is gone or was never an envelope).
  void record_dead_letter(actor_cell* target, std::string_view type, dead_letter_reason reason,
                          std::uint64_t correlation, const std::string& detail) noexcept {
    record_dead_letter(access::make_address(target), type, reason, correlation, detail);
  }
  void record_dead_letter(const address& target, std::string_view type, dead_letter_reason reason,
                          std::uint64_t correlation, const std::string& detail) noexcept;

  // ---- metrics and tracing (runtime_options::metrics, ::trace) ----

  [[nodiscard]] bool instrumented() const noexcept { return instrumented_; }

  // Metrics and trace time, read only when they are on: the runtime's clock in nanoseconds
  // under a simulation (virtual time, so that a run's latencies are a function of its seed),
  // steady_clock otherwise (read directly: no virtual call on a threaded runtime).
  [[nodiscard]] std::int64_t stamp() const noexcept {
    if (driver_ != nullptr) [[unlikely]] {
      return std::chrono::duration_cast<std::chrono::nanoseconds>(timers_->now().time_since_epoch())
          .count();
    }
    return metrics_now();
  }
  [[nodiscard]] bool metrics_on() const noexcept { return metrics_on_; }
  // A trace hook is installed: messages carry traces (trace_event::trace, message_origin).
  [[nodiscard]] bool tracing() const noexcept { return trace_ != nullptr; }
  // The trace of a message being handled (a task handler resuming); tracing() only.
  [[nodiscard]] trace_id trace_of_message(std::uint64_t id) noexcept { return traces_->find(id); }
  // Messages whose trace is kept now (queued or being handled); tests prove none is left.
  [[nodiscard]] std::size_t traces_kept() noexcept { return traces_ ? traces_->size() : 0; }

  // The histograms of `cell`'s actor type x `ops`'s message type; null if the table is full.
  message_stats* stats_for(const actor_cell* cell, const envelope_ops* ops) noexcept {
    return message_stats_->find(ops, cell->ops()->type_name, ops->message_type);
  }

  // A message is about to be queued: give it an id, its causation (and trace) and its time:
  // from `from` if given, else from the handler running on this thread, if any.
  [[gnu::noinline]] void on_queued(actor_cell* target, envelope* e,
                                   const message_origin* from = nullptr) noexcept {
    e->queued = stamp();
    if (e->correlation == 0) e->correlation = next_correlation();
    const thread_identity& id = this_thread_identity;
    const bool in_handler = from == nullptr && id.core == this && id.message != 0;
    e->causation = from != nullptr ? from->causation : in_handler ? id.message : 0;
    trace_id trace{};
    if (trace_ != nullptr) {
      trace = from != nullptr && from->trace ? from->trace
              : in_handler                   ? id.trace
                                             : root_trace_of(e->correlation);
      traces_->put(e->correlation, trace);
    }
    if (metrics_on_) {
      target->extras()->stats.queued();
      if (e->ops->reply_of != nullptr) {
        const std::size_t entry =
            message_stats_->index_of(e->ops, target->ops()->type_name, e->ops->message_type);
        if (entry < message_table::capacity) {
          e->ops->reply_of(*e)->time_round_trip(static_cast<std::uint32_t>(entry + 1), e->queued);
        }
      }
    }
    if (trace_ != nullptr) {
      trace_event t = trace_of(trace_point::send, target, e);
      t.trace = trace;
      t.time = t.queued;
      trace_->on_event(t);
    }
  }

  // A worker took `e` from `cell`'s mailbox and its handler starts now. Returns the pair's
  // histograms (null without metrics), for on_handler_end on the same thread.
  [[gnu::noinline]] message_stats* on_handler_start(actor_cell* cell, envelope* e) noexcept {
    const std::int64_t now = stamp();
    e->started = now;
    message_stats* m = nullptr;
    if (metrics_on_) {
      cell->extras()->stats.dequeued();
      m = stats_for(cell, e->ops);
      if (m != nullptr) m->queue_wait.record(elapsed_ns(e->queued, now));
    }
    if (trace_ != nullptr) {
      trace_event t = trace_of(trace_point::handle_start, cell, e);
      t.trace = this_thread_identity.trace = traces_->find(e->correlation);
      t.time = t.started = metrics_time(now);
      trace_->on_event(t);
    }
    return m;
  }

  // `e`'s handler returned, completed its task, or threw (`failed`). `m`: what
  // on_handler_start returned, or null to look it up (a task handler may end on another worker).
  [[gnu::noinline]] void on_handler_end(actor_cell* cell, envelope* e, bool failed,
                                        message_stats* m = nullptr) noexcept {
    const std::int64_t now = stamp();
    if (metrics_on_) {
      if (m == nullptr) m = stats_for(cell, e->ops);
      if (m != nullptr) {
        m->service_time.record(elapsed_ns(e->started, now));
        if (failed) m->failed.fetch_add(1, std::memory_order_relaxed);
      }
      if (!failed) cell->extras()->stats.handled.fetch_add(1, std::memory_order_relaxed);
    }
    if (trace_ != nullptr) {
      trace_event t = trace_of(trace_point::handle_end, cell, e);
      t.trace = traces_->find(e->correlation);
      traces_->erase(e->correlation);
      t.started = metrics_time(e->started);
      t.time = metrics_time(now);
      t.failed = failed;
      trace_->on_event(t);
    }
  }

  // Per-actor counters of rarer events (failures, restarts, dead letters).
  actor_stats* actor_stats_of(const actor_cell* cell) noexcept {
    if (!metrics_on_ || cell == nullptr || cell->core() != this) return nullptr;
    watch_state* x = cell->extras();
    return x != nullptr ? &x->stats : nullptr;
  }

  void record_round_trip(std::size_t entry, std::int64_t asked) noexcept {
    if (message_stats* m = message_stats_->at(entry)) {
      m->ask_round_trip.record(elapsed_ns(asked, stamp()));
    }
  }

  void count_topic(std::string_view subject, std::size_t deliveries) noexcept {
    topic_stats_->count(subject, deliveries);
  }

  [[nodiscard]] metrics_snapshot metrics() const;

  [[nodiscard]] topic_registry& topics() noexcept { return topics_; }
  void count_publish() noexcept { published_.fetch_add(1, std::memory_order_relaxed); }
  void count_unrouted() noexcept { unrouted_.fetch_add(1, std::memory_order_relaxed); }

  static errc errc_for(dead_letter_reason reason) noexcept;

  [[nodiscard]] std::uint64_t next_correlation() noexcept {
    return next_correlation_.fetch_add(1, std::memory_order_relaxed);
  }
  // Moves the id sequence (message and correlation ids) forward by `offset`: a NATS node gives
  // its runtime a random range, so that ids stay unique across processes and a trace hook can
  // follow causation from one process into another. Ids already given stay valid (smaller).
  void advance_ids(std::uint64_t offset) noexcept {
    next_correlation_.fetch_add(offset, std::memory_order_relaxed);
  }

  // Death watch registrations are rare: a few striped locks serve every actor.
  static std::mutex& monitor_lock(const actor_cell* cell) noexcept {
    static std::mutex stripes[64];
    return stripes[(reinterpret_cast<std::uintptr_t>(cell) >> 6) % 64];
  }
  // Sends `watcher` the down message of `who` (counted as a message like any other).
  void deliver_down(actor_cell* watcher, actor_cell* who, stop_cause cause,
                    const std::string& detail, std::uint64_t id) noexcept {
    try {
      down message{access::make_address(who),
                   cause == stop_cause::failed     ? down_reason::failed
                   : cause == stop_cause::shutdown ? down_reason::shutdown
                                                   : down_reason::normal,
                   detail, id};
      if (envelope* e = watcher->ops()->make_down(std::move(message))) post(watcher, e, true);
    } catch (...) {  // out of memory: the down is lost, and said so
      record_dead_letter(watcher, type_name<down>(), dead_letter_reason::target_stopped, 0,
                         "could not allocate the down message");
    }
  }

  [[nodiscard]] std::uint64_t next_monitor_id() noexcept {
    return next_monitor_id_.fetch_add(1, std::memory_order_relaxed);
  }

  // Counts a send that was refused before an envelope existed.
  void count_rejected_send() noexcept {
    counter_slot& counters = counters_here();
    counters.add(counters.sent);
    counters.add(counters.rejected);
  }

  void report_failure(actor_cell* cell, const std::string& what) noexcept {
    failed_.fetch_add(1, std::memory_order_relaxed);
    try {
      if (options_.on_failure) {
        options_.on_failure(access::make_address(cell), what);
      } else {
        const std::string_view type = cell->ops()->type_name;
        std::fprintf(stderr, "troupe: actor %.*s#%llu failed: %s\n", static_cast<int>(type.size()),
                     type.data(), static_cast<unsigned long long>(cell->id()), what.c_str());
      }
    } catch (...) {
    }
  }

  static dead_letter_reason stop_reason_of(const actor_cell* cell) noexcept {
    return cell->requested(actor_cell::req_shutdown, std::memory_order_relaxed)
               ? dead_letter_reason::shutdown
               : dead_letter_reason::target_stopped;
  }

  void unregister_cell(actor_cell* cell) noexcept {
    {
      std::lock_guard lock(registry_mutex_);
      unlink(cell);
    }
    stopped_.fetch_add(1, std::memory_order_relaxed);
    if (phase_.load(std::memory_order_acquire) != phase::running) state_cv_.notify_all();
  }

  // A handler suspended or resumed (shutdown waits for suspended handlers to finish).
  // Counted in the calling thread's counter block, not on a line every worker writes.
  // Release (free on x86): a reader that sees a resume also sees the suspend before it (the
  // wake word's acquire/release chain links the two), see suspended_handlers.
  void add_suspended(std::int64_t n) noexcept {
    counter_slot& counters = counters_here();
    std::atomic<std::uint64_t>& c = n > 0 ? counters.suspends : counters.resumes;
    if (counters.single_writer) {
      c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_release);
    } else {
      c.fetch_add(1, std::memory_order_release);
    }
  }
  // A delayed send was scheduled or left the timer (shutdown waits for those too).
  void add_delayed(std::int64_t n) noexcept { delayed_.fetch_add(n, std::memory_order_seq_cst); }

  // Called by a worker about to park. Wakes shutdown's drain wait, which re-checks quiet().
  static void worker_idle(const void* raw) noexcept;

  // Graceful, bounded: refuse new work from outside, let actors go quiet (no runnable actor, no
  // suspended handler, no delayed send pending) for up to `timeout`, then stop every actor
  // (queued messages are dead-lettered, handlers still suspended are abandoned), join the
  // threads and dead-letter delayed sends not yet due. Idempotent; must not be called from the
  // runtime's own threads.
  void shutdown(std::chrono::nanoseconds timeout);

  // The runtime object is being destroyed on one of the runtime's own threads (a handler
  // destroyed it). That thread cannot wait for its own handler to return, nor join itself, so
  // the shutdown runs on a thread of its own, which keeps the core alive until it is done; the
  // caller's handler returns and its worker is joined like the others. Refuses outside work at
  // once, as shutdown() does. Only if no thread can be started does it stop the process, saying
  // what to do instead.
  void shutdown_in_background() noexcept;

  [[nodiscard]] runtime_counters snapshot() const noexcept;

  [[nodiscard]] std::size_t live_actors() const noexcept {
    std::lock_guard lock(registry_mutex_);
    return live_;
  }

  // The timer service's tasks (every timer lives there: sleeps, delayed sends, ask timeouts).
  [[nodiscard]] std::size_t pending_timers() const noexcept { return timers_->pending(); }

 private:
  ~runtime_core() = default;

  static bool quiet_of(const void* self) noexcept {
    return static_cast<const runtime_core*>(self)->quiet();
  }
  static bool all_stopped(const void* self) noexcept {
    auto* core = static_cast<const runtime_core*>(self);
    std::lock_guard lock(core->registry_mutex_);
    return core->live_ == 0;
  }

  // Handlers suspended now, summed over the counter blocks. Every resume follows its suspend,
  // and both counts only grow: reading every resume count, then (after a fence) every suspend
  // count gives at least the number suspended at the moment between the two passes, so a zero
  // is never early (a handler counted in neither pass suspended after that moment, as with one
  // shared counter read at that moment).
  [[nodiscard]] std::int64_t suspended_handlers() const noexcept;

  [[nodiscard]] bool quiet() const noexcept {
    return delayed_.load(std::memory_order_seq_cst) == 0 && suspended_handlers() == 0 &&
           scheduler_->idle();
  }

  void link(actor_cell* cell) noexcept {
    cell->registry_next_ = registry_head_;
    if (registry_head_ != nullptr) registry_head_->registry_prev_ = cell;
    registry_head_ = cell;
    ++live_;
  }
  void unlink(actor_cell* cell) noexcept {
    if (cell->registry_prev_ != nullptr) {
      cell->registry_prev_->registry_next_ = cell->registry_next_;
    } else {
      registry_head_ = cell->registry_next_;
    }
    if (cell->registry_next_ != nullptr)
      cell->registry_next_->registry_prev_ = cell->registry_prev_;
    cell->registry_prev_ = cell->registry_next_ = nullptr;
    --live_;
  }

  // Fields are grouped by who writes them how often, each group on lines of its own, so that
  // a write per message or per ask never invalidates the line that every send reads.
  // Read on (nearly) every send, ask and handler start; written once, or at shutdown.
  alignas(cache_line) std::atomic<troupe::runtime*> owner_;
  runtime_options options_;
  std::unique_ptr<timer_service> timers_;
  std::unique_ptr<scheduler> pool_;
  scheduler* scheduler_ = nullptr;
  driver* driver_ = nullptr;
  trace_hook* const trace_;
  const bool metrics_on_;
  // Read on every send and every handler start: the one branch metrics cost when off. Next to
  // accepting_, which the send path reads anyway.
  const bool instrumented_;
  // instrumented_ or a simulation's driver: the send path's one branch covers both. Written
  // once, before any actor exists (set_driver).
  bool hooked_ = instrumented_;
  std::atomic<bool> accepting_{true};
  std::atomic<phase> phase_{phase::running};
  // Written per spawn, stop or delayed send (and per reference to the core).
  alignas(cache_line) std::atomic<std::size_t> refs_{1};
  std::atomic<std::uint64_t> next_id_{1};
  std::atomic<std::uint64_t> next_monitor_id_{1};
  std::atomic<std::uint64_t> spawned_{0};
  std::atomic<std::uint64_t> stopped_{0};
  std::atomic<std::uint64_t> failed_{0};
  std::atomic<std::int64_t> delayed_{0};
  // Written per ask, by any thread.
  alignas(cache_line) std::atomic<std::uint64_t> next_correlation_{1};
  // Written per publish, beside (not on) the topic registry's lock.
  alignas(cache_line) std::atomic<std::uint64_t> published_{0};
  std::atomic<std::uint64_t> unrouted_{0};
  alignas(cache_line) topic_registry topics_;
  counter_slot shared_counters_;  // a line of its own (alignas in its type)
  // Written per spawn and stop, and when a worker parks during shutdown.
  alignas(cache_line) mutable std::mutex registry_mutex_;
  mutable std::condition_variable state_cv_;
  actor_cell* registry_head_ = nullptr;
  std::size_t live_ = 0;
  std::mutex shutdown_mutex_;
  std::unique_ptr<message_table> message_stats_;
  std::unique_ptr<topic_stats> topic_stats_;
  std::unique_ptr<trace_table> traces_;  // tracing only

  trace_event trace_of(trace_point point, const actor_cell* target,
                       const envelope* e) const noexcept {
    trace_event t;
    t.point = point;
    t.message_id = e->correlation;
    t.causation_id = e->causation;
    t.actor_id = target->id();
    t.actor_type = target->ops()->type_name;
    t.message_type = e->ops->message_type;
    t.queued = metrics_time(e->queued);
    return t;
  }
};

}  // namespace troupe::detail

// The out-of-line parts of runtime_core, one path each (as Asio keeps impl/ beside its headers).
#include <troupe/detail/dead_letter_path.hpp>
#include <troupe/detail/runtime_report.hpp>
#include <troupe/detail/shutdown_path.hpp>
