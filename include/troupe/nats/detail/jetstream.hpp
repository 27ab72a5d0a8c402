// Internal: the machinery behind troupe::nats::jetstream -- the JetStream context shared by the
// durable topics and queues of one node, streams, asynchronous publishing with acks, and the two
// ways events come back: an ordered push consumer (a plain replaying subscriber, no acks) and a
// pull consumer feeding a pool of actors (consumer groups and work queues: ack, nak with backoff,
// in-progress, dead letters).
//
// Threads: nats.c calls back on its own threads (the ordered consumer's deliveries, publish
// acks); a pull consumer has one fetching thread of ours. Neither runs actor code: they decode
// and post an envelope to the actor, which handles it on a troupe worker; the envelope's
// settlement (handler returned, task finished, handler threw) acks or naks the message.
#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <troupe/nats/node.hpp>
#include <troupe/topic.hpp>
#include <troupe/upcast.hpp>

namespace troupe::nats {

// What a handler may take to see where an event or item came from: `on(const
// troupe::nats::delivery<T>&)`. Valid until the handler returns or its task finishes.
template <class T>
struct delivery {
  const T& value;
  std::uint64_t sequence;    // the stream sequence: the event's offset, stable across restarts
  std::uint64_t attempt;     // 1 on the first delivery, 2 on the first redelivery, ...
  std::string_view subject;  // the troupe subject it was published on (no prefix)
  std::string_view id;       // the producer's message id (publish_options::id), or empty
};

// What one durable consumer (a group member pool, a work queue's consumers in this process, or a
// replaying subscriber) did so far. A snapshot; thread-safe.
struct consumer_counters {
  std::uint64_t delivered = 0;      // messages handed to a local actor
  std::uint64_t handled = 0;        // of those, handlers that succeeded (acknowledged)
  std::uint64_t retried = 0;        // attempts that failed and were given back (nak with backoff)
  std::uint64_t dead_lettered = 0;  // messages moved to the dead-letter subject, then acknowledged
  std::uint64_t bad_input = 0;      // of those: undecodable, unknown type or codec, too large
  std::uint64_t in_progress = 0;    // "still working" signals sent for long handlers
  std::uint64_t fetch_errors = 0;   // pull requests that failed (disconnected, server restarting)
};

namespace detail {

// Header names of a dead letter on the wire, besides the original's troupe-type and -codec.
inline constexpr const char* h_dead_reason = "troupe-dead-reason";
inline constexpr const char* h_dead_detail = "troupe-dead-detail";
inline constexpr const char* h_dead_attempts = "troupe-dead-attempts";
inline constexpr const char* h_dead_subject = "troupe-dead-subject";
inline constexpr const char* h_dead_stream = "troupe-dead-stream";
inline constexpr const char* h_dead_sequence = "troupe-dead-sequence";
inline constexpr const char* h_dead_error = "troupe-dead-error";  // "type: what()" of a throw
inline constexpr const char* h_msg_id = "Nats-Msg-Id";

inline void js_check(natsStatus s, jsErrCode code, const std::string& what) {
  if (s == NATS_OK) return;
  std::string text = "JetStream: " + what + ": " + natsStatus_GetText(s);
  if (code != 0) text += " (JetStream error " + std::to_string(static_cast<int>(code)) + ")";
  const char* last = nats_GetLastError(nullptr);
  if (last != nullptr && *last != '\0') text += ": " + std::string(last);
  throw error(errc::disconnected, text);
}

// A stream name from a subject: NATS forbids `.`, `*`, `>` and spaces in it.
inline std::string stream_name_of(std::string_view prefix, std::string_view kind,
                                  std::string_view subject) {
  std::string out;
  for (char c : std::string(prefix) + "_" + std::string(kind) + "_" + std::string(subject)) {
    if (c == '.' || c == ' ') {
      out += '_';
    } else if (c == '*') {
      out += "STAR";
    } else if (c == '>') {
      out += "ALL";
    } else {
      out += c;
    }
  }
  return out;
}

// Dotted tokens; with `wildcards`, a token may be `*`, and the last one `>`. Throws
// error(invalid_subject).
inline void check_subject(std::string_view name, bool wildcards) {
  if (!valid_wire_subject(name, wildcards)) {
    throw error(errc::invalid_subject,
                "'" + std::string(name) + "' is not a durable subject (dotted tokens" +
                    (wildcards ? ", `*` or a final `>`)" : ", no wildcards)"));
  }
}

// The JetStream side of one node, shared by every durable topic, queue and consumer made from
// it (they hold it by shared_ptr, so it outlives them).
struct js_shared {
  std::shared_ptr<link> keep;  // the node's connection state: alive while anything here runs
  troupe::runtime* rt = nullptr;
  troupe::detail::runtime_core* core = nullptr;
  natsConnection* conn = nullptr;
  jsCtx* js = nullptr;
  std::string prefix;
  std::string node_id;
  std::chrono::milliseconds api_wait{5000};

  std::atomic<bool> closing{false};
  // Asynchronous publishes: accepted by publish(), then acknowledged by the stream or failed.
  std::atomic<std::uint64_t> published{0}, acknowledged{0}, duplicates{0}, failed{0}, rejected{0};

  js_shared() = default;
  js_shared(const js_shared&) = delete;
  js_shared& operator=(const js_shared&) = delete;
  ~js_shared() {
    if (js != nullptr) jsCtx_Destroy(js);
  }

  static void bump(std::atomic<std::uint64_t>& c, std::uint64_t n = 1) noexcept {
    c.fetch_add(n, std::memory_order_relaxed);  // a statistic: no ordering needed
  }

  // A message that will not be handled and never was an envelope: counted as sent and dead in
  // the local runtime (its accounting stays whole) and reported like every dead letter.
  void local_dead_letter(std::string_view type, dead_letter_reason reason,
                         const std::string& why) noexcept {
    troupe::detail::counter_slot& c = core->counters_here();
    c.add(c.sent);
    core->record_dead_letter(address{}, type, reason, 0, why);
  }

  // nats.c's publish-ack callback (its thread): count; a failure is a dead letter here.
  static void on_pub_ack(jsCtx*, natsMsg* m, jsPubAck* pa, jsPubAckErr* pae,
                         void* closure) noexcept {
    auto* self = static_cast<js_shared*>(closure);
    if (pae == nullptr) {
      bump(self->acknowledged);
      if (pa != nullptr && pa->Duplicate) bump(self->duplicates);
    } else {
      bump(self->failed);
      try {
        const char* subject = m != nullptr ? natsMsg_GetSubject(m) : nullptr;
        self->local_dead_letter(
            m != nullptr ? header(m, h_type) : std::string_view("troupe.nats.durable"),
            pae->Err == NATS_MAX_PAYLOAD ? dead_letter_reason::too_large
                                         : dead_letter_reason::disconnected,
            std::string("the stream did not store it (") +
                (pae->ErrText != nullptr ? pae->ErrText : natsStatus_GetText(pae->Err)) + ") on " +
                (subject != nullptr ? subject : "?"));
      } catch (...) {  // out of memory while describing it: counted above
      }
    }
    if (m != nullptr) natsMsg_Destroy(m);
  }

  // Creates the stream, or updates its limits if it exists. Throws error(retention_conflict)
  // when the server refuses the change (another retention policy, overlapping subjects).
  void ensure_stream(jsStreamConfig& cfg) const {
    jsErrCode code = static_cast<jsErrCode>(0);
    jsStreamInfo* si = nullptr;
    natsStatus s = js_AddStream(&si, js, &cfg, nullptr, &code);
    if (s != NATS_OK && code == JSStreamNameExistErr) {
      code = static_cast<jsErrCode>(0);
      s = js_UpdateStream(&si, js, &cfg, nullptr, &code);
    }
    if (si != nullptr) jsStreamInfo_Destroy(si);
    if (s != NATS_OK && code != 0) {
      const char* last = nats_GetLastError(nullptr);
      throw error(errc::retention_conflict,
                  "JetStream refused stream '" + std::string(cfg.Name) +
                      "': " + (last != nullptr ? last : natsStatus_GetText(s)));
    }
    js_check(s, code, std::string("stream '") + cfg.Name + "'");
  }

  // A message with troupe's headers (and the producer's id), ready to publish.
  [[nodiscard]] msg_ptr make_message(const std::string& subject, std::string_view type,
                                     std::string_view codec, const std::string& bytes,
                                     std::string_view id) const {
    natsMsg* m = nullptr;
    js_check(
        natsMsg_Create(&m, subject.c_str(), nullptr, bytes.data(), static_cast<int>(bytes.size())),
        static_cast<jsErrCode>(0), "message");
    msg_ptr owned(m);
    const std::string type_s(type);
    const std::string codec_s(codec);
    natsStatus s = natsMsgHeader_Set(m, h_type, type_s.c_str());
    if (s == NATS_OK) s = natsMsgHeader_Set(m, h_codec, codec_s.c_str());
    if (s == NATS_OK) s = natsMsgHeader_Set(m, h_from, node_id.c_str());
    if (s == NATS_OK && !id.empty()) s = natsMsgHeader_Set(m, h_msg_id, std::string(id).c_str());
    js_check(s, static_cast<jsErrCode>(0), "message headers");
    return owned;
  }

  // Publishes and returns at once; the stream's ack is counted when it comes (on_pub_ack).
  // False (counted as rejected) if it could not go out.
  template <class E>
  bool publish_async(const std::string& subject, const E& event, std::string_view id) noexcept {
    if (closing.load(std::memory_order_acquire)) {
      bump(rejected);
      return false;
    }
    try {
      std::string bytes;
      troupe::encode(event, bytes);
      msg_ptr m = make_message(subject, wire_name_of<E>(), codec_id_of<E>(), bytes, id);
      natsMsg* raw = m.get();
      jsPubOptions o;
      jsPubOptions_Init(&o);
      o.MaxWait = api_wait.count();  // an ack lost with a connection fails then (on_pub_ack)
      const natsStatus s = js_PublishMsgAsync(js, &raw, &o);
      if (raw == nullptr) static_cast<void>(m.release());  // nats.c owns it now
      if (s == NATS_OK) {
        bump(published);
        return true;
      }
    } catch (...) {  // encoding failed or out of memory: rejected, below
    }
    bump(rejected);
    return false;
  }

  // Publishes and waits for the stream's ack: {sequence, duplicate}. Throws error(disconnected)
  // (with the server's reason) if it was not stored.
  template <class E>
  std::pair<std::uint64_t, bool> publish_sync(const std::string& subject, const E& event,
                                              std::string_view id) {
    if (closing.load(std::memory_order_acquire)) {
      bump(rejected);
      throw error(errc::disconnected, "the jetstream context is closed");
    }
    std::string bytes;
    troupe::encode(event, bytes);
    msg_ptr m = make_message(subject, wire_name_of<E>(), codec_id_of<E>(), bytes, id);
    jsPubAck* pa = nullptr;
    jsErrCode code = static_cast<jsErrCode>(0);
    jsPubOptions o;
    jsPubOptions_Init(&o);
    o.MaxWait = api_wait.count();
    const natsStatus s = js_PublishMsg(&pa, js, m.get(), &o, &code);
    if (s != NATS_OK) {
      bump(rejected);
      js_check(s, code, "publish on '" + subject + "'");
    }
    bump(published);
    bump(acknowledged);
    const std::pair<std::uint64_t, bool> out{pa->Sequence, pa->Duplicate};
    if (pa->Duplicate) bump(duplicates);
    jsPubAck_Destroy(pa);
    return out;
  }
};

// Where a delivered message came from (its JetStream metadata and headers).
struct js_origin {
  std::uint64_t sequence = 0;
  std::uint64_t attempt = 1;
  std::string subject;  // without the "<prefix>.<kind>." part
  std::string id;
};

inline js_origin origin_of(natsMsg* m, std::size_t strip) {
  js_origin o;
  jsMsgMetaData* meta = nullptr;
  if (natsMsg_GetMetaData(&meta, m) == NATS_OK && meta != nullptr) {
    o.sequence = meta->Sequence.Stream;
    o.attempt = meta->NumDelivered;
    jsMsgMetaData_Destroy(meta);
  }
  const char* s = natsMsg_GetSubject(m);
  const std::string_view subject = s != nullptr ? s : "";
  o.subject = std::string(subject.size() > strip ? subject.substr(strip) : subject);
  o.id = std::string(header(m, h_msg_id));
  return o;
}

// Checks the type and codec headers and decodes -- an older version of T through `up` (null:
// none); on failure says why (and which reason).
template <class T>
std::optional<T> decode_durable(natsMsg* m, std::size_t limit, dead_letter_reason& why,
                                std::string& detail, const upcasters<T>* up) {
  const std::string_view bytes = payload(m);
  if (limit != 0 && bytes.size() > limit) {
    why = dead_letter_reason::too_large;
    detail = std::to_string(bytes.size()) + " bytes (limit " + std::to_string(limit) + ")";
    return std::nullopt;
  }
  static const upcasters<T> none;
  auto d = (up != nullptr ? *up : none).read(header(m, h_type), header(m, h_codec), bytes, why);
  if (!d) {
    detail = d.error();
    return std::nullopt;
  }
  return std::optional<T>(std::move(d).value());
}

// How an actor of class A takes a T: with its delivery, with its offset, or plain.
template <class A, class T>
concept takes_delivery = requires(A& a, const delivery<T>& d) {
  a.on(d);
};

template <class ActorType, class EventType>
struct actor_takes_durable {
  static constexpr bool value = takes_delivery<ActorType, EventType> ||
                                troupe::detail::takes_offsets<ActorType, EventType> ||
                                troupe::detail::takes_plain_events<ActorType, EventType>;
};

class consumer_pool;

// One durable message in a mailbox: the decoded value, where it came from, and (for a pull
// consumer) the natsMsg to settle and the pool to tell.
template <class T>
struct durable_envelope final : troupe::detail::envelope {
  durable_envelope(const troupe::detail::envelope_ops* o, T v, js_origin from)
      : envelope{nullptr, o, 0},
        value(std::move(v)),
        origin(std::move(from)),
        as_delivery{value, origin.sequence, origin.attempt, origin.subject, origin.id},
        as_retained{origin.sequence, value} {}
  static void* operator new(std::size_t n) { return troupe::detail::block_pool::allocate(n); }
  static void operator delete(void* p, std::size_t n) noexcept {
    troupe::detail::block_pool::deallocate(p, n);
  }
  T value;
  js_origin origin;
  // What a handler takes, here rather than on invoke's stack: a task handler starts after
  // invoke returned and may suspend; the envelope lives until it finishes.
  delivery<T> as_delivery;
  retained<T> as_retained;
  std::shared_ptr<consumer_pool> pool;  // null: a replaying subscriber (nothing to settle)
  natsMsg* msg = nullptr;               // owned by the pool's in-flight list until settled
  troupe::detail::actor_cell* member = nullptr;
  bool settled = false;
  std::string failure;  // "type: what()" of the exception that failed this attempt, if one did
  inline ~durable_envelope();
};

// A pull consumer on one durable JetStream consumer, feeding the local actors that joined it:
// each member has at most one message in flight, and the fetching thread asks the server for as
// many messages as there are idle members -- so a busy process takes less, and a message is
// never held in a mailbox while its ack wait runs out.
class consumer_pool : public std::enable_shared_from_this<consumer_pool> {
 public:
  struct settings {
    std::string stream;
    std::string consumer;
    std::string dead_subject;  // where dead letters go (a stream keeps them)
    std::size_t strip = 0;     // prefix length of the NATS subject, cut for delivery::subject
    int max_attempts = 5;      // deliveries before the dead-letter subject
    std::chrono::milliseconds ack_wait{30000};
    std::chrono::milliseconds backoff{100};  // after the first failure; doubles, up to max_backoff
    std::chrono::milliseconds max_backoff{5000};
    std::shared_ptr<const void> upcast;  // the upcasters<T> of deliver_fn's T, or null
  };
  // Decodes a message and posts it to the member; false if the runtime refused the post (the
  // envelope's settlement has run then). Set by the typed maker.
  using deliver_fn = bool (*)(consumer_pool&, troupe::detail::actor_cell*, natsMsg*, js_origin,
                              dead_letter_reason& why, std::string& detail);

  consumer_pool(std::shared_ptr<js_shared> shared, settings s, deliver_fn deliver,
                std::string type_name)
      : shared_(std::move(shared)),
        settings_(std::move(s)),
        deliver_(deliver),
        type_name_(std::move(type_name)) {}
  consumer_pool(const consumer_pool&) = delete;
  consumer_pool& operator=(const consumer_pool&) = delete;
  ~consumer_pool() {
    for (auto& m : members_) m.cell->release();
    if (sub_ != nullptr) natsSubscription_Destroy(sub_);
  }

  // Binds to the durable consumer (which must exist) and starts fetching.
  void start() {
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Stream = settings_.stream.c_str();
    so.Consumer = settings_.consumer.c_str();
    jsErrCode code = static_cast<jsErrCode>(0);
    js_check(js_PullSubscribe(&sub_, shared_->js, nullptr, settings_.consumer.c_str(), nullptr, &so,
                              &code),
             code, "pull subscription to '" + settings_.consumer + "'");
    thread_ = std::thread([self = shared_from_this()] { self->fetch_loop(); });
  }

  // Stops fetching (returns once the thread has ended). Messages in flight settle as usual
  // when their handlers finish; dead letters not yet published are given back (nak).
  void stop() noexcept {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) {
      if (thread_.get_id() == std::this_thread::get_id()) {
        thread_.detach();
      } else {
        thread_.join();
      }
    }
  }

  void add_member(troupe::detail::actor_cell* cell) {
    cell->retain();
    {
      std::lock_guard lock(mutex_);
      members_.push_back(member{cell, false});
    }
    cv_.notify_all();
  }

  [[nodiscard]] consumer_counters counters() const noexcept {
    auto v = [](const std::atomic<std::uint64_t>& a) { return a.load(std::memory_order_relaxed); };
    return {v(c_delivered), v(c_handled),     v(c_retried),     v(c_dead),
            v(c_bad),       v(c_in_progress), v(c_fetch_errors)};
  }
  [[nodiscard]] const settings& config() const noexcept { return settings_; }
  [[nodiscard]] js_shared& shared() const noexcept { return *shared_; }

  // ---- settlement, from the envelope (a troupe worker) ------------------------------------

  // The handler succeeded: acknowledge; the member is free for the next message.
  void succeeded(troupe::detail::actor_cell* cell, natsMsg* m) noexcept {
    const bool mine = take_in_flight(m);
    if (mine) {
      js_shared::bump(c_handled);  // before the ack: whoever sees the ack sees the count
      natsMsg_Ack(m, nullptr);
      natsMsg_Destroy(m);
    }
    free_member(cell);
  }

  // The message was not handled (`reason`): give it back with a backoff, or -- on its last
  // attempt -- have the fetching thread move it to the dead-letter subject. Returns how the
  // runtime should record this attempt.
  // `failure` is the exception's "type: what()", when a handler threw.
  dead_letter_reason failed(troupe::detail::actor_cell* cell, natsMsg* m, const js_origin& from,
                            dead_letter_reason reason, const std::string& failure = {}) noexcept {
    dead_letter_reason outcome = reason;
    if (take_in_flight(m)) {
      if (reason == dead_letter_reason::handler_failed &&
          from.attempt >= static_cast<std::uint64_t>(settings_.max_attempts)) {
        outcome = dead_letter_reason::retries_exhausted;
        try {
          std::lock_guard lock(mutex_);
          dead_.push_back(dead_item{
              m, from, outcome,
              "the handler failed on each of " + std::to_string(from.attempt) + " attempts" +
                  (failure.empty() ? std::string() : "; the last threw " + failure),
              failure});
          m = nullptr;
        } catch (...) {  // out of memory: give it back, a later delivery dead-letters it
        }
        cv_.notify_all();
      }
      if (m != nullptr) {
        nak(m, from.attempt);
        natsMsg_Destroy(m);
      }
    }
    free_member(cell);
    return outcome;
  }

 private:
  struct member {
    troupe::detail::actor_cell* cell;  // retained
    bool busy;
  };
  struct dead_item {
    natsMsg* msg;  // owned
    js_origin from;
    dead_letter_reason reason;
    std::string detail;
    std::string error;  // the last attempt's exception, "type: what()" (or empty)
  };

  void nak(natsMsg* m, std::uint64_t attempt) noexcept {
    // Exponential backoff from `backoff`, capped: a failing item does not spin.
    auto delay = settings_.backoff;
    for (std::uint64_t k = 1; k < attempt && delay < settings_.max_backoff; ++k) delay *= 2;
    delay = std::min(delay, settings_.max_backoff);
    natsMsg_NakWithDelay(m, delay.count(), nullptr);
    js_shared::bump(c_retried);
  }

  bool take_in_flight(natsMsg* m) noexcept {
    std::lock_guard lock(mutex_);
    const auto it = std::find(in_flight_.begin(), in_flight_.end(), m);
    if (it == in_flight_.end()) return false;
    in_flight_.erase(it);
    return true;
  }

  void free_member(troupe::detail::actor_cell* cell) noexcept {
    {
      std::lock_guard lock(mutex_);
      for (auto& mb : members_) {
        if (mb.cell == cell) mb.busy = false;
      }
    }
    cv_.notify_all();
  }

  // Under the lock: members that stopped for good leave; returns how many are idle.
  int idle_locked() {
    const auto gone = std::remove_if(members_.begin(), members_.end(), [](const member& mb) {
      if (!mb.cell->closed()) return false;
      mb.cell->release();
      return true;
    });
    members_.erase(gone, members_.end());
    return static_cast<int>(
        std::count_if(members_.begin(), members_.end(), [](const member& mb) { return !mb.busy; }));
  }

  // Publishes a dead letter (the original payload and type, the reason, attempts, original
  // subject, stream and sequence), then acknowledges the original so that it does not come
  // back. If the dead letter cannot be stored, the original is given back (it returns and is
  // dead-lettered then). On the fetching thread (it may block for the server's ack).
  void dead_letter(natsMsg* m, const js_origin& from, dead_letter_reason reason,
                   const std::string& detail, const std::string& error = {}) noexcept {
    try {
      natsMsg* d = nullptr;
      const std::string_view bytes = payload(m);
      if (natsMsg_Create(&d, settings_.dead_subject.c_str(), nullptr, bytes.data(),
                         static_cast<int>(bytes.size())) != NATS_OK) {
        nak(m, from.attempt);
        return;
      }
      msg_ptr owned(d);
      const std::string type(header(m, h_type));
      const std::string codec(header(m, h_codec));
      const std::string attempts = std::to_string(from.attempt);
      const std::string seq = std::to_string(from.sequence);
      const char* subject = natsMsg_GetSubject(m);
      // One per consumer and message: two groups dead-lettering one event store two letters.
      const std::string id =
          "troupe-dead-" + settings_.stream + "-" + settings_.consumer + "-" + seq;
      natsStatus s = natsMsgHeader_Set(d, h_type, type.c_str());
      if (s == NATS_OK) s = natsMsgHeader_Set(d, h_codec, codec.c_str());
      if (s == NATS_OK)
        s = natsMsgHeader_Set(d, h_dead_reason, std::string(to_string(reason)).c_str());
      if (s == NATS_OK) s = natsMsgHeader_Set(d, h_dead_detail, detail.c_str());
      if (s == NATS_OK) s = natsMsgHeader_Set(d, h_dead_attempts, attempts.c_str());
      if (s == NATS_OK) s = natsMsgHeader_Set(d, h_dead_subject, subject != nullptr ? subject : "");
      if (s == NATS_OK) s = natsMsgHeader_Set(d, h_dead_stream, settings_.stream.c_str());
      if (s == NATS_OK) s = natsMsgHeader_Set(d, h_dead_sequence, seq.c_str());
      if (s == NATS_OK && !error.empty()) s = natsMsgHeader_Set(d, h_dead_error, error.c_str());
      jsPubOptions o;
      jsPubOptions_Init(&o);
      o.MaxWait = shared_->api_wait.count();
      o.MsgId = id.c_str();  // a second dead-lettering of the same message is a duplicate
      jsPubAck* pa = nullptr;
      if (s == NATS_OK) s = js_PublishMsg(&pa, shared_->js, d, &o, nullptr);
      if (pa != nullptr) jsPubAck_Destroy(pa);
      if (s != NATS_OK) {
        nak(m, from.attempt);
        return;
      }
      js_shared::bump(c_dead);
      natsMsg_Ack(m, nullptr);
    } catch (...) {
      nak(m, from.attempt);
    }
  }

  // A message that will not reach a handler (bad input, or redelivered past its attempts):
  // reported locally, then dead-lettered on the wire.
  void reject(natsMsg* m, const js_origin& from, dead_letter_reason reason,
              const std::string& detail) noexcept {
    try {
      shared_->local_dead_letter(
          header(m, h_type).empty() ? std::string_view(type_name_) : header(m, h_type), reason,
          detail + " (stream " + settings_.stream + ", sequence " + std::to_string(from.sequence) +
              ")");
    } catch (...) {
    }
    if (reason != dead_letter_reason::retries_exhausted) js_shared::bump(c_bad);
    dead_letter(m, from, reason, detail);
  }

  void fetch_loop() noexcept {
    const auto tick = std::max(std::chrono::milliseconds(10), settings_.ack_wait / 3);
    auto next_progress = std::chrono::steady_clock::now() + tick;
    for (;;) {
      int idle = 0;
      std::vector<dead_item> dead;
      {
        std::unique_lock lock(mutex_);
        if (stopping_) break;
        dead.swap(dead_);
        idle = idle_locked();
        if (idle == 0 && dead.empty()) {
          cv_.wait_for(lock, tick);
        }
        if (std::chrono::steady_clock::now() >= next_progress) {
          // A long handler keeps its message: tell the server it is being worked on.
          for (natsMsg* m : in_flight_) {
            if (natsMsg_InProgress(m, nullptr) == NATS_OK) js_shared::bump(c_in_progress);
          }
          next_progress = std::chrono::steady_clock::now() + tick;
        }
      }
      for (auto& d : dead) {
        dead_letter(d.msg, d.from, d.reason, d.detail, d.error);
        natsMsg_Destroy(d.msg);
      }
      if (idle == 0) continue;
      natsMsgList list{nullptr, 0};
      const auto wait = std::min<std::int64_t>(tick.count(), 250);
      const natsStatus s = natsSubscription_Fetch(&list, sub_, idle, wait, nullptr);
      if (s == NATS_TIMEOUT) continue;
      if (s != NATS_OK) {
        js_shared::bump(c_fetch_errors);
        std::unique_lock lock(mutex_);
        cv_.wait_for(lock, std::chrono::milliseconds(50), [this] { return stopping_; });
        continue;
      }
      for (int i = 0; i < list.Count; ++i) {
        natsMsg* m = std::exchange(list.Msgs[i], nullptr);
        if (m != nullptr) take(m);
      }
      natsMsgList_Destroy(&list);
    }
    // Stopping: what waits to be dead-lettered is given back.
    std::vector<dead_item> dead;
    {
      std::lock_guard lock(mutex_);
      dead.swap(dead_);
    }
    for (auto& d : dead) {
      nak(d.msg, d.from.attempt);
      natsMsg_Destroy(d.msg);
    }
  }

  // One fetched message: to an idle member, or dead-lettered, or given back.
  void take(natsMsg* m) noexcept {
    js_origin from;
    try {
      from = origin_of(m, settings_.strip);
    } catch (...) {
      natsMsg_Nak(m, nullptr);
      natsMsg_Destroy(m);
      return;
    }
    if (from.attempt > static_cast<std::uint64_t>(settings_.max_attempts)) {
      // Its last holder died (or could not store the dead letter) on the final attempt.
      reject(m, from, dead_letter_reason::retries_exhausted,
             "delivered " + std::to_string(from.attempt) + " times (limit " +
                 std::to_string(settings_.max_attempts) + "); the last holders did not finish");
      natsMsg_Destroy(m);
      return;
    }
    troupe::detail::actor_cell* cell = nullptr;
    {
      std::lock_guard lock(mutex_);
      idle_locked();
      for (auto& mb : members_) {
        if (!mb.busy) {
          mb.busy = true;
          cell = mb.cell;
          break;
        }
      }
      if (cell != nullptr) in_flight_.push_back(m);
    }
    if (cell == nullptr) {  // every member stopped meanwhile
      natsMsg_Nak(m, nullptr);
      natsMsg_Destroy(m);
      return;
    }
    dead_letter_reason why = dead_letter_reason::decode_failed;
    std::string detail;
    js_shared::bump(c_delivered);
    if (!deliver_(*this, cell, m, std::move(from), why, detail) && !detail.empty()) {
      // Not decodable: it never became an envelope.
      take_in_flight(m);
      free_member(cell);
      js_origin again = origin_of(m, settings_.strip);
      reject(m, again, why, detail);
      natsMsg_Destroy(m);
    }
  }

  std::shared_ptr<js_shared> shared_;
  settings settings_;
  deliver_fn deliver_;
  std::string type_name_;
  natsSubscription* sub_ = nullptr;
  std::thread thread_;

  mutable std::mutex mutex_;  // members_, in_flight_, dead_, stopping_
  std::condition_variable cv_;
  std::vector<member> members_;
  std::vector<natsMsg*> in_flight_;  // delivered, not settled: owned here until settled
  std::vector<dead_item> dead_;
  bool stopping_ = false;

  std::atomic<std::uint64_t> c_delivered{0}, c_handled{0}, c_retried{0}, c_dead{0}, c_bad{0},
      c_in_progress{0}, c_fetch_errors{0};
};

template <class T>
durable_envelope<T>::~durable_envelope() {
  // Destroyed without a settlement (cannot happen through the runtime's paths, which settle
  // first; kept so that a message is never left unacknowledged and unreturned).
  if (pool && !settled && msg != nullptr) {
    pool->failed(member, msg, origin, dead_letter_reason::target_stopped);
  }
}

template <class A, class T>
troupe::detail::handler_start invoke_durable(troupe::detail::actor_cell& cell,
                                             troupe::detail::envelope& e) {
  A& actor = static_cast<troupe::detail::typed_cell<A>&>(cell).instance();
  auto& env = static_cast<durable_envelope<T>&>(e);
  const T& value = env.value;  // by const reference: the message stays whole for a redelivery
  troupe::detail::handler_start started;
  if constexpr (takes_delivery<A, T>) {
    const delivery<T>& d = env.as_delivery;
    started = troupe::detail::start_handler([&]() -> decltype(auto) { return actor.on(d); });
  } else if constexpr (troupe::detail::takes_offsets<A, T>) {
    const retained<T>& r = env.as_retained;
    started = troupe::detail::start_handler([&]() -> decltype(auto) { return actor.on(r); });
  } else {
    started = troupe::detail::start_handler([&]() -> decltype(auto) { return actor.on(value); });
  }
  if (!started.frame && env.pool) {  // returned: acknowledge now (a task does when it finishes)
    env.settled = true;
    env.pool->succeeded(env.member, env.msg);
  }
  return started;
}

template <class T>
void durable_task_done(troupe::detail::envelope& e, troupe::detail::promise_base&) {
  auto& env = static_cast<durable_envelope<T>&>(e);
  if (env.pool && !env.settled) {
    env.settled = true;
    env.pool->succeeded(env.member, env.msg);
  }
}

template <class T>
dead_letter_reason durable_reroute(troupe::detail::envelope& e,
                                   dead_letter_reason reason) noexcept {
  auto& env = static_cast<durable_envelope<T>&>(e);
  if (!env.pool || env.settled) return reason;
  env.settled = true;
  return env.pool->failed(env.member, env.msg, env.origin, reason, env.failure);
}

// Called by the runtime just before durable_reroute when the message will not be handled: keeps
// the exception of a handler that threw, for the stored dead letter.
template <class T>
void durable_abort(troupe::detail::envelope& e, errc, const std::string&,
                   const std::exception_ptr& cause) noexcept {
  if (!cause) return;
  auto& env = static_cast<durable_envelope<T>&>(e);
  try {
    auto [type, what] = describe_exception(cause);
    env.failure = type + ": " + what;
  } catch (...) {  // out of memory: the dead letter goes without the text
  }
}

template <class T>
void destroy_durable(troupe::detail::envelope* e) noexcept {
  delete static_cast<durable_envelope<T>*>(e);
}

template <class A, class T>
inline constexpr troupe::detail::envelope_ops durable_ops{
    &invoke_durable<A, T>, &destroy_durable<T>, troupe::detail::type_name<T>(),
    &durable_task_done<T>, &durable_abort<T>,   &durable_reroute<T>};

// The typed deliver_fn of a pool whose members are actors of class A taking T.
template <class A, class T>
bool deliver_pulled(consumer_pool& pool, troupe::detail::actor_cell* cell, natsMsg* m,
                    js_origin from, dead_letter_reason& why, std::string& detail) {
  auto value = decode_durable<T>(m, 0, why, detail,
                                 static_cast<const upcasters<T>*>(pool.config().upcast.get()));
  if (!value) return false;
  auto* e = new durable_envelope<T>(&durable_ops<A, T>, std::move(*value), std::move(from));
  e->pool = pool.shared_from_this();
  e->msg = m;
  e->member = cell;
  return cell->core()->post(cell, e, true);
}

// A replaying subscriber: an ordered push consumer (no acks, in stream order, no gap: nats.c
// re-creates it from the last sequence seen if one appears) whose deliveries go to one actor.
struct ordered_sub {
  std::shared_ptr<js_shared> shared;
  troupe::detail::actor_cell* cell = nullptr;  // retained
  natsSubscription* sub = nullptr;
  std::size_t strip = 0;
  bool (*deliver)(ordered_sub&, natsMsg*) = nullptr;
  std::shared_ptr<const void> upcast;  // the upcasters<T> of deliver's T, or null
  std::atomic<std::uint64_t> c_delivered{0}, c_bad{0};
  std::mutex done_mutex;
  std::condition_variable done_cv;
  bool done = false;

  ordered_sub() = default;
  ordered_sub(const ordered_sub&) = delete;
  ordered_sub& operator=(const ordered_sub&) = delete;
  ~ordered_sub() {
    if (sub != nullptr) natsSubscription_Destroy(sub);
    if (cell != nullptr) cell->release();
  }

  static void on_msg(natsConnection*, natsSubscription*, natsMsg* m, void* closure) noexcept {
    auto* self = static_cast<ordered_sub*>(closure);
    msg_ptr owned(m);
    try {
      if (self->deliver(*self, m)) js_shared::bump(self->c_delivered);
    } catch (...) {  // out of memory: the event is lost to this subscriber, and counted
      js_shared::bump(self->c_bad);
    }
  }
  static void on_complete(void* closure) noexcept {
    auto* self = static_cast<ordered_sub*>(closure);
    std::lock_guard lock(self->done_mutex);
    self->done = true;
    self->done_cv.notify_all();
  }
  // Ends the subscription; returns once nats.c runs none of its callbacks.
  void stop() noexcept {
    if (sub == nullptr) return;
    if (natsSubscription_Unsubscribe(sub) == NATS_OK) {
      std::unique_lock lock(done_mutex);
      done_cv.wait_for(lock, std::chrono::seconds(10), [this] { return done; });
    }
  }
};

template <class A, class T>
bool deliver_ordered(ordered_sub& o, natsMsg* m) {
  dead_letter_reason why = dead_letter_reason::decode_failed;
  std::string detail;
  js_origin from = origin_of(m, o.strip);
  auto value =
      decode_durable<T>(m, 0, why, detail, static_cast<const upcasters<T>*>(o.upcast.get()));
  if (!value) {
    // Nothing to acknowledge on an ordered consumer: it does not loop. Reported with its place.
    js_shared::bump(o.c_bad);
    o.shared->local_dead_letter(
        header(m, h_type).empty() ? troupe::detail::type_name<T>() : header(m, h_type), why,
        detail + " (sequence " + std::to_string(from.sequence) + " on " + from.subject + ")");
    return false;
  }
  auto* e = new durable_envelope<T>(&durable_ops<A, T>, std::move(*value), std::move(from));
  return o.cell->core()->post(o.cell, e, true);
}

}  // namespace detail
}  // namespace troupe::nats
