// troupe::nats::remote_ref<I>: a typed handle to an actor another process exposes (see
// troupe/nats/node.hpp, node::remote). send and ask carry the compile-time checks of a local
// troupe::ref, against the interface I: the actor's class, or a class that only declares its
// on(...) handlers.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <type_traits>
#include <utility>

#include <troupe/nats/detail/dispatch.hpp>
#include <troupe/nats/detail/link.hpp>

namespace troupe::nats {

class node;

// A typed handle to an actor in another process (node::remote). Copyable, thread-safe; keeps
// the node's connection state alive but not the node (after close() sends are refused).
template <class I>
class remote_ref {
 public:
  remote_ref() = default;

  // Point-to-point, fire-and-forget, at most once. Compiles only if I handles M and M has a wire
  // name. Returns true when the message was handed to the connection (nats.c buffers it while
  // reconnecting); false, counted as rejected, when the node is closed, the message could not be
  // encoded or is too large. Throws error(invalid_ref) on an empty handle.
  template <class M>
  bool send(M&& message) const {
    using message_type = std::remove_cvref_t<M>;
    static_assert(troupe::detail::actor_has_handler_for_message<I, message_type>::value,
                  "troupe: send() to a remote actor: its interface has no on(...) handler for "
                  "this message type");
    if constexpr (Handles<I, message_type>) {
      detail::link& l = get();
      std::string bytes;
      if (!encode(l, message, bytes)) return false;
      const natsStatus s = l.closing.load(std::memory_order_acquire) ? NATS_CONNECTION_CLOSED
                           : bytes.size() > l.limit()
                               ? NATS_MAX_PAYLOAD
                               : l.publish(subject_, nullptr, wire_name_of<message_type>(),
                                           codec_id_of<message_type>(), bytes, {});
      if (s != NATS_OK) {
        reject(l);
        return false;
      }
      return true;
    } else {
      return false;
    }
  }

  // Request-reply across processes: a troupe::reply<R> (see ask.hpp) that completes with the
  // reply or an error saying why (see node.hpp's top). The first form uses the runtime's
  // ask_timeout. Compiles only if I has a replying handler for M.
  template <class M>
  auto ask(M&& message) const {
    return ask_impl(std::forward<M>(message), std::chrono::nanoseconds{0}, true);
  }
  template <class M>
  auto ask(M&& message, std::chrono::nanoseconds timeout) const {
    return ask_impl(std::forward<M>(message), timeout, false);
  }

  // Death watch across processes: `ctx`'s actor (it needs an on(troupe::down) handler: else
  // error(no_down_handler)) receives one troupe::down with this handle's monitor id: reason
  // normal, failed or shutdown when the remote actor stopped (its node says so), unreachable
  // when its node misses heartbeats (see node_options), nobody exposes the name, or this node
  // closes. `who` is empty; `detail` names the actor and says why. Call it from ctx's actor.
  troupe::monitor_handle monitor(context& ctx) const {
    detail::link& l = get();
    troupe::detail::actor_cell& self = troupe::detail::cell_of(ctx);
    if (!self.ops()->handles_down) {
      throw error(errc::no_down_handler, std::string(self.ops()->type_name) +
                                             " monitors a remote actor but has no "
                                             "on(troupe::down) handler");
    }
    if (self.core() != l.core) {
      throw error(errc::invalid_ref, "monitor() from an actor of another runtime than the node's");
    }
    return troupe::monitor_handle{address{},
                                  l.watch->watch(&self, subject_.substr(l.prefix.size() + 7))};
  }
  // Cancels a monitor; false if its down was already sent (it still arrives). Any thread.
  bool demonitor(const troupe::monitor_handle& handle) const {
    return get().watch->unwatch(handle.id);
  }

  // The subject this handle sends to.
  [[nodiscard]] const std::string& subject() const noexcept { return subject_; }
  explicit operator bool() const noexcept { return static_cast<bool>(link_); }

 private:
  friend class node;
  remote_ref(std::shared_ptr<detail::link> l, std::string subject)
      : link_(std::move(l)), subject_(std::move(subject)) {}

  detail::link& get() const {
    if (!link_) throw error(errc::invalid_ref, "send() or ask() through an empty remote_ref");
    return *link_;
  }
  static void reject(detail::link& l) {
    detail::link::bump(l.c_rejected);
    l.core->count_rejected_send();
  }
  template <class M>
  static bool encode(detail::link& l, const M& message, std::string& bytes) {
    try {
      troupe::encode(message, bytes);
      return true;
    } catch (...) {
      detail::link::bump(l.c_encode);
      reject(l);
      return false;
    }
  }

  template <class M>
  auto ask_impl(M&& message, std::chrono::nanoseconds timeout, bool use_default) const {
    using message_type = std::remove_cvref_t<M>;
    static_assert(troupe::detail::actor_has_replying_handler_for_message<I, message_type>::value,
                  "troupe: ask() of a remote actor: its interface has no on(...) handler for "
                  "this message that replies");
    if constexpr (Replies<I, message_type>) {
      using R = reply_type_t<I, message_type>;
      static_assert(troupe::detail::type_has_a_wire_name<R>::value,
                    "troupe: ask() of a remote actor: the reply type has no wire name");
      detail::link& l = get();
      troupe::detail::runtime_core* core = l.core;
      if (use_default) timeout = core->options().ask_timeout;
      const auto& id = troupe::detail::this_thread_identity;
      troupe::detail::actor_cell* asker = id.core == core ? id.cell : nullptr;
      troupe::detail::actor_cell* agent = troupe::detail::access::cell_of(l.agent_ref);
      auto* slot = new troupe::detail::reply_slot<R>(agent, core->next_correlation(),
                                                     troupe::detail::access::make_address(asker));
      reply<R> result(slot);
      std::string bytes;
      if (!encode(l, message, bytes)) {
        slot->fail(errc::decode_failed, "the request could not be encoded");
        return result;
      }
      if (bytes.size() > l.limit()) {
        reject(l);
        slot->fail(errc::too_large, "a " + std::to_string(bytes.size()) +
                                        "-byte request exceeds the limit of " +
                                        std::to_string(l.limit()));
        return result;
      }
      const std::uint64_t corr = slot->correlation();
      {
        std::lock_guard lock(l.mutex);
        l.sweep_locked();
        slot->retain();  // the pending entry's
        l.pending.emplace(corr, detail::pending_ask{slot, &detail::complete_ask<R>});
      }
      // Registered first, then checked: a drop after this check fails it through the agent.
      if (!l.connected()) {
        take_back(l, corr);
        reject(l);
        slot->fail(errc::disconnected,
                   l.closing.load() ? "the node is closed" : "not connected to a NATS server");
        return result;
      }
      auto clock_timeout = std::chrono::duration_cast<troupe::detail::clock::duration>(timeout);
      core->timers().schedule(
          core->now() + clock_timeout,
          std::make_unique<troupe::detail::ask_timeout_task>(slot, clock_timeout), &slot->timer_);
      const std::string reply_to = l.inbox + "." + std::to_string(corr);
      const natsStatus s = l.publish(
          subject_, reply_to.c_str(), wire_name_of<message_type>(), codec_id_of<message_type>(),
          bytes,
          {{detail::h_corr, std::to_string(corr)},
           {detail::h_timeout,
            std::to_string(
                std::chrono::duration_cast<std::chrono::microseconds>(timeout).count())}});
      if (s != NATS_OK) {
        take_back(l, corr);
        reject(l);
        slot->fail(s == NATS_MAX_PAYLOAD ? errc::too_large : errc::disconnected,
                   std::string("nats.c: ") + natsStatus_GetText(s));
      }
      return result;
    }
  }

  static void take_back(detail::link& l, std::uint64_t corr) {
    troupe::detail::reply_slot_base* slot = nullptr;
    {
      std::lock_guard lock(l.mutex);
      if (auto it = l.pending.find(corr); it != l.pending.end()) {
        slot = it->second.slot;
        l.pending.erase(it);
      }
    }
    if (slot != nullptr) slot->release();
  }

  std::shared_ptr<detail::link> link_;
  std::string subject_;
};

}  // namespace troupe::nats
