// troupe::nats::node: a runtime attached to a NATS server or cluster, so that its actors can be
// reached from other processes and reach theirs.
//
//   // the shared interface: the actor class itself, or a class that only declares handlers
//   struct deposit { static constexpr std::string_view troupe_wire_name = "bank.deposit"; long
//   cents; }; struct balance { static constexpr std::string_view troupe_wire_name = "bank.balance";
//   }; struct account_api { void on(deposit); long on(balance); };
//
//   // the serving process
//   troupe::runtime rt;
//   troupe::nats::node n(rt, {.servers = {"nats://10.0.0.5:4222"}, .name = "bank-1"});
//   auto acc = rt.spawn<account>();
//   n.expose<deposit, balance>("account", acc);      // each listed type checked against account
//
//   // any other process
//   troupe::nats::node n(rt, {.servers = {...}, .name = "web-7"});
//   auto acc = n.remote<account_api>("account");
//   acc.send(deposit{500});                          // compiles only if account_api handles it
//   long c = acc.ask(balance{}).get();               // or co_await acc.ask(balance{}, 200ms)
//
// On the wire: an exposed actor is the subject "<prefix>.actor.<name>" (a queue group of that
// name, so exposing one name in several processes balances it); headers carry the wire type name,
// the codec id, an ask's correlation id and, with a trace hook, a W3C traceparent (the sending
// handler's trace and message: see tracing.hpp); an ask is a request whose reply comes to the
// node's one inbox ("_INBOX.<id>.<correlation>"). Delivery is at most once (no JetStream), FIFO per
// sender->receiver pair. Remote asks complete like local ones, or at once with errc::no_responders
// (nobody exposes the name), errc::disconnected (the connection dropped: every pending ask fails
// then, not at its timeout), errc::too_large, errc::decode_failed, errc::handler_failed (cause() is
// a troupe::nats::remote_error with the thrown type's name and text), errc::timeout (troupe's
// clock). Bad input on an exposed subject is a dead letter with its reason (decode_failed,
// unknown_type, wrong_codec, too_large).
//
// Threads: nats.c's callbacks only hand messages to an internal actor; decoding, forwarding and
// completing asks run on the runtime's workers. Destroy (or close()) the node before its runtime.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <troupe/nats/binding.hpp>
#include <troupe/nats/detail/dispatch.hpp>
#include <troupe/nats/detail/link.hpp>
#include <troupe/nats/remote_ref.hpp>

namespace troupe::nats {

// How a node connects and names itself. Designated initialisers read well.
struct node_options {
  // The servers of one NATS cluster, tried in order (nats://host:port).
  std::vector<std::string> servers{"nats://127.0.0.1:4222"};
  // This process's name on the wire (the connection name, the troupe-from header of events).
  std::string name = "troupe";
  // Every subject of this system starts with it: "<prefix>.actor.<name>".
  std::string prefix = "troupe";
  // How long the first connection may take before the constructor gives up.
  std::chrono::milliseconds connect_timeout{2000};
  // Between reconnection attempts once connected; reconnection goes on until close().
  std::chrono::milliseconds reconnect_wait{50};
  // The largest payload this node sends or accepts; 0: the server's max_payload.
  std::size_t max_message_bytes = 0;
  // Death watch across processes: this node beats on "<prefix>.node.hb.<id>" every
  // heartbeat_interval; a monitor of a remote actor (remote_ref::monitor) gets
  // down(unreachable) once that actor's node has been silent for heartbeat_misses x its
  // interval (checked every heartbeat_interval here: the bound is misses x theirs + ours).
  // A non-positive interval: the constructor throws error(invalid_argument).
  std::chrono::milliseconds heartbeat_interval{1000};
  unsigned heartbeat_misses = 3;
  // Pending limits of each subscription of user traffic (exposed actors, bridges, queue groups,
  // replies): past them nats.c drops messages (a slow consumer); the node counts each
  // (wire_counters::slow_consumer_drops), dead-letters it (slow_consumer) and calls
  // on_slow_consumer. 0: nats.c's defaults (65,536 messages, 64 MiB).
  int pending_limit_messages = 0;
  int pending_limit_bytes = 0;
  // Called on a runtime worker with a subscription's subject and how many messages it dropped
  // since the last call; must not block.
  std::function<void(std::string_view subject, std::uint64_t dropped)> on_slow_consumer{};
  // Called on connection changes (disconnected, reconnected), on a runtime worker; must
  // not block. Pending asks have already failed when it hears `disconnected`.
  std::function<void(connection_state)> on_state{};
};

// A runtime's attachment to NATS (see the top of this file). Not copyable or movable. Thread-safe:
// any thread may expose, look up, send and ask.
class node {
 public:
  // Connects (throws troupe::error(errc::disconnected) with nats.c's reason if no server of the
  // list answers within connect_timeout) and starts serving replies.
  node(troupe::runtime& rt, node_options options) : link_(std::make_shared<detail::link>()) {
    detail::link& l = *link_;
    l.self = link_;
    l.rt = &rt;
    l.name = std::move(options.name);
    l.prefix = std::move(options.prefix);
    l.max_bytes = options.max_message_bytes;
    l.on_state = std::move(options.on_state);
    l.on_slow_consumer = std::move(options.on_slow_consumer);
    l.pending_messages = options.pending_limit_messages;
    l.pending_bytes = options.pending_limit_bytes;
    if (options.servers.empty()) throw error(errc::disconnected, "node_options::servers is empty");
    if (options.heartbeat_interval.count() <= 0) {
      throw error(errc::invalid_argument, "node_options::heartbeat_interval must be positive");
    }
    l.agent_ref = rt.spawn<detail::agent>(link_);
    l.agent_cell = troupe::detail::access::cell_of(l.agent_ref);
    l.core = l.agent_cell->core();
    // A random range of ids for this runtime from now on (2^20 ids apart at least): message ids
    // stay unique across processes, so causation ids on the wire mean one message each.
    {
      std::random_device entropy;
      const std::uint64_t r = (std::uint64_t{entropy()} << 32) ^ entropy();
      l.core->advance_ids((r & 0x3ff'ffff'ffffULL) << 20);
    }

    natsOptions* o = nullptr;
    check(natsOptions_Create(&o), "natsOptions_Create");
    std::unique_ptr<natsOptions, void (*)(natsOptions*)> opts(o, &natsOptions_Destroy);
    std::vector<const char*> urls;
    for (const auto& s : options.servers) urls.push_back(s.c_str());
    check(natsOptions_SetServers(o, urls.data(), static_cast<int>(urls.size())), "servers");
    check(natsOptions_SetNoRandomize(o, true), "no randomize");
    check(natsOptions_SetName(o, l.name.c_str()), "name");
    check(natsOptions_SetTimeout(o, options.connect_timeout.count()), "timeout");
    check(natsOptions_SetMaxReconnect(o, -1), "max reconnect");
    check(natsOptions_SetReconnectWait(o, options.reconnect_wait.count()), "reconnect wait");
    check(natsOptions_SetDisconnectedCB(o, &detail::link::on_disconnected, &l), "disconnected cb");
    check(natsOptions_SetReconnectedCB(o, &detail::link::on_reconnected, &l), "reconnected cb");
    check(natsOptions_SetClosedCB(o, &detail::link::on_closed, &l), "closed cb");
    check(natsOptions_SetErrorHandler(o, &detail::link::on_async_error, &l), "error handler");
    natsConnection* c = nullptr;
    const natsStatus s = natsConnection_Connect(&c, o);
    if (s != NATS_OK) {
      l.agent_ref.stop();
      throw error(errc::disconnected, std::string("cannot connect to NATS: ") +
                                          natsStatus_GetText(s) + " (" + options.servers.front() +
                                          (options.servers.size() > 1 ? ", ..." : "") + ")");
    }
    l.conn = c;
    l.expect_callback();  // the closed callback
    try {
      natsInbox* inbox = nullptr;
      check(natsInbox_Create(&inbox), "inbox");
      l.inbox = reinterpret_cast<const char*>(inbox);
      natsInbox_Destroy(inbox);
      const std::string token = l.inbox.substr(l.inbox.rfind('.') + 1);
      l.id = l.name + "/" + token;
      l.watch = std::make_shared<detail::watch_table>(
          l.core, l.prefix, token, l.inbox, options.heartbeat_interval, options.heartbeat_misses);
      l.watch->attach(c);
      subscribe(l.inbox + ".*", nullptr, &detail::link::on_reply, &l, &l.inbox_sub, true);
      subscribe(l.prefix + ".node.hb.*", nullptr, &detail::link::on_beat, &l, &l.beat_sub);
      subscribe(l.prefix + ".down.>", nullptr, &detail::link::on_notice, &l, &l.notice_sub);
      l.watch->on_tick = [w = std::weak_ptr<detail::link>(link_)] {
        // Drops of a consumer that stayed slow raise no new nats.c error: look every tick.
        if (auto l = w.lock();
            l && !l->closing.load(std::memory_order_acquire) && l->drops_unreported()) {
          detail::inbound in;
          in.what = detail::inbound::kind::slow;
          l->hand_over(std::move(in));
        }
      };
      l.watch->tick();  // the first beat now, then every interval
      detail::watch_tick::arm(l.core, l.watch, options.heartbeat_interval);
    } catch (...) {
      close();
      throw;
    }
  }

  node(const node&) = delete;
  node& operator=(const node&) = delete;
  ~node() { close(); }

  // Serves the local actor `target` under `name` for the message types Ms (each must be a
  // message A handles and have a wire name: checked at compile time). Asks of a type A replies to
  // are answered. Throws error(invalid_subject) for a name that is not one subject token
  // sequence, error(disconnected) if the node is closed or the subscription fails. The returned
  // binding undoes it (close()); dropping it does not.
  template <class... Ms, Actor A>
  binding expose(std::string_view name, const ref<A>& target) {
    static_assert(sizeof...(Ms) > 0,
                  "troupe::nats::node::expose<M...>(name, ref): list the message types to serve");
    static_assert((detail::actor_serves_message<A, Ms>::value && ...),
                  "troupe::nats::node::expose: the actor has no on(...) handler for a listed "
                  "message type");
    static_assert((troupe::detail::type_has_a_wire_name<Ms>::value && ...),
                  "troupe::nats::node::expose: a listed message type has no wire name (see "
                  "codec.hpp)");
    if (!target) throw error(errc::invalid_ref, "expose() of an empty ref");
    check_name(name);
    detail::link& l = *link_;
    auto x = std::make_unique<detail::exposure>();
    x->owner = &l;
    x->name = std::string(name);
    x->subject = l.prefix + ".actor." + x->name;
    x->target = target;
    auto* typed = new ref<A>(target);
    x->typed_target = typed;
    x->destroy_target = [typed] { delete typed; };
    (x->entries.emplace(
         wire_name_of<Ms>(),
         detail::exposure::entry{codec_id_of<Ms>(), wire_name_of<Ms>(), &detail::forward<A, Ms>}),
     ...);
    x->monitor_id = l.core->next_monitor_id();
    detail::exposure* raw = x.get();
    {
      std::lock_guard lock(l.mutex);
      l.exposures.push_back(std::move(x));
    }
    l.watch_exposed(*raw);
    subscribe(raw->subject, raw->subject.c_str(), &detail::link::on_exposed, raw, &raw->sub, true);
    subscribe(l.prefix + ".watch." + raw->name, raw->subject.c_str(), &detail::link::on_watch, raw,
              &raw->watch_sub);
    return binding(link_, raw, nullptr);
  }

  // Topics across processes, both ways, for events of type E on subjects matching `pattern`
  // (`*`, `>` wildcards):
  // - in: what other processes publish (runtime::publish under their bridges, node::publish) is
  //   published into this runtime's topics, on the same subject, to its local subscribers;
  // - out: what this runtime publishes (runtime::publish, context::publish) goes out too, on the
  //   publishing thread, to other processes' bridges and queue groups (node::subscribe) --
  //   this process's group members included, as a queue group is the only way to them.
  // A process never receives its own event twice: what it sent is not taken back in, and what
  // came in does not go out again (no loop between two bridges). Bridge a pattern once:
  // overlapping bridges send and deliver twice. An event of another type on the pattern is a
  // dead letter (unknown_type); a local event of another type stays local. Throws
  // error(invalid_subject) for a malformed pattern, error(disconnected) once closed. The returned
  // binding undoes both ways (close()).
  template <class E>
  binding bridge(std::string_view pattern) {
    static_assert(troupe::detail::type_has_a_wire_name<E>::value,
                  "troupe::nats::node::bridge<E>: the event type has no wire name (see codec.hpp)");
    check_name(pattern, true);
    detail::link& l = *link_;
    if (l.closing.load(std::memory_order_acquire)) {
      throw error(errc::disconnected, "the node is closed");
    }
    auto t = std::make_unique<detail::topic_sub>();
    t->owner = link_.get();
    t->subject = link_->prefix + ".topic." + std::string(pattern);
    t->forward = &detail::bridge_event<E>;
    {
      auto entry = std::make_shared<troupe::detail::subscriber_entry>(
          l.core, std::make_shared<detail::outbound_bridge<E>>(link_), &troupe::detail::type_tag<E>,
          &detail::outbound_bridge<E>::deliver, std::string(pattern));
      l.core->topics().add(entry);  // validates the pattern as a local one too
      t->out = troupe::subscription(std::move(entry));
    }
    detail::topic_sub* raw = t.get();
    try {
      return add_topic_sub(std::move(t), nullptr);
    } catch (...) {
      std::lock_guard lock(l.mutex);
      raw->out.unsubscribe();
      throw;
    }
  }

  // Publishes `event` on `subject` to this runtime's local subscribers (as runtime::publish) and
  // to every other process's bridges and queue groups, whether or not a bridge of this node
  // covers the subject (it goes out once either way). Returns false (counted as rejected) if it
  // could not go out: closed, too large, not encodable; the local publish happens either way.
  // Throws error(invalid_subject).
  template <class E>
  bool publish(std::string_view subject, E&& event) {
    using event_type = std::remove_cvref_t<E>;
    static_assert(troupe::detail::type_has_a_wire_name<event_type>::value,
                  "troupe::nats::node::publish: the event type has no wire name (see codec.hpp)");
    check_name(subject, false);
    detail::link& l = *link_;
    const bool out = detail::publish_event(l, subject, static_cast<const event_type&>(event));
    detail::publish_locally(l, subject, std::forward<E>(event));
    return out;
  }

  // A consumer group spanning processes: `member` joins the NATS queue group `g` on `pattern`;
  // each event published (node::publish, any process) on a matching subject reaches exactly one
  // member of the group across all processes, this one included. Compiles only if A has
  // on(const E&). Throws error(invalid_subject), error(invalid_ref), error(disconnected). The
  // returned binding takes the member out of the group (close()).
  template <class E, Actor A>
  binding subscribe(std::string_view pattern, const ref<A>& member, const group& g) {
    static_assert(troupe::detail::actor_has_handler_for_event<A, E>::value,
                  "troupe::nats::node::subscribe<E>: the actor has no on(const E&) handler");
    static_assert(troupe::detail::type_has_a_wire_name<E>::value,
                  "troupe::nats::node::subscribe<E>: the event type has no wire name");
    if (!member) throw error(errc::invalid_ref, "subscribe() with an empty ref");
    check_name(pattern, true);
    check_name(g.name, false);
    auto t = std::make_unique<detail::topic_sub>();
    t->owner = link_.get();
    t->subject = link_->prefix + ".topic." + std::string(pattern);
    t->drop_echo = false;  // the queue group is the only path, for this process's members too
    t->forward = &detail::group_event<E, A>;
    t->target = member;
    auto* typed = new ref<A>(member);
    t->typed_target = typed;
    t->destroy_target = [typed] { delete typed; };
    const std::string queue = link_->prefix + ".group." + g.name;
    return add_topic_sub(std::move(t), queue.c_str());
  }

  // A handle on the actor another process exposes as `name`, typed by the interface I: the
  // actor's class or a class that declares its on(...) handlers. Never fails: a name nobody
  // serves shows at use (an ask fails with errc::no_responders).
  template <class I>
  [[nodiscard]] remote_ref<I> remote(std::string_view name) const {
    check_name(name);
    return remote_ref<I>(link_, link_->prefix + ".actor." + std::string(name));
  }

  // Unsubscribes, closes the connection (waiting until nats.c runs none of this node's
  // callbacks), fails the pending asks with errc::disconnected, stops the internal actor.
  // Idempotent; not from a nats.c callback.
  void close() noexcept {
    detail::link& l = *link_;
    if (l.closing.exchange(true, std::memory_order_acq_rel)) return;
    if (l.watch) l.watch->close("the node was closed");  // every monitor of a remote actor
    if (l.conn != nullptr) {
      std::vector<natsSubscription*> subs;
      std::vector<std::string> exposed;
      {
        std::lock_guard lock(l.mutex);
        for (natsSubscription* s : {l.inbox_sub, l.beat_sub, l.notice_sub}) {
          if (s != nullptr) subs.push_back(s);
        }
        for (auto& x : l.exposures) {
          if (x->sub != nullptr) subs.push_back(x->sub);
          if (x->watch_sub != nullptr) subs.push_back(x->watch_sub);
          if (!x->unbound) exposed.push_back(x->name);
        }
        for (auto& t : l.topic_subs) {
          if (t->sub != nullptr) subs.push_back(t->sub);
          t->out.unsubscribe();  // local publishes no longer go out
        }
      }
      // Watchers of what this node exposes hear it now rather than when the heartbeats stop.
      for (const std::string& name : exposed) {
        const std::string reason = "unreachable";
        detail::publish_control(l.conn, l.prefix + ".down." + name, nullptr, "its node closed",
                                {{detail::h_node, &l.watch->token()}, {detail::h_down, &reason}});
      }
      l.sweep_drops();  // the last drops, while the subscriptions can still tell
      {
        std::lock_guard lock(l.slow_mutex);
        l.subs_gone = true;
      }
      for (natsSubscription* s : subs) natsSubscription_Unsubscribe(s);
      natsConnection_Close(l.conn);
      {
        std::unique_lock lock(l.done_mutex);
        l.done_cv.wait(lock, [&l] { return l.live_callbacks == 0; });
      }
      for (natsSubscription* s : subs) natsSubscription_Destroy(s);
    }
    l.fail_pending(errc::disconnected, "the node was closed");
    if (l.agent_ref) {
      l.unwatch_exposed();
      l.agent_ref.stop();
    }
  }

  // What crossed the wire so far (see wire_counters). Thread-safe.
  [[nodiscard]] wire_counters counters() const noexcept {
    const detail::link& l = *link_;
    auto v = [](const std::atomic<std::uint64_t>& a) { return a.load(std::memory_order_relaxed); };
    return {v(l.c_sent),        v(l.c_received),       v(l.c_delivered),  v(l.c_dead),
            v(l.c_rejected),    v(l.c_encode),         v(l.c_decode),     v(l.c_late),
            v(l.c_disconnects), v(l.c_reconnects),     v(l.c_events_out), v(l.c_events_in),
            v(l.c_slow),        v(l.c_bad_traceparent)};
  }

  // True while connected to a server (false while reconnecting and once closed).
  [[nodiscard]] bool connected() const noexcept { return link_->connected(); }
  [[nodiscard]] const std::string& name() const noexcept { return link_->name; }
  // The subject an actor exposed as `name` is served on.
  [[nodiscard]] std::string subject_of(std::string_view name) const {
    return link_->prefix + ".actor." + std::string(name);
  }
  // The raw nats.c connection, e.g. to inject test traffic; owned by the node.
  [[nodiscard]] natsConnection* native_handle() const noexcept { return link_->conn; }
  // Internal: the connection state, shared with what builds on the node (troupe/nats/jetstream.hpp
  // keeps it alive, and with it the connection, while its consumers run).
  [[nodiscard]] const std::shared_ptr<detail::link>& internals() const noexcept { return link_; }

 private:
  static void check(natsStatus s, const char* what) {
    if (s != NATS_OK) {
      throw error(errc::disconnected,
                  std::string("nats.c: ") + what + ": " + natsStatus_GetText(s));
    }
  }
  // Dotted tokens; with `wildcards`, a token may be `*`, and the last one `>`.
  static void check_name(std::string_view name, bool wildcards = false) {
    if (!detail::valid_wire_subject(name, wildcards)) {
      throw error(errc::invalid_subject, "'" + std::string(name) +
                                             "' is not a name for the wire (dotted tokens, no "
                                             "spaces or wildcards)");
    }
  }

  binding add_topic_sub(std::unique_ptr<detail::topic_sub> t, const char* queue) {
    detail::link& l = *link_;
    detail::topic_sub* raw = t.get();
    {
      std::lock_guard lock(l.mutex);
      l.topic_subs.push_back(std::move(t));
    }
    subscribe(raw->subject, queue, &detail::link::on_event, raw, &raw->sub, true);
    return binding(link_, nullptr, raw);
  }

  // `user`: a subscription of user traffic, under the pending limits of node_options.
  void subscribe(const std::string& subject, const char* queue, natsMsgHandler handler,
                 void* closure, natsSubscription** out, bool user = false) {
    detail::link& l = *link_;
    if (l.closing.load(std::memory_order_acquire)) {
      throw error(errc::disconnected, "the node is closed");
    }
    natsSubscription* sub = nullptr;
    natsStatus s =
        queue != nullptr
            ? natsConnection_QueueSubscribe(&sub, l.conn, subject.c_str(), queue, handler, closure)
            : natsConnection_Subscribe(&sub, l.conn, subject.c_str(), handler, closure);
    if (s == NATS_OK && user && (l.pending_messages != 0 || l.pending_bytes != 0)) {
      s = natsSubscription_SetPendingLimits(
          sub, l.pending_messages != 0 ? l.pending_messages : 65536,
          l.pending_bytes != 0 ? l.pending_bytes : 64 * 1024 * 1024);
    }
    if (s == NATS_OK) {
      l.expect_callback();
      s = natsSubscription_SetOnCompleteCB(sub, &detail::link::on_sub_complete, &l);
      if (s != NATS_OK) l.callback_done();
    }
    if (s == NATS_OK) {
      // Make sure the server knows the interest before anyone is told it exists.
      s = natsConnection_FlushTimeout(l.conn, 5000);
    }
    {
      std::lock_guard lock(l.mutex);
      *out = sub;
    }
    check(s, "subscribe");
  }

  std::shared_ptr<detail::link> link_;
};

}  // namespace troupe::nats
