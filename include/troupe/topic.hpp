// Topics: publish typed events on dotted subjects; subscribers match them with patterns that
// may use `*` (exactly one token) and `>` (one or more trailing tokens), as NATS subjects do.
//
//   struct user_registered { std::string email; };
//   auto sub = rt.subscribe<user_registered>("user.*", mailer);        // RAII: unsubscribes
//   auto a = rt.subscribe<user_registered>("user.>", billing_1, troupe::group{"billing"});
//   auto b = rt.subscribe<user_registered>("user.>", billing_2, troupe::group{"billing"});
//   rt.publish("user.registered", user_registered{"ada@example.org"});  // or ctx.publish(...)
//
// An event is built once and shared immutably by every subscriber it reaches (a handler takes
// it as `const E&`). Every plain subscriber gets each event; within a group, one member gets it
// (in turn; a stopped member's share goes to the others). A publish that matches nobody is
// counted (runtime_counters::unrouted), not an error. Dead letters are also published, as
// troupe::dead_letter events on the subject troupe::dead_letter_subject.
//
// A subject can keep its last N events (a retained topic, like a log partition): each event
// published there gets the next offset, and a subscriber can replay from an offset (or the
// oldest kept) and then continue live, with no gap and no duplicate even while publishing goes
// on. A handler that takes `const troupe::retained<E>&` sees each event's offset.
//
//   auto orders = rt.retain<order_placed>("orders.placed", 10'000);
//   rt.publish("orders.placed", order_placed{...});                     // offset 0, 1, ...
//   auto sub = rt.subscribe<order_placed>("orders.placed", auditor, troupe::replay::oldest());
//   orders.window();                                                    // {first, next, capacity}
#pragma once

#include <concepts>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <troupe/detail/core.hpp>
#include <troupe/detail/topic_registry.hpp>

namespace troupe {

// Names a consumer group: subscriptions with the same group share its events.
struct group {
  std::string name;
};

// The subject dead letters are published on.
inline constexpr std::string_view dead_letter_subject = "troupe.dead_letter";

// The longest subject or pattern, in bytes, and the most tokens one may have; a longer one is
// rejected with error(invalid_subject). NATS bounds a subject by its 4 KiB protocol line.
inline constexpr std::size_t max_subject_bytes = detail::max_subject_bytes;
inline constexpr std::size_t max_subject_tokens = detail::max_subject_tokens;

// Where a subscription to a retained topic starts: at a given offset, or at the oldest event
// the topic still keeps. Used with runtime::subscribe(subject, ref, replay).
class replay {
 public:
  [[nodiscard]] static constexpr replay from(std::uint64_t offset) noexcept {
    return replay(offset, false);
  }
  [[nodiscard]] static constexpr replay oldest() noexcept { return replay(0, true); }
  [[nodiscard]] constexpr bool from_oldest() const noexcept { return oldest_; }
  [[nodiscard]] constexpr std::uint64_t offset() const noexcept { return offset_; }

 private:
  constexpr replay(std::uint64_t offset, bool oldest) noexcept : offset_(offset), oldest_(oldest) {}
  std::uint64_t offset_;
  bool oldest_;
};

// An event of a retained topic together with its offset: what a handler `on(const
// troupe::retained<E>&)` receives. `event` is valid for the duration of the handler call;
// `offset` is troupe::no_offset only for an event published while the subject was being
// configured to retain (before runtime::retain returned).
template <class E>
struct retained {
  std::uint64_t offset;
  const E& event;
};

inline constexpr std::uint64_t no_offset = detail::no_offset;

// The offsets a retained topic keeps: [first, next). `next` is the offset the next publish
// gets; `next - first` events are retained, at most `capacity`.
struct retention_window {
  std::uint64_t first = 0;
  std::uint64_t next = 0;
  std::size_t capacity = 0;
  [[nodiscard]] std::size_t size() const noexcept { return static_cast<std::size_t>(next - first); }
  friend bool operator==(const retention_window&, const retention_window&) = default;
};

// A handle on a retained subject (runtime::retain). Copyable; the retention itself lives as
// long as the runtime, whether or not a handle does. Thread-safe. A handle may outlive its
// runtime: subject() and window() still answer, publish() throws error(runtime_stopped).
template <class E>
class retained_topic {
 public:
  retained_topic(std::shared_ptr<detail::retained_log> log, detail::runtime_core* core) noexcept
      : log_(std::move(log)), core_(core) {
    core_->retain();  // like a ref or a work queue: the core outlives every handle on it
  }
  retained_topic(const retained_topic& other) noexcept : log_(other.log_), core_(other.core_) {
    core_->retain();
  }
  retained_topic& operator=(const retained_topic& other) noexcept {
    other.core_->retain();
    core_->release();
    log_ = other.log_;
    core_ = other.core_;
    return *this;
  }
  ~retained_topic() { core_->release(); }

  [[nodiscard]] std::string_view subject() const noexcept { return log_->subject; }
  // The offsets kept now (a snapshot: publishes may move it right after).
  [[nodiscard]] retention_window window() const {
    std::lock_guard lock(log_->mutex);
    return {log_->first, log_->next, log_->capacity};
  }
  // Publishes on this subject, like runtime::publish; returns the offset the event got. Throws
  // error(runtime_stopped) once the runtime's shutdown has begun (from outside its threads).
  template <class Event>
  requires std::same_as<std::remove_cvref_t<Event>, E> std::uint64_t publish(Event&& event)
  const;

 private:
  std::shared_ptr<detail::retained_log> log_;
  detail::runtime_core* core_;
};

namespace detail {
inline runtime_core* runtime_core_of(const subscriber_entry& e) noexcept {
  return e.cell != nullptr ? e.cell->core() : e.sink_core;
}
}  // namespace detail

// A live subscription; unsubscribes when destroyed. Move-only. unsubscribe() is thread-safe and
// may race with publishes: once it returns no new publish reaches the subscriber (a delivery
// already under way may still arrive).
class subscription {
 public:
  // An inactive subscription; live ones come from subscribe().
  subscription() noexcept = default;
  explicit subscription(std::shared_ptr<detail::subscriber_entry> entry) noexcept
      : entry_(std::move(entry)) {}
  subscription(subscription&&) noexcept = default;
  subscription& operator=(subscription&& other) noexcept {
    if (this != &other) {
      unsubscribe();
      entry_ = std::move(other.entry_);
    }
    return *this;
  }
  subscription(const subscription&) = delete;
  subscription& operator=(const subscription&) = delete;
  ~subscription() { unsubscribe(); }

  // Ends the subscription now (see above); idempotent.
  void unsubscribe() noexcept {
    if (!entry_) return;
    try {
      detail::runtime_core_of(*entry_)->topics().remove(entry_);
    } catch (...) {  // the pattern was validated when subscribing: cannot throw here
    }
    entry_.reset();
  }
  // True until unsubscribed or moved from.
  [[nodiscard]] bool active() const noexcept { return static_cast<bool>(entry_); }
  // The pattern subscribed to (empty when inactive).
  [[nodiscard]] std::string_view pattern() const noexcept {
    return entry_ ? std::string_view(entry_->pattern) : std::string_view{};
  }

 private:
  std::shared_ptr<detail::subscriber_entry> entry_;
};

// A handles events of type E: `a.on(const E&)` or `a.on(const troupe::retained<E>&)` is well
// formed.
template <class A, class E>
concept HandlesEvent = requires(A& actor, const E& event) {
  actor.on(event);
}
|| requires(A& actor, const retained<E>& r) {
  actor.on(r);
};

namespace detail {

template <class ActorType, class EventType>
struct actor_has_handler_for_event {
  static constexpr bool value = HandlesEvent<ActorType, EventType>;
};

// A takes events with their offsets (on(const retained<E>&)), and perhaps plain ones too.
template <class A, class E>
concept takes_offsets = requires(A& actor, const retained<E>& r) {
  actor.on(r);
};
template <class A, class E>
concept takes_plain_events = requires(A& actor, const E& event) {
  actor.on(event);
};

template <class E>
struct event_envelope final : envelope {
  event_envelope(const envelope_ops* o, std::shared_ptr<const E> e, std::uint64_t off) noexcept
      : envelope{nullptr, o, 0}, event(std::move(e)), view{off, *event} {}
  static void* operator new(std::size_t n) { return block_pool::allocate(n); }
  static void operator delete(void* p, std::size_t n) noexcept { block_pool::deallocate(p, n); }
  std::shared_ptr<const E> event;
  // The argument of a handler that takes offsets, kept here rather than on invoke_event's stack:
  // a coroutine handler taking `const retained<E>&` holds that reference after invoke_event
  // returns, and the envelope lives until the handler ends.
  const retained<E> view;
};

template <class A, class E>
handler_start invoke_event(actor_cell& cell, envelope& e) {
  A& actor = static_cast<typed_cell<A>&>(cell).instance();
  auto& env = static_cast<event_envelope<E>&>(e);
  const E& event = *env.event;
  if constexpr (takes_offsets<A, E> && takes_plain_events<A, E>) {
    if (env.view.offset != no_offset) {
      return start_handler([&]() -> decltype(auto) { return actor.on(env.view); });
    }
  }
  if constexpr (takes_plain_events<A, E>) {
    return start_handler([&]() -> decltype(auto) { return actor.on(event); });
  } else {
    // Only offsets will do, and make_subscriber checked the subject is retained; an event
    // published while retention was being configured has none (retained::offset says so).
    return start_handler([&]() -> decltype(auto) { return actor.on(env.view); });
  }
}

// Refuses a topic operation once shutdown has begun, except from the runtime's own threads (an
// actor finishing its work may still publish, as it may still send).
inline void require_running(runtime_core* core, std::string_view what, std::string_view subject) {
  if (core->accepting() || core->internal_thread()) return;
  throw error(errc::runtime_stopped,
              std::string(what) + " " + quote_subject(subject) + " after shutdown began");
}

// As require_running, for a publish: the refused event is a message, so it is counted as
// rejected like a refused send or push (sent and rejected both grow: the accounting balances).
inline void require_running_to_publish(runtime_core* core, std::string_view what,
                                       std::string_view subject) {
  if (core->accepting() || core->internal_thread()) return;
  core->count_rejected_send();
  require_running(core, what, subject);
}

template <class E>
void destroy_event(envelope* e) noexcept {
  delete static_cast<event_envelope<E>*>(e);
}

template <class A, class E>
inline constexpr envelope_ops event_ops{&invoke_event<A, E>, &destroy_event<E>, type_name<E>()};

template <class A, class E>
bool deliver_event(const subscriber_entry& entry, const std::shared_ptr<const void>& event,
                   std::uint64_t offset, std::string_view) {
  auto* e =
      new event_envelope<E>(&event_ops<A, E>, std::static_pointer_cast<const E>(event), offset);
  return entry.cell->core()->post(entry.cell, e, true);
}

// Hands `erased` to every subscription of `r` (one member per group); returns the deliveries.
inline std::size_t deliver_route(runtime_core* core, const route& r,
                                 const std::shared_ptr<const void>& erased, std::uint64_t offset,
                                 std::string_view subject) {
  std::size_t delivered = 0;
  for (const auto& entry : r.plain) {
    // An unsubscribe that raced with this publish: skip it if already visible (not required,
    // a delivery under way may arrive, but it narrows the window).
    if (!entry->active.load(std::memory_order_relaxed)) continue;
    delivered += entry->deliver(*entry, erased, offset, subject) ? 1 : 0;
  }
  for (const auto& members : r.groups) {
    // One member per event, in turn; a stopped member is skipped, so its share goes to the
    // others. If every member has stopped, the first takes it (and dead-letters it).
    const std::size_t first = core->topics().next_turn() % members.size();
    const subscriber_entry* chosen = members[first].get();
    for (std::size_t k = 0; k < members.size(); ++k) {
      const subscriber_entry* m = members[(first + k) % members.size()].get();
      if (!m->cell->closed() && m->active.load(std::memory_order_relaxed)) {
        chosen = m;
        break;
      }
    }
    delivered += chosen->deliver(*chosen, erased, offset, subject) ? 1 : 0;
  }
  return delivered;
}

// Publishes on a retained subject: the offset is assigned and the event queued for every live
// subscriber under the log's mutex (see retained_log); the route is taken under it too, so a
// subscriber that registered (under the same mutex) before is in it. Returns {offset,
// deliveries}.
inline std::pair<std::uint64_t, std::size_t> publish_retained(runtime_core* core, retained_log& log,
                                                              std::shared_ptr<const void> erased) {
  std::lock_guard lock(log.mutex);
  const std::uint64_t offset = log.append(erased);
  const auto r = core->topics().route_for(log.subject, log.event_type);
  std::size_t delivered = 0;
  if (r->empty()) {
    core->count_unrouted();
  } else {
    delivered = deliver_route(core, *r, erased, offset, log.subject);
  }
  if (core->metrics_on()) core->count_topic(log.subject, delivered);
  return {offset, delivered};
}

template <class E>
std::size_t publish_event(runtime_core* core, std::string_view subject,
                          std::shared_ptr<const E> event) {
  auto r = core->topics().route_for(subject, &type_tag<E>);  // validates the subject
  core->count_publish();
  if (r->log) [[unlikely]] {
    retained_log& log = *r->log;
    r.reset();
    return publish_retained(core, log, std::move(event)).second;
  }
  if (r->empty()) {
    core->count_unrouted();
    if (core->metrics_on()) core->count_topic(subject, 0);
    return 0;
  }
  const std::size_t delivered = deliver_route(core, *r, std::move(event), no_offset, subject);
  if (core->metrics_on()) core->count_topic(subject, delivered);
  return delivered;
}

template <class E, class A>
std::shared_ptr<subscriber_entry> make_subscriber(actor_cell* cell, std::string_view pattern,
                                                  std::string group_name) {
  if (cell == nullptr) throw error(errc::invalid_ref, "subscribe() with an empty ref");
  require_running(cell->core(), "subscribe to", pattern);
  if constexpr (!takes_plain_events<A, E>) {
    // Only offsets will do: the pattern must name a retained subject of E exactly.
    if (!cell->core()->topics().find_log(pattern, &type_tag<E>)) {
      throw error(errc::not_retained,
                  quote_subject(pattern) + " retains no " + std::string(type_name<E>()) +
                      " events, and the actor only has on(const troupe::retained<" +
                      std::string(type_name<E>()) + ">&)");
    }
  }
  cell->retain();  // the entry's reference, released by ~subscriber_entry
  return std::make_shared<subscriber_entry>(cell, &type_tag<E>, &deliver_event<A, E>,
                                            std::move(group_name), std::string(pattern));
}

template <class E, class A>
subscription subscribe_actor(actor_cell* cell, std::string_view pattern, std::string group_name) {
  auto entry = make_subscriber<E, A>(cell, pattern, std::move(group_name));
  cell->core()->topics().add(entry);  // validates the pattern
  return subscription(std::move(entry));
}

// Replays the retained events from `start`, then registers the subscriber as live, both under
// the log's mutex, so that no publish falls between the two (see retained_log).
template <class E, class A>
subscription subscribe_replaying(actor_cell* cell, std::string_view subject, replay start) {
  if (cell == nullptr) throw error(errc::invalid_ref, "subscribe() with an empty ref");
  require_running(cell->core(), "subscribe to", subject);
  split_subject(subject, false);  // a replay names one subject: no wildcards
  auto log = cell->core()->topics().find_log(subject, &type_tag<E>);
  if (!log) {
    throw error(errc::not_retained, quote_subject(subject) + " retains no " +
                                        std::string(type_name<E>()) + " events to replay");
  }
  auto entry = make_subscriber<E, A>(cell, subject, {});
  std::lock_guard lock(log->mutex);
  const std::uint64_t from = start.from_oldest() ? log->first : start.offset();
  if (from < log->first || from > log->next) {
    throw error(errc::invalid_offset, "replay of '" + std::string(subject) + "' from offset " +
                                          std::to_string(from) + ": the retained window is [" +
                                          std::to_string(log->first) + ", " +
                                          std::to_string(log->next) + ")");
  }
  for (std::uint64_t offset = from; offset < log->next; ++offset) {
    entry->deliver(*entry, log->events[static_cast<std::size_t>(offset - log->first)], offset,
                   subject);
  }
  cell->core()->topics().add(entry);
  return subscription(std::move(entry));
}

inline subscriber_entry::~subscriber_entry() {
  if (cell != nullptr) cell->release();
}

}  // namespace detail

template <class E>
template <class Event>
requires std::same_as<std::remove_cvref_t<Event>, E> std::uint64_t retained_topic<E>::publish(
    Event&& event)
const {
  detail::require_running_to_publish(core_, "publish on the retained topic", log_->subject);
  core_->count_publish();
  return detail::publish_retained(core_, *log_,
                                  std::make_shared<const E>(std::forward<Event>(event)))
      .first;
}

template <class E>
std::size_t context::publish(std::string_view subject, E&& event) const {
  using event_type = std::remove_cvref_t<E>;
  return detail::publish_event<event_type>(
      detail::cell_of(*this).core(), subject,
      std::make_shared<const event_type>(std::forward<E>(event)));
}

}  // namespace troupe
