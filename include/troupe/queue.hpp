// Work queues: point-to-point with competing consumers. Each item is handled by exactly one
// consumer of the pool; an item whose handler throws is redelivered (to any consumer) until
// max_attempts, then dead-lettered with reason retries_exhausted.
//
//   auto jobs = rt.make_queue<resize_job>({.name = "resize", .max_attempts = 3});
//   jobs.add_consumer(rt.spawn<resizer>());   // resizer has on(const resize_job&)
//   jobs.add_consumer(rt.spawn<resizer>());   // pools grow and shrink at run time
//   jobs.push(resize_job{...});               // any thread
//
// A consumer has at most one item in flight; it gets the next when it finishes, so a slow
// consumer takes fewer items. A consumer whose handler throws fails like any actor (a
// supervisor restarts it); the item goes back to the queue. A consumer that stops for good
// (unsupervised and failed, stopped, or shut down) leaves the pool. Items with no consumer to
// take them stay queued — pending() counts them, a consumer added later takes them — and those
// still waiting when the last handle to the queue goes away are dead-lettered (reason
// shutdown). Each delivery attempt is a message in the runtime's counters.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <troupe/detail/core.hpp>

namespace troupe {

// Options of rt.make_queue<T>(): a name for dead-letter details, and how many deliveries an
// item gets before it is dead-lettered as retries_exhausted (below 1 acts as 1).
struct queue_options {
  std::string name;
  int max_attempts = 3;  // deliveries of one item before it is dead-lettered
};

namespace detail {

template <class T>
class queue_state : public std::enable_shared_from_this<queue_state<T>> {
 public:
  struct item {
    T value;
    int attempts = 0;
  };
  using deliver_fn = bool (*)(actor_cell* consumer, std::shared_ptr<queue_state> queue, item it);

  queue_state(runtime_core* core, queue_options options)
      : core_(core), options_(std::move(options)) {
    core_->retain();
  }
  queue_state(const queue_state&) = delete;
  queue_state& operator=(const queue_state&) = delete;
  ~queue_state() {
    for (item& it : pending_) {
      // Never delivered: count it as a message that reached the dead letters.
      counter_slot& counters = core_->counters_here();
      counters.add(counters.sent);
      core_->record_dead_letter(static_cast<actor_cell*>(nullptr), type_name<T>(),
                                dead_letter_reason::shutdown, 0,
                                "work queue '" + options_.name + "' went away with it queued");
      static_cast<void>(it);
    }
    for (consumer& c : consumers_) c.cell->release();
    core_->release();
  }

  void push(T value) {
    if (!core_->accepting() && !core_->internal_thread()) {
      core_->count_rejected_send();
      throw error(errc::runtime_stopped,
                  "push to work queue '" + options_.name + "' after shutdown began");
    }
    dispatch(item{std::move(value), 0});
  }

  void add_consumer(actor_cell* cell, deliver_fn deliver) {
    cell->retain();
    {
      std::lock_guard lock(mutex_);
      consumers_.push_back(consumer{cell, deliver, false});
    }
    feed();
  }

  bool remove_consumer(actor_cell* cell) {
    std::lock_guard lock(mutex_);
    for (auto it = consumers_.begin(); it != consumers_.end(); ++it) {
      if (it->cell == cell) {
        it->cell->release();
        consumers_.erase(it);
        return true;
      }
    }
    return false;
  }

  // The consumer handled an item: give it the next one, or mark it idle.
  void completed(actor_cell* cell) {
    std::unique_lock lock(mutex_);
    consumer* c = find(cell);
    if (c == nullptr) return;  // removed meanwhile
    if (pending_.empty()) {
      c->busy = false;
      return;
    }
    item next = std::move(pending_.front());
    pending_.pop_front();
    const deliver_fn deliver = c->deliver;
    lock.unlock();
    send(cell, deliver, std::move(next));
  }

  // The item was not handled. Returns how to record this attempt.
  dead_letter_reason failed(actor_cell* cell, item it, dead_letter_reason reason) {
    {
      std::lock_guard lock(mutex_);
      if (consumer* c = find(cell)) {
        c->busy = false;
        if (cell->closed() || reason != dead_letter_reason::handler_failed) {
          // A consumer that stopped leaves the pool; its share goes to the others.
          cell->release();
          consumers_.erase(consumers_.begin() + (c - consumers_.data()));
        }
      }
    }
    if (reason == dead_letter_reason::handler_failed) ++it.attempts;
    dead_letter_reason outcome = reason;
    if (it.attempts >= options_.max_attempts) {
      outcome = dead_letter_reason::retries_exhausted;
    } else {
      dispatch(std::move(it), true);
    }
    feed();  // the consumer is free again: it may take what waits
    return outcome;
  }

  [[nodiscard]] std::size_t pending() const {
    std::lock_guard lock(mutex_);
    return pending_.size();
  }
  [[nodiscard]] std::size_t consumer_count() {
    std::lock_guard lock(mutex_);
    prune_stopped();
    return consumers_.size();
  }

 private:
  struct consumer {
    actor_cell* cell;  // retained
    deliver_fn deliver;
    bool busy;
  };

  consumer* find(actor_cell* cell) {
    for (consumer& c : consumers_) {
      if (c.cell == cell) return &c;
    }
    return nullptr;
  }

  // Under the lock: drops the consumers that stopped for good. A stopped actor's mailbox is
  // closed for ever (a supervised one waiting for its restart keeps it open), and a consumer
  // that fails unsupervised closes it only after its failed item came back here, so the pool
  // learns of it here rather than in failed().
  void prune_stopped() noexcept {
    const auto gone = std::remove_if(consumers_.begin(), consumers_.end(), [](const consumer& c) {
      if (!c.cell->closed()) return false;
      c.cell->release();
      return true;
    });
    if (gone == consumers_.end()) return;
    consumers_.erase(gone, consumers_.end());
    next_ = consumers_.empty() ? 0 : next_ % consumers_.size();
  }

  // Under the lock: an idle consumer, marked busy (taken in turn), or null if all are busy.
  consumer* claim_idle() {
    prune_stopped();
    for (std::size_t k = 0; k < consumers_.size(); ++k) {
      consumer& c = consumers_[(next_ + k) % consumers_.size()];
      if (!c.busy && !c.cell->closed()) {
        next_ = (next_ + k + 1) % consumers_.size();
        c.busy = true;
        return &c;
      }
    }
    return nullptr;
  }

  // Hands `it` to an idle consumer, or queues it (at the front for a redelivery).
  void dispatch(item it, bool front = false) {
    std::unique_lock lock(mutex_);
    if (consumer* c = claim_idle()) {
      actor_cell* cell = c->cell;
      const deliver_fn deliver = c->deliver;
      lock.unlock();
      send(cell, deliver, std::move(it));
      return;
    }
    if (front) {
      pending_.push_front(std::move(it));
    } else {
      pending_.push_back(std::move(it));
    }
  }

  // Gives idle consumers the items that wait (after a consumer joined or came free).
  void feed() {
    for (;;) {
      std::unique_lock lock(mutex_);
      if (pending_.empty()) return;
      consumer* c = claim_idle();
      if (c == nullptr) return;
      item next = std::move(pending_.front());
      pending_.pop_front();
      actor_cell* cell = c->cell;
      const deliver_fn deliver = c->deliver;
      lock.unlock();
      send(cell, deliver, std::move(next));
    }
  }

  void send(actor_cell* cell, deliver_fn deliver, item it) {
    deliver(cell, this->shared_from_this(), std::move(it));
  }

  runtime_core* core_;
  queue_options options_;
  mutable std::mutex mutex_;
  std::deque<item> pending_;
  std::vector<consumer> consumers_;
  std::size_t next_ = 0;
};

template <class T>
struct queue_item_envelope final : envelope {
  using state = queue_state<T>;
  queue_item_envelope(const envelope_ops* o, std::shared_ptr<state> q, typename state::item i)
      : envelope{nullptr, o, 0}, queue(std::move(q)), it(std::move(i)) {}
  static void* operator new(std::size_t n) { return block_pool::allocate(n); }
  static void operator delete(void* p, std::size_t n) noexcept { block_pool::deallocate(p, n); }
  std::shared_ptr<state> queue;
  typename state::item it;
  actor_cell* consumer = nullptr;
};

template <class A, class T>
handler_start invoke_queue_item(actor_cell& cell, envelope& e) {
  A& actor = static_cast<typed_cell<A>&>(cell).instance();
  auto& env = static_cast<queue_item_envelope<T>&>(e);
  const T& value = env.it.value;  // by const reference: the item stays whole for a redelivery
  const handler_start started = start_handler([&]() -> decltype(auto) { return actor.on(value); });
  if (!started.frame) env.queue->completed(&cell);  // a task's completion reports it later
  return started;
}

template <class T>
void queue_item_task_done(envelope& e, promise_base&) {
  auto& env = static_cast<queue_item_envelope<T>&>(e);
  env.queue->completed(env.consumer);
}

template <class T>
dead_letter_reason queue_item_reroute(envelope& e, dead_letter_reason reason) noexcept {
  auto& env = static_cast<queue_item_envelope<T>&>(e);
  try {
    return env.queue->failed(env.consumer, std::move(env.it), reason);
  } catch (...) {
    return reason;
  }
}

template <class T>
void destroy_queue_item(envelope* e) noexcept {
  delete static_cast<queue_item_envelope<T>*>(e);
}

template <class A, class T>
inline constexpr envelope_ops queue_item_ops{&invoke_queue_item<A, T>,
                                             &destroy_queue_item<T>,
                                             type_name<T>(),
                                             &queue_item_task_done<T>,
                                             nullptr,
                                             &queue_item_reroute<T>};

template <class A, class T>
bool deliver_queue_item(actor_cell* consumer, std::shared_ptr<queue_state<T>> queue,
                        typename queue_state<T>::item it) {
  auto* e = new queue_item_envelope<T>(&queue_item_ops<A, T>, std::move(queue), std::move(it));
  e->consumer = consumer;
  return consumer->core()->post(consumer, e, true);
}

template <class ActorType, class ItemType>
struct actor_has_handler_for_item {
  static constexpr bool value = requires(ActorType & a, const ItemType& i) { a.on(i); };
};

}  // namespace detail

// A handle to a work queue of items of type T. Copyable; thread-safe.
template <class T>
class work_queue {
 public:
  // Made by runtime::make_queue(); copies share the one queue.
  explicit work_queue(std::shared_ptr<detail::queue_state<T>> state) noexcept
      : state_(std::move(state)) {}

  // Queues an item for exactly one consumer. Throws error(runtime_stopped) during shutdown.
  void push(T item) { state_->push(std::move(item)); }

  // Adds a consumer (A needs on(const T&)); it starts taking items at once.
  template <class A>
  void add_consumer(const ref<A>& consumer) {
    static_assert(detail::actor_has_handler_for_item<A, T>::value,
                  "troupe: add_consumer(): the actor has no on(const T&) handler for the items");
    detail::actor_cell* cell = detail::access::cell_of(consumer);
    if (cell == nullptr) throw error(errc::invalid_ref, "add_consumer() with an empty ref");
    state_->add_consumer(cell, &detail::deliver_queue_item<A, T>);
  }
  // Removes a consumer; an item it is handling completes normally. False if it was not one.
  bool remove_consumer(const address& consumer) {
    return state_->remove_consumer(detail::access::cell_of(consumer));
  }

  // Items waiting for a free consumer (not those in flight); a recent value while items move.
  [[nodiscard]] std::size_t pending() const { return state_->pending(); }
  // Consumers in the pool now: a consumer that stopped for good has left it. With none, pushed
  // items stay pending until a consumer is added or the queue goes away (dead-lettered then).
  [[nodiscard]] std::size_t consumers() const { return state_->consumer_count(); }

 private:
  std::shared_ptr<detail::queue_state<T>> state_;
};

}  // namespace troupe
