// troupe::nats::jetstream: durable topics and work queues on NATS JetStream -- events written once
// to a stored, ordered log that consumers replay from their offset after a crash, and work that
// is redelivered when a worker dies and dead-lettered when it cannot be done.
//
//   troupe::runtime rt;
//   troupe::nats::node n(rt, {.servers = {url}, .name = "billing-1"});
//   troupe::nats::jetstream js(n);                      // after the node: destroyed before it
//
//   // a retained topic, durable: the one line that changes (was rt.retain<order_placed>(...))
//   auto orders = js.retain<order_placed>("orders.placed", {.max_messages = 1'000'000});
//   orders.publish(order_placed{...}, {.id = "order-42"});           // async, acked by the stream
//   auto a = orders.subscribe(auditor, troupe::replay::oldest());    // replay, then live
//   auto b = orders.subscribe(biller, troupe::group{"billing"});     // resumes where the group was
//
//   // a work queue, durable (was rt.make_queue<resize_job>(...))
//   auto jobs = js.make_queue<resize_job>("resize", {.consumer = {.max_attempts = 3}});
//   auto w = jobs.add_consumer(rt.spawn<resizer>());                // in any number of processes
//   jobs.push(resize_job{...});
//
// Actors do not change: a handler takes `const E&`, `const troupe::retained<E>&` (offset = the
// stream sequence) or `const troupe::nats::delivery<E>&` (sequence, attempt, subject, message id).
// Events written by older code: `orders.with_upcasters(up)` reads older versions of E through
// troupe::upcasters<E> (troupe/upcast.hpp).
//
// Guarantees: at-least-once for groups and queues (a handler that returned or whose task
// finished acknowledges; one that threw gives the message back with a backoff; after
// max_attempts it goes to the dead-letter subject with its reason, attempts, original subject,
// stream and sequence -- troupe does this, JetStream alone only emits an advisory); order per
// stream for a replaying subscriber (no gap, no duplicate); a producer's message id is stored
// once within the stream's de-duplication window. Bad input on a durable subject (garbage, an
// unknown type or codec) is dead-lettered with its sequence and acknowledged, so it does not loop.
//
// On the wire: a durable topic is a stream over "<prefix>.topic.<subject>" (so node::publish on
// that subject is stored too), a queue a work-queue stream over "<prefix>.queue.<name>", dead
// letters the stream "<prefix>_dead_letters" over "<prefix>.dead.<consumer>".
//
// Threads: nats.c's callbacks and a fetching thread per consumer only decode and post to the
// actors, which run on the runtime's workers. Thread-safe: any thread may publish and subscribe.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <troupe/nats/detail/jetstream.hpp>

namespace troupe::nats {

// A stream's limits (the server enforces them: the oldest messages go first), and where it lives.
struct retention {
  std::int64_t max_messages = -1;        // -1: no limit
  std::int64_t max_bytes = -1;           // -1: no limit
  std::chrono::milliseconds max_age{0};  // 0: no limit
  // How long the server remembers producer message ids (publish_options::id); 0: its default
  // (two minutes).
  std::chrono::milliseconds dedupe_window{0};
  int replicas = 1;        // copies in a JetStream cluster
  bool in_memory = false;  // memory storage (lost with the server) instead of files
  std::string stream{};    // the stream's name; empty: derived from the prefix and subject
};

// A stream as the server reports it now: its limits and which sequences it keeps.
struct stream_state {
  std::string stream;
  std::uint64_t first = 0;  // the oldest sequence kept (offsets start at 1)
  std::uint64_t last = 0;   // the newest sequence stored (0: none yet)
  std::uint64_t messages = 0;
  std::uint64_t bytes = 0;
  std::int64_t max_messages = -1;
  std::int64_t max_bytes = -1;
  std::chrono::milliseconds max_age{0};
  std::chrono::milliseconds dedupe_window{0};
  std::int64_t replicas = 1;
};

// Per publish: `id` makes it idempotent (the stream stores one message per id within its
// de-duplication window; a repeat is acknowledged as a duplicate and not stored).
struct publish_options {
  std::string_view id{};
};

// How a consumer group or a work queue handles failures.
struct consumer_options {
  int max_attempts = 5;  // deliveries of one message before the dead-letter subject (>= 1)
  // How long the server waits for an ack before redelivering to another consumer (a consumer
  // whose process died); a running handler extends it (in-progress every ack_wait / 3).
  std::chrono::milliseconds ack_wait{30000};
  std::chrono::milliseconds backoff{100};  // before the first redelivery; doubles per attempt
  std::chrono::milliseconds max_backoff{5000};
};

// Options of jetstream::make_queue.
struct durable_queue_options {
  retention limits{};
  consumer_options consumer{};
};

// Options of a jetstream context.
struct jetstream_options {
  std::chrono::milliseconds api_wait{5000};   // JetStream API calls and synchronous publishes
  std::int64_t max_pending_publishes = 4096;  // asynchronous publishes awaiting their ack
  // Copies of the dead-letter stream in a JetStream cluster (as retention::replicas): with 3,
  // dead letters are still stored while one server is down.
  int dead_letter_replicas = 1;
};

// An event read back from a stream with its offset (durable_topic::last).
template <class E>
struct stored_event {
  std::uint64_t offset = 0;
  E event;
};

// What was published through a jetstream context. A snapshot; thread-safe.
struct publish_counters {
  std::uint64_t published = 0;     // accepted for sending
  std::uint64_t acknowledged = 0;  // stored by a stream (or recognised as a duplicate)
  std::uint64_t duplicates = 0;    // of those: a message id already stored
  std::uint64_t failed = 0;        // not stored (dead letters, reason disconnected or too_large)
  std::uint64_t rejected = 0;      // refused before leaving (closed, not encodable)
};

// A live durable subscription or queue consumer; ends (stops fetching or unsubscribes) when
// destroyed. Move-only. The server keeps a group's or queue's position: ending a subscription
// does not forget it.
class durable_subscription {
 public:
  durable_subscription() noexcept = default;
  durable_subscription(durable_subscription&&) noexcept = default;
  durable_subscription& operator=(durable_subscription&& other) noexcept {
    if (this != &other) {
      end();
      pool_ = std::move(other.pool_);
      ordered_ = std::move(other.ordered_);
    }
    return *this;
  }
  durable_subscription(const durable_subscription&) = delete;
  durable_subscription& operator=(const durable_subscription&) = delete;
  ~durable_subscription() { end(); }

  // Stops delivering; returns once no nats.c callback or fetch of it runs. Messages already
  // posted to the actor are still handled and settled. Idempotent.
  void end() noexcept {
    if (pool_) pool_->stop();
    if (ordered_) ordered_->stop();
    pool_.reset();
    ordered_.reset();
  }
  [[nodiscard]] bool active() const noexcept { return pool_ || ordered_; }
  // What this subscription delivered, handled, retried and dead-lettered so far.
  [[nodiscard]] consumer_counters counters() const noexcept {
    if (pool_) return pool_->counters();
    if (ordered_) {
      consumer_counters c;
      c.delivered = ordered_->c_delivered.load(std::memory_order_relaxed);
      c.bad_input = ordered_->c_bad.load(std::memory_order_relaxed);
      return c;
    }
    return {};
  }

  // Made by durable_topic::subscribe and durable_queue::add_consumer.
  explicit durable_subscription(std::shared_ptr<detail::consumer_pool> p) noexcept
      : pool_(std::move(p)) {}
  explicit durable_subscription(std::shared_ptr<detail::ordered_sub> o) noexcept
      : ordered_(std::move(o)) {}

 private:
  std::shared_ptr<detail::consumer_pool> pool_;
  std::shared_ptr<detail::ordered_sub> ordered_;
};

namespace detail {

inline stream_state state_of(const js_shared& s, const std::string& stream) {
  jsStreamInfo* si = nullptr;
  jsErrCode code = static_cast<jsErrCode>(0);
  js_check(js_GetStreamInfo(&si, s.js, stream.c_str(), nullptr, &code), code,
           "stream info of '" + stream + "'");
  stream_state out;
  out.stream = stream;
  out.first = si->State.FirstSeq;
  out.last = si->State.LastSeq;
  out.messages = si->State.Msgs;
  out.bytes = si->State.Bytes;
  if (si->Config != nullptr) {
    out.max_messages = si->Config->MaxMsgs;
    out.max_bytes = si->Config->MaxBytes;
    out.max_age = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::nanoseconds(si->Config->MaxAge));
    out.dedupe_window = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::nanoseconds(si->Config->Duplicates));
    out.replicas = si->Config->Replicas;
  }
  jsStreamInfo_Destroy(si);
  return out;
}

inline void make_stream(const js_shared& s, const std::string& name, const std::string& subject,
                        const retention& r, bool work_queue) {
  if (r.replicas < 1) throw error(errc::invalid_argument, "retention::replicas must be >= 1");
  jsStreamConfig cfg;
  jsStreamConfig_Init(&cfg);
  const char* subjects[] = {subject.c_str()};
  cfg.Name = name.c_str();
  cfg.Subjects = subjects;
  cfg.SubjectsLen = 1;
  cfg.Retention = work_queue ? js_WorkQueuePolicy : js_LimitsPolicy;
  cfg.MaxMsgs = r.max_messages;
  cfg.MaxBytes = r.max_bytes;
  cfg.MaxAge = std::chrono::duration_cast<std::chrono::nanoseconds>(r.max_age).count();
  cfg.Duplicates = std::chrono::duration_cast<std::chrono::nanoseconds>(r.dedupe_window).count();
  cfg.Storage = r.in_memory ? js_MemoryStorage : js_FileStorage;
  cfg.Replicas = r.replicas;
  s.ensure_stream(cfg);
}

// A durable pull consumer on `stream`: created on first use (starting at `start`), found after.
inline void make_consumer(const js_shared& s, const std::string& stream, const std::string& name,
                          const std::string& filter, replay start, const consumer_options& o) {
  if (o.max_attempts < 1) throw error(errc::invalid_argument, "max_attempts must be >= 1");
  if (o.ack_wait.count() <= 0) throw error(errc::invalid_argument, "ack_wait must be > 0");
  jsConsumerInfo* ci = nullptr;
  jsErrCode code = static_cast<jsErrCode>(0);
  natsStatus st = js_GetConsumerInfo(&ci, s.js, stream.c_str(), name.c_str(), nullptr, &code);
  if (st == NATS_OK) {
    jsConsumerInfo_Destroy(ci);
    return;  // it exists: its committed position is where the group resumes
  }
  jsConsumerConfig cc;
  jsConsumerConfig_Init(&cc);
  cc.Durable = name.c_str();
  cc.AckPolicy = js_AckExplicit;
  cc.AckWait = std::chrono::duration_cast<std::chrono::nanoseconds>(o.ack_wait).count();
  cc.MaxDeliver = -1;  // troupe counts attempts and dead-letters (the server would only stop)
  cc.FilterSubject = filter.c_str();
  cc.MaxAckPending = 10000;
  if (start.from_oldest()) {
    cc.DeliverPolicy = js_DeliverAll;
  } else {
    cc.DeliverPolicy = js_DeliverByStartSequence;
    cc.OptStartSeq = start.offset();
  }
  code = static_cast<jsErrCode>(0);
  st = js_AddConsumer(&ci, s.js, stream.c_str(), &cc, nullptr, &code);
  if (ci != nullptr) jsConsumerInfo_Destroy(ci);
  js_check(st, code, "consumer '" + name + "' on '" + stream + "'");
}

// A consumer or group name for the server: no `.`, `*`, `>` or spaces.
inline std::string consumer_name_of(std::string_view name) {
  std::string out(name);
  for (char& c : out) {
    if (c == '.' || c == '*' || c == '>' || c == ' ') c = '_';
  }
  return out;
}

template <class A, class T>
std::shared_ptr<consumer_pool> start_pool(const std::shared_ptr<js_shared>& s,
                                          consumer_pool::settings settings,
                                          troupe::detail::actor_cell* cell) {
  auto pool = std::make_shared<consumer_pool>(s, std::move(settings), &deliver_pulled<A, T>,
                                              std::string(wire_name_of<T>()));
  pool->add_member(cell);
  pool->start();
  return pool;
}

}  // namespace detail

// A durable retained topic (jetstream::retain): a subject or pattern stored by a stream.
// Copyable; thread-safe. Needs its jetstream's node connected to publish and subscribe.
template <class E>
class durable_topic {
 public:
  durable_topic(std::shared_ptr<detail::js_shared> s, std::string subject, std::string stream)
      : shared_(std::move(s)), subject_(std::move(subject)), stream_(std::move(stream)) {}

  [[nodiscard]] const std::string& subject() const noexcept { return subject_; }
  [[nodiscard]] const std::string& stream() const noexcept { return stream_; }

  // This topic, read through `up`: the subscriptions made from the copy returned turn older
  // versions of E into E (upcast.hpp); an event none of them reads -- a newer version, an older
  // one without a step, bytes that do not decode -- is a dead letter with its sequence (stored
  // and acknowledged for a group; reported locally for a replaying subscriber).
  [[nodiscard]] durable_topic with_upcasters(upcasters<E> up) const {
    durable_topic copy = *this;
    copy.upcast_ = std::make_shared<const upcasters<E>>(std::move(up));
    return copy;
  }

  // Publishes on `subject` (the topic's, or one its pattern matches) and returns at once; the
  // stream's ack is counted later (jetstream::counters). False (counted as rejected) if it could
  // not go out. Throws error(invalid_subject).
  bool publish(const E& event, publish_options o = {}) const {
    return shared_->publish_async(wire_subject(subject_), event, o.id);
  }
  bool publish(std::string_view subject, const E& event, publish_options o = {}) const {
    return shared_->publish_async(wire_subject(subject), event, o.id);
  }
  // Publishes and waits until stored; returns the event's sequence (its offset), or that of
  // the stored original if `o.id` was a duplicate. Throws error(disconnected) if not stored.
  std::uint64_t publish_sync(const E& event, publish_options o = {}) const {
    return shared_->publish_sync(wire_subject(subject_), event, o.id).first;
  }
  std::uint64_t publish_sync(std::string_view subject, const E& event,
                             publish_options o = {}) const {
    return shared_->publish_sync(wire_subject(subject), event, o.id).first;
  }

  // A replaying subscriber: `target` gets every event from `start` (replay::oldest() or
  // replay::from(sequence)), in stream order, then the live ones, with no gap and no duplicate.
  // Nothing is acknowledged: a restarted process chooses where to start again (for a position
  // kept on the server, use a group). Throws error(invalid_offset) outside [first, last + 1].
  template <Actor A>
  [[nodiscard]] durable_subscription subscribe(const ref<A>& target,
                                               replay start = replay::oldest()) const {
    static_assert(detail::actor_takes_durable<A, E>::value,
                  "troupe::nats::durable_topic::subscribe: the actor has no on(const E&), "
                  "on(const troupe::retained<E>&) or on(const troupe::nats::delivery<E>&)");
    troupe::detail::actor_cell* cell = troupe::detail::access::cell_of(target);
    if (cell == nullptr) throw error(errc::invalid_ref, "subscribe() with an empty ref");
    if (!start.from_oldest()) {
      const stream_state st = state();
      const std::uint64_t first = st.messages == 0 ? st.last + 1 : st.first;
      if (start.offset() < first || start.offset() > st.last + 1) {
        throw error(errc::invalid_offset, "replay of '" + subject_ + "' from offset " +
                                              std::to_string(start.offset()) +
                                              ": the stream keeps [" + std::to_string(first) +
                                              ", " + std::to_string(st.last + 1) + ")");
      }
    }
    auto o = std::make_shared<detail::ordered_sub>();
    o->shared = shared_;
    cell->retain();
    o->cell = cell;
    o->strip = shared_->prefix.size() + 7;  // "<prefix>.topic."
    o->deliver = &detail::deliver_ordered<A, E>;
    o->upcast = upcast_;
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = stream_.c_str();
    so.Ordered = true;
    if (start.from_oldest()) {
      so.Config.DeliverPolicy = js_DeliverAll;
    } else {
      so.Config.DeliverPolicy = js_DeliverByStartSequence;
      so.Config.OptStartSeq = start.offset();
    }
    const std::string filter = wire_subject(subject_, true);
    jsErrCode code = static_cast<jsErrCode>(0);
    detail::js_check(js_Subscribe(&o->sub, shared_->js, filter.c_str(),
                                  &detail::ordered_sub::on_msg, o.get(), nullptr, &so, &code),
                     code, "subscription to '" + subject_ + "'");
    if (natsSubscription_SetOnCompleteCB(o->sub, &detail::ordered_sub::on_complete, o.get()) !=
        NATS_OK) {
      o->stop();
      throw error(errc::disconnected, "cannot watch the subscription's completion");
    }
    return durable_subscription(std::move(o));
  }

  // A member of the durable consumer group `g`: the group's position is kept on the server, so a
  // member that restarts -- or joins from another process -- resumes where the group was; each
  // event goes to one member at a time across all processes. A handler that succeeds
  // acknowledges; one that throws gives the event back (redelivered with a backoff); after
  // o.max_attempts it is dead-lettered. `first_start` applies only when the group is created.
  template <Actor A>
  [[nodiscard]] durable_subscription subscribe(const ref<A>& member, const group& g,
                                               replay first_start = replay::oldest(),
                                               consumer_options o = {}) const {
    static_assert(detail::actor_takes_durable<A, E>::value,
                  "troupe::nats::durable_topic::subscribe: the actor has no on(const E&), "
                  "on(const troupe::retained<E>&) or on(const troupe::nats::delivery<E>&)");
    troupe::detail::actor_cell* cell = troupe::detail::access::cell_of(member);
    if (cell == nullptr) throw error(errc::invalid_ref, "subscribe() with an empty ref");
    if (g.name.empty()) throw error(errc::invalid_argument, "a durable group needs a name");
    const std::string name = detail::consumer_name_of(g.name);
    detail::make_consumer(*shared_, stream_, name, wire_subject(subject_, true), first_start, o);
    detail::consumer_pool::settings s;
    s.stream = stream_;
    s.consumer = name;
    s.dead_subject = shared_->prefix + ".dead." + name;
    s.strip = shared_->prefix.size() + 7;
    s.max_attempts = o.max_attempts;
    s.ack_wait = o.ack_wait;
    s.backoff = o.backoff;
    s.max_backoff = o.max_backoff;
    s.upcast = upcast_;
    return durable_subscription(detail::start_pool<A, E>(shared_, std::move(s), cell));
  }

  // The stream's limits and the sequences it keeps now. Throws error(disconnected).
  [[nodiscard]] stream_state state() const { return detail::state_of(*shared_, stream_); }

  // The newest event the stream keeps, with its offset; nullopt if it keeps none. For a topic
  // that holds one value (a snapshot: retention::max_messages = 1). Read through the upcasters
  // (with_upcasters). Throws error(decode_failed) if it cannot be read, error(disconnected).
  [[nodiscard]] std::optional<stored_event<E>> last() const {
    const stream_state st = state();
    if (st.messages == 0) return std::nullopt;
    natsMsg* m = nullptr;
    jsErrCode code = static_cast<jsErrCode>(0);
    detail::js_check(js_GetMsg(&m, shared_->js, stream_.c_str(), st.last, nullptr, &code), code,
                     "the last event of '" + stream_ + "'");
    const detail::msg_ptr owned(m);
    dead_letter_reason why = dead_letter_reason::decode_failed;
    std::string text;
    auto value = detail::decode_durable<E>(m, 0, why, text, upcast_.get());
    if (!value) {
      throw error(errc::decode_failed, "the last event of '" + subject_ + "' (sequence " +
                                           std::to_string(st.last) + "): " + text);
    }
    return stored_event<E>{st.last, std::move(*value)};
  }

 private:
  [[nodiscard]] std::string wire_subject(std::string_view s, bool pattern = false) const {
    detail::check_subject(s, pattern);
    return shared_->prefix + ".topic." + std::string(s);
  }

  std::shared_ptr<detail::js_shared> shared_;
  std::string subject_;
  std::string stream_;
  std::shared_ptr<const upcasters<E>> upcast_;  // null: E's own version only
};

// A durable work queue (jetstream::make_queue): items in a work-queue stream, taken by competing
// consumers in any number of processes, each item by one consumer at a time. Copyable;
// thread-safe.
template <class T>
class durable_queue {
 public:
  durable_queue(std::shared_ptr<detail::js_shared> s, std::string name, std::string stream,
                consumer_options o)
      : shared_(std::move(s)), name_(std::move(name)), stream_(std::move(stream)), options_(o) {}

  [[nodiscard]] const std::string& name() const noexcept { return name_; }
  [[nodiscard]] const std::string& stream() const noexcept { return stream_; }

  // This queue, its consumers reading older versions of T through `up` (as
  // durable_topic::with_upcasters).
  [[nodiscard]] durable_queue with_upcasters(upcasters<T> up) const {
    durable_queue copy = *this;
    copy.upcast_ = std::make_shared<const upcasters<T>>(std::move(up));
    return copy;
  }
  // Where items that could not be done go ("<prefix>.dead.queue_<name>", kept by a stream).
  [[nodiscard]] std::string dead_letter_subject() const {
    return shared_->prefix + ".dead." + consumer();
  }

  // Queues an item and returns at once (the stream's ack is counted later). False (counted as
  // rejected) if it could not go out.
  bool push(const T& item, publish_options o = {}) const {
    return shared_->publish_async(subject(), item, o.id);
  }
  // Queues an item and waits until stored; returns its sequence. Throws error(disconnected).
  std::uint64_t push_sync(const T& item, publish_options o = {}) const {
    return shared_->publish_sync(subject(), item, o.id).first;
  }

  // Adds a consumer in this process: it takes items one at a time until the returned handle
  // ends or the actor stops. A handler that returns (or whose task finishes) acknowledges the
  // item; one that throws gives it back with a backoff; after max_attempts it goes to the
  // dead-letter subject. A handler that runs long keeps its item (in-progress signals).
  template <Actor A>
  [[nodiscard]] durable_subscription add_consumer(const ref<A>& consumer_ref) const {
    static_assert(detail::actor_takes_durable<A, T>::value,
                  "troupe::nats::durable_queue::add_consumer: the actor has no on(const T&) or "
                  "on(const troupe::nats::delivery<T>&) handler for the items");
    troupe::detail::actor_cell* cell = troupe::detail::access::cell_of(consumer_ref);
    if (cell == nullptr) throw error(errc::invalid_ref, "add_consumer() with an empty ref");
    detail::make_consumer(*shared_, stream_, consumer(), subject(), replay::oldest(), options_);
    detail::consumer_pool::settings s;
    s.stream = stream_;
    s.consumer = consumer();
    s.dead_subject = dead_letter_subject();
    s.strip = shared_->prefix.size() + 7;  // "<prefix>.queue."
    s.max_attempts = options_.max_attempts;
    s.ack_wait = options_.ack_wait;
    s.backoff = options_.backoff;
    s.max_backoff = options_.max_backoff;
    s.upcast = upcast_;
    return durable_subscription(detail::start_pool<A, T>(shared_, std::move(s), cell));
  }

  // The stream now: `messages` are the items not yet acknowledged (waiting or in flight).
  [[nodiscard]] stream_state state() const { return detail::state_of(*shared_, stream_); }

 private:
  [[nodiscard]] std::string subject() const { return shared_->prefix + ".queue." + name_; }
  [[nodiscard]] std::string consumer() const { return "queue_" + detail::consumer_name_of(name_); }

  std::shared_ptr<detail::js_shared> shared_;
  std::string name_;
  std::string stream_;
  consumer_options options_;
  std::shared_ptr<const upcasters<T>> upcast_;  // null: T's own version only
};

// The JetStream side of a node: makes durable topics and queues. Make it after its node and
// destroy it (and the subscriptions made from it) before the node. Not copyable. Thread-safe.
class jetstream {
 public:
  // Throws error(disconnected) if the server has no JetStream or the dead-letter stream cannot
  // be made.
  explicit jetstream(node& n, jetstream_options o = {})
      : shared_(std::make_shared<detail::js_shared>()) {
    detail::js_shared& s = *shared_;
    s.keep = n.internals();
    s.rt = s.keep->rt;
    s.core = s.keep->core;
    s.conn = s.keep->conn;
    s.prefix = s.keep->prefix;
    s.node_id = s.keep->id;
    s.api_wait = o.api_wait;
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.Wait = o.api_wait.count();
    jo.PublishAsync.MaxPending = o.max_pending_publishes;
    jo.PublishAsync.AckHandler = &detail::js_shared::on_pub_ack;
    jo.PublishAsync.AckHandlerClosure = shared_.get();
    detail::js_check(natsConnection_JetStream(&s.js, s.conn, &jo), static_cast<jsErrCode>(0),
                     "context");
    retention dead;
    dead.replicas = o.dead_letter_replicas;
    detail::make_stream(s, dead_letter_stream(), s.prefix + ".dead.>", dead, false);
  }
  jetstream(const jetstream&) = delete;
  jetstream& operator=(const jetstream&) = delete;
  ~jetstream() { close(); }

  // A durable retained topic of E on `subject` (`*` and `>` allowed: one stream for all the
  // subjects it matches). Idempotent: an existing stream is found (its events kept) and its
  // limits updated. Throws error(invalid_subject), error(retention_conflict) if the server
  // refuses (the subject overlaps another stream's), error(disconnected).
  template <class E>
  durable_topic<E> retain(std::string_view subject, retention r = {}) {
    static_assert(troupe::detail::type_has_a_wire_name<E>::value,
                  "troupe::nats::jetstream::retain<E>: the event type has no wire name (see "
                  "codec.hpp)");
    detail::check_subject(subject, true);
    const std::string stream =
        r.stream.empty() ? detail::stream_name_of(shared_->prefix, "topic", subject) : r.stream;
    detail::make_stream(*shared_, stream, shared_->prefix + ".topic." + std::string(subject), r,
                        false);
    return durable_topic<E>(shared_, std::string(subject), stream);
  }

  // A durable work queue of T named `name` (dotted tokens). Idempotent like retain.
  template <class T>
  durable_queue<T> make_queue(std::string_view name, durable_queue_options o = {}) {
    static_assert(troupe::detail::type_has_a_wire_name<T>::value,
                  "troupe::nats::jetstream::make_queue<T>: the item type has no wire name (see "
                  "codec.hpp)");
    detail::check_subject(name, false);
    const std::string stream = o.limits.stream.empty()
                                   ? detail::stream_name_of(shared_->prefix, "queue", name)
                                   : o.limits.stream;
    detail::make_stream(*shared_, stream, shared_->prefix + ".queue." + std::string(name), o.limits,
                        true);
    return durable_queue<T>(shared_, std::string(name), stream, o.consumer);
  }

  // Waits until every asynchronous publish so far is acknowledged or failed, up to `timeout`;
  // false if some are still pending then.
  bool flush(std::chrono::milliseconds timeout = std::chrono::milliseconds(5000)) {
    jsPubOptions o;
    jsPubOptions_Init(&o);
    o.MaxWait = timeout.count();
    return js_PublishAsyncComplete(shared_->js, &o) == NATS_OK;
  }

  [[nodiscard]] publish_counters counters() const noexcept {
    const detail::js_shared& s = *shared_;
    auto v = [](const std::atomic<std::uint64_t>& a) { return a.load(std::memory_order_relaxed); };
    return {v(s.published), v(s.acknowledged), v(s.duplicates), v(s.failed), v(s.rejected)};
  }

  // The subject dead letters of a consumer group `g` go to (for a queue:
  // durable_queue::dead_letter_subject).
  [[nodiscard]] std::string dead_letter_subject(const group& g) const {
    return shared_->prefix + ".dead." + detail::consumer_name_of(g.name);
  }
  // The stream that keeps the dead letters of every consumer of this prefix.
  [[nodiscard]] std::string dead_letter_stream() const {
    return detail::stream_name_of(shared_->prefix, "dead", "letters");
  }

  // Refuses further publishes and waits (bounded) for the pending publish acks. Subscriptions
  // end with their handles. Idempotent.
  void close() noexcept {
    if (shared_->closing.exchange(true, std::memory_order_acq_rel)) return;
    jsPubOptions o;
    jsPubOptions_Init(&o);
    o.MaxWait = 2000;
    js_PublishAsyncComplete(shared_->js, &o);
  }

 private:
  std::shared_ptr<detail::js_shared> shared_;
};

}  // namespace troupe::nats
