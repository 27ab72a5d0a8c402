// Internal: the state behind a troupe::nats::node -- the nats.c connection, the agent actor that
// every nats.c callback hands its message to, the pending remote asks and the exposed actors.
//
// Threads: nats.c calls back on its own threads (a delivery thread per subscription, one for
// connection events). Those callbacks never run actor code or user code: they wrap the natsMsg
// and send it to the agent, a troupe actor, whose handlers (on troupe's workers) decode it,
// forward it to the exposed actor, or complete a pending ask.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <typeinfo>
#include <unordered_map>
#include <utility>
#include <vector>

#if __has_include(<cxxabi.h>)
#include <cxxabi.h>
#endif

#include <nats/nats.h>

#include <troupe/codec.hpp>
#include <troupe/codec_msgpack.hpp>
#include <troupe/nats/detail/watch.hpp>
#include <troupe/runtime.hpp>

namespace troupe::nats {

// The state of a node's connection to the broker, as on_state reports it.
enum class connection_state { connected, disconnected, reconnected, closed };

[[nodiscard]] constexpr std::string_view to_string(connection_state s) noexcept {
  switch (s) {
    case connection_state::connected:
      return "connected";
    case connection_state::disconnected:
      return "disconnected";
    case connection_state::reconnected:
      return "reconnected";
    case connection_state::closed:
      return "closed";
  }
  return "unknown";
}

// The exception a remote handler threw, as it travelled back: the cause() of the
// error(handler_failed) that completes the ask. type_name is the thrown type (demangled).
class remote_error : public std::runtime_error {
 public:
  remote_error(std::string type_name, const std::string& what)
      : std::runtime_error(what), type_name_(std::move(type_name)) {}
  [[nodiscard]] const std::string& type_name() const noexcept { return type_name_; }

 private:
  std::string type_name_;
};

// What crossed this node's connection (node::counters()). Summed over the processes of a system,
// every message sent out was received, or is counted where it was lost (dead letters on either
// side; at-most-once delivery without JetStream: a message in flight when a connection drops).
struct wire_counters {
  std::uint64_t sent = 0;              // messages published: sends, asks, replies
  std::uint64_t received = 0;          // messages taken from the wire for exposed actors / replies
  std::uint64_t delivered = 0;         // received messages handed to a local actor or ask
  std::uint64_t dead_lettered = 0;     // received messages dead-lettered (bad input, no target)
  std::uint64_t rejected = 0;          // sends and asks refused before they left (counted locally)
  std::uint64_t encode_failures = 0;   // messages the codec could not encode
  std::uint64_t decode_failures = 0;   // received messages the codec could not decode
  std::uint64_t late_replies = 0;      // replies after their ask had completed (dead letters)
  std::uint64_t disconnects = 0;       // connection losses
  std::uint64_t reconnects = 0;        // reconnections
  std::uint64_t events_published = 0;  // topic events published to NATS (node::publish)
  std::uint64_t events_received = 0;   // of `received`: topic events (bridges, queue groups)
  // Messages nats.c dropped before they reached the node: a subscription's pending limit was
  // exceeded (node_options::pending_limit_*), a slow consumer. Each is also a dead letter
  // (slow_consumer) in this runtime. Summed over processes: sent = received + these (+ lost).
  std::uint64_t slow_consumer_drops = 0;
  // Received messages whose `traceparent` header was not a W3C traceparent (read only when a
  // trace hook is installed): each is still delivered, as the root of a new trace.
  std::uint64_t malformed_traceparents = 0;
};

namespace detail {

// A subject or name as NATS takes it: dotted non-empty tokens of visible characters; with
// `wildcards`, a token may be `*`, and the last one `>`. The node and JetStream each throw their
// own error(invalid_subject) when it is not.
inline bool valid_wire_subject(std::string_view name, bool wildcards) noexcept {
  bool ok = !name.empty() && name.front() != '.' && name.back() != '.';
  std::size_t token = 0;
  for (std::size_t i = 0; ok && i <= name.size(); ++i) {
    if (i == name.size() || name[i] == '.') {
      const std::string_view t = name.substr(token, i - token);
      ok = !t.empty() && (t.find_first_of("*>") == std::string_view::npos ||
                          (wildcards && (t == "*" || (t == ">" && i == name.size()))));
      token = i + 1;
    } else {
      ok = name[i] > ' ' && name[i] != 0x7f;
    }
  }
  return ok;
}

// Header names on the wire.
inline constexpr const char* h_type = "troupe-type";
inline constexpr const char* h_codec = "troupe-codec";
inline constexpr const char* h_corr = "troupe-corr";
// W3C trace context: "00-<trace-id>-<parent-id>-<flags>", parent-id = the sending handler's
// message id (its span). Written and read only when the runtime has a trace hook.
inline constexpr const char* h_traceparent = "traceparent";
inline constexpr const char* h_from = "troupe-from";
inline constexpr const char* h_timeout = "troupe-timeout-us";
inline constexpr const char* h_status = "troupe-status";  // replies: "ok" or an errc number
inline constexpr const char* h_error_type = "troupe-error-type";

struct msg_deleter {
  void operator()(natsMsg* m) const noexcept { natsMsg_Destroy(m); }
};
using msg_ptr = std::unique_ptr<natsMsg, msg_deleter>;

inline std::string_view header(natsMsg* m, const char* key) noexcept {
  const char* value = nullptr;
  if (natsMsgHeader_Get(m, key, &value) != NATS_OK || value == nullptr) return {};
  return value;
}

inline std::string_view payload(natsMsg* m) noexcept {
  const char* data = natsMsg_GetData(m);
  const int n = natsMsg_GetDataLength(m);
  return data != nullptr && n > 0 ? std::string_view(data, static_cast<std::size_t>(n))
                                  : std::string_view{};
}

inline std::string demangle(const char* name) {
#if __has_include(<cxxabi.h>)
  int status = 0;
  char* d = abi::__cxa_demangle(name, nullptr, nullptr, &status);
  if (status == 0 && d != nullptr) {
    std::string out(d);
    std::free(d);  // NOLINT: __cxa_demangle's contract
    return out;
  }
#endif
  return name;
}

// The type name and text of an exception, for the wire.
inline std::pair<std::string, std::string> describe_exception(const std::exception_ptr& e) {
  try {
    std::rethrow_exception(e);
  } catch (const remote_error& r) {
    return {r.type_name(), r.what()};
  } catch (const std::exception& x) {
    return {demangle(typeid(x).name()), x.what()};
  } catch (...) {
    return {"unknown", "an exception not derived from std::exception"};
  }
}

// The traceparent of the handler running on this thread, if it runs in `core` and the core
// traces: version 00, its trace, its message id as the parent span, flags 01 (sampled: troupe
// records every message it traces). False (nothing written) otherwise.
inline bool current_traceparent(troupe::detail::runtime_core* core, char (&out)[56]) noexcept {
  const troupe::detail::thread_identity& id = troupe::detail::this_thread_identity;
  if (id.core != core || id.message == 0 || !core->tracing()) return false;
  static constexpr char digits[] = "0123456789abcdef";
  auto hex = [&](std::size_t at, std::uint64_t v) {
    for (int i = 15; i >= 0; --i, v >>= 4) out[at + static_cast<std::size_t>(i)] = digits[v & 15];
  };
  std::memcpy(out, "00-", 3);
  hex(3, id.trace.high);
  hex(19, id.trace.low);
  out[35] = '-';
  hex(36, id.message);
  std::memcpy(out + 52, "-01", 4);  // with the terminating NUL
  return true;
}

// Reads a W3C traceparent header into `o` (trace and parent span). False if it is malformed:
// not "vv-<32 hex>-<16 hex>-<2 hex>" in lower case, version ff, a trace or parent of zeros, or a
// version-00 header of another length (later versions may append "-..." fields: ignored).
inline bool parse_traceparent(std::string_view v, troupe::detail::message_origin& o) noexcept {
  if (v.size() < 55 || (v.size() > 55 && (v.substr(0, 2) == "00" || v[55] != '-'))) return false;
  if (v[2] != '-' || v[35] != '-' || v[52] != '-' || v.substr(0, 2) == "ff") return false;
  bool ok = true;
  auto hex = [&](std::size_t at, std::size_t n) {
    std::uint64_t r = 0;
    for (std::size_t i = at; i < at + n; ++i) {
      const char c = v[i];
      const int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
      if (d < 0) ok = false;
      r = r << 4 | static_cast<std::uint64_t>(d & 15);
    }
    return r;
  };
  hex(0, 2);
  hex(53, 2);
  const troupe::trace_id trace{hex(3, 16), hex(19, 16)};
  const std::uint64_t parent = hex(36, 16);
  if (!ok || !trace || parent == 0) return false;
  o.trace = trace;
  o.causation = parent;
  return true;
}

// Set while the node publishes into the local topics what is already on the wire (a remote
// event through a bridge, node::publish's local half): the bridges' way out skips it, so that
// nothing is sent twice and nothing loops between a bridge's way in and its way out.
inline thread_local bool publishing_from_wire = false;

struct link;

// A message from nats.c, handed to the agent.
struct inbound {
  enum class kind : std::uint8_t { exposed, reply, state, event, slow };
  kind what = kind::exposed;
  msg_ptr msg;
  void* target = nullptr;  // kind::exposed: the exposure; kind::event: the topic_sub
  connection_state state = connection_state::connected;
};

// One exposed actor: its subject and, per wire type name, how to decode and forward.
struct exposure {
  using forward_fn = void (*)(link&, exposure&, natsMsg*, std::string_view bytes);
  struct entry {
    std::string_view codec;
    std::string_view type;  // static storage (wire_name_of)
    forward_fn forward;
  };
  struct link* owner = nullptr;
  std::string name;
  std::string subject;
  address target;
  void* typed_target = nullptr;  // the ref<A> (heap), for forward
  std::function<void()> destroy_target;
  std::unordered_map<std::string_view, entry> entries;
  natsSubscription* sub = nullptr;
  std::int64_t dropped_reported = 0;      // of sub's drops (slow consumer), guarded by slow_mutex
  natsSubscription* watch_sub = nullptr;  // <prefix>.watch.<name>: death watch requests
  // The node's agent monitors the target (monitor id); once it stopped, how (guarded by
  // the link's watch_mutex).
  std::uint64_t monitor_id = 0;
  bool unbound = false;  // binding::close() (guarded by the link's mutex)
  bool stopped = false;
  down_reason reason = down_reason::normal;
  std::string detail;
  ~exposure() {
    if (destroy_target) destroy_target();
  }
};

// A subscription to remote events: a bridge into the local topics, or a member of a queue group.
struct topic_sub {
  using forward_fn = void (*)(link&, topic_sub&, natsMsg*);
  struct link* owner = nullptr;
  std::string subject;    // the NATS subject pattern
  bool drop_echo = true;  // a bridge ignores this node's own publishes (delivered locally already)
  forward_fn forward = nullptr;
  address target;                // a group member: the actor
  void* typed_target = nullptr;  // ...as its ref<A> (heap)
  std::function<void()> destroy_target;
  natsSubscription* sub = nullptr;
  std::int64_t dropped_reported = 0;  // of sub's drops (slow consumer), guarded by slow_mutex
  bool unbound = false;               // binding::close() (guarded by the link's mutex)
  // A bridge's way out: its subscription to the local topics (node::bridge), ended by
  // binding::close() or the node's close(), both before the runtime goes (guarded by the mutex).
  troupe::subscription out;
  ~topic_sub() {
    if (destroy_target) destroy_target();
  }
};

// An ask waiting for its reply on the node's inbox.
struct pending_ask {
  troupe::detail::reply_slot_base* slot;  // holds a reference
  void (*complete)(link&, troupe::detail::reply_slot_base*, natsMsg*);
};

// The agent: a troupe actor; all wire input passes through its handler, on troupe's workers.
class agent {
 public:
  explicit agent(std::shared_ptr<link> l) noexcept : link_(std::move(l)) {}
  void on(inbound in) { handle(in); }
  // An exposed actor stopped: answer watch requests so from now on, and tell the watchers.
  inline void on(const troupe::down& d);

 private:
  inline void handle(inbound& in);
  std::shared_ptr<link> link_;
};

struct link {
  std::weak_ptr<link> self;
  troupe::runtime* rt = nullptr;
  troupe::detail::runtime_core* core = nullptr;
  troupe::ref<agent> agent_ref;
  troupe::detail::actor_cell* agent_cell = nullptr;
  natsConnection* conn = nullptr;
  natsSubscription* inbox_sub = nullptr;
  natsSubscription* beat_sub = nullptr;    // <prefix>.node.hb.*: heartbeats (death watch)
  natsSubscription* notice_sub = nullptr;  // <prefix>.down.>: exposed actors that stopped
  std::shared_ptr<watch_table> watch;      // this node's monitors of remote actors
  std::mutex watch_mutex;                  // the exposures' stopped state
  // Slow consumers: the drops reported so far per subscription; subs_gone once close() is about
  // to destroy the subscriptions (no more looking at them).
  std::mutex slow_mutex;
  std::int64_t inbox_dropped_reported = 0;
  bool subs_gone = false;
  std::string name;
  std::string id;  // unique per node: the troupe-from header of events ("<name>/<inbox id>")
  std::string prefix;
  std::string inbox;
  std::size_t max_bytes = 0;  // 0: the server's max payload
  std::function<void(connection_state)> on_state;
  std::function<void(std::string_view, std::uint64_t)> on_slow_consumer;
  int pending_messages = 0;  // per user subscription; 0: nats.c's default
  int pending_bytes = 0;

  std::atomic<bool> closing{false};
  std::atomic<std::uint64_t> c_sent{0}, c_received{0}, c_delivered{0}, c_dead{0}, c_rejected{0},
      c_encode{0}, c_decode{0}, c_late{0}, c_disconnects{0}, c_reconnects{0}, c_events_out{0},
      c_events_in{0}, c_slow{0}, c_bad_traceparent{0};

  std::mutex mutex;  // pending, exposures
  std::unordered_map<std::uint64_t, pending_ask> pending;
  std::size_t sweep_at = 64;
  std::vector<std::unique_ptr<exposure>> exposures;
  std::vector<std::unique_ptr<topic_sub>> topic_subs;

  // nats.c callbacks still able to run: subscriptions not completed, connection not closed.
  std::mutex done_mutex;
  std::condition_variable done_cv;
  int live_callbacks = 0;

  link() = default;
  link(const link&) = delete;
  link& operator=(const link&) = delete;
  ~link() {
    if (conn != nullptr) natsConnection_Destroy(conn);
  }

  [[nodiscard]] bool connected() const noexcept {
    return !closing.load(std::memory_order_acquire) &&
           natsConnection_Status(conn) == NATS_CONN_STATUS_CONNECTED;
  }
  [[nodiscard]] std::size_t limit() const noexcept {
    const std::int64_t server = natsConnection_GetMaxPayload(conn);
    const std::size_t s = server > 0 ? static_cast<std::size_t>(server) : 1024 * 1024;
    return max_bytes != 0 && max_bytes < s ? max_bytes : s;
  }
  static void bump(std::atomic<std::uint64_t>& c) noexcept {
    c.fetch_add(1, std::memory_order_relaxed);
  }

  // A message born on the wire that will not be handled: counted as sent and dead in the local
  // runtime (so its accounting stays whole) and reported like every dead letter.
  void dead_letter(const address& target, std::string_view type, dead_letter_reason reason,
                   std::uint64_t correlation, const std::string& why) noexcept {
    troupe::detail::counter_slot& c = core->counters_here();
    c.add(c.sent);
    core->record_dead_letter(target, type, reason, correlation, why);
  }

  // Builds and publishes one message; returns nats.c's status. Counts it (sent, or
  // events_published for an `event`) when it left.
  natsStatus publish(const std::string& subject, const char* reply, std::string_view type,
                     std::string_view codec, const std::string& bytes,
                     std::initializer_list<std::pair<const char*, std::string>> extra,
                     bool event = false) noexcept {
    natsMsg* m = nullptr;
    natsStatus s =
        natsMsg_Create(&m, subject.c_str(), reply, bytes.data(), static_cast<int>(bytes.size()));
    if (s != NATS_OK) return s;
    msg_ptr owned(m);
    const std::string type_s(type);
    const std::string codec_s(codec);
    s = natsMsgHeader_Set(m, h_type, type_s.c_str());
    if (s == NATS_OK) s = natsMsgHeader_Set(m, h_codec, codec_s.c_str());
    // Only a topic event needs its sender (a bridge drops its own node's events): a header less
    // per send, ask and reply (each is a hash insert and two copies in nats.c).
    if (s == NATS_OK && event) s = natsMsgHeader_Set(m, h_from, id.c_str());
    for (const auto& [k, v] : extra) {
      if (s == NATS_OK) s = natsMsgHeader_Set(m, k, v.c_str());
    }
    if (char tp[56]; s == NATS_OK && current_traceparent(core, tp)) {
      s = natsMsgHeader_Set(m, h_traceparent, tp);
    }
    if (s == NATS_OK) s = natsConnection_PublishMsg(conn, m);
    if (s == NATS_OK) bump(event ? c_events_out : c_sent);
    return s;
  }

  // Death watch of an exposed actor by the agent (so that watch requests can be answered and
  // watchers told when it stops); as context::monitor, from any thread.
  void watch_exposed(exposure& x) {
    troupe::detail::actor_cell* me = troupe::detail::access::cell_of(agent_ref);
    troupe::detail::actor_cell* watched = troupe::detail::access::cell_of(x.target);
    bool already = false;
    troupe::detail::stop_cause cause = troupe::detail::stop_cause::none;
    std::string text;
    {
      std::lock_guard lock(troupe::detail::runtime_core::monitor_lock(watched));
      if (watched->sealed()) {
        already = true;
        cause = watched->exit_cause_;
        // The failure text may be left from an earlier failure the actor was restarted after.
        if (cause == troupe::detail::stop_cause::failed && watched->watch_ != nullptr) {
          text = watched->watch_->failure;
        }
      } else {
        if (watched->watch_ == nullptr) watched->watch_ = new troupe::detail::watch_state;
        watched->watch_->entries.push_back({me, x.monitor_id});
        me->retain();
      }
    }
    if (already) core->deliver_down(me, watched, cause, text, x.monitor_id);
  }
  // Undoes watch_exposed for every exposure (close()): the agent stops before them.
  void unwatch_exposed() noexcept {
    troupe::detail::actor_cell* me = troupe::detail::access::cell_of(agent_ref);
    std::lock_guard guard(mutex);
    for (auto& x : exposures) {
      troupe::detail::actor_cell* watched = troupe::detail::access::cell_of(x->target);
      if (watched == nullptr || x->monitor_id == 0) continue;
      std::lock_guard lock(troupe::detail::runtime_core::monitor_lock(watched));
      if (watched->watch_ == nullptr) continue;
      auto& entries = watched->watch_->entries;
      for (auto it = entries.begin(); it != entries.end(); ++it) {
        if (it->watcher == me && it->id == x->monitor_id) {
          entries.erase(it);
          me->release();  // not the last: the agent still runs
          break;
        }
      }
    }
  }

  // ---- slow consumers ---------------------------------------------------------------------

  struct drop_report {
    std::string subject;
    std::uint64_t dropped;
    address target;
  };
  // Calls f(sub, reported, subject, target) for each subscription of user traffic; slow_mutex
  // held by the caller.
  template <class F>
  void for_each_user_sub(F f) {
    std::lock_guard lock(mutex);
    if (inbox_sub != nullptr) f(inbox_sub, inbox_dropped_reported, inbox, address{});
    for (auto& x : exposures) {
      if (x->sub != nullptr) f(x->sub, x->dropped_reported, x->subject, x->target);
    }
    for (auto& t : topic_subs) {
      if (t->sub != nullptr) f(t->sub, t->dropped_reported, t->subject, t->target);
    }
  }
  // True if nats.c dropped messages not reported yet (any thread; cheap).
  bool drops_unreported() noexcept {
    std::lock_guard lock(slow_mutex);
    if (subs_gone) return false;
    bool any = false;
    for_each_user_sub(
        [&](natsSubscription* s, std::int64_t& reported, const std::string&, const address&) {
          std::int64_t dropped = 0;
          if (natsSubscription_GetDropped(s, &dropped) == NATS_OK && dropped > reported) any = true;
        });
    return any;
  }
  // Counts, dead-letters and reports what nats.c dropped since the last sweep: on the agent's
  // worker, or in close() (the user's thread) for the last ones.
  void sweep_drops() noexcept {
    std::vector<drop_report> found;
    try {
      std::lock_guard lock(slow_mutex);
      if (subs_gone) return;
      for_each_user_sub([&](natsSubscription* s, std::int64_t& reported, const std::string& subject,
                            const address& target) {
        std::int64_t dropped = 0;
        if (natsSubscription_GetDropped(s, &dropped) != NATS_OK || dropped <= reported) return;
        found.push_back({subject, static_cast<std::uint64_t>(dropped - reported), target});
        reported = dropped;
      });
    } catch (...) {  // out of memory: the next sweep reports them
    }
    for (const drop_report& r : found) {
      c_slow.fetch_add(r.dropped, std::memory_order_relaxed);
      std::string why;
      try {
        why = "nats.c dropped it: the subscription to " + r.subject +
              " exceeded its pending limit (a slow consumer)";
      } catch (...) {
      }
      for (std::uint64_t i = 0; i < r.dropped; ++i) {
        dead_letter(r.target, "troupe.nats.message", dead_letter_reason::slow_consumer, 0, why);
      }
      if (on_slow_consumer) {
        try {
          on_slow_consumer(r.subject, r.dropped);
        } catch (...) {  // a throwing hook must not take the bridge down
        }
      }
    }
  }

  // Fails every pending ask (the connection dropped or the node closes).
  void fail_pending(errc code, const std::string& why) noexcept {
    std::unordered_map<std::uint64_t, pending_ask> taken;
    {
      std::lock_guard lock(mutex);
      taken.swap(pending);
    }
    for (auto& [corr, p] : taken) {
      p.slot->fail(code, why);
      p.slot->release();
    }
  }

  // Called with the lock held when an ask is added: drops entries whose ask completed (timed
  // out) without a reply; amortised O(1).
  void sweep_locked() noexcept {
    if (pending.size() < sweep_at) return;
    for (auto it = pending.begin(); it != pending.end();) {
      if (it->second.slot->done()) {
        it->second.slot->release();
        it = pending.erase(it);
      } else {
        ++it;
      }
    }
    sweep_at = std::max<std::size_t>(64, pending.size() * 2);
  }

  // ---- nats.c callbacks: hand over, nothing else --------------------------------------------

  void hand_over(inbound in) noexcept {
    try {
      if (!agent_ref.send(std::move(in))) {
        // The runtime is shutting down: the agent's send was counted and refused there.
      }
    } catch (...) {  // out of memory: the message is lost, and said so
      bump(c_dead);
    }
  }

  // With a trace hook, a message from the wire is queued for the agent with the causation and
  // trace its traceparent header names (the sending handler's message and trace: ids are unique
  // across processes, see node's constructor), so that a trace hook follows one causal chain
  // from process to process. A missing header: a new trace; a malformed one: the same, counted.
  void hand_over_traced(inbound in) noexcept {
    if (!core->tracing()) {
      hand_over(std::move(in));
      return;
    }
    const std::string_view tp = header(in.msg.get(), h_traceparent);
    troupe::detail::message_origin from;
    if (tp.empty() || !parse_traceparent(tp, from)) {
      if (!tp.empty()) bump(c_bad_traceparent);
      hand_over(std::move(in));
      return;
    }
    try {
      troupe::detail::send_message_from<agent>(agent_cell, std::move(in), from);
    } catch (...) {  // out of memory: the message is lost, and said so
      bump(c_dead);
    }
  }

  static void on_exposed(natsConnection*, natsSubscription*, natsMsg* m, void* closure) noexcept {
    auto* x = static_cast<exposure*>(closure);
    link* self = x->owner;
    inbound in;
    in.what = inbound::kind::exposed;
    in.msg.reset(m);
    in.target = x;
    self->hand_over_traced(std::move(in));
  }
  static void on_event(natsConnection*, natsSubscription*, natsMsg* m, void* closure) noexcept {
    auto* t = static_cast<topic_sub*>(closure);
    inbound in;
    in.what = inbound::kind::event;
    in.msg.reset(m);
    in.target = t;
    t->owner->hand_over_traced(std::move(in));
  }
  static void on_reply(natsConnection*, natsSubscription*, natsMsg* m, void* closure) noexcept {
    auto* self = static_cast<link*>(closure);
    if (const char* subject = natsMsg_GetSubject(m); subject != nullptr) {
      // "<inbox>.w<id>": the answer to a watch request, handled here (no actor code runs).
      const std::string_view s(subject);
      if (s.size() > self->inbox.size() + 2 && s[self->inbox.size() + 1] == 'w') {
        std::uint64_t id = 0;
        for (char c : s.substr(self->inbox.size() + 2)) {
          id = (c >= '0' && c <= '9') ? id * 10 + static_cast<std::uint64_t>(c - '0') : 0;
        }
        self->watch->answered(id, m);
        natsMsg_Destroy(m);
        return;
      }
    }
    inbound in;
    in.what = inbound::kind::reply;
    in.msg.reset(m);
    self->hand_over_traced(std::move(in));
  }
  // A watch request for an exposed actor: answered here, from the exposure's state.
  static void on_watch(natsConnection*, natsSubscription*, natsMsg* m, void* closure) noexcept {
    msg_ptr owned(m);
    auto* x = static_cast<exposure*>(closure);
    link& l = *x->owner;
    const char* reply = natsMsg_GetReply(m);
    if (reply == nullptr || *reply == '\0') return;
    try {
      std::string state = "alive";
      std::string detail;
      {
        std::lock_guard lock(l.watch_mutex);
        if (x->stopped) {
          state = std::string(to_string(x->reason));
          detail = x->detail;
        }
      }
      publish_control(
          l.conn, reply, nullptr, detail,
          {{h_node, &l.watch->token()}, {h_beat, &l.watch->interval_text()}, {h_down, &state}});
    } catch (...) {  // out of memory: the watcher's request goes unanswered, and it says so
    }
  }
  static void on_beat(natsConnection*, natsSubscription*, natsMsg* m, void* closure) noexcept {
    static_cast<link*>(closure)->watch->heard(m);
    natsMsg_Destroy(m);
  }
  static void on_notice(natsConnection*, natsSubscription*, natsMsg* m, void* closure) noexcept {
    static_cast<link*>(closure)->watch->noticed(m);
    natsMsg_Destroy(m);
  }

  static void on_state_change(link* self, connection_state s) noexcept {
    if (s == connection_state::disconnected) bump(self->c_disconnects);
    if (s == connection_state::reconnected) bump(self->c_reconnects);
    inbound in;
    in.what = inbound::kind::state;
    in.state = s;
    if (s == connection_state::disconnected || s == connection_state::closed) {
      // The asks fail here, on this nats.c thread, only if the agent cannot take the event; the
      // usual path is the agent's handler.
      if (self->closing.load(std::memory_order_acquire)) return;
    }
    self->hand_over(std::move(in));
  }
  // nats.c's asynchronous errors: a slow consumer is swept on the agent's worker.
  static void on_async_error(natsConnection*, natsSubscription*, natsStatus err,
                             void* closure) noexcept {
    auto* self = static_cast<link*>(closure);
    if (err != NATS_SLOW_CONSUMER || self->closing.load(std::memory_order_acquire)) return;
    inbound in;
    in.what = inbound::kind::slow;
    self->hand_over(std::move(in));
  }
  static void on_disconnected(natsConnection*, void* closure) noexcept {
    on_state_change(static_cast<link*>(closure), connection_state::disconnected);
  }
  static void on_reconnected(natsConnection*, void* closure) noexcept {
    on_state_change(static_cast<link*>(closure), connection_state::reconnected);
  }
  static void on_closed(natsConnection*, void* closure) noexcept {
    static_cast<link*>(closure)->callback_done();
  }
  static void on_sub_complete(void* closure) noexcept {
    static_cast<link*>(closure)->callback_done();
  }
  void callback_done() noexcept {
    std::lock_guard lock(done_mutex);
    --live_callbacks;
    done_cv.notify_all();
  }
  void expect_callback() noexcept {
    std::lock_guard lock(done_mutex);
    ++live_callbacks;
  }
};

// ---- the agent's handler: on a troupe worker ---------------------------------------------------

inline void agent::on(const troupe::down& d) {
  link& l = *link_;
  std::vector<exposure*> hit;
  {
    std::lock_guard lock(l.mutex);
    for (auto& x : l.exposures) {
      if (x->monitor_id == d.monitor_id) hit.push_back(x.get());
    }
  }
  for (exposure* x : hit) {
    {
      std::lock_guard lock(l.watch_mutex);
      x->stopped = true;
      x->reason = d.reason;
      x->detail = d.detail;
    }
    const std::string reason(to_string(d.reason));
    if (!l.closing.load(std::memory_order_acquire)) {
      publish_control(l.conn, l.prefix + ".down." + x->name, nullptr, d.detail,
                      {{h_node, &l.watch->token()}, {h_down, &reason}});
    }
  }
}

inline void agent::handle(inbound& in) {
  link& l = *link_;
  switch (in.what) {
    case inbound::kind::slow:
      l.sweep_drops();
      return;
    case inbound::kind::state:
      if (in.state == connection_state::disconnected) {
        l.fail_pending(errc::disconnected, "the connection to the NATS server dropped");
      }
      if (l.on_state) {
        try {
          l.on_state(in.state);
        } catch (...) {  // a throwing hook must not take the bridge down
        }
      }
      return;
    case inbound::kind::reply: {
      natsMsg* m = in.msg.get();
      const char* subject = natsMsg_GetSubject(m);
      const std::string_view s = subject != nullptr ? subject : "";
      const auto dot = s.rfind('.');
      std::uint64_t corr = 0;
      for (char c : s.substr(dot == std::string_view::npos ? s.size() : dot + 1)) {
        if (c < '0' || c > '9') {
          corr = 0;
          break;
        }
        corr = corr * 10 + static_cast<std::uint64_t>(c - '0');
      }
      pending_ask p{nullptr, nullptr};
      {
        std::lock_guard lock(l.mutex);
        if (auto it = l.pending.find(corr); it != l.pending.end()) {
          p = it->second;
          l.pending.erase(it);
        }
      }
      link::bump(l.c_received);
      if (p.slot == nullptr || p.slot->done()) {
        // Its ask completed first (timed out, failed; perhaps swept since): a late reply. (A
        // timeout that fires from here on is caught by reply_slot::deliver, also a dead letter.)
        if (p.slot != nullptr) p.slot->release();
        link::bump(l.c_late);
        link::bump(l.c_dead);
        l.dead_letter(address{}, "troupe.nats.reply", dead_letter_reason::expired, corr,
                      "a reply from the wire after its ask had completed");
        return;
      }
      p.complete(l, p.slot, m);
      p.slot->release();
      return;
    }
    case inbound::kind::event: {
      auto* t = static_cast<topic_sub*>(in.target);
      natsMsg* m = in.msg.get();
      if (t->drop_echo && header(m, h_from) == l.id) return;  // published here, delivered here
      link::bump(l.c_received);
      link::bump(l.c_events_in);
      t->forward(l, *t, m);
      return;
    }
    case inbound::kind::exposed: {
      auto* x = static_cast<exposure*>(in.target);
      natsMsg* m = in.msg.get();
      link::bump(l.c_received);
      const std::string_view type = header(m, h_type);
      const std::string_view codec = header(m, h_codec);
      const std::string_view bytes = payload(m);
      auto fail = [&](dead_letter_reason why, std::string_view shown, const std::string& detail) {
        link::bump(l.c_dead);
        l.dead_letter(x->target, shown, why, 0, detail);
        const char* reply = natsMsg_GetReply(m);
        if (reply != nullptr && *reply != '\0') {
          // An asker waits: tell it at once rather than after its timeout.
          l.publish(reply, nullptr, "troupe.error", "none", detail,
                    {{h_status, std::to_string(static_cast<int>(why == dead_letter_reason::too_large
                                                                    ? errc::too_large
                                                                    : errc::decode_failed))},
                     {h_error_type, std::string(to_string(why))},
                     {h_corr, std::string(header(m, h_corr))}});
        }
      };
      if (bytes.size() > l.limit()) {
        fail(dead_letter_reason::too_large, "troupe.nats.message",
             std::to_string(bytes.size()) + " bytes on " + x->subject + " (limit " +
                 std::to_string(l.limit()) + ")");
        return;
      }
      const auto it = x->entries.find(type);
      if (it == x->entries.end()) {
        fail(dead_letter_reason::unknown_type, "troupe.nats.message",
             "'" + std::string(type) + "' on " + x->subject + " has no handler here");
        return;
      }
      if (codec != it->second.codec) {
        fail(dead_letter_reason::wrong_codec, it->second.type,
             "'" + std::string(codec) + "' for " + std::string(type) + ", which uses '" +
                 std::string(it->second.codec) + "'");
        return;
      }
      it->second.forward(l, *x, m, bytes);
      return;
    }
  }
}

}  // namespace detail
}  // namespace troupe::nats
