// Internal: part of runtime_core (detail/runtime_core.hpp includes it at its end); never
// included by users.
// The dead-letter path: a message that will not be handled is counted, reported (hook, metrics,
// the troupe.dead_letter topic) and freed, and an ask behind it fails at once with the matching
// error. Every message ends here, in a handler, or as a rejected send.
#pragma once

#include <troupe/detail/runtime_core.hpp>

namespace troupe::detail {

inline void runtime_core::dead_letter_out(actor_cell* target, envelope* e,
                                          dead_letter_reason reason, const std::string& detail,
                                          const std::exception_ptr& cause) noexcept {
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
  if (trace_ != nullptr) traces_->erase(e->correlation);  // queued, never handled
  e->destroy();
}

inline void runtime_core::dead_letter_backlog(actor_cell* target,
                                              dead_letter_reason reason) noexcept {
  envelope* held = nullptr;  // a drop_oldest mailbox's messages, oldest first
  if (target->ops()->mailbox.capacity != 0 &&
      target->ops()->mailbox.overflow == overflow::drop_oldest) {
    watch_state& x = *target->extras();
    std::lock_guard lock(x.held_lock);
    x.held_closed = true;
    held = std::exchange(x.held_head, nullptr);
    x.held_tail = nullptr;
  }
  actor_stats* stats = actor_stats_of(target);
  if (options_.on_dead_letter || stats != nullptr || !topics_.empty()) {
    for (envelope* rest : {held, target->mailbox_.close()}) {
      while (rest != nullptr) {
        envelope* next = rest->next;
        if (stats != nullptr) stats->dequeued();
        dead_letter_out(target, rest, reason, {});
        rest = next;
      }
    }
    return;
  }
  std::uint64_t quiet_dead = 0;
  auto each = [&](envelope* e) {
    if (e->ops->abort != nullptr || e->ops->reroute != nullptr) {
      dead_letter_out(target, e, reason, {});  // counted there
    } else {
      if (trace_ != nullptr) traces_->erase(e->correlation);
      e->destroy();
      ++quiet_dead;
    }
  };
  target->mailbox_.close_unordered(each);
  while (held != nullptr) {
    envelope* next = held->next;
    each(held);
    held = next;
  }
  if (quiet_dead != 0) {
    counter_slot& counters = counters_here();
    counters.add(counters.dead, quiet_dead);
  }
}

inline void runtime_core::record_dead_letter(const address& target, std::string_view type,
                                             dead_letter_reason reason, std::uint64_t correlation,
                                             const std::string& detail) noexcept {
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

inline errc runtime_core::errc_for(dead_letter_reason reason) noexcept {
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
    case dead_letter_reason::dropped:
      return errc::timeout;  // what an asker of a lost request sees (the simulation)
    default:                 // the transport's reasons (troupe/nats/) never reach an envelope
      break;
  }
  return errc::actor_stopped;
}

}  // namespace troupe::detail
