// Out-of-line definitions of address and context, which need the complete runtime core.
// Internal: included only through detail/core.hpp; never by users.
#pragma once

#include <troupe/detail/ask_path.hpp>
#include <troupe/detail/failure_path.hpp>
#include <troupe/detail/runtime_core.hpp>
#include <troupe/detail/send_path.hpp>
#include <troupe/detail/timer_tasks.hpp>

namespace troupe {

inline address::address(const address& other) noexcept : cell_(other.cell_) {
  if (cell_ != nullptr) cell_->retain();
}
inline address& address::operator=(const address& other) noexcept {
  if (other.cell_ != nullptr) other.cell_->retain();
  if (cell_ != nullptr) cell_->release();
  cell_ = other.cell_;
  return *this;
}
inline address& address::operator=(address&& other) noexcept {
  if (this != &other) {
    if (cell_ != nullptr) cell_->release();
    cell_ = std::exchange(other.cell_, nullptr);
  }
  return *this;
}
inline address::~address() {
  if (cell_ != nullptr) cell_->release();
}
inline std::uint64_t address::id() const noexcept {
  return cell_ != nullptr ? cell_->id() : 0;
}
inline std::string_view address::type_name() const noexcept {
  return cell_ != nullptr ? cell_->ops()->type_name : std::string_view{};
}
inline void address::stop() const {
  if (cell_ == nullptr) throw error(errc::invalid_ref, "stop() through an empty address");
  cell_->request_stop(false);
}

namespace detail {
inline actor_cell& cell_of(const context& ctx) noexcept {
  return static_cast<actor_cell&>(const_cast<context&>(ctx));
}
}  // namespace detail

inline address context::self() const noexcept {
  return detail::access::make_address(&detail::cell_of(*this));
}

template <Actor A>
ref<A> context::self_as() const {
  detail::actor_cell& cell = detail::cell_of(*this);
  if (cell.ops()->type_tag != &detail::type_tag<A>) {
    throw error(errc::bad_actor_type, "self_as<" + std::string(detail::type_name<A>()) +
                                          ">() on an actor of type " +
                                          std::string(cell.ops()->type_name));
  }
  return detail::access::make_ref<A>(&cell);
}

inline troupe::runtime& context::runtime() const noexcept {
  troupe::runtime* owner = detail::cell_of(*this).core()->owner();
  if (owner == nullptr) {  // a handler destroyed the runtime object; its shutdown is under way
    std::fputs("troupe: context::runtime() after the runtime object was destroyed\n", stderr);
    std::abort();
  }
  return *owner;
}

template <Actor A, class... Args>
ref<A> context::spawn(Args&&... args) const {
  static_assert(detail::actor_constructible<A, Args...>::value,
                "troupe: spawn<A>(args...): A is constructible neither from "
                "(troupe::context&, args...) nor from (args...)");
  return detail::access::adopt_ref<A>(
      detail::cell_of(*this).core()->template spawn<A>(std::forward<Args>(args)...));
}

inline void context::stop() noexcept {
  detail::cell_of(*this).raise_request(detail::actor_cell::req_stop, std::memory_order_seq_cst);
}

inline detail::sleep_awaiter context::sleep_for(std::chrono::nanoseconds delay) const {
  detail::actor_cell& cell = detail::cell_of(*this);
  return detail::sleep_awaiter{&cell, detail::deadline_after(cell.core()->now(), delay)};
}

inline detail::sleep_awaiter context::sleep_until(
    std::chrono::steady_clock::time_point when) const {
  return detail::sleep_awaiter{&detail::cell_of(*this), when};
}

template <Actor A, class M>
void context::send_after(std::chrono::nanoseconds delay, const ref<A>& target, M&& message) const {
  using message_type = std::remove_cvref_t<M>;
  static_assert(detail::actor_has_handler_for_message<A, message_type>::value,
                "troupe: send_after(): the actor has no on(...) handler for this message type");
  if constexpr (Handles<A, message_type>) {
    detail::send_message_after<A>(detail::access::cell_of(target),
                                  std::chrono::duration_cast<detail::clock::duration>(delay),
                                  std::forward<M>(message));
  }
}

template <class R>
void reply<R>::await_suspend(std::coroutine_handle<> awaiting) noexcept {
  detail::actor_cell* cell = detail::this_thread_identity.cell;
  if (cell == nullptr) {
    std::fputs("troupe: a reply was awaited outside an actor's task handler\n", stderr);
    std::terminate();
  }
  awaiting_ = true;
  slot_->await_from(cell, cell->arm_suspension(awaiting));
}

inline monitor_handle context::monitor(const address& target) {
  detail::actor_cell& self = detail::cell_of(*this);
  detail::actor_cell* watched = detail::access::cell_of(target);
  if (watched == nullptr) throw error(errc::invalid_ref, "monitor() of an empty address");
  if (!self.ops()->handles_down) {
    throw error(errc::no_down_handler,
                std::string(self.ops()->type_name) +
                    " monitors an actor but has no on(troupe::down) handler");
  }
  detail::runtime_core* core = self.core();
  const std::uint64_t id = core->next_monitor_id();
  bool already_stopped = false;
  detail::stop_cause cause = detail::stop_cause::none;
  std::string detail_text;
  {
    std::lock_guard lock(detail::runtime_core::monitor_lock(watched));
    if (watched->sealed()) {
      already_stopped = true;
      cause = watched->exit_cause_;
      // The failure text may be left from an earlier failure the actor was restarted after.
      if (cause == detail::stop_cause::failed && watched->watch_ != nullptr) {
        detail_text = watched->watch_->failure;
      }
    } else {
      if (watched->watch_ == nullptr) watched->watch_ = new detail::watch_state;
      watched->watch_->entries.push_back({&self, id});
      self.retain();
    }
  }
  if (already_stopped) core->deliver_down(&self, watched, cause, detail_text, id);
  return monitor_handle{target, id};
}

inline bool context::demonitor(const monitor_handle& handle) {
  detail::actor_cell& self = detail::cell_of(*this);
  detail::actor_cell* watched = detail::access::cell_of(handle.target);
  if (watched == nullptr) return false;
  std::lock_guard lock(detail::runtime_core::monitor_lock(watched));
  if (watched->watch_ == nullptr) return false;
  auto& entries = watched->watch_->entries;
  for (auto it = entries.begin(); it != entries.end(); ++it) {
    if (it->watcher == &self && it->id == handle.id) {
      entries.erase(it);
      self.release();  // not the last reference: the running actor holds the runtime's
      return true;
    }
  }
  return false;
}

inline std::chrono::steady_clock::time_point context::now() const noexcept {
  return detail::cell_of(*this).core()->now();
}

}  // namespace troupe
