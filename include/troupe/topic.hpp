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
#pragma once

#include <memory>
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

// A live subscription; unsubscribes when destroyed. Move-only. unsubscribe() is thread-safe and
// may race with publishes: once it returns no new publish reaches the subscriber (a delivery
// already under way may still arrive).
class subscription {
 public:
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

  void unsubscribe() noexcept {
    if (!entry_) return;
    try {
      entry_->cell->core()->topics().remove(entry_);
    } catch (...) {  // the pattern was validated when subscribing: cannot throw here
    }
    entry_.reset();
  }
  [[nodiscard]] bool active() const noexcept { return static_cast<bool>(entry_); }
  [[nodiscard]] std::string_view pattern() const noexcept {
    return entry_ ? std::string_view(entry_->pattern) : std::string_view{};
  }

 private:
  std::shared_ptr<detail::subscriber_entry> entry_;
};

// A handles events of type E: `a.on(const E&)` is well formed.
template <class A, class E>
concept HandlesEvent = requires(A& actor, const E& event) {
  actor.on(event);
};

namespace detail {

template <class ActorType, class EventType>
struct actor_has_handler_for_event {
  static constexpr bool value = HandlesEvent<ActorType, EventType>;
};

template <class E>
struct event_envelope final : envelope {
  event_envelope(const envelope_ops* o, std::shared_ptr<const E> e) noexcept
      : envelope{nullptr, o, 0}, event(std::move(e)) {}
  static void* operator new(std::size_t n) { return block_pool::allocate(n); }
  static void operator delete(void* p, std::size_t n) noexcept { block_pool::deallocate(p, n); }
  std::shared_ptr<const E> event;
};

template <class A, class E>
handler_start invoke_event(actor_cell& cell, envelope& e) {
  A& actor = static_cast<typed_cell<A>&>(cell).instance();
  const E& event = *static_cast<event_envelope<E>&>(e).event;
  return start_handler([&]() -> decltype(auto) { return actor.on(event); });
}

template <class E>
void destroy_event(envelope* e) noexcept {
  delete static_cast<event_envelope<E>*>(e);
}

template <class A, class E>
inline constexpr envelope_ops event_ops{&invoke_event<A, E>, &destroy_event<E>, type_name<E>()};

template <class A, class E>
bool deliver_event(actor_cell* target, const std::shared_ptr<const void>& event) {
  auto* e = new event_envelope<E>(&event_ops<A, E>, std::static_pointer_cast<const E>(event));
  return target->core()->post(target, e, true);
}

template <class E>
std::size_t publish_event(runtime_core* core, std::string_view subject,
                          std::shared_ptr<const E> event) {
  const auto tokens = split_subject(subject, false);
  core->count_publish();
  std::vector<topic_registry::entry_ptr> matched;
  core->topics().match(tokens, &type_tag<E>, matched);
  if (matched.empty()) {
    core->count_unrouted();
    if (core->metrics_on()) core->count_topic(subject, 0);
    return 0;
  }
  const std::shared_ptr<const void> erased = std::move(event);
  std::size_t delivered = 0;
  std::vector<const std::string*> groups_done;
  for (std::size_t i = 0; i < matched.size(); ++i) {
    const auto& entry = matched[i];
    if (entry->group.empty()) {
      delivered += entry->deliver(entry->cell, erased) ? 1 : 0;
      continue;
    }
    bool done = false;
    for (const std::string* g : groups_done) done = done || *g == entry->group;
    if (done) continue;
    groups_done.push_back(&entry->group);
    std::vector<const subscriber_entry*> members;
    for (std::size_t k = i; k < matched.size(); ++k) {
      if (matched[k]->group == entry->group) members.push_back(matched[k].get());
    }
    // One member per event, in turn; a stopped member is skipped, so its share goes to the
    // others. If every member has stopped, the first takes it (and dead-letters it).
    const std::size_t first = core->topics().next_turn() % members.size();
    const subscriber_entry* chosen = members[first];
    for (std::size_t k = 0; k < members.size(); ++k) {
      const subscriber_entry* m = members[(first + k) % members.size()];
      if (!m->cell->closed()) {
        chosen = m;
        break;
      }
    }
    delivered += chosen->deliver(chosen->cell, erased) ? 1 : 0;
  }
  if (core->metrics_on()) core->count_topic(subject, delivered);
  return delivered;
}

template <class E, class A>
subscription subscribe_actor(actor_cell* cell, std::string_view pattern, std::string group_name) {
  if (cell == nullptr) throw error(errc::invalid_ref, "subscribe() with an empty ref");
  cell->retain();  // the entry's reference, released by ~subscriber_entry
  auto entry = std::make_shared<subscriber_entry>(cell, &type_tag<E>, &deliver_event<A, E>,
                                                  std::move(group_name), std::string(pattern));
  cell->core()->topics().add(entry);  // validates the pattern
  return subscription(std::move(entry));
}

inline subscriber_entry::~subscriber_entry() {
  if (cell != nullptr) cell->release();
}

}  // namespace detail

template <class E>
std::size_t context::publish(std::string_view subject, E&& event) const {
  using event_type = std::remove_cvref_t<E>;
  return detail::publish_event<event_type>(
      detail::cell_of(*this).core(), subject,
      std::make_shared<const event_type>(std::forward<E>(event)));
}

}  // namespace troupe
