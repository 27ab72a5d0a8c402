// Internal: what the node does with a message from the wire on the agent's worker -- decode it
// and hand it to the exposed actor, the pending ask, the local topics or the group member -- and
// how a reply goes back. Included by troupe/nats/node.hpp.
#pragma once

#include <chrono>
#include <cstdint>
#include <exception>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>

#include <troupe/nats/detail/link.hpp>

namespace troupe::nats {

namespace detail {

template <class R>
void complete_ask(link& l, troupe::detail::reply_slot_base* base, natsMsg* m) {
  auto* slot = static_cast<troupe::detail::reply_slot<R>*>(base);
  link::bump(l.c_delivered);
  if (natsMsg_IsNoResponders(m)) {
    slot->fail(errc::no_responders, "no process exposes the name asked");
    return;
  }
  const std::string_view status = header(m, h_status);
  if (status != "ok") {
    int code = 0;
    for (char c : status) code = (c >= '0' && c <= '9') ? code * 10 + (c - '0') : -1;
    const std::string type(header(m, h_error_type));
    const std::string text(payload(m));
    if (code <= 0 || code > static_cast<int>(errc::decode_failed)) code = 0;
    const errc e = code == 0 ? errc::handler_failed : static_cast<errc>(code);
    if (e == errc::handler_failed) {
      slot->fail(e, "the remote handler threw " + type + ": " + text,
                 std::make_exception_ptr(remote_error(type, text)));
    } else {
      slot->fail(e, "remote: " + (type.empty() ? text : type + ": " + text));
    }
    return;
  }
  if (header(m, h_type) != wire_name_of<R>() || header(m, h_codec) != codec_id_of<R>()) {
    link::bump(l.c_decode);
    slot->fail(errc::decode_failed, "the reply is a " + std::string(header(m, h_type)) + " (" +
                                        std::string(header(m, h_codec)) + "), not a " +
                                        std::string(wire_name_of<R>()));
    return;
  }
  auto d = troupe::decode<R>(payload(m));
  if (!d) {
    link::bump(l.c_decode);
    slot->fail(errc::decode_failed, "the reply: " + d.error());
    return;
  }
  slot->deliver(std::move(d).value());
}

// Sends the outcome of a local ask that came from the wire back to the asker (any thread).
template <class R>
void send_reply(link& l, const std::string& to, const std::string& corr, result<R>& r) {
  if (r.has_value()) {
    std::string bytes;
    try {
      troupe::encode(r.value(), bytes);
    } catch (...) {
      link::bump(l.c_encode);
      const auto [type, text] = describe_exception(std::current_exception());
      l.publish(to, nullptr, "troupe.error", "none", "the reply could not be encoded: " + text,
                {{h_status, std::to_string(static_cast<int>(errc::handler_failed))},
                 {h_error_type, type},
                 {h_corr, corr}});
      return;
    }
    const natsStatus s = l.publish(to, nullptr, wire_name_of<R>(), codec_id_of<R>(), bytes,
                                   {{h_status, "ok"}, {h_corr, corr}});
    if (s == NATS_MAX_PAYLOAD) {
      l.publish(to, nullptr, "troupe.error", "none",
                "a " + std::to_string(bytes.size()) + "-byte reply exceeds the server's limit",
                {{h_status, std::to_string(static_cast<int>(errc::too_large))}, {h_corr, corr}});
    }
    return;
  }
  errc code = errc::handler_failed;
  std::string type;
  std::string text;
  try {
    std::rethrow_exception(r.error());
  } catch (const troupe::error& e) {
    code = e.code();
    text = e.what();
    if (e.cause()) std::tie(type, text) = describe_exception(e.cause());
  } catch (...) {
    std::tie(type, text) = describe_exception(std::current_exception());
  }
  l.publish(
      to, nullptr, "troupe.error", "none", text,
      {{h_status, std::to_string(static_cast<int>(code))}, {h_error_type, type}, {h_corr, corr}});
}

inline std::chrono::nanoseconds timeout_of(natsMsg* m, std::chrono::nanoseconds fallback) {
  std::uint64_t us = 0;
  const std::string_view v = header(m, h_timeout);
  if (v.empty() || v.size() > 12) return fallback;
  for (char c : v) {
    if (c < '0' || c > '9') return fallback;
    us = us * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return std::chrono::microseconds(us);
}

// Spelled as a class template so that compilers print both type names when it is false.
template <class ActorType, class MessageType>
struct actor_serves_message {
  static constexpr bool value = Handles<ActorType, MessageType> || Replies<ActorType, MessageType>;
};

// Decodes an M that came for the exposed actor of class A and hands it over (agent's worker).
template <class A, class M>
void forward(link& l, exposure& x, natsMsg* m, std::string_view bytes) {
  auto d = troupe::decode<M>(bytes);
  const char* reply = natsMsg_GetReply(m);
  const bool asked = reply != nullptr && *reply != '\0';
  if (!d) {
    link::bump(l.c_decode);
    link::bump(l.c_dead);
    l.dead_letter(x.target, wire_name_of<M>(), dead_letter_reason::decode_failed, 0,
                  d.error() + " (on " + x.subject + ")");
    if (asked) {
      l.publish(reply, nullptr, "troupe.error", "none", d.error(),
                {{h_status, std::to_string(static_cast<int>(errc::decode_failed))},
                 {h_error_type, "decode failed"},
                 {h_corr, std::string(header(m, h_corr))}});
    }
    return;
  }
  const auto& target = *static_cast<const ref<A>*>(x.typed_target);
  link::bump(l.c_delivered);
  if constexpr (Replies<A, M>) {
    if (asked || !Handles<A, M>) {  // a plain send to a promise handler: an ask, reply dropped
      using R = reply_type_t<A, M>;
      auto r = target.ask(std::move(d).value(), timeout_of(m, l.core->options().ask_timeout));
      std::move(r).then([self = asked ? l.self.lock() : nullptr,
                         to = asked ? std::string(reply) : std::string(),
                         corr = std::string(header(m, h_corr))](result<R> res) mutable {
        if (self) send_reply<R>(*self, to, corr, res);
      });
      return;
    }
  }
  if constexpr (Handles<A, M>) target.send(std::move(d).value());
}

// The wire type of a topic event, checked: returns the entry's forward or reports a dead letter.
inline bool check_event(link& l, natsMsg* m, std::string_view type, std::string_view codec,
                        const address& target) {
  const std::string_view t = header(m, h_type);
  const std::string_view c = header(m, h_codec);
  if (t != type) {
    link::bump(l.c_dead);
    l.dead_letter(target, "troupe.nats.event", dead_letter_reason::unknown_type, 0,
                  "'" + std::string(t) + "' on " + natsMsg_GetSubject(m) + ", where " +
                      std::string(type) + " is expected");
    return false;
  }
  if (c != codec) {
    link::bump(l.c_dead);
    l.dead_letter(target, type, dead_letter_reason::wrong_codec, 0,
                  "'" + std::string(c) + "' for " + std::string(type));
    return false;
  }
  if (payload(m).size() > l.limit()) {
    link::bump(l.c_dead);
    l.dead_letter(target, type, dead_letter_reason::too_large, 0,
                  std::to_string(payload(m).size()) + " bytes on " + natsMsg_GetSubject(m));
    return false;
  }
  return true;
}

template <class E>
std::optional<E> decode_event(link& l, natsMsg* m, const address& target) {
  if (!check_event(l, m, wire_name_of<E>(), codec_id_of<E>(), target)) return std::nullopt;
  auto d = troupe::decode<E>(payload(m));
  if (!d) {
    link::bump(l.c_decode);
    link::bump(l.c_dead);
    l.dead_letter(target, wire_name_of<E>(), dead_letter_reason::decode_failed, 0,
                  d.error() + " (on " + natsMsg_GetSubject(m) + ")");
    return std::nullopt;
  }
  return std::optional<E>(std::move(d).value());
}

// Publishes into the local topics what is already on the wire (see publishing_from_wire).
template <class E>
void publish_locally(link& l, std::string_view subject, E&& event) {
  struct guard {
    guard() noexcept { publishing_from_wire = true; }
    ~guard() { publishing_from_wire = false; }
  } g;
  l.rt->publish(subject, std::forward<E>(event));
}

// Encodes and publishes a topic event on "<prefix>.topic.<subject>"; false (counted as rejected)
// if it could not go out: closed, not a wire subject, too large, not encodable.
template <class E>
bool publish_event(link& l, std::string_view subject, const E& event) {
  std::string bytes;
  try {
    troupe::encode(event, bytes);
  } catch (...) {
    link::bump(l.c_encode);
    link::bump(l.c_rejected);
    return false;
  }
  const bool out = !l.closing.load(std::memory_order_acquire) && bytes.size() <= l.limit() &&
                   valid_wire_subject(subject, false) &&
                   l.publish(l.prefix + ".topic." + std::string(subject), nullptr,
                             wire_name_of<E>(), codec_id_of<E>(), bytes, {}, true) == NATS_OK;
  if (!out) link::bump(l.c_rejected);
  return out;
}

// A bridge's way out: a subscription to the local topics whose deliveries, on the publishing
// thread, publish the event to NATS -- unless the node itself is publishing it locally (it came
// from the wire, or node::publish sent it already).
template <class E>
struct outbound_bridge final : troupe::detail::event_sink {
  explicit outbound_bridge(std::weak_ptr<link> l) noexcept : owner(std::move(l)) {}
  bool take(const std::shared_ptr<const void>&, std::uint64_t) override { return false; }
  static bool deliver(const troupe::detail::subscriber_entry& entry,
                      const std::shared_ptr<const void>& event, std::uint64_t,
                      std::string_view subject) {
    if (publishing_from_wire) return false;
    const std::shared_ptr<link> l = static_cast<const outbound_bridge&>(*entry.sink).owner.lock();
    if (!l || l->closing.load(std::memory_order_acquire)) return false;
    return publish_event(*l, subject, *static_cast<const E*>(event.get()));
  }
  std::weak_ptr<link> owner;
};

// A remote event into the local topics, on its subject without the node's prefix.
template <class E>
void bridge_event(link& l, topic_sub&, natsMsg* m) {
  auto e = decode_event<E>(l, m, address{});
  if (!e) return;
  const std::string_view subject =
      std::string_view(natsMsg_GetSubject(m)).substr(l.prefix.size() + 7);
  link::bump(l.c_delivered);
  publish_locally(l, subject, std::move(*e));
}

// A remote event to the one member of a queue group that NATS chose: this actor.
template <class E, class A>
void group_event(link& l, topic_sub& t, natsMsg* m) {
  auto e = decode_event<E>(l, m, t.target);
  if (!e) return;
  link::bump(l.c_delivered);
  static_cast<const ref<A>*>(t.typed_target)->send(std::move(*e));
}

}  // namespace detail

}  // namespace troupe::nats
