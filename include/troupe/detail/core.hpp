// Internal: the runtime core (the state shared by a runtime, its actors and its threads) and
// the definitions of the handle, context and actor-record functions that need all of it.
// Included at the end of the public headers that declare those functions; never by users.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include <troupe/actor.hpp>
#include <troupe/ask.hpp>
#include <troupe/dead_letter.hpp>
#include <troupe/detail/actor_cell.hpp>
#include <troupe/detail/counters.hpp>
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
  }
  runtime_core(const runtime_core&) = delete;
  runtime_core& operator=(const runtime_core&) = delete;

  // Wires the threads; they start running here.
  void attach(std::unique_ptr<timer_service> timers, std::unique_ptr<worker_pool> pool) {
    timers_ = std::move(timers);
    pool_ = std::move(pool);
    scheduler_ = pool_.get();
    pool_->start();
  }

  void retain() noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }
  void release() noexcept {
    if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) delete this;
  }

  [[nodiscard]] troupe::runtime* owner() const noexcept { return owner_; }
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
    counter_slot& counters = counters_here();
    if (count_sent) counters.add(counters.sent);
    if (!accepting_.load(std::memory_order_relaxed) && !internal_thread()) {
      counters.add(counters.rejected);
      if (e->ops->abort != nullptr) {
        e->ops->abort(*e, errc::runtime_stopped, "the runtime is shutting down", {});
      }
      if (e->ops->reroute != nullptr) e->ops->reroute(*e, dead_letter_reason::shutdown);
      e->destroy();
      return false;
    }
    if (target->ops()->mailbox.capacity != 0) [[unlikely]] {
      if (!admit_bounded(target, e)) return false;
    }
    if (instrumented_) [[unlikely]]
      on_queued(target, e);
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
    if (instrumented_) [[unlikely]]
      on_queued(target, e);
    return enqueue(target, e);
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
  [[gnu::noinline, gnu::cold]] bool admit_bounded(actor_cell* target, envelope* e) noexcept {
    counter_slot& counters = counters_here();
    const mailbox_options& bound = target->ops()->mailbox;
    std::atomic<std::size_t>& depth = target->extras()->depth;
    if (depth.fetch_add(1, std::memory_order_seq_cst) < bound.capacity ||
        bound.overflow == overflow::drop_oldest) {
      return true;
    }
    depth.fetch_sub(1, std::memory_order_seq_cst);
    if (bound.overflow == overflow::reject) {
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
                       const std::string& detail, const std::exception_ptr& cause = {}) noexcept {
    if (e->ops->abort != nullptr) {
      std::string why;
      try {
        why = detail.empty() ? std::string(to_string(reason)) : detail;
      } catch (...) {
      }
      e->ops->abort(*e, errc_for(reason), why, cause);
    }
    if (e->ops->reroute != nullptr) reason = e->ops->reroute(*e, reason);
    record_dead_letter(target, e->ops->message_type, reason, e->correlation, detail);
    e->destroy();
  }

  // Counts and reports a dead letter (the message itself is gone or was never an envelope).
  void record_dead_letter(actor_cell* target, std::string_view type, dead_letter_reason reason,
                          std::uint64_t correlation, const std::string& detail) noexcept {
    record_dead_letter(access::make_address(target), type, reason, correlation, detail);
  }
  void record_dead_letter(const address& target, std::string_view type, dead_letter_reason reason,
                          std::uint64_t correlation, const std::string& detail) noexcept {
    counter_slot& counters = counters_here();
    counters.add(counters.dead);
    if (metrics_on_) {
      if (actor_stats* a = actor_stats_of(access::cell_of(target))) {
        a->dead_letters.fetch_add(1, std::memory_order_relaxed);
      }
    }
    if (options_.on_dead_letter) {
      try {
        const dead_letter record{target, type, reason, correlation, detail};
        options_.on_dead_letter(record);
      } catch (...) {  // a throwing hook must not take the runtime down; documented
      }
    }
    // The dead-letter topic. A dead letter of a dead-letter event is counted but not published
    // again (no feedback loop).
    static thread_local bool publishing_dead_letter = false;
    if (!publishing_dead_letter && !topics_.empty()) {
      publishing_dead_letter = true;
      try {
        publish_event<dead_letter>(this, "troupe.dead_letter",
                                   std::make_shared<const dead_letter>(
                                       dead_letter{target, type, reason, correlation, detail}));
      } catch (...) {
      }
      publishing_dead_letter = false;
    }
  }

  // ---- metrics and tracing (runtime_options::metrics, ::trace) ----

  [[nodiscard]] bool instrumented() const noexcept { return instrumented_; }
  [[nodiscard]] bool metrics_on() const noexcept { return metrics_on_; }

  // The histograms of `cell`'s actor type x `ops`'s message type; null if the table is full.
  message_stats* stats_for(const actor_cell* cell, const envelope_ops* ops) noexcept {
    return message_stats_->find(ops, cell->ops()->type_name, ops->message_type);
  }

  // A message is about to be queued: give it an id, its causation and its time.
  [[gnu::noinline]] void on_queued(actor_cell* target, envelope* e) noexcept {
    e->queued = metrics_now();
    if (e->correlation == 0) e->correlation = next_correlation();
    const thread_identity& id = this_thread_identity;
    e->causation = id.core == this ? id.message : 0;
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
      t.time = t.queued;
      trace_->on_event(t);
    }
  }

  // A worker took `e` from `cell`'s mailbox and its handler starts now. Returns the pair's
  // histograms (null without metrics), for on_handler_end on the same thread.
  [[gnu::noinline]] message_stats* on_handler_start(actor_cell* cell, envelope* e) noexcept {
    const std::int64_t now = metrics_now();
    e->started = now;
    message_stats* m = nullptr;
    if (metrics_on_) {
      cell->extras()->stats.dequeued();
      m = stats_for(cell, e->ops);
      if (m != nullptr) m->queue_wait.record(elapsed_ns(e->queued, now));
    }
    if (trace_ != nullptr) {
      trace_event t = trace_of(trace_point::handle_start, cell, e);
      t.time = t.started = metrics_time(now);
      trace_->on_event(t);
    }
    return m;
  }

  // `e`'s handler returned, completed its task, or threw (`failed`). `m`: what
  // on_handler_start returned, or null to look it up (a task handler may end on another worker).
  [[gnu::noinline]] void on_handler_end(actor_cell* cell, envelope* e, bool failed,
                                        message_stats* m = nullptr) noexcept {
    const std::int64_t now = metrics_now();
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
      m->ask_round_trip.record(elapsed_ns(asked, metrics_now()));
    }
  }

  void count_topic(std::string_view subject, std::size_t deliveries) noexcept {
    topic_stats_->count(subject, deliveries);
  }

  [[nodiscard]] metrics_snapshot metrics() const {
    metrics_snapshot r;
    r.counters = snapshot();
    if (!metrics_on_) return r;
    r.enabled = true;
    {
      std::lock_guard lock(registry_mutex_);
      for (actor_cell* c = registry_head_; c != nullptr; c = c->registry_next_) {
        const watch_state* x = c->extras();
        if (x == nullptr) continue;
        actor_metrics a;
        a.id = c->id();
        a.type = std::string(c->ops()->type_name);
        a.name = a.type + "#" + std::to_string(a.id);
        a.handled = x->stats.handled.load(std::memory_order_relaxed);
        a.failed = x->stats.failed.load(std::memory_order_relaxed);
        a.restarts = x->stats.restarts.load(std::memory_order_relaxed);
        a.dead_letters = x->stats.dead_letters.load(std::memory_order_relaxed);
        a.mailbox_depth = static_cast<std::uint64_t>(
            std::max<std::int64_t>(0, x->stats.depth.load(std::memory_order_relaxed)));
        a.mailbox_high_water = static_cast<std::uint64_t>(
            std::max<std::int64_t>(0, x->stats.high_water.load(std::memory_order_relaxed)));
        r.actors.push_back(std::move(a));
      }
    }
    std::sort(r.actors.begin(), r.actors.end(),
              [](const actor_metrics& a, const actor_metrics& b) { return a.id < b.id; });
    // A plain send, an ask and an event of one pair have separate entries: merge them by name.
    message_stats_->for_each([&r](const message_stats& m) {
      auto it = std::find_if(r.messages.begin(), r.messages.end(), [&m](const message_metrics& x) {
        return x.actor_type == m.actor_type && x.message_type == m.message_type;
      });
      if (it == r.messages.end()) {
        r.messages.emplace_back();
        it = r.messages.end() - 1;
        it->actor_type = std::string(m.actor_type);
        it->message_type = std::string(m.message_type);
      }
      it->queue_wait.merge(m.queue_wait);
      it->service_time.merge(m.service_time);
      it->ask_round_trip.merge(m.ask_round_trip);
      it->failed += m.failed.load(std::memory_order_relaxed);
    });
    std::sort(r.messages.begin(), r.messages.end(),
              [](const message_metrics& a, const message_metrics& b) {
                return std::tie(a.actor_type, a.message_type) <
                       std::tie(b.actor_type, b.message_type);
              });
    topic_stats_->for_each(
        [&r](const std::string& subject, std::uint64_t published, std::uint64_t deliveries) {
          r.topics.push_back(topic_metrics{subject, published, deliveries});
        });
    return r;
  }

  [[nodiscard]] topic_registry& topics() noexcept { return topics_; }
  void count_publish() noexcept { published_.fetch_add(1, std::memory_order_relaxed); }
  void count_unrouted() noexcept { unrouted_.fetch_add(1, std::memory_order_relaxed); }

  static errc errc_for(dead_letter_reason reason) noexcept {
    switch (reason) {
      case dead_letter_reason::target_stopped:
        return errc::actor_stopped;
      case dead_letter_reason::handler_failed:
        return errc::handler_failed;
      case dead_letter_reason::shutdown:
        return errc::runtime_stopped;
      case dead_letter_reason::mailbox_full:
        return errc::mailbox_full;
      case dead_letter_reason::expired:
        return errc::timeout;
      case dead_letter_reason::retries_exhausted:
        return errc::handler_failed;
      default:  // the transport's reasons (troupe/nats/) never reach an envelope
        break;
    }
    return errc::actor_stopped;
  }

  [[nodiscard]] std::uint64_t next_correlation() noexcept {
    return next_correlation_.fetch_add(1, std::memory_order_relaxed);
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
    return cell->stopped_by_shutdown_.load(std::memory_order_relaxed)
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
  void add_suspended(std::int64_t n) noexcept {
    suspended_.fetch_add(n, std::memory_order_seq_cst);
  }
  // A delayed send was scheduled or left the timer (shutdown waits for those too).
  void add_delayed(std::int64_t n) noexcept { delayed_.fetch_add(n, std::memory_order_seq_cst); }

  // Called by a worker about to park. Wakes shutdown's drain wait, which re-checks quiet().
  static void worker_idle(const void* raw) noexcept {
    auto* self = static_cast<const runtime_core*>(raw);
    if (self->phase_.load(std::memory_order_acquire) == phase::draining) {
      std::lock_guard lock(self->registry_mutex_);
      self->state_cv_.notify_all();
    }
  }

  // Graceful, bounded: refuse new work from outside, let actors go quiet (no runnable actor, no
  // suspended handler, no delayed send pending) for up to `timeout`, then stop every actor
  // (queued messages are dead-lettered, handlers still suspended are abandoned), join the
  // threads and dead-letter delayed sends not yet due. Idempotent; must not be called from the
  // runtime's own threads.
  void shutdown(std::chrono::nanoseconds timeout) {
    if (internal_thread()) {
      throw error(errc::shutdown_from_worker,
                  "shutdown() joins the runtime's threads, so it must be called from outside them "
                  "(an actor can stop itself with ctx.stop())");
    }
    std::lock_guard serial(shutdown_mutex_);
    if (phase_.load() == phase::stopped) return;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    std::vector<actor_cell*> cells;
    {
      std::unique_lock lock(registry_mutex_);
      accepting_.store(false, std::memory_order_seq_cst);
      phase_.store(phase::draining, std::memory_order_seq_cst);
      while (!quiet() && std::chrono::steady_clock::now() < deadline) {
        // Parking workers notify; the short bound only covers a notification that raced ahead.
        state_cv_.wait_until(lock, std::min(deadline, std::chrono::steady_clock::now() +
                                                          std::chrono::milliseconds(5)));
      }
      phase_.store(phase::stopping, std::memory_order_seq_cst);
      for (actor_cell* c = registry_head_; c != nullptr; c = c->registry_next_) {
        c->retain();
        cells.push_back(c);
      }
    }
    for (actor_cell* c : cells) {
      c->stopped_by_shutdown_.store(true, std::memory_order_relaxed);
      c->request_stop(true);
      c->release();
    }
    {
      std::unique_lock lock(registry_mutex_);
      // Unbounded only if a synchronous handler never returns: C++ cannot preempt it.
      state_cv_.wait(lock, [this] { return live_ == 0; });
    }
    scheduler_->stop();
    timers_->stop();
    phase_.store(phase::stopped, std::memory_order_seq_cst);
  }

  [[nodiscard]] runtime_counters snapshot() const noexcept {
    runtime_counters r;
    auto add = [&r](const counter_slot& s) {
      r.sent += s.sent.load(std::memory_order_relaxed);
      r.handled += s.handled.load(std::memory_order_relaxed);
      r.dead_lettered += s.dead.load(std::memory_order_relaxed);
      r.rejected += s.rejected.load(std::memory_order_relaxed);
      r.open_asks += s.asks_opened.load(std::memory_order_relaxed);
      r.open_asks -= s.asks_closed.load(std::memory_order_relaxed);
    };
    add(shared_counters_);
    for (std::size_t i = 0; i < pool_->thread_count(); ++i) add(pool_->at(i).counters);
    r.spawned = spawned_.load(std::memory_order_relaxed);
    r.stopped = stopped_.load(std::memory_order_relaxed);
    r.failed = failed_.load(std::memory_order_relaxed);
    r.published = published_.load(std::memory_order_relaxed);
    r.unrouted = unrouted_.load(std::memory_order_relaxed);
    return r;
  }

  [[nodiscard]] std::size_t live_actors() const noexcept {
    std::lock_guard lock(registry_mutex_);
    return live_;
  }

  [[nodiscard]] std::size_t pending_timers() const noexcept { return timers_->pending(); }

 private:
  ~runtime_core() = default;

  [[nodiscard]] bool quiet() const noexcept {
    return delayed_.load(std::memory_order_seq_cst) == 0 &&
           suspended_.load(std::memory_order_seq_cst) == 0 && scheduler_->idle();
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

  std::atomic<std::size_t> refs_{1};
  troupe::runtime* owner_;
  runtime_options options_;
  std::unique_ptr<timer_service> timers_;
  std::unique_ptr<worker_pool> pool_;
  scheduler* scheduler_ = nullptr;
  counter_slot shared_counters_;
  std::atomic<std::uint64_t> next_id_{1};
  std::atomic<std::uint64_t> next_correlation_{1};
  std::atomic<std::uint64_t> next_monitor_id_{1};
  std::atomic<std::uint64_t> published_{0};
  std::atomic<std::uint64_t> unrouted_{0};
  topic_registry topics_;
  std::atomic<std::uint64_t> spawned_{0};
  std::atomic<std::uint64_t> stopped_{0};
  std::atomic<std::uint64_t> failed_{0};
  trace_hook* const trace_;
  const bool metrics_on_;
  // Read on every send and every handler start: the one branch metrics cost when off. Next to
  // accepting_, which the send path reads anyway.
  const bool instrumented_;
  std::atomic<bool> accepting_{true};
  std::atomic<phase> phase_{phase::running};
  std::atomic<std::int64_t> suspended_{0};
  std::atomic<std::int64_t> delayed_{0};
  mutable std::mutex registry_mutex_;
  mutable std::condition_variable state_cv_;
  actor_cell* registry_head_ = nullptr;
  std::size_t live_ = 0;
  std::mutex shutdown_mutex_;
  std::unique_ptr<message_table> message_stats_;
  std::unique_ptr<topic_stats> topic_stats_;

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

// ---- timers ----------------------------------------------------------------------------------

class wake_task final : public timer_task {
 public:
  explicit wake_task(actor_cell* cell) noexcept : cell_(cell) { cell_->retain(); }
  void arm(std::uint64_t generation) noexcept { generation_ = generation; }
  ~wake_task() override { cell_->release(); }
  void fire() noexcept override { cell_->wake(generation_); }

 private:
  actor_cell* cell_;
  std::uint64_t generation_ = 0;
};

class delayed_send_task final : public timer_task {
 public:
  delayed_send_task(actor_cell* target, envelope* e) noexcept : target_(target), envelope_(e) {
    target_->retain();
    target_->core()->add_delayed(1);
  }
  ~delayed_send_task() override {
    if (envelope_ != nullptr) {
      target_->core()->dead_letter_out(target_, envelope_, dead_letter_reason::shutdown,
                                       "the runtime shut down before the delay elapsed");
    }
    target_->core()->add_delayed(-1);
    target_->release();
  }
  void fire() noexcept override {
    target_->core()->post(target_, std::exchange(envelope_, nullptr), false);
  }

 private:
  actor_cell* target_;
  envelope* envelope_;
};

// The awaitable of ctx.sleep_for / sleep_until.
class sleep_awaiter {
 public:
  using troupe_awaitable = void;
  sleep_awaiter(actor_cell* cell, clock::time_point when) noexcept : cell_(cell), when_(when) {}

  [[nodiscard]] bool await_ready() const noexcept { return when_ <= cell_->core()->now(); }
  void await_suspend(std::coroutine_handle<> h) {
    // Allocate before arming: a throw after arming would leave a wake-up nobody delivers.
    auto task = std::make_unique<wake_task>(cell_);
    task->arm(cell_->arm_suspension(h));
    cell_->core()->timers().schedule(when_, std::move(task));
  }
  void await_resume() const noexcept {}

 private:
  actor_cell* cell_;
  clock::time_point when_;
};

// ---- sends -----------------------------------------------------------------------------------

// The envelope of a plain send of `message` to an actor of class A.
template <class A, class M>
envelope* make_envelope(M&& message) {
  using message_type = std::remove_cvref_t<M>;
  return new message_envelope<message_type>(&message_ops<A, message_type>,
                                            std::forward<M>(message));
}

// Awaits room in a bounded mailbox (or its actor's end): every waiter is woken when a message
// leaves the mailbox, and retries.
class room_awaiter {
 public:
  using troupe_awaitable = void;
  explicit room_awaiter(actor_cell* target) noexcept : target_(target) {}
  [[nodiscard]] bool await_ready() const noexcept { return has_room(); }
  void await_suspend(std::coroutine_handle<> awaiting) {
    actor_cell* self = this_thread_identity.cell;
    watch_state* x = target_->extras();
    const std::uint64_t generation = self->arm_suspension(awaiting);
    {
      std::lock_guard lock(runtime_core::monitor_lock(target_));
      x->room_waiters.emplace_back(self, generation);
      self->retain();
      x->room_waiter_count.fetch_add(1, std::memory_order_seq_cst);
    }
    // A message that left between our look and our registration woke nobody: look again.
    if (has_room() || target_->closed()) target_->wake_room_waiters();
  }
  void await_resume() const noexcept {}

 private:
  [[nodiscard]] bool has_room() const noexcept {
    return target_->extras()->depth.load(std::memory_order_seq_cst) <
           target_->ops()->mailbox.capacity;
  }
  actor_cell* target_;
};

template <class A, class M>
task<void> send_when_ready(actor_cell* target, M message) {
  bool reserved = false;
  const std::size_t capacity = target->ops()->mailbox.capacity;
  if (capacity != 0) {
    std::atomic<std::size_t>& depth = target->extras()->depth;
    while (!target->closed()) {
      if (depth.fetch_add(1, std::memory_order_seq_cst) < capacity) {
        reserved = true;
        break;
      }
      depth.fetch_sub(1, std::memory_order_seq_cst);
      co_await room_awaiter(target);
    }
  }
  envelope* e = make_envelope<A>(std::move(message));
  if (reserved) {
    target->core()->post_reserved(target, e);
  } else {
    target->core()->post(target, e, true);
  }
}

template <class A, class M>
bool send_message(actor_cell* target, M&& message) {
  if (target == nullptr) throw error(errc::invalid_ref, "send() through an empty ref");
  envelope* e = make_envelope<A>(std::forward<M>(message));
  return target->core()->post(target, e, true);
}

template <class A, class M>
void send_message_after(actor_cell* target, clock::duration delay, M&& message) {
  if (target == nullptr) throw error(errc::invalid_ref, "send_after() through an empty ref");
  runtime_core* core = target->core();
  if (!core->accepting() && !core->internal_thread()) {
    core->count_rejected_send();
    return;
  }
  envelope* e = make_envelope<A>(std::forward<M>(message));
  counter_slot& counters = core->counters_here();
  counters.add(counters.sent);
  // From here the task owns the envelope: fired, it posts it; destroyed unfired, it
  // dead-letters it.
  core->timers().schedule(core->now() + delay, std::make_unique<delayed_send_task>(target, e));
}

// ---- request-reply ---------------------------------------------------------------------------

template <class M, class R>
struct ask_envelope final : envelope {
  template <class Arg>
  ask_envelope(const envelope_ops* o, reply_slot<R>* s, Arg&& arg)
      : envelope{nullptr, o, s->correlation()}, message(std::forward<Arg>(arg)), slot(s) {}
  ask_envelope(const ask_envelope&) = delete;
  ask_envelope& operator=(const ask_envelope&) = delete;
  ~ask_envelope() {
    // Every path completes the reply (or hands it to a promise) before this; the guard keeps
    // "an ask always completes" true even if one did not.
    if (!promised && !slot->done()) slot->fail(errc::actor_stopped, "the request was discarded");
    slot->release();
  }

  static void* operator new(std::size_t n) { return block_pool::allocate(n); }
  static void operator delete(void* p, std::size_t n) noexcept { block_pool::deallocate(p, n); }

  M message;
  reply_slot<R>* slot;
  bool promised = false;  // a troupe::promise<R> now answers for the reply
};

template <class A, class M, class R>
handler_start invoke_ask(actor_cell& cell, envelope& e) {
  A& actor = static_cast<typed_cell<A>&>(cell).instance();
  auto& request = static_cast<ask_envelope<M, R>&>(e);
  constexpr reply_style style = reply_style_of<A, M>();
  if constexpr (style == reply_style::returned) {
    request.slot->deliver(R(actor.on(std::move(request.message))));
    return {};
  } else if constexpr (style == reply_style::task) {
    auto frame = actor.on(std::move(request.message)).release();
    if (!frame) {
      request.slot->fail(errc::broken_promise, "the handler returned an empty task");
      return {};
    }
    return {frame, &frame.promise()};
  } else {
    request.slot->retain();  // the promise's reference
    request.promised = true;
    actor.on(std::move(request.message), troupe::promise<R>(request.slot));
    return {};
  }
}

template <class M, class R>
void ask_task_done(envelope& e, promise_base& result) {
  auto& request = static_cast<ask_envelope<M, R>&>(e);
  request.slot->deliver(static_cast<task_promise<R>&>(result).take_result());
}

template <class M, class R>
void ask_abort(envelope& e, errc code, const std::string& detail,
               const std::exception_ptr& cause) noexcept {
  static_cast<ask_envelope<M, R>&>(e).slot->fail(code, detail, cause);
}

template <class M, class R>
void destroy_ask(envelope* e) noexcept {
  delete static_cast<ask_envelope<M, R>*>(e);
}

template <class M, class R>
reply_slot_base* ask_reply_of(envelope& e) noexcept {
  return static_cast<ask_envelope<M, R>&>(e).slot;
}

template <class A, class M, class R>
inline constexpr envelope_ops ask_ops{&invoke_ask<A, M, R>, &destroy_ask<M, R>, type_name<M>(),
                                      &ask_task_done<M, R>, &ask_abort<M, R>,   nullptr,
                                      &ask_reply_of<M, R>};

// Completes an ask with error(timeout) when its deadline passes first.
class ask_timeout_task final : public timer_task {
 public:
  static void* operator new(std::size_t n) { return block_pool::allocate(n); }
  static void operator delete(void* p, std::size_t n) noexcept { block_pool::deallocate(p, n); }

  ask_timeout_task(reply_slot_base* slot, clock::duration timeout) noexcept
      : slot_(slot), timeout_(timeout) {
    slot_->retain();
  }
  ~ask_timeout_task() override { slot_->release(); }
  void fire() noexcept override {
    try {
      slot_->fail(errc::timeout,
                  "no reply within " +
                      std::to_string(
                          std::chrono::duration_cast<std::chrono::microseconds>(timeout_).count()) +
                      " us");
    } catch (...) {
      slot_->fail(errc::timeout, {});
    }
  }

 private:
  reply_slot_base* slot_;
  clock::duration timeout_;
};

template <class A, class M, class Arg>
auto ask_message(actor_cell* target, Arg&& message, clock::duration timeout, bool use_default) {
  using R = typename reply_type<A, M>::type;
  static_assert(!std::is_void_v<R>, "troupe: ask(): the handler's reply type is void");
  if (target == nullptr) throw error(errc::invalid_ref, "ask() through an empty ref");
  runtime_core* core = target->core();
  if (use_default) timeout = core->options().ask_timeout;
  actor_cell* asker = this_thread_identity.core == core ? this_thread_identity.cell : nullptr;
  auto* slot = new reply_slot<R>(target, core->next_correlation(), access::make_address(asker));
  troupe::reply<R> result(slot);
  slot->retain();  // the envelope's reference
  envelope* e = nullptr;
  try {
    e = new ask_envelope<M, R>(&ask_ops<A, M, R>, slot, std::forward<Arg>(message));
  } catch (...) {
    slot->release();
    throw;
  }
  core->timers().schedule(core->now() + timeout, std::make_unique<ask_timeout_task>(slot, timeout),
                          &slot->timer_);
  core->post(target, e, true);
  return result;
}

inline reply_slot_base::reply_slot_base(actor_cell* target, std::uint64_t correlation,
                                        address asker) noexcept
    : target_(target), correlation_(correlation), asker_(std::move(asker)) {
  target_->retain();  // keeps the runtime core alive as long as the reply state
  counter_slot& counters = target_->core()->counters_here();
  counters.add(counters.asks_opened);
}

inline reply_slot_base::~reply_slot_base() {
  if (wake_cell_ != nullptr) wake_cell_->release();
  counter_slot& counters = target_->core()->counters_here();
  counters.add(counters.asks_closed);
  target_->release();
}

inline runtime_core* reply_slot_base::core() const noexcept {
  return target_->core();
}

inline void reply_slot_base::retain_cell(actor_cell* cell) noexcept {
  cell->retain();
}

inline bool reply_slot_base::fail(errc code, const std::string& text,
                                  std::exception_ptr cause) noexcept {
  if (!claim()) return false;
  try {
    error_ = std::make_exception_ptr(troupe::error(code, text, std::move(cause)));
  } catch (...) {
    error_ = std::current_exception();
  }
  publish();
  return true;
}

inline void reply_slot_base::publish() noexcept {
  // Cancel first, so that whoever sees the ask done also sees its timer gone. Destroying the
  // cancelled task drops its reference; the caller still holds one.
  static_cast<void>(core()->timers().cancel(&timer_));
  if (const std::uint32_t entry = round_trip_entry_.load(std::memory_order_acquire); entry != 0)
      [[unlikely]] {
    core()->record_round_trip(entry - 1, asked_);
  }
  state_.store(state_done, std::memory_order_release);
  state_.notify_all();
  if (waiter_.exchange(waiter_fired, std::memory_order_acq_rel) == waiter_registered) fire();
}

inline void reply_slot_base::fire() noexcept {
  if (wake_cell_ != nullptr) {
    wake_cell_->wake(wake_generation_);
  } else if (callback_) {
    callback_();
  }
}

template <class R>
bool reply_slot<R>::deliver(R&& value) noexcept {
  runtime_core* rt = core();
  counter_slot& counters = rt->counters_here();
  counters.add(counters.sent);  // a reply is a message
  if (!claim()) {
    rt->record_dead_letter(asker(), type_name<R>(), dead_letter_reason::expired, correlation(),
                           "the ask had already completed (timed out or failed)");
    return false;
  }
  try {
    value_.emplace(std::move(value));
  } catch (...) {
    error_ = std::current_exception();
  }
  counters.add(counters.handled);
  publish();
  return true;
}

// ---- the actor record ------------------------------------------------------------------------

inline void actor_cell::release() noexcept {
  if (refs_.fetch_sub(1, std::memory_order_acq_rel) == 1) destroy_self();
}

inline void actor_cell::destroy_self() noexcept {
  runtime_core* core = core_;
  if (watch_ != nullptr && watch_->supervisor != nullptr) watch_->supervisor->release();
  delete watch_;
  ops_->delete_cell(this);
  core->release();
}

inline activation actor_cell::run(std::size_t batch) {
  if (parked_.load(std::memory_order_acquire)) {
    // Woken while waiting for its supervisor: to be restarted in place, or stopped.
    parked_.store(false, std::memory_order_relaxed);
    wake_.store((wake_.load(std::memory_order_acquire) & ~std::uint64_t{3}) | wake_running,
                std::memory_order_relaxed);
    if (stop_requested_.load(std::memory_order_seq_cst) ||
        !restart_requested_.load(std::memory_order_seq_cst)) {
      finalize();
      return activation::finished;
    }
    restart_requested_.store(false, std::memory_order_seq_cst);
    if (!restart_instance()) return activation::suspended;
  } else if (task_) {
    // A suspended task handler was woken (or is being abandoned at shutdown).
    wake_.store((wake_.load(std::memory_order_acquire) & ~std::uint64_t{3}) | wake_running,
                std::memory_order_relaxed);
    if (force_stop_.load(std::memory_order_acquire)) {
      finalize();
      return activation::finished;
    }
    int settled;
    if (instrumented_) [[unlikely]] {
      this_thread_identity.message = current_->correlation;  // the causation of its sends
      resume_point_.resume();
      settled = settle_task();
      this_thread_identity.message = 0;
    } else {
      resume_point_.resume();
      settled = settle_task();
    }
    if (settled < 0) return activation::finished;
    if (settled == 0) return after_suspension();
  }
  if (!started_) {
    started_ = true;
    if (!stop_requested_.load(std::memory_order_acquire)) {
      try {
        ops_->on_start(*this);
        start_ran_ = true;
      } catch (...) {
        start_ran_ = false;
        fail(std::current_exception(), nullptr);
        return activation::finished;
      }
    }
  }
  const bool bounded = ops_->mailbox.capacity != 0;  // once per activation, not per message
  for (std::size_t n = 0; n < batch; ++n) {
    if (stop_requested_.load(std::memory_order_seq_cst)) return stop_now();
    if (restart_requested_.load(std::memory_order_relaxed) &&
        restart_requested_.exchange(false, std::memory_order_seq_cst)) {
      if (!restart_instance()) return activation::suspended;
    }
    envelope* e = mailbox_.pop();
    if (e == nullptr) {
      if (!mailbox_.try_idle()) continue;
      // A stop or restart request that raced with going idle must not be lost: whoever claims
      // the idle actor back (it, or a sender that schedules it) sees the flag.
      if ((stop_requested_.load(std::memory_order_seq_cst) ||
           restart_requested_.load(std::memory_order_seq_cst)) &&
          mailbox_.claim_if_idle()) {
        continue;
      }
      return activation::idle;
    }
    if (bounded && !account_bounded_pop(e)) [[unlikely]]
      continue;
    const int outcome = instrumented_ ? dispatch_instrumented(e) : dispatch(e);
    if (outcome < 0) return activation::finished;
    if (outcome == 0) return after_suspension();
  }
  return activation::yielded;
}

// A bounded mailbox gave up a message: update its depth, drop it if it is an oldest one over the
// bound (drop_oldest), and let actors waiting for room retry. False if `e` was dropped.
inline bool actor_cell::account_bounded_pop(envelope* e) noexcept {
  watch_state* x = watch_;
  const std::size_t before = x->depth.fetch_sub(1, std::memory_order_seq_cst);
  if (x->room_waiter_count.load(std::memory_order_seq_cst) != 0) wake_room_waiters();
  if (ops_->mailbox.overflow == overflow::drop_oldest && before > ops_->mailbox.capacity) {
    if (actor_stats* a = core_->actor_stats_of(this)) a->dequeued();
    core_->dead_letter_out(this, e, dead_letter_reason::mailbox_full,
                           "dropped as the oldest message of a full mailbox");
    return false;
  }
  return true;
}

inline void actor_cell::wake_room_waiters() noexcept {
  std::vector<std::pair<actor_cell*, std::uint64_t>> waiters;
  {
    std::lock_guard lock(runtime_core::monitor_lock(this));
    waiters.swap(watch_->room_waiters);
    watch_->room_waiter_count.store(0, std::memory_order_seq_cst);
  }
  // All of them retry; those that lose the race for the free slots wait again.
  for (const auto& [cell, generation] : waiters) {
    cell->wake(generation);
    cell->release();
  }
}

// A stop request reached a message boundary. A supervised permanent child is not stopped but
// restarted (its supervisor decides when); everything else stops for good.
inline activation actor_cell::stop_now() noexcept {
  if (supervised_restartable(false)) {
    drop_instance();
    stop_requested_.store(false, std::memory_order_seq_cst);
    park_for_supervisor(false, "stopped");
    return activation::suspended;
  }
  finalize();
  return activation::finished;
}

inline bool actor_cell::supervised_restartable(bool failed) const noexcept {
  if (watch_ == nullptr || watch_->supervisor == nullptr) return false;
  if (final_stop_.load(std::memory_order_seq_cst) || force_stop_.load(std::memory_order_seq_cst) ||
      stopped_by_shutdown_.load(std::memory_order_seq_cst)) {
    return false;
  }
  return watch_->restart == restart_kind::permanent ||
         (failed && watch_->restart == restart_kind::transient);
}

// The instance is gone; the mailbox stays and keeps filling. The actor waits, counted as
// suspended, until its supervisor restarts it (request_restart) or stops it.
inline void actor_cell::park_for_supervisor(bool failed, const std::string& reason) noexcept {
  // Once parked, the actor may be restarted or stopped (and freed) elsewhere: keep it alive
  // until this function is done with it.
  retain();
  parked_.store(true, std::memory_order_seq_cst);
  core_->add_suspended(1);
  const std::uint64_t generation = (wake_.load(std::memory_order_relaxed) >> 2) + 1;
  std::uint64_t parked_word = generation << 2 | wake_suspended;
  wake_.store(parked_word, std::memory_order_seq_cst);
  if (force_stop_.load(std::memory_order_seq_cst) &&
      wake_.compare_exchange_strong(parked_word, generation << 2 | wake_running,
                                    std::memory_order_acq_rel)) {
    // Shutdown raced with the failure: stop for good instead of waiting.
    core_->add_suspended(-1);
    parked_.store(false, std::memory_order_relaxed);
    finalize();
    release();
    return;
  }
  watch_->notify(watch_->supervisor, this, failed, true, reason);
  release();
}

inline void actor_cell::drop_instance() noexcept {
  if (!instance_alive_) return;
  if (start_ran_) {
    try {
      ops_->on_stop(*this);
    } catch (...) {
      std::string what;
      try {
        what = "on_stop: " + describe(std::current_exception());
      } catch (...) {
      }
      core_->report_failure(this, what);
    }
  }
  ops_->destroy_instance(*this);
  instance_alive_ = false;
  start_ran_ = false;
}

// Builds a fresh instance from the factory and runs on_start; a throw there is a failure like
// any other (the supervisor counts it towards its restart intensity).
inline bool actor_cell::restart_instance() noexcept {
  drop_instance();
  try {
    if (actor_stats* a = core_->actor_stats_of(this)) {
      a->restarts.fetch_add(1, std::memory_order_relaxed);
    }
    watch_->factory(*this);
    instance_alive_ = true;
    started_ = true;
    ops_->on_start(*this);
    start_ran_ = true;
  } catch (...) {
    fail(std::current_exception(), nullptr);
    return false;
  }
  return true;
}

inline void actor_cell::request_restart() noexcept {
  restart_requested_.store(true, std::memory_order_seq_cst);
  if (mailbox_.claim_if_idle()) {
    core_->schedule(this);
    return;
  }
  kick_parked();
}

inline void actor_cell::kick_parked() noexcept {
  if (!parked_.load(std::memory_order_seq_cst)) return;
  std::uint64_t w = wake_.load(std::memory_order_acquire);
  if ((w & 3) == wake_suspended &&
      wake_.compare_exchange_strong(w, (w & ~std::uint64_t{3}) | wake_woken,
                                    std::memory_order_acq_rel)) {
    // Once scheduled the actor may run, stop and be freed elsewhere: touch nothing after.
    core_->add_suspended(-1);
    core_->schedule(this);
  }
}

// The handler just suspended. If a forced stop arrived meanwhile, take the actor back now
// rather than waiting for whatever it sleeps on.
// Called with the reference settle_task took before publishing the suspension: from that
// moment another thread may wake, run, stop and free the actor, so this one keeps it alive.
inline activation actor_cell::after_suspension() noexcept {
  activation result = activation::suspended;
  if (force_stop_.load(std::memory_order_seq_cst)) {
    std::uint64_t w = wake_.load(std::memory_order_acquire);
    if ((w & 3) == wake_suspended &&
        wake_.compare_exchange_strong(w, (w & ~std::uint64_t{3}) | wake_running,
                                      std::memory_order_acq_rel)) {
      core_->add_suspended(-1);
      finalize();
      result = activation::finished;
    }
  }
  release();
  return result;
}

inline int actor_cell::dispatch(envelope* e) {
  handler_start started;
  try {
    started = e->ops->invoke(*this, *e);
  } catch (...) {
    fail(std::current_exception(), e);
    return -1;
  }
  if (!started.frame) {
    finish_message(e);
    return 1;
  }
  return begin_task(started, e);
}

// A handler returned a task: run it to its first suspension or its end.
inline int actor_cell::begin_task(const handler_start& started, envelope* e) {
  task_ = started.frame;
  task_promise_ = started.promise;
  current_ = e;
  resume_point_ = task_;
  task_.resume();
  return settle_task();
}

// dispatch with metrics or tracing: the handler's start and end are timed and reported, and
// the messages it sends name it as their causation.
inline int actor_cell::dispatch_instrumented(envelope* e) {
  message_stats* const stats = core_->on_handler_start(this, e);
  this_thread_identity.message = e->correlation;
  handler_start started;
  try {
    started = e->ops->invoke(*this, *e);
  } catch (...) {
    this_thread_identity.message = 0;
    core_->on_handler_end(this, e, true, stats);
    fail(std::current_exception(), e);
    return -1;
  }
  if (!started.frame) {
    this_thread_identity.message = 0;
    core_->on_handler_end(this, e, false, stats);
    finish_message(e);
    return 1;
  }
  const int settled = begin_task(started, e);
  this_thread_identity.message = 0;
  return settled;
}

inline int actor_cell::settle_task() {
  for (;;) {
    if (task_.done()) {
      std::exception_ptr error = task_promise_->error();
      if (!error && current_->ops->task_done != nullptr) {
        try {
          current_->ops->task_done(*current_, *task_promise_);  // the reply of an ask
        } catch (...) {
          error = std::current_exception();
        }
      }
      task_.destroy();
      task_ = {};
      task_promise_ = nullptr;
      envelope* e = std::exchange(current_, nullptr);
      if (instrumented_) [[unlikely]]
        core_->on_handler_end(this, e, error != nullptr);
      if (error) {
        fail(std::move(error), e);
        return -1;
      }
      finish_message(e);
      return 1;
    }
    std::uint64_t w = wake_.load(std::memory_order_acquire);
    const std::uint64_t generation_bits = w & ~std::uint64_t{3};
    if ((w & 3) == wake_armed) {
      core_->add_suspended(1);
      retain();  // released by after_suspension: see there
      if (wake_.compare_exchange_strong(w, generation_bits | wake_suspended,
                                        std::memory_order_acq_rel, std::memory_order_acquire)) {
        return 0;
      }
      release();  // not the last reference: this worker still runs the actor
      core_->add_suspended(-1);
    }
    if ((w & 3) == wake_woken) {
      // The wake-up beat us to it: resume in place.
      wake_.store(generation_bits | wake_running, std::memory_order_relaxed);
      resume_point_.resume();
      continue;
    }
    // Suspended without arming: await_transform admits only troupe awaitables, so this is a
    // bug in one of them. Nothing could ever resume the handler.
    std::fputs("troupe: internal error: a task handler suspended with no wake-up armed\n", stderr);
    std::terminate();
  }
}

inline void actor_cell::wake(std::uint64_t generation) noexcept {
  std::uint64_t w = wake_.load(std::memory_order_acquire);
  for (;;) {
    if ((w >> 2) != generation) return;  // a stale wake-up of an earlier suspension
    const std::uint64_t state = w & 3;
    if (state != wake_armed && state != wake_suspended) return;
    if (wake_.compare_exchange_weak(w, generation << 2 | wake_woken, std::memory_order_acq_rel,
                                    std::memory_order_acquire)) {
      if (state == wake_suspended) {
        // Once scheduled the actor may run, stop and be freed elsewhere: touch nothing after.
        core_->add_suspended(-1);
        core_->schedule(this);
      }
      return;
    }
  }
}

inline void actor_cell::request_stop(bool force) noexcept {
  if (force) force_stop_.store(true, std::memory_order_seq_cst);
  stop_requested_.store(true, std::memory_order_seq_cst);
  if (mailbox_.claim_if_idle()) {
    core_->schedule(this);
    return;
  }
  if (force) {
    std::uint64_t w = wake_.load(std::memory_order_acquire);
    if ((w & 3) == wake_suspended &&
        wake_.compare_exchange_strong(w, (w & ~std::uint64_t{3}) | wake_woken,
                                      std::memory_order_acq_rel)) {
      // Once scheduled the actor may run, stop and be freed elsewhere: touch nothing after.
      core_->add_suspended(-1);
      core_->schedule(this);
    }
    return;
  }
  kick_parked();  // waiting for its supervisor: a stop ends the wait
}

inline void actor_cell::finish_message(envelope* e) noexcept {
  counter_slot& counters = core_->counters_here();
  counters.add(counters.handled);
  e->destroy();
}

inline void actor_cell::fail(std::exception_ptr error, envelope* failing) noexcept {
  std::string what;
  try {
    what = describe(error);
  } catch (...) {
  }
  if (failing != nullptr) {
    core_->dead_letter_out(this, failing, dead_letter_reason::handler_failed, what, error);
  }
  core_->report_failure(this, what);
  if (actor_stats* a = core_->actor_stats_of(this))
    a->failed.fetch_add(1, std::memory_order_relaxed);
  {
    std::lock_guard lock(runtime_core::monitor_lock(this));
    try {
      if (watch_ == nullptr) watch_ = new watch_state;
      watch_->failure = what;
    } catch (...) {
    }
  }
  if (supervised_restartable(true)) {
    if (instance_alive_) {
      try {
        ops_->on_failure(*this, error);  // sees the failure before the restart
      } catch (...) {
      }
    }
    drop_instance();
    park_for_supervisor(true, what);
    return;
  }
  cause_ = stop_cause::failed;
  finalize();
}

inline void actor_cell::abandon_task() noexcept {
  task_.destroy();  // also destroys the frames it awaits; their pending wake-ups go stale
  task_ = {};
  task_promise_ = nullptr;
  if (envelope* e = std::exchange(current_, nullptr)) {
    core_->dead_letter_out(this, e, dead_letter_reason::shutdown,
                           "the handler was still suspended when the runtime shut down");
  }
}

inline void actor_cell::finalize() noexcept {
  if (task_) abandon_task();
  envelope* rest = mailbox_.close();
  const dead_letter_reason reason = runtime_core::stop_reason_of(this);
  actor_stats* stats = core_->actor_stats_of(this);
  while (rest != nullptr) {
    if (stats != nullptr) stats->dequeued();
    envelope* next = rest->next;
    core_->dead_letter_out(this, rest, reason, {});
    rest = next;
  }
  drop_instance();
  if (watch_ != nullptr && watch_->room_waiter_count.load(std::memory_order_seq_cst) != 0) {
    wake_room_waiters();  // senders waiting for room: the message is dead-lettered instead
  }
  if (cause_ == stop_cause::none) {
    cause_ = stopped_by_shutdown_.load(std::memory_order_relaxed) ? stop_cause::shutdown
                                                                  : stop_cause::requested;
  }
  notify_watchers();
  // A supervisor that stopped its child (or a runtime shutting down) needs no report.
  if (watch_ != nullptr && watch_->supervisor != nullptr && watch_->notify != nullptr &&
      !final_stop_.load(std::memory_order_relaxed) &&
      !stopped_by_shutdown_.load(std::memory_order_relaxed)) {
    std::string reason;
    try {
      reason = cause_ == stop_cause::failed ? watch_->failure : "stopped";
    } catch (...) {
    }
    watch_->notify(watch_->supervisor, this, cause_ == stop_cause::failed, false, reason);
  }
  core_->unregister_cell(this);
  release();  // the runtime's reference
}

inline void actor_cell::notify_watchers() noexcept {
  std::vector<watch_entry> watchers;
  std::string detail;
  {
    std::lock_guard lock(runtime_core::monitor_lock(this));
    sealed_ = true;
    exit_cause_ = cause_;
    if (watch_ == nullptr) return;
    watchers.swap(watch_->entries);
    try {
      detail = watch_->failure;
    } catch (...) {
    }
  }
  for (const watch_entry& w : watchers) {
    if (w.wake_generation != 0) {
      w.watcher->wake(w.wake_generation);
    } else {
      core_->deliver_down(w.watcher, this, cause_, detail, w.id);
    }
    w.watcher->release();
  }
}

// Awaitable in a task handler: resumes when `target` has stopped for good, or at `deadline`;
// yields whether it stopped.
class stopped_awaiter {
 public:
  using troupe_awaitable = void;
  stopped_awaiter(actor_cell* target, clock::time_point deadline) noexcept
      : target_(target), deadline_(deadline) {}

  [[nodiscard]] bool await_ready() const noexcept { return stopped(); }
  void await_suspend(std::coroutine_handle<> awaiting) {
    actor_cell* self = this_thread_identity.cell;
    auto timeout = std::make_unique<wake_task>(self);
    const std::uint64_t generation = self->arm_suspension(awaiting);
    timeout->arm(generation);
    bool already = false;
    {
      std::lock_guard lock(runtime_core::monitor_lock(target_));
      if (target_->sealed_) {
        already = true;
      } else {
        if (target_->watch_ == nullptr) target_->watch_ = new watch_state;
        self->retain();
        target_->watch_->entries.push_back({self, 0, generation});
      }
    }
    if (already) {
      self->wake(generation);
      return;
    }
    self->core()->timers().schedule(deadline_, std::move(timeout));
  }
  [[nodiscard]] bool await_resume() const noexcept { return stopped(); }

 private:
  [[nodiscard]] bool stopped() const noexcept {
    std::lock_guard lock(runtime_core::monitor_lock(target_));
    return target_->sealed_;
  }
  actor_cell* target_;
  clock::time_point deadline_;
};

}  // namespace troupe::detail

// ---- handles and context ---------------------------------------------------------------------

namespace troupe {

inline address::address(const address& other) noexcept : cell_(other.cell_) {
  if (cell_ != nullptr) cell_->retain();
}
inline address& address::operator=(const address& other) noexcept {
  if (other.cell_ != nullptr) other.cell_->retain();
  if (cell_ != nullptr) cell_->release();
  cell_ = other.cell_;
  return *this;
}
inline address& address::operator=(address&& other) noexcept {
  if (this != &other) {
    if (cell_ != nullptr) cell_->release();
    cell_ = std::exchange(other.cell_, nullptr);
  }
  return *this;
}
inline address::~address() {
  if (cell_ != nullptr) cell_->release();
}
inline std::uint64_t address::id() const noexcept {
  return cell_ != nullptr ? cell_->id() : 0;
}
inline std::string_view address::type_name() const noexcept {
  return cell_ != nullptr ? cell_->ops()->type_name : std::string_view{};
}
inline void address::stop() const {
  if (cell_ == nullptr) throw error(errc::invalid_ref, "stop() through an empty address");
  cell_->request_stop(false);
}

namespace detail {
inline actor_cell& cell_of(const context& ctx) noexcept {
  return static_cast<actor_cell&>(const_cast<context&>(ctx));
}
}  // namespace detail

inline address context::self() const noexcept {
  return detail::access::make_address(&detail::cell_of(*this));
}

template <Actor A>
ref<A> context::self_as() const {
  detail::actor_cell& cell = detail::cell_of(*this);
  if (cell.ops()->type_tag != &detail::type_tag<A>) {
    throw error(errc::bad_actor_type, "self_as<" + std::string(detail::type_name<A>()) +
                                          ">() on an actor of type " +
                                          std::string(cell.ops()->type_name));
  }
  return detail::access::make_ref<A>(&cell);
}

inline troupe::runtime& context::runtime() const noexcept {
  return *detail::cell_of(*this).core()->owner();
}

template <Actor A, class... Args>
ref<A> context::spawn(Args&&... args) const {
  static_assert(detail::actor_constructible<A, Args...>::value,
                "troupe: spawn<A>(args...): A is constructible neither from "
                "(troupe::context&, args...) nor from (args...)");
  return detail::access::adopt_ref<A>(
      detail::cell_of(*this).core()->template spawn<A>(std::forward<Args>(args)...));
}

inline void context::stop() noexcept {
  detail::cell_of(*this).stop_requested_.store(true, std::memory_order_seq_cst);
}

inline detail::sleep_awaiter context::sleep_for(std::chrono::nanoseconds delay) const {
  detail::actor_cell& cell = detail::cell_of(*this);
  return detail::sleep_awaiter{
      &cell, cell.core()->now() + std::chrono::duration_cast<detail::clock::duration>(delay)};
}

inline detail::sleep_awaiter context::sleep_until(
    std::chrono::steady_clock::time_point when) const {
  return detail::sleep_awaiter{&detail::cell_of(*this), when};
}

template <Actor A, class M>
void context::send_after(std::chrono::nanoseconds delay, const ref<A>& target, M&& message) const {
  using message_type = std::remove_cvref_t<M>;
  static_assert(detail::actor_has_handler_for_message<A, message_type>::value,
                "troupe: send_after(): the actor has no on(...) handler for this message type");
  if constexpr (Handles<A, message_type>) {
    detail::send_message_after<A>(detail::access::cell_of(target),
                                  std::chrono::duration_cast<detail::clock::duration>(delay),
                                  std::forward<M>(message));
  }
}

template <class R>
void reply<R>::await_suspend(std::coroutine_handle<> awaiting) noexcept {
  detail::actor_cell* cell = detail::this_thread_identity.cell;
  if (cell == nullptr) {
    std::fputs("troupe: a reply was awaited outside an actor's task handler\n", stderr);
    std::terminate();
  }
  slot_->wake_when_done(cell, cell->arm_suspension(awaiting));
}

inline monitor_handle context::monitor(const address& target) {
  detail::actor_cell& self = detail::cell_of(*this);
  detail::actor_cell* watched = detail::access::cell_of(target);
  if (watched == nullptr) throw error(errc::invalid_ref, "monitor() of an empty address");
  if (!self.ops()->handles_down) {
    throw error(errc::no_down_handler,
                std::string(self.ops()->type_name) +
                    " monitors an actor but has no on(troupe::down) handler");
  }
  detail::runtime_core* core = self.core();
  const std::uint64_t id = core->next_monitor_id();
  bool already_stopped = false;
  detail::stop_cause cause = detail::stop_cause::none;
  std::string detail_text;
  {
    std::lock_guard lock(detail::runtime_core::monitor_lock(watched));
    if (watched->sealed_) {
      already_stopped = true;
      cause = watched->exit_cause_;
      if (watched->watch_ != nullptr) detail_text = watched->watch_->failure;
    } else {
      if (watched->watch_ == nullptr) watched->watch_ = new detail::watch_state;
      watched->watch_->entries.push_back({&self, id});
      self.retain();
    }
  }
  if (already_stopped) core->deliver_down(&self, watched, cause, detail_text, id);
  return monitor_handle{target, id};
}

inline bool context::demonitor(const monitor_handle& handle) {
  detail::actor_cell& self = detail::cell_of(*this);
  detail::actor_cell* watched = detail::access::cell_of(handle.target);
  if (watched == nullptr) return false;
  std::lock_guard lock(detail::runtime_core::monitor_lock(watched));
  if (watched->watch_ == nullptr) return false;
  auto& entries = watched->watch_->entries;
  for (auto it = entries.begin(); it != entries.end(); ++it) {
    if (it->watcher == &self && it->id == handle.id) {
      entries.erase(it);
      self.release();  // not the last reference: the running actor holds the runtime's
      return true;
    }
  }
  return false;
}

inline std::chrono::steady_clock::time_point context::now() const noexcept {
  return detail::cell_of(*this).core()->now();
}

}  // namespace troupe

#include <troupe/queue.hpp>
#include <troupe/topic.hpp>
