// Request-reply: ref<A>::ask(message) returns a troupe::reply<R>; a handler's return value (or
// its task's result, or a troupe::promise<R> it fulfils later) is the reply.
//
//   struct balance {};                        // a request
//   class account { long on(balance) const { return cents_; } ... };
//   long c = acc.ask(balance{}).get();        // from a plain thread (blocks)
//   long c = co_await acc.ask(balance{}, 200ms);  // inside a task handler (suspends only it)
//   acc.ask(balance{}).then([](troupe::result<long> r) { ... });  // callback
//
// Every ask completes exactly once: with the reply, or with a troupe::error whose code() says
// why — timeout, actor_stopped (at once, not after the timeout), handler_failed (cause() is the
// handler's exception), runtime_stopped, mailbox_full, broken_promise, deadlock (at once: an
// actor awaited an ask to an actor that awaits it, directly or through others; the error names
// the cycle). Each ask carries a correlation id that dead letters show.
#pragma once

#include <coroutine>
#include <cstdint>
#include <exception>
#include <optional>
#include <type_traits>
#include <utility>

#include <troupe/detail/counters.hpp>
#include <troupe/detail/fwd.hpp>
#include <troupe/detail/reply_slot.hpp>
#include <troupe/error.hpp>
#include <troupe/handler.hpp>

namespace troupe {

// The outcome of an ask, handed to a then() callback: a value or an error.
template <class R>
class result {
 public:
  // A completed ask's value, or its error (an exception_ptr to a troupe::error).
  explicit result(R value) : value_(std::move(value)) {}
  explicit result(std::exception_ptr error) noexcept : error_(std::move(error)) {}

  // True if the ask produced a value; then value() does not throw.
  [[nodiscard]] bool has_value() const noexcept { return value_.has_value(); }
  explicit operator bool() const noexcept { return has_value(); }
  // The value; rethrows the error (a troupe::error) if there is none.
  R& value() & {
    if (!value_) std::rethrow_exception(error_);
    return *value_;
  }
  R&& value() && { return std::move(value()); }
  // The error when there is no value (null otherwise); rethrow it to see its errc.
  [[nodiscard]] const std::exception_ptr& error() const noexcept { return error_; }

 private:
  std::optional<R> value_;
  std::exception_ptr error_;
};

// A reply that will arrive. Move-only; wait for it once, in one of three ways. Dropping it
// without waiting is fine: the reply is then discarded when it arrives.
template <class R>
class [[nodiscard]] reply {
 public:
  // The reply's type, and the tag that lets a task handler co_await a reply.
  using value_type = R;
  using troupe_awaitable = void;

  // Made by ref::ask(); the reply shares the ask's state with the replying side.
  explicit reply(detail::reply_slot<R>* slot) noexcept : slot_(slot) {}
  reply(reply&& other) noexcept
      : slot_(std::exchange(other.slot_, nullptr)),
        awaiting_(std::exchange(other.awaiting_, false)) {}
  reply& operator=(reply&& other) noexcept {
    if (this != &other) {
      drop();
      slot_ = std::exchange(other.slot_, nullptr);
      awaiting_ = std::exchange(other.awaiting_, false);
    }
    return *this;
  }
  reply(const reply&) = delete;
  reply& operator=(const reply&) = delete;
  ~reply() { drop(); }

  // The ask's id, as dead letters and then() callbacks report it. Not on a moved-from reply.
  [[nodiscard]] std::uint64_t correlation_id() const noexcept { return slot_->correlation(); }
  // True once the ask has completed (get() would not block). Not on a moved-from reply.
  [[nodiscard]] bool ready() const noexcept { return slot_->done(); }

  // Blocks the calling thread until the ask completes; returns the reply or throws
  // troupe::error. Throws error(would_block) on one of a runtime's own threads, where blocking
  // could deadlock the runtime: there, co_await the reply instead.
  R get() {
    if (detail::this_thread_identity.core != nullptr) {
      throw error(errc::would_block,
                  "reply::get() on a runtime thread; co_await the reply in a task handler");
    }
    slot_->wait_or_drive();
    return slot_->take();
  }

  // Calls f(troupe::result<R>) once, when the ask completes: on the completing thread (a
  // worker or the timer thread: keep it short, never block) or at once if it already has.
  template <class F>
  requires std::is_invocable_v<F&, result<R>>
  void then(F f) && {
    detail::reply_slot<R>* slot = std::exchange(slot_, nullptr);
    slot->call_when_done([slot, f = std::move(f)]() mutable {
      try {
        if (slot->error()) {
          f(result<R>(slot->error()));
        } else {
          f(result<R>(slot->take()));
        }
      } catch (...) {  // the callback's own exception has nowhere to go
      }
      slot->release();
    });
  }

  // Awaiting inside a task handler suspends only that handler; the actor stays busy and
  // resumes through its scheduler when the ask completes.
  bool await_ready() const noexcept { return slot_->done(); }
  inline void await_suspend(std::coroutine_handle<> awaiting) noexcept;
  R await_resume() {
    if (awaiting_) {
      awaiting_ = false;
      slot_->end_await();
    }
    return slot_->take();
  }

 private:
  void drop() noexcept {
    if (slot_ == nullptr) return;
    if (awaiting_) slot_->end_await();  // an abandoned (stopped) handler awaits no more
    slot_->release();
  }

  detail::reply_slot<R>* slot_;
  bool awaiting_ = false;  // suspended on it, in the wait-for graph (detail/await_graph.hpp)
};

// The right to reply later, possibly from another thread or actor: a handler of the form
// `void on(request, troupe::promise<R> reply)` receives it. Move-only. set_value once;
// dropping a promise that was never fulfilled completes the ask with error(broken_promise),
// so an asker never hangs on a forgotten reply.
template <class R>
class promise {
 public:
  // Made by the runtime for a handler that takes a promise; user code only moves it.
  explicit promise(detail::reply_slot<R>* slot) noexcept : slot_(slot) {}
  promise(promise&& other) noexcept : slot_(std::exchange(other.slot_, nullptr)) {}
  promise& operator=(promise&& other) noexcept {
    if (this != &other) {
      abandon();
      slot_ = std::exchange(other.slot_, nullptr);
    }
    return *this;
  }
  promise(const promise&) = delete;
  promise& operator=(const promise&) = delete;
  ~promise() { abandon(); }

  // Completes the ask with `value`. Returns false if the ask had already completed (timed
  // out): the late reply is then dead-lettered as expired. Throws error(broken_promise) if this
  // promise was already used or moved from.
  bool set_value(R value) {
    if (slot_ == nullptr) throw error(errc::broken_promise, "set_value on a used promise");
    detail::reply_slot<R>* slot = std::exchange(slot_, nullptr);
    const bool delivered = slot->deliver(std::move(value));
    slot->release();
    return delivered;
  }

  // Completes the ask with error(handler_failed) whose cause() is `cause`.
  void set_exception(std::exception_ptr cause) {
    if (slot_ == nullptr) throw error(errc::broken_promise, "set_exception on a used promise");
    detail::reply_slot<R>* slot = std::exchange(slot_, nullptr);
    slot->fail(errc::handler_failed, "the handler replied with an exception", std::move(cause));
    slot->release();
  }

  // False once used (set_value / set_exception) or moved from.
  [[nodiscard]] bool valid() const noexcept { return slot_ != nullptr; }
  // The ask's id (0 once the promise is used or moved from).
  [[nodiscard]] std::uint64_t correlation_id() const noexcept {
    return slot_ != nullptr ? slot_->correlation() : 0;
  }

 private:
  void abandon() noexcept {
    if (slot_ == nullptr) return;
    slot_->fail(errc::broken_promise, "the handler dropped its reply promise without a value");
    std::exchange(slot_, nullptr)->release();
  }

  detail::reply_slot<R>* slot_;
};

namespace detail {

// How A replies to M: by returning a value, a task<T> with T non-void, or by taking a
// troupe::promise<R> as second parameter (found by deducing R from &A::on's overloads).
template <class A, class M>
struct promise_handler_probe {
  template <class R>
  static R deduce(void (A::*)(M, troupe::promise<R>));
  template <class R>
  static R deduce(void (A::*)(const M&, troupe::promise<R>));
  template <class R>
  static R deduce(void (A::*)(M&&, troupe::promise<R>));
  template <class R>
  static R deduce(void (A::*)(M, troupe::promise<R>) const);
  template <class R>
  static R deduce(void (A::*)(const M&, troupe::promise<R>) const);
};

template <class A, class M, class = void>
struct promise_reply {
  static constexpr bool found = false;
};
template <class A, class M>
struct promise_reply<A, M, std::void_t<decltype(promise_handler_probe<A, M>::deduce(&A::on))>> {
  static constexpr bool found = true;
  using type = decltype(promise_handler_probe<A, M>::deduce(&A::on));
};

enum class reply_style { none, returned, task, promised };

template <class A, class M>
constexpr reply_style reply_style_of() {
  if constexpr (Handles<A, M>) {
    using result_type = handler_result_t<A, M>;
    if constexpr (is_task<result_type>::value) {
      using inner = typename result_type::promise_type;
      return std::is_same_v<inner, task_promise<void>> ? reply_style::none : reply_style::task;
    } else {
      return std::is_void_v<result_type> ? reply_style::none : reply_style::returned;
    }
  } else if constexpr (promise_reply<A, M>::found) {
    return reply_style::promised;
  } else {
    return reply_style::none;
  }
}

template <class T>
struct task_value;
template <class T>
struct task_value<task<T>> {
  using type = T;
};

template <class A, class M, reply_style Style = reply_style_of<A, M>()>
struct reply_type {
  using type = void;
};
template <class A, class M>
struct reply_type<A, M, reply_style::returned> {
  using type = std::remove_cvref_t<handler_result_t<A, M>>;
};
template <class A, class M>
struct reply_type<A, M, reply_style::task> {
  using type = typename task_value<handler_result_t<A, M>>::type;
};
template <class A, class M>
struct reply_type<A, M, reply_style::promised> {
  using type = typename promise_reply<A, M>::type;
};

// Spelled as a class template so that compilers print both type names when it is false.
template <class ActorType, class MessageType>
struct actor_has_replying_handler_for_message {
  static constexpr bool value = reply_style_of<ActorType, MessageType>() != reply_style::none;
};

}  // namespace detail

// A replies to M: an ask of M to a ref<A> compiles.
template <class A, class M>
concept Replies = detail::reply_style_of<A, std::remove_cvref_t<M>>()
!= detail::reply_style::none;

// The type of A's reply to M.
template <class A, class M>
using reply_type_t = typename detail::reply_type<A, std::remove_cvref_t<M>>::type;

}  // namespace troupe

#include <troupe/detail/core.hpp>
