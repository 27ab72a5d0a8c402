// troupe::runtime: worker threads, spawning, delayed sends, counters and shutdown.
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <type_traits>
#include <utility>

#include <troupe/actor.hpp>
#include <troupe/ask.hpp>
#include <troupe/dead_letter.hpp>
#include <troupe/detail/asio_timer_service.hpp>
#include <troupe/detail/core.hpp>
#include <troupe/error.hpp>
#include <troupe/keyed.hpp>
#include <troupe/metrics.hpp>
#include <troupe/queue.hpp>
#include <troupe/ref.hpp>
#include <troupe/runtime_options.hpp>
#include <troupe/topic.hpp>

namespace troupe {

// Owns the worker threads (runtime_options::workers) and one timer thread. Thread-safe: any
// thread may spawn and send. The destructor performs shutdown() (see ~runtime).
class runtime {
 public:
  // Starts the worker threads and the timer thread; throws std::system_error if a thread
  // cannot be started. Not copyable or movable: actors refer to it.
  runtime() : runtime(runtime_options{}) {}
  explicit runtime(runtime_options options)
      : core_(new detail::runtime_core(this, std::move(options))) {
    try {
      const runtime_options& o = core_->options();
      auto timers = std::make_unique<detail::asio_timer_service>(core_);
      auto pool = std::make_unique<detail::worker_pool>(core_, o.workers, o.batch,
                                                        &detail::runtime_core::worker_idle);
      core_->attach(std::move(timers), std::move(pool));
    } catch (...) {
      core_->release();
      throw;
    }
  }

  runtime(const runtime&) = delete;
  runtime& operator=(const runtime&) = delete;
  runtime(runtime&&) = delete;
  runtime& operator=(runtime&&) = delete;

  // Performs shutdown() and waits for it. Destroyed inside one of its own handlers (which
  // cannot wait for itself), it returns at once and the shutdown, bounded the same way, finishes
  // on a thread of its own; context::runtime() must not be used after that.
  ~runtime() {
    if (core_->internal_thread()) {
      core_->shutdown_in_background();
    } else {
      shutdown();
    }
    core_->release();
  }

  // Creates an actor of class A from args (preceded by its context if A's constructor takes
  // troupe::context& first). The constructor runs on the calling thread, so its exceptions
  // reach the caller; on_start runs on a worker before the first message. Throws
  // error(runtime_stopped) once shutdown has begun.
  template <Actor A, class... Args>
  ref<A> spawn(Args&&... args) {
    static_assert(detail::actor_constructible<A, Args...>::value,
                  "troupe: spawn<A>(args...): A is constructible neither from "
                  "(troupe::context&, args...) nor from (args...)");
    return detail::access::adopt_ref<A>(core_->template spawn<A>(std::forward<Args>(args)...));
  }

  // Sends `message` to `target` after `delay` (timer thread; delivered through the mailbox).
  // Counted as sent now. Returns false if shutdown has begun (counted as rejected); later
  // failures have no sender to tell and are dead letters: the runtime shut down first
  // (shutdown), a full bounded mailbox (mailbox_full, whatever its overflow policy), a stopped
  // target. A delay of zero or less sends at once; one past the clock's range (~292 years,
  // nanoseconds::max()) never comes due. Throws error(invalid_ref) on an empty ref.
  template <Actor A, class M>
  bool send_after(std::chrono::nanoseconds delay, const ref<A>& target, M&& message) {
    using message_type = std::remove_cvref_t<M>;
    static_assert(detail::actor_has_handler_for_message<A, message_type>::value,
                  "troupe: send_after(): the actor has no on(...) handler for this message type");
    if constexpr (Handles<A, message_type>) {
      return detail::send_message_after<A>(
          detail::access::cell_of(target),
          std::chrono::duration_cast<detail::clock::duration>(delay), std::forward<M>(message));
    } else {
      return false;
    }
  }

  // Subscribes `subscriber` to events of type E on subjects matching `pattern` (see topic.hpp),
  // within `g` if it names a consumer group. Compiles only if A has on(const E&). Throws
  // error(invalid_subject) for a malformed pattern, error(invalid_ref) for an empty ref,
  // error(runtime_stopped) once shutdown has begun.
  template <class E, Actor A>
  [[nodiscard]] subscription subscribe(std::string_view pattern, const ref<A>& subscriber,
                                       group g = {}) {
    static_assert(detail::actor_has_handler_for_event<A, E>::value,
                  "troupe: subscribe<E>(): the actor has no on(const E&) handler for this event");
    if constexpr (HandlesEvent<A, E>) {
      return detail::subscribe_actor<E, A>(detail::access::cell_of(subscriber), pattern,
                                           std::move(g.name));
    } else {
      return {};
    }
  }

  // Subscribes `subscriber` to the retained subject `subject` (no wildcards), first replaying
  // the kept events from `start`, then live: every offset from `start` on arrives once, in order.
  // Throws error(not_retained) if `subject` keeps no E events, error(invalid_offset) if `start`
  // is before the oldest kept offset or after the next one, error(invalid_ref) for an empty ref,
  // error(runtime_stopped) once shutdown has begun.
  template <class E, Actor A>
  [[nodiscard]] subscription subscribe(std::string_view subject, const ref<A>& subscriber,
                                       replay start) {
    static_assert(detail::actor_has_handler_for_event<A, E>::value,
                  "troupe: subscribe<E>(): the actor has no on(const E&) handler for this event");
    if constexpr (HandlesEvent<A, E>) {
      return detail::subscribe_replaying<E, A>(detail::access::cell_of(subscriber), subject, start);
    } else {
      return {};
    }
  }

  // Makes `subject` (no wildcards) keep its last `capacity` E events with offsets, for replay.
  // Idempotent for the same E and capacity; events published before it returns have no offset.
  // Throws error(invalid_subject) for a malformed subject, error(retention_conflict) if the
  // subject already retains another type or capacity, or if capacity is 0, error(runtime_stopped)
  // once shutdown has begun. Thread-safe.
  template <class E>
  retained_topic<E> retain(std::string_view subject, std::size_t capacity) {
    static_assert(Message<E>, "troupe: a retained event must be a movable object type");
    detail::require_running(core_, "retain", subject);
    return retained_topic<E>(core_->topics().retain(subject, &detail::type_tag<E>, capacity),
                             core_);
  }

  // Publishes `event` on `subject` to every matching subscription (once per group); returns the
  // number of deliveries. Thread-safe. Throws error(invalid_subject) for a malformed subject,
  // error(runtime_stopped) once shutdown has begun (nothing is published; counted as rejected).
  template <class E>
  std::size_t publish(std::string_view subject, E&& event) {
    using event_type = std::remove_cvref_t<E>;
    detail::require_running_to_publish(core_, "publish on", subject);
    return detail::publish_event<event_type>(
        core_, subject, std::make_shared<const event_type>(std::forward<E>(event)));
  }

  // Creates a work queue of items of type T (see queue.hpp).
  template <class T>
  work_queue<T> make_queue(queue_options options = {}) {
    static_assert(Message<T>, "troupe: a work-queue item must be a movable object type");
    return work_queue<T>(std::make_shared<detail::queue_state<T>>(core_, std::move(options)));
  }

  // Creates a keyed queue of T items (see keyed.hpp), keyed by `key_of`: a callable or a pointer
  // to a member of T that gives a Key for an item (it runs on the pushing or publishing thread).
  template <class T, class KeyOf>
  auto make_keyed_queue(keyed_options options, KeyOf key_of) {
    static_assert(Message<T>, "troupe: a keyed-queue item must be a movable object type");
    static_assert(std::is_invocable_v<const KeyOf&, const T&>,
                  "troupe: make_keyed_queue<T>(options, key_of): key_of must be callable with "
                  "const T& (or be a pointer to a member of T)");
    using K = std::remove_cvref_t<std::invoke_result_t<const KeyOf&, const T&>>;
    static_assert(Key<K>,
                  "troupe: make_keyed_queue(): the key must be copyable, equality-comparable and "
                  "hashable with std::hash");
    return keyed_queue<T, K>(std::make_shared<detail::keyed_state<T, K>>(
        core_, std::move(options),
        [f = std::move(key_of)](const T& item) -> K { return std::invoke(f, item); }));
  }
  // Creates a keyed queue whose keys the pusher gives (keyed_queue::push(key, item)).
  template <class T, Key K>
  keyed_queue<T, K> make_keyed_queue(keyed_options options = {}) {
    static_assert(Message<T>, "troupe: a keyed-queue item must be a movable object type");
    return keyed_queue<T, K>(
        std::make_shared<detail::keyed_state<T, K>>(core_, std::move(options), nullptr));
  }

  // Graceful and bounded (see runtime_options::shutdown_timeout): stops accepting sends from
  // outside and spawns, lets actors finish, stops them, dead-letters what is left and joins the
  // threads. Idempotent. Throws error(shutdown_from_worker) if called from a runtime thread.
  void shutdown() { core_->shutdown(core_->options().shutdown_timeout); }
  void shutdown(std::chrono::nanoseconds timeout) { core_->shutdown(timeout); }

  // Message and actor counters; exact once the runtime is quiet or shut down.
  [[nodiscard]] runtime_counters counters() const noexcept { return core_->snapshot(); }
  // Runtime metrics (runtime_options::metrics; enabled false and empty lists without it):
  // per-actor counts, latency histograms per actor type x message type, topic deliveries.
  // Thread-safe; takes the registry lock briefly and copies the histograms (allocates).
  [[nodiscard]] metrics_snapshot metrics() const { return core_->metrics(); }
  // Whether this runtime collects metrics (runtime_options::metrics).
  [[nodiscard]] bool metrics_enabled() const noexcept { return core_->metrics_on(); }
  // Actors spawned and not yet stopped.
  [[nodiscard]] std::size_t live_actors() const noexcept { return core_->live_actors(); }
  // The number of worker threads (runtime_options::workers resolved).
  [[nodiscard]] std::size_t worker_count() const noexcept { return core_->worker_count(); }
  // False once shutdown() has begun.
  [[nodiscard]] bool accepting() const noexcept { return core_->accepting(); }
  // Timers waiting to fire (sleeps, delayed sends, ask timeouts), for tests and diagnostics.
  [[nodiscard]] std::size_t pending_timers() const noexcept { return core_->pending_timers(); }

 private:
  friend class simulation;
  // The simulation's runtime: `wire` attaches its own scheduler and clock (no threads).
  runtime(runtime_options options, void (*wire)(detail::runtime_core&, void*), void* arg)
      : core_(new detail::runtime_core(this, std::move(options))) {
    try {
      wire(*core_, arg);
    } catch (...) {
      core_->release();
      throw;
    }
  }

  detail::runtime_core* core_;
};

}  // namespace troupe
