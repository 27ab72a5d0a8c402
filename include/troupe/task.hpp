// troupe::task<T>: the coroutine type of actor handlers.
#pragma once

#include <atomic>
#include <coroutine>
#include <cstdint>
#include <exception>
#include <optional>
#include <type_traits>
#include <utility>

#include <troupe/detail/frame_census.hpp>
#include <troupe/detail/pool.hpp>

namespace troupe {

template <class T = void>
class task;

namespace detail {

struct envelope;

// An awaitable that knows how to resume an actor through its scheduler says so with a
// `troupe_awaitable` member type; only those may be awaited inside a task, because a task
// resumed by anything else would run on a foreign thread, concurrently with its actor.
template <class A>
concept troupe_awaitable = requires {
  typename std::remove_cvref_t<A>::troupe_awaitable;
};

template <class A>
struct awaitable_check : std::bool_constant<troupe_awaitable<A>> {};

class promise_base {
 public:
  // Frames come from the recycling pool: a handler coroutine costs no malloc in steady state.
  // The live count (per thread, no locked instruction; frame_census.hpp) lets tests prove that
  // no frame is left behind.
  static void* operator new(std::size_t n) {
    void* p = block_pool::allocate(n);
    frame_census::add(1);
    return p;
  }
  static void operator delete(void* p, std::size_t n) noexcept {
    frame_census::add(-1);
    block_pool::deallocate(p, n);
  }

  std::suspend_always initial_suspend() const noexcept { return {}; }

  struct final_awaiter {
    bool await_ready() const noexcept { return false; }
    template <class P>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<P> h) const noexcept {
      std::coroutine_handle<> next = h.promise().continuation_;
      return next ? next : std::noop_coroutine();
    }
    void await_resume() const noexcept {}
  };
  final_awaiter final_suspend() const noexcept { return {}; }

  void unhandled_exception() noexcept { error_ = std::current_exception(); }

  template <class A>
  A&& await_transform(A&& awaitable) noexcept {
    static_assert(awaitable_check<A>::value,
                  "troupe::task can co_await only troupe awaitables (task<T>, ctx.sleep_for, "
                  "asks, ...): anything else would resume the actor on a foreign thread");
    return std::forward<A>(awaitable);
  }

  [[nodiscard]] const std::exception_ptr& error() const noexcept { return error_; }

  std::coroutine_handle<> continuation_;

  // Set only in the promise of a handler's own task (the one the actor record runs), by its
  // worker: the frame, where it last suspended, and the message it handles. They live here,
  // not in the actor record, which keeps one pointer to this promise: an idle actor then pays
  // for none of them (the idle-actor memory goal).
  std::coroutine_handle<> handler_frame_;
  std::coroutine_handle<> resume_point_;
  envelope* current_ = nullptr;

 protected:
  std::exception_ptr error_;
};

template <class T>
class task_promise final : public promise_base {
 public:
  task<T> get_return_object() noexcept;

  template <class U>
  requires std::is_constructible_v<T, U&&>
  void return_value(U&& value) noexcept(std::is_nothrow_constructible_v<T, U&&>) {
    value_.emplace(std::forward<U>(value));
  }

  T take_result() {
    if (error_) std::rethrow_exception(error_);
    return std::move(*value_);
  }

 private:
  std::optional<T> value_;
};

template <>
class task_promise<void> final : public promise_base {
 public:
  task<void> get_return_object() noexcept;
  void return_void() const noexcept {}
  void take_result() const {
    if (error_) std::rethrow_exception(error_);
  }
};

}  // namespace detail

// A lazily started coroutine. Return it from an on(...) handler to suspend that handler (on a
// timer, an ask, another task) without blocking a worker thread; the actor stays busy until the
// handler finishes, so no second message interleaves. Await a task<T> with `co_await`; an
// exception thrown inside travels to the awaiter. Move-only; not thread-safe to share.
template <class T>
class [[nodiscard]] task {
  static_assert(!std::is_reference_v<T>, "troupe::task<T> does not support reference results");

 public:
  using promise_type = detail::task_promise<T>;
  using handle_type = std::coroutine_handle<promise_type>;
  using troupe_awaitable = void;

  // An empty task (valid() is false); tasks come from coroutines returning task<T>.
  task() noexcept = default;
  explicit task(handle_type h) noexcept : handle_(h) {}
  task(task&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
  task& operator=(task&& other) noexcept {
    if (this != &other) {
      if (handle_) handle_.destroy();
      handle_ = std::exchange(other.handle_, {});
    }
    return *this;
  }
  task(const task&) = delete;
  task& operator=(const task&) = delete;
  ~task() {
    if (handle_) handle_.destroy();
  }

  // False for an empty or moved-from task.
  [[nodiscard]] bool valid() const noexcept { return static_cast<bool>(handle_); }

  class awaiter {
   public:
    using troupe_awaitable = void;
    explicit awaiter(handle_type h) noexcept : handle_(h) {}
    bool await_ready() const noexcept { return !handle_ || handle_.done(); }
    std::coroutine_handle<> await_suspend(std::coroutine_handle<> awaiting) noexcept {
      handle_.promise().continuation_ = awaiting;
      return handle_;  // symmetric transfer: no stack growth along a chain of awaits
    }
    T await_resume() { return handle_.promise().take_result(); }

   private:
    handle_type handle_;
  };

  // Starts the task and suspends the awaiting coroutine until it finishes; yields its result
  // or rethrows its exception. Await a task once.
  awaiter operator co_await() & noexcept { return awaiter{handle_}; }
  awaiter operator co_await() && noexcept { return awaiter{handle_}; }

  // Internal: hands the frame to the runtime, which then owns and destroys it.
  handle_type release() noexcept { return std::exchange(handle_, {}); }

 private:
  handle_type handle_;
};

namespace detail {

template <class T>
task<T> task_promise<T>::get_return_object() noexcept {
  return task<T>{std::coroutine_handle<task_promise<T>>::from_promise(*this)};
}

inline task<void> task_promise<void>::get_return_object() noexcept {
  return task<void>{std::coroutine_handle<task_promise<void>>::from_promise(*this)};
}

template <class R>
struct is_task : std::false_type {};
template <class T>
struct is_task<task<T>> : std::true_type {};

}  // namespace detail

// Coroutine frames of troupe::task alive in the process (all runtimes); for leak checks.
[[nodiscard]] inline std::int64_t task_frames_alive() noexcept {
  return detail::frame_census::alive();
}

}  // namespace troupe
