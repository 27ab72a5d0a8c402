// troupe::nats::binding: what node::expose, node::bridge and node::subscribe return -- the handle
// that undoes them.
//
//   auto served = n.expose<deposit, balance>("bank.account", acc);
//   ...
//   served.close();  // "bank.account" is no longer served from here; asks get no_responders
//
// Not RAII: dropping the handle keeps the binding until the node closes (so existing code that
// ignores it keeps working); close() undoes it earlier.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <troupe/nats/detail/link.hpp>

namespace troupe::nats {

class node;

// Undoes one expose, bridge or group subscription. Copyable (copies name the same binding);
// thread-safe.
class binding {
 public:
  binding() = default;

  // Unsubscribes from NATS: no further message arrives for it (those already taken from the
  // wire are still delivered). An exposed name also stops answering death-watch requests, and
  // its watchers get down(unreachable). Returns false if it was already closed, the node is
  // closed or gone, or the handle is empty. Not from a nats.c callback.
  bool close() {
    std::shared_ptr<detail::link> l = link_.lock();
    if (!l || l->closing.load(std::memory_order_acquire)) return false;
    std::vector<natsSubscription*> subs;
    std::string notice;
    {
      std::lock_guard lock(l->mutex);
      if (exposure_ != nullptr && !exposure_->unbound) {
        exposure_->unbound = true;
        subs = {exposure_->sub, exposure_->watch_sub};
        notice = exposure_->name;
      } else if (topic_ != nullptr && !topic_->unbound) {
        topic_->unbound = true;
        subs = {topic_->sub};
        topic_->out.unsubscribe();  // a bridge's way out
      } else {
        return false;
      }
    }
    for (natsSubscription* s : subs) {
      if (s != nullptr) natsSubscription_Unsubscribe(s);  // destroyed when the node closes
    }
    natsConnection_FlushTimeout(l->conn, 5000);  // the server knows before close() returns
    if (!notice.empty()) {
      const std::string reason = "unreachable";
      const std::string why = "no longer exposed there";
      detail::publish_control(l->conn, l->prefix + ".down." + notice, nullptr, why,
                              {{detail::h_node, &l->watch->token()}, {detail::h_down, &reason}});
    }
    return true;
  }

  // True until close() (or the node's close()).
  [[nodiscard]] bool active() const {
    std::shared_ptr<detail::link> l = link_.lock();
    if (!l || l->closing.load(std::memory_order_acquire)) return false;
    std::lock_guard lock(l->mutex);
    return exposure_ != nullptr ? !exposure_->unbound : topic_ != nullptr && !topic_->unbound;
  }

 private:
  friend class node;
  binding(std::weak_ptr<detail::link> l, detail::exposure* x, detail::topic_sub* t) noexcept
      : link_(std::move(l)), exposure_(x), topic_(t) {}

  std::weak_ptr<detail::link> link_;
  detail::exposure* exposure_ = nullptr;  // owned by the link, lives as long as it
  detail::topic_sub* topic_ = nullptr;
};

}  // namespace troupe::nats
