// Awaiting asynchronous I/O (Asio sockets, or any API with completion callbacks) in a task
// handler, without blocking a worker and without running actor code on the I/O thread:
//
//   troupe::io_thread io;                                  // an asio::io_context and its thread
//   asio::ip::tcp::socket socket(io.context());
//   ...
//   troupe::task<void> on(read_request) {                  // in an actor
//     auto [ec, n] = co_await troupe::async_io<std::error_code, std::size_t>(
//         [&](auto done) { socket_.async_read_some(asio::buffer(buf_), std::move(done)); });
//     ...                                                   // resumed on a worker, as the actor
//   }
//
// The initiation runs at once, on the actor's worker; the completion handler it is given only
// records the results and wakes the actor, so the actor's code resumes on its own scheduler,
// never on the I/O thread. Like any suspension in a task handler, the actor handles no other
// message until the operation completes (non-reentrant): give each connection its own actor,
// and keep a listening socket's accept loop in an actor that re-sends itself a message per
// connection so that it stays stoppable.
#pragma once

#include <coroutine>
#include <memory>
#include <optional>
#include <thread>
#include <tuple>
#include <type_traits>
#include <utility>

#include <asio/executor_work_guard.hpp>
#include <asio/io_context.hpp>

#include <troupe/detail/core.hpp>
#include <troupe/error.hpp>

namespace troupe {

namespace detail {

template <class... Results>
struct io_state {
  std::optional<std::tuple<Results...>> results;  // written once, before the wake-up
};

// The completion handler handed to the initiation. Called once with the results, or destroyed
// uncalled (the io_context stopped or went away): either way the actor is woken, so a handler
// awaiting I/O never hangs on a lost operation.
template <class... Results>
class io_completion {
 public:
  io_completion(std::shared_ptr<io_state<Results...>> state, actor_cell* cell,
                std::uint64_t generation) noexcept
      : state_(std::move(state)), cell_(cell), generation_(generation) {
    cell_->retain();
  }
  io_completion(io_completion&& other) noexcept
      : state_(std::move(other.state_)),
        cell_(std::exchange(other.cell_, nullptr)),
        generation_(other.generation_) {}
  io_completion& operator=(io_completion&&) = delete;
  io_completion(const io_completion&) = delete;
  io_completion& operator=(const io_completion&) = delete;
  ~io_completion() { finish(); }

  template <class... Args>
  void operator()(Args&&... args) {
    if (cell_ == nullptr) return;  // a second call: the contract allows one
    state_->results.emplace(std::forward<Args>(args)...);
    finish();
  }

  // The initiation threw: the awaiter rethrows in the handler, nothing is to be woken.
  void disarm() noexcept {
    if (cell_ != nullptr) std::exchange(cell_, nullptr)->release();
  }

 private:
  void finish() noexcept {
    if (cell_ == nullptr) return;
    actor_cell* cell = std::exchange(cell_, nullptr);
    // A stale generation (the actor was force-stopped meanwhile) makes this a no-op.
    cell->wake(generation_);
    cell->release();
  }

  std::shared_ptr<io_state<Results...>> state_;
  actor_cell* cell_;
  std::uint64_t generation_;
};

template <class Initiation, class... Results>
class io_awaiter {
 public:
  using troupe_awaitable = void;
  explicit io_awaiter(Initiation initiation) : initiation_(std::move(initiation)) {}

  [[nodiscard]] bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> awaiting) {
    actor_cell* self = this_thread_identity.cell;
    if (self == nullptr) {
      throw error(errc::invalid_ref, "async_io() awaited outside an actor's task handler");
    }
    state_ = std::make_shared<io_state<Results...>>();  // allocate before arming
    io_completion<Results...> done(state_, self, self->arm_suspension(awaiting));
    try {
      initiation_(std::move(done));
    } catch (...) {
      // Rethrown in the handler, which runs on at once: its armed suspension is simply
      // replaced by the next one.
      done.disarm();
      throw;
    }
  }
  std::tuple<Results...> await_resume() {
    if (!state_->results) {
      throw error(errc::broken_promise,
                  "an I/O operation's completion handler was destroyed without being called "
                  "(its io_context stopped or was destroyed first)");
    }
    return std::move(*state_->results);
  }

 private:
  Initiation initiation_;
  std::shared_ptr<io_state<Results...>> state_;
};

}  // namespace detail

// Awaitable in a task handler: calls `initiation(done)` at once on the actor's worker, where
// `done` is a move-only completion handler taking values convertible to Results...; suspends
// the handler (not the thread) until `done` is called, from any thread, then resumes the actor
// on its scheduler with the results as a std::tuple<Results...>. Throws error(broken_promise)
// if `done` is destroyed uncalled, and whatever the initiation throws. The objects the
// operation uses (socket, buffer) must outlive it; the actor must not be awaited outside a
// task handler (error(invalid_ref)). Build it in a local before co_await if the initiation
// captures by value something with a destructor (the g++ 12 quirk in README).
template <class... Results, class Initiation>
[[nodiscard]] detail::io_awaiter<std::decay_t<Initiation>, Results...> async_io(
    Initiation&& initiation) {
  static_assert(sizeof...(Results) > 0,
                "troupe: async_io<Results...>(): name the completion's argument types, e.g. "
                "async_io<std::error_code, std::size_t>(...)");
  static_assert(std::is_invocable_v<std::decay_t<Initiation>&, detail::io_completion<Results...>>,
                "troupe: async_io(): the initiation must be callable with the completion handler");
  return detail::io_awaiter<std::decay_t<Initiation>, Results...>(
      std::forward<Initiation>(initiation));
}

// An asio::io_context run by one thread of its own, for the I/O objects actors await with
// async_io. The destructor stops the context and joins the thread; operations still pending
// are destroyed, which wakes their awaiting handlers with error(broken_promise). Close the I/O
// objects (or destroy this) before the runtime shuts down, or shutdown waits for the awaiting
// handlers up to its timeout. context() is thread-safe as asio::io_context is.
class io_thread {
 public:
  // Starts the thread; throws std::system_error if it cannot.
  io_thread() : guard_(asio::make_work_guard(io_)), thread_([this] { io_.run(); }) {}
  io_thread(const io_thread&) = delete;
  io_thread& operator=(const io_thread&) = delete;
  ~io_thread() { stop(); }

  // The context to build sockets, acceptors and timers on.
  [[nodiscard]] asio::io_context& context() noexcept { return io_; }

  // Lets the context finish once it has no work left, then joins the thread. Idempotent; not
  // from the I/O thread itself.
  void join() {
    guard_.reset();
    if (thread_.joinable()) thread_.join();
  }
  // Stops the context at once (pending operations stay pending until destruction) and joins.
  void stop() {
    guard_.reset();
    io_.stop();
    if (thread_.joinable()) thread_.join();
  }

 private:
  asio::io_context io_{1};
  asio::executor_work_guard<asio::io_context::executor_type> guard_;
  std::thread thread_;  // last: starts after the context exists
};

}  // namespace troupe
