// Links: ctx.link / ctx.unlink, and the exit signal a stopping actor sends its linked actors.
// A link is two watch entries flagged `link`, one in each actor's watch list (each retaining
// the other), added and removed together under both actors' monitor locks.
// Internal: included only through detail/core.hpp; never by users.
#pragma once

#include <mutex>

#include <troupe/detail/failure_path.hpp>
#include <troupe/detail/handles.hpp>
#include <troupe/detail/runtime_core.hpp>
#include <troupe/link.hpp>

namespace troupe::detail {

// Locks the monitor locks of two actors (one lock if they share a stripe), deadlock-free.
class pair_lock {
 public:
  pair_lock(const actor_cell* a, const actor_cell* b)
      : first_(runtime_core::monitor_lock(a)), second_(runtime_core::monitor_lock(b)) {
    if (&first_ == &second_) {
      first_.lock();
    } else {
      std::lock(first_, second_);
    }
  }
  ~pair_lock() {
    first_.unlock();
    if (&first_ != &second_) second_.unlock();
  }
  pair_lock(const pair_lock&) = delete;
  pair_lock& operator=(const pair_lock&) = delete;

 private:
  std::mutex& first_;
  std::mutex& second_;
};

// Removes (under the caller's lock) the link entry for `peer` from `cell`'s list; the
// reference it held on `peer` is the caller's to release. False if there was none.
inline bool erase_link_entry(actor_cell* cell, const actor_cell* peer) noexcept {
  if (cell->watch_ == nullptr) return false;
  auto& entries = cell->watch_->entries;
  for (auto it = entries.begin(); it != entries.end(); ++it) {
    if (it->link && it->watcher == peer) {
      entries.erase(it);
      return true;
    }
  }
  return false;
}

// This actor stopped and took its own list: remove the other half of the link from `peer`.
// False if `peer` already stopped too (its list was taken; no signal is due: its mailbox is
// closed).
inline bool actor_cell::drop_link_back(actor_cell* peer) noexcept {
  bool dropped = false;
  bool alive = false;
  {
    std::lock_guard lock(runtime_core::monitor_lock(peer));
    dropped = erase_link_entry(peer, this);
    alive = !peer->sealed() && !peer->closed();
  }
  if (dropped) release();  // not the last reference: finalize still holds the runtime's
  return alive;
}

// The signal of a link: an exit_signal message for an actor that traps exits; for any other,
// a message whose handling fails it (a troupe::link_failed) when `from` failed.
struct link_failure {
  address from;
  std::string what;
};

inline handler_start fail_linked(actor_cell&, envelope& e) {
  auto& m = static_cast<message_envelope<link_failure>&>(e).message;
  throw link_failed(m.from, m.what);
}

inline constexpr envelope_ops link_failure_ops{&fail_linked, &destroy_envelope<link_failure>,
                                               type_name<exit_signal>()};

inline void send_exit_signal(actor_cell* to, actor_cell* from, stop_cause cause,
                             const std::string& detail) noexcept {
  runtime_core* core = to->core();
  try {
    const down_reason reason = cause == stop_cause::failed     ? down_reason::failed
                               : cause == stop_cause::shutdown ? down_reason::shutdown
                                                               : down_reason::normal;
    if (to->ops()->traps_exits) {
      envelope* e = to->ops()->make_exit(exit_signal{access::make_address(from), reason, detail});
      core->post(to, e, true);
    } else if (reason == down_reason::failed) {
      const std::string_view type = from->ops()->type_name;
      std::string what = "linked actor " + std::string(type) + "#" + std::to_string(from->id()) +
                         " failed: " + detail;
      auto* e = new message_envelope<link_failure>(
          &link_failure_ops, link_failure{access::make_address(from), std::move(what)});
      core->post(to, e, true);
    }
  } catch (...) {  // out of memory: the signal is lost, and said so
    core->record_dead_letter(to, type_name<exit_signal>(), dead_letter_reason::target_stopped, 0,
                             "could not allocate the exit signal");
  }
}

}  // namespace troupe::detail

namespace troupe {

inline void context::link(const address& other) {
  detail::actor_cell& self = detail::cell_of(*this);
  detail::actor_cell* peer = detail::access::cell_of(other);
  if (peer == nullptr) throw error(errc::invalid_ref, "link() to an empty address");
  if (peer == &self) throw error(errc::invalid_ref, "link() of an actor to itself");
  bool already_stopped = false;
  detail::stop_cause cause = detail::stop_cause::none;
  std::string detail_text;
  {
    detail::pair_lock lock(&self, peer);
    if (peer->sealed()) {
      already_stopped = true;
      cause = peer->exit_cause_;
      // The failure text may be left from an earlier failure the actor was restarted after.
      if (cause == detail::stop_cause::failed && peer->watch_ != nullptr) {
        detail_text = peer->watch_->failure;
      }
    } else {
      if (self.watch_ == nullptr) self.watch_ = new detail::watch_state;
      for (const auto& e : self.watch_->entries) {
        if (e.link && e.watcher == peer) return;  // already linked: one link
      }
      if (peer->watch_ == nullptr) peer->watch_ = new detail::watch_state;
      self.watch_->entries.reserve(self.watch_->entries.size() + 1);  // no throw after this
      peer->watch_->entries.push_back({&self, 0, 0, true});
      self.watch_->entries.push_back({peer, 0, 0, true});
      self.retain();
      peer->retain();
    }
  }
  if (already_stopped) detail::send_exit_signal(&self, peer, cause, detail_text);
}

inline bool context::unlink(const address& other) {
  detail::actor_cell& self = detail::cell_of(*this);
  detail::actor_cell* peer = detail::access::cell_of(other);
  if (peer == nullptr || peer == &self) return false;
  bool mine = false;
  bool theirs = false;
  {
    detail::pair_lock lock(&self, peer);
    mine = detail::erase_link_entry(&self, peer);
    theirs = detail::erase_link_entry(peer, &self);
  }
  // Neither is the last reference: `other` holds the peer, and this running actor itself.
  if (mine) peer->release();
  if (theirs) self.release();
  return mine;
}

}  // namespace troupe
