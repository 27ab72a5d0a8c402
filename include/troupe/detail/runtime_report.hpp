// Internal: part of runtime_core (detail/runtime_core.hpp includes it at its end); never
// included by users.
// What the runtime reports about itself: the counters (summed over the threads' counter blocks)
// and the metrics snapshot.
#pragma once

#include <troupe/detail/runtime_core.hpp>

namespace troupe::detail {

inline metrics_snapshot runtime_core::metrics() const {
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
  std::sort(
      r.messages.begin(), r.messages.end(), [](const message_metrics& a, const message_metrics& b) {
        return std::tie(a.actor_type, a.message_type) < std::tie(b.actor_type, b.message_type);
      });
  topic_stats_->for_each(
      [&r](const std::string& subject, std::uint64_t published, std::uint64_t deliveries) {
        r.topics.push_back(topic_metrics{subject, published, deliveries});
      });
  return r;
}

inline runtime_counters runtime_core::snapshot() const noexcept {
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
  for (std::size_t i = 0; i < pool_->thread_count(); ++i) add(pool_->counters_of(i));
  r.spawned = spawned_.load(std::memory_order_relaxed);
  r.stopped = stopped_.load(std::memory_order_relaxed);
  r.failed = failed_.load(std::memory_order_relaxed);
  r.published = published_.load(std::memory_order_relaxed);
  r.unrouted = unrouted_.load(std::memory_order_relaxed);
  return r;
}

}  // namespace troupe::detail
