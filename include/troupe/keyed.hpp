// Keyed queues: competing consumers with ordering by key (Kafka partitions, SQS FIFO message
// groups). Items with one key are handled by one consumer at a time, in push order; items with
// different keys spread over the consumers. Subscribed to a topic, a keyed queue is a keyed
// consumer group: each matching event goes to it once, and it hands it on by key.
//
//   struct order_event { long order_id; std::string what; };
//   auto orders = rt.make_keyed_queue<order_event>({.name = "orders"}, &order_event::order_id);
//   orders.add_consumer(rt.spawn<worker>());        // worker has on(const order_event&)
//   orders.add_consumer(rt.spawn<worker>());
//   orders.push(order_event{42, "placed"});         // key 42, from the key function
//   orders.push(7, order_event{7, "paid"});         // or a key the publisher gives
//   auto sub = orders.subscribe("orders.>");        // a keyed consumer group on a topic
//
// How: per-key in-flight tracking. A key has at most one item out (queued at or handled by a
// consumer); its later items wait in its own list, and when the item out is done the key's next
// one goes to whichever consumer is free. So a slow key holds back only its own later items
// (and the one consumer busy with it), never other keys. A key belongs to no consumer: it moves
// between consumers only between two of its items, which is why adding, removing, stopping or
// restarting consumers cannot break its order.
//
// Failure: an item whose handler throws is retried before the key's next item, up to
// max_attempts deliveries; after the last it is dead-lettered (retries_exhausted) and the key
// moves on (key_failure::skip) or halts until resume(key) (key_failure::halt: a poison pill
// stops its key, nothing else). Items still waiting when the last handle (and the last topic
// subscription) goes away are dead-lettered with reason shutdown.
#pragma once

#include <concepts>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include <troupe/detail/core.hpp>
#include <troupe/detail/pool.hpp>
#include <troupe/detail/topic_registry.hpp>
#include <troupe/topic.hpp>

namespace troupe {

// What a keyed queue does with a key whose item failed on its last attempt (the item itself is
// dead-lettered as retries_exhausted either way).
enum class key_failure {
  skip,  // the key moves on to its next item
  halt,  // the key stops: its later items wait until keyed_queue::resume(key)
};

// Options of rt.make_keyed_queue<T>(): a name for dead-letter details, how many deliveries an
// item gets (below 1 acts as 1), and what a key does after an item ran out of attempts.
struct keyed_options {
  std::string name;
  int max_attempts = 3;
  key_failure on_exhausted = key_failure::skip;
};

// A key: copyable, equality-comparable and hashable with std::hash.
template <class K>
concept Key = std::copyable<K> && std::equality_comparable<K> && requires(const K& k) {
  { std::hash<K>{}(k) } -> std::convertible_to<std::size_t>;
};

namespace detail {

// The recycling pool (detail/pool.hpp) as an allocator: a keyed queue's per-item and per-key
// nodes are envelope-sized and come and go as fast as envelopes (malloc and free were 40 % of a
// keyed item's instructions without it; docs/performance.md, "Ordering by key").
template <class U>
struct pool_allocator {
  static_assert(alignof(U) <= alignof(std::max_align_t), "pool blocks are max_align_t-aligned");
  using value_type = U;
  pool_allocator() noexcept = default;
  template <class V>
  pool_allocator(const pool_allocator<V>&) noexcept {}  // NOLINT: rebinding converts implicitly
  U* allocate(std::size_t n) { return static_cast<U*>(block_pool::allocate(n * sizeof(U))); }
  void deallocate(U* p, std::size_t n) noexcept { block_pool::deallocate(p, n * sizeof(U)); }
  template <class V>
  bool operator==(const pool_allocator<V>&) const noexcept {
    return true;
  }
};

template <class T, class K>
class keyed_state final : public event_sink,
                          public std::enable_shared_from_this<keyed_state<T, K>> {
 public:
  using value_ptr = std::shared_ptr<const T>;
  using key_fn = std::function<K(const T&)>;
  struct item {
    value_ptr value;
    int attempts = 0;
  };
  // Sends `it` of `key` to the consumer (member id `member`); false if the send failed (the
  // envelope's reroute has then already given the item back).
  using deliver_fn = bool (*)(actor_cell* consumer, std::uint64_t member,
                              std::shared_ptr<keyed_state> state, K key, item it);

  keyed_state(runtime_core* core, keyed_options options, key_fn fn)
      : core_(core), options_(std::move(options)), key_of_(std::move(fn)) {
    if (options_.max_attempts < 1) options_.max_attempts = 1;
    core_->retain();
  }
  keyed_state(const keyed_state&) = delete;
  keyed_state& operator=(const keyed_state&) = delete;
  ~keyed_state() override {
    for (auto& [key, ks] : keys_) {
      while (waiting* w = ks.pop()) {
        // Never delivered: count it as a message that reached the dead letters.
        counter_slot& counters = core_->counters_here();
        counters.add(counters.sent);
        core_->record_dead_letter(static_cast<actor_cell*>(nullptr), type_name<T>(),
                                  dead_letter_reason::shutdown, 0,
                                  "keyed queue '" + options_.name + "' went away with it queued");
        delete w;
      }
    }
    for (consumer& c : consumers_) c.cell->release();
    core_->release();
  }

  [[nodiscard]] bool has_key_fn() const noexcept { return static_cast<bool>(key_of_); }
  [[nodiscard]] const keyed_options& options() const noexcept { return options_; }
  [[nodiscard]] runtime_core* core() const noexcept { return core_; }

  void push(K key, value_ptr value) {
    if (!core_->accepting() && !core_->internal_thread()) {
      core_->count_rejected_send();
      throw error(errc::runtime_stopped,
                  "push to keyed queue '" + options_.name + "' after shutdown began");
    }
    enqueue(std::move(key), std::move(value));
  }

  // A topic feed's event (see event_sink): keyed by the key function, which may throw (the
  // publish then throws and the group does not take the event).
  bool take(const std::shared_ptr<const void>& event, std::uint64_t /*offset*/) override {
    value_ptr value = std::static_pointer_cast<const T>(event);
    K key = key_of_(*value);
    enqueue(std::move(key), std::move(value));
    return true;
  }

  void push_keyed(value_ptr value) {
    K key = key_of_(*value);
    push(std::move(key), std::move(value));
  }

  void add_consumer(actor_cell* cell, deliver_fn deliver) {
    cell->retain();
    {
      std::lock_guard lock(mutex_);
      consumers_.push_back(consumer{cell, deliver, ++last_member_, false});
    }
    pump();
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

  // The item of `key` that consumer `member` had was handled: the key's next item may go out.
  void completed(std::uint64_t member, const K& key) {
    std::unique_lock lock(mutex_);
    release_key(key, false);
    consumer* c = find(member);
    if (c == nullptr) {  // removed meanwhile: another consumer may take what became ready
      lock.unlock();
      pump();
      return;
    }
    c->busy = false;
    if (ready_.empty() || c->cell->closed()) return;
    c->busy = true;
    outgoing next = take_ready(*c);
    lock.unlock();
    send(std::move(next));
  }

  // The item was not handled. Returns how to record this attempt.
  dead_letter_reason failed(std::uint64_t member, K key, item it, dead_letter_reason reason) {
    if (reason == dead_letter_reason::handler_failed) ++it.attempts;
    dead_letter_reason outcome = reason;
    {
      std::lock_guard lock(mutex_);
      if (consumer* c = find(member)) {
        c->busy = false;
        if (c->cell->closed() || reason != dead_letter_reason::handler_failed) {
          // A consumer that stopped leaves the pool; its keys go to the others.
          c->cell->release();
          consumers_.erase(consumers_.begin() + (c - consumers_.data()));
        }
      }
      if (it.attempts >= options_.max_attempts) {
        outcome = dead_letter_reason::retries_exhausted;
        release_key(key, options_.on_exhausted == key_failure::halt);
      } else {
        // Retried before anything else of its key: back at the head of the key's list, and the
        // key at the head of the ready ones.
        auto found = keys_.find(key);
        key_state& ks = found->second;
        ks.in_flight = false;
        --in_flight_;
        ks.push_front(new waiting{std::move(it), nullptr});
        ++waiting_;
        ready_.push_front(key);
        ks.ready = true;
      }
    }
    pump();  // the consumer (if still one) is free again, and a key may be ready
    return outcome;
  }

  // Lets a halted key go on with its next item. False if the key was not halted.
  bool resume(const K& key) {
    {
      std::lock_guard lock(mutex_);
      auto found = keys_.find(key);
      if (found == keys_.end() || !found->second.halted) return false;
      key_state& ks = found->second;
      ks.halted = false;
      --halted_;
      if (ks.head == nullptr) {
        keys_.erase(found);
      } else {
        ks.ready = true;
        ready_.push_back(key);
      }
    }
    pump();
    return true;
  }

  [[nodiscard]] std::vector<K> halted_keys() const {
    std::lock_guard lock(mutex_);
    std::vector<K> out;
    for (const auto& [key, ks] : keys_) {
      if (ks.halted) out.push_back(key);
    }
    return out;
  }
  [[nodiscard]] std::size_t pending() const {
    std::lock_guard lock(mutex_);
    return waiting_;
  }
  [[nodiscard]] std::size_t in_flight() const {
    std::lock_guard lock(mutex_);
    return in_flight_;
  }
  [[nodiscard]] std::size_t consumer_count() {
    std::lock_guard lock(mutex_);
    prune_stopped();
    return consumers_.size();
  }

 private:
  struct waiting {
    static void* operator new(std::size_t n) { return block_pool::allocate(n); }
    static void operator delete(void* p, std::size_t n) noexcept { block_pool::deallocate(p, n); }
    item it;
    waiting* next;
  };
  // One key with something out, waiting or halted; a key with none of these has no entry, so
  // the table holds the keys active now, not every key ever seen.
  struct key_state {
    waiting* head = nullptr;  // the key's waiting items, in push order
    waiting* tail = nullptr;
    bool in_flight = false;  // one item is out at a consumer
    bool ready = false;      // in ready_: waiting items, nothing out, not halted
    bool halted = false;

    key_state() = default;
    key_state(const key_state&) = delete;
    key_state& operator=(const key_state&) = delete;
    key_state(key_state&& o) noexcept
        : head(std::exchange(o.head, nullptr)),
          tail(std::exchange(o.tail, nullptr)),
          in_flight(o.in_flight),
          ready(o.ready),
          halted(o.halted) {}
    ~key_state() {
      while (waiting* w = pop()) delete w;
    }
    void push_back(waiting* w) noexcept {
      if (tail == nullptr) {
        head = tail = w;
      } else {
        tail->next = w;
        tail = w;
      }
    }
    void push_front(waiting* w) noexcept {
      w->next = head;
      head = w;
      if (tail == nullptr) tail = w;
    }
    waiting* pop() noexcept {
      waiting* w = head;
      if (w != nullptr) {
        head = w->next;
        if (head == nullptr) tail = nullptr;
      }
      return w;
    }
  };
  struct consumer {
    actor_cell* cell;  // retained
    deliver_fn deliver;
    std::uint64_t member;  // unique per add_consumer, so a stale completion is told apart
    bool busy;
  };
  // A delivery decided under the lock, made after it is released.
  struct outgoing {
    actor_cell* cell;
    deliver_fn deliver;
    std::uint64_t member;
    K key;
    item it;
  };

  consumer* find(std::uint64_t member) noexcept {
    for (consumer& c : consumers_) {
      if (c.member == member) return &c;
    }
    return nullptr;
  }

  // Under the lock: drops the consumers that stopped for good (see work_queue: a stopped
  // actor's mailbox is closed for ever; a supervised one waiting for restart keeps it open).
  void prune_stopped() noexcept {
    bool any = false;
    for (const consumer& c : consumers_) any = any || c.cell->closed();
    if (!any) return;
    std::size_t kept = 0;
    for (consumer& c : consumers_) {
      if (c.cell->closed()) {
        c.cell->release();
      } else {
        consumers_[kept++] = c;
      }
    }
    consumers_.resize(kept);
    if (next_ >= consumers_.size()) next_ = 0;
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

  // Under the lock: the item out for `key` is done; `halt` stops the key. The key's next item,
  // if any, becomes ready (behind the keys already ready: keys take turns).
  void release_key(const K& key, bool halt) {
    auto found = keys_.find(key);
    key_state& ks = found->second;
    ks.in_flight = false;
    --in_flight_;
    if (halt) {
      ks.halted = true;
      ++halted_;
    } else if (ks.head == nullptr) {
      keys_.erase(found);
    } else {
      ks.ready = true;
      ready_.push_back(key);
    }
  }

  // Under the lock, ready_ not empty: takes the first ready key's next item out to `c`.
  outgoing take_ready(consumer& c) {
    K key = std::move(ready_.front());
    ready_.pop_front();
    key_state& ks = keys_.find(key)->second;
    waiting* w = ks.pop();
    --waiting_;
    ks.ready = false;
    ks.in_flight = true;
    ++in_flight_;
    outgoing out{c.cell, c.deliver, c.member, std::move(key), std::move(w->it)};
    delete w;
    return out;
  }

  void enqueue(K key, value_ptr value) {
    std::unique_lock lock(mutex_);
    auto [found, fresh] = keys_.try_emplace(key);
    key_state& ks = found->second;
    if (fresh) {
      // The common case: the key has nothing out, so the item goes straight to a free
      // consumer if there is one.
      if (consumer* c = claim_idle()) {
        ks.in_flight = true;
        ++in_flight_;
        outgoing out{c->cell, c->deliver, c->member, std::move(key), item{std::move(value), 0}};
        lock.unlock();
        send(std::move(out));
        return;
      }
      ks.ready = true;
      ready_.push_back(key);
    }
    ks.push_back(new waiting{item{std::move(value), 0}, nullptr});
    ++waiting_;
  }

  // Pairs free consumers with ready keys until one side runs out.
  void pump() {
    for (;;) {
      std::unique_lock lock(mutex_);
      if (ready_.empty()) return;
      consumer* c = claim_idle();
      if (c == nullptr) return;
      outgoing out = take_ready(*c);
      lock.unlock();
      send(std::move(out));
    }
  }

  void send(outgoing out) {
    out.deliver(out.cell, out.member, this->shared_from_this(), std::move(out.key),
                std::move(out.it));
  }

  runtime_core* core_;
  keyed_options options_;
  key_fn key_of_;
  mutable std::mutex mutex_;
  // The active keys; guarded by mutex_.
  std::unordered_map<K, key_state, std::hash<K>, std::equal_to<K>,
                     pool_allocator<std::pair<const K, key_state>>>
      keys_;
  std::deque<K> ready_;              // keys whose next item can go out, in turn; guarded by mutex_
  std::vector<consumer> consumers_;  // guarded by mutex_
  std::size_t next_ = 0;             // where claim_idle looks first; guarded by mutex_
  std::uint64_t last_member_ = 0;    // guarded by mutex_
  std::size_t waiting_ = 0;          // items in the keys' lists; guarded by mutex_
  std::size_t in_flight_ = 0;        // keys with an item out; guarded by mutex_
  std::size_t halted_ = 0;           // guarded by mutex_
};

template <class T, class K>
struct keyed_item_envelope final : envelope {
  using state = keyed_state<T, K>;
  keyed_item_envelope(const envelope_ops* o, std::shared_ptr<state> q, std::uint64_t m, K k,
                      typename state::item i)
      : envelope{nullptr, o, 0},
        queue(std::move(q)),
        member(m),
        key(std::move(k)),
        it(std::move(i)) {}
  static void* operator new(std::size_t n) { return block_pool::allocate(n); }
  static void operator delete(void* p, std::size_t n) noexcept { block_pool::deallocate(p, n); }
  std::shared_ptr<state> queue;
  std::uint64_t member;
  K key;
  typename state::item it;
};

template <class A, class T, class K>
handler_start invoke_keyed_item(actor_cell& cell, envelope& e) {
  A& actor = static_cast<typed_cell<A>&>(cell).instance();
  auto& env = static_cast<keyed_item_envelope<T, K>&>(e);
  const T& value = *env.it.value;
  const handler_start started = start_handler([&]() -> decltype(auto) { return actor.on(value); });
  if (!started.frame) env.queue->completed(env.member, env.key);  // a task reports it when done
  return started;
}

template <class T, class K>
void keyed_item_task_done(envelope& e, promise_base&) {
  auto& env = static_cast<keyed_item_envelope<T, K>&>(e);
  env.queue->completed(env.member, env.key);
}

template <class T, class K>
dead_letter_reason keyed_item_reroute(envelope& e, dead_letter_reason reason) noexcept {
  auto& env = static_cast<keyed_item_envelope<T, K>&>(e);
  try {
    return env.queue->failed(env.member, std::move(env.key), std::move(env.it), reason);
  } catch (...) {
    return reason;
  }
}

template <class T, class K>
void destroy_keyed_item(envelope* e) noexcept {
  delete static_cast<keyed_item_envelope<T, K>*>(e);
}

template <class A, class T, class K>
inline constexpr envelope_ops keyed_item_ops{&invoke_keyed_item<A, T, K>,
                                             &destroy_keyed_item<T, K>,
                                             type_name<T>(),
                                             &keyed_item_task_done<T, K>,
                                             nullptr,
                                             &keyed_item_reroute<T, K>};

template <class A, class T, class K>
bool deliver_keyed_item(actor_cell* consumer, std::uint64_t member,
                        std::shared_ptr<keyed_state<T, K>> state, K key,
                        typename keyed_state<T, K>::item it) {
  auto* e = new keyed_item_envelope<T, K>(&keyed_item_ops<A, T, K>, std::move(state), member,
                                          std::move(key), std::move(it));
  return consumer->core()->post(consumer, e, true);
}

// A topic subscription feeding a keyed queue (see subscriber_entry's sink).
inline bool deliver_to_sink(const subscriber_entry& entry, const std::shared_ptr<const void>& event,
                            std::uint64_t offset, std::string_view) {
  return entry.sink->take(event, offset);
}

template <class ActorType, class ItemType>
struct actor_has_handler_for_keyed_item {
  static constexpr bool value = requires(ActorType & a, const ItemType& i) { a.on(i); };
};

}  // namespace detail

// A handle to a keyed queue of items of type T with keys of type K (see the top of this
// header). Copyable (copies share the queue); thread-safe.
template <class T, Key K>
class keyed_queue {
 public:
  // Made by runtime::make_keyed_queue().
  explicit keyed_queue(std::shared_ptr<detail::keyed_state<T, K>> state) noexcept
      : state_(std::move(state)) {}

  // Queues `item` under the key the key function gives it. Throws error(invalid_argument) if
  // the queue has no key function, error(runtime_stopped) during shutdown, and what the key
  // function throws.
  void push(T item) {
    require_key_fn("push(item)");
    state_->push_keyed(make_value(std::move(item)));
  }
  // Queues `item` under `key` (the publisher's key; the key function is not asked). Throws
  // error(runtime_stopped) during shutdown.
  void push(K key, T item) { state_->push(std::move(key), make_value(std::move(item))); }

  // Makes the queue a keyed consumer group on a topic: every T event published on a subject
  // matching `pattern` goes to it once (as to one group) and is keyed by the key function.
  // The subscription is like runtime::subscribe's. Throws error(invalid_argument) without a
  // key function, error(invalid_subject) for a malformed pattern, error(runtime_stopped) once
  // shutdown has begun.
  [[nodiscard]] subscription subscribe(std::string_view pattern) {
    require_key_fn("subscribe()");
    detail::require_running(state_->core(), "subscribe to", pattern);
    auto entry =
        std::make_shared<detail::subscriber_entry>(state_->core(), state_, &detail::type_tag<T>,
                                                   &detail::deliver_to_sink, std::string(pattern));
    state_->core()->topics().add(entry);  // validates the pattern
    return subscription(std::move(entry));
  }

  // Adds a consumer (A needs on(const T&)); it starts taking items at once.
  template <class A>
  void add_consumer(const ref<A>& consumer) {
    static_assert(detail::actor_has_handler_for_keyed_item<A, T>::value,
                  "troupe: keyed_queue::add_consumer(): the actor has no on(const T&) handler "
                  "for the items");
    detail::actor_cell* cell = detail::access::cell_of(consumer);
    if (cell == nullptr) throw error(errc::invalid_ref, "add_consumer() with an empty ref");
    state_->add_consumer(cell, &detail::deliver_keyed_item<A, T, K>);
  }
  // Removes a consumer; an item it is handling completes normally (its key waits for it).
  // False if it was not one.
  bool remove_consumer(const address& consumer) {
    return state_->remove_consumer(detail::access::cell_of(consumer));
  }

  // Lets a key halted by key_failure::halt go on with its next item; false if it was not
  // halted.
  bool resume(const K& key) { return state_->resume(key); }
  // The keys halted now (key_failure::halt), in no particular order.
  [[nodiscard]] std::vector<K> halted_keys() const { return state_->halted_keys(); }

  // Items waiting (behind their key's item out, for a free consumer, or in a halted key).
  [[nodiscard]] std::size_t pending() const { return state_->pending(); }
  // Keys with an item out at a consumer now (at most one item each).
  [[nodiscard]] std::size_t in_flight() const { return state_->in_flight(); }
  // Consumers in the pool now (one that stopped for good has left it).
  [[nodiscard]] std::size_t consumers() const { return state_->consumer_count(); }

 private:
  static std::shared_ptr<const T> make_value(T&& item) {
    return std::allocate_shared<const T>(detail::pool_allocator<T>{}, std::move(item));
  }
  void require_key_fn(std::string_view what) const {
    if (!state_->has_key_fn()) {
      throw error(errc::invalid_argument, "keyed queue '" + state_->options().name +
                                              "': " + std::string(what) +
                                              " needs a key function; give one to "
                                              "make_keyed_queue() or push(key, item)");
    }
  }

  std::shared_ptr<detail::keyed_state<T, K>> state_;
};

}  // namespace troupe
