// Internal: the runtime's record of one actor — mailbox, scheduling state, the instance.
#pragma once

#include <atomic>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <functional>
#include <mutex>
#include <new>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <troupe/actor.hpp>
#include <troupe/detail/envelope.hpp>
#include <troupe/detail/instrumentation.hpp>
#include <troupe/detail/mailbox.hpp>
#include <troupe/handler.hpp>
#include <troupe/link.hpp>
#include <troupe/mailbox.hpp>
#include <troupe/monitor.hpp>

namespace troupe::detail {

enum class stop_cause : std::uint8_t { none, requested, failed, shutdown };

// Per actor class: lifecycle hooks and destruction.
struct cell_ops {
  void (*on_start)(actor_cell& cell);
  void (*on_stop)(actor_cell& cell);
  void (*on_failure)(actor_cell& cell, const std::exception_ptr& error);
  void (*destroy_instance)(actor_cell& cell) noexcept;
  void (*delete_cell)(actor_cell* cell) noexcept;
  // Builds the envelope of a troupe::down for this actor class; null if it has no handler.
  envelope* (*make_down)(down&& message);
  bool handles_down;
  std::string_view type_name;
  const void* type_tag;
  mailbox_options mailbox;  // the class's bound, if it declares one
  // Links: builds the envelope of a troupe::exit_signal; null unless the class traps exits
  // (has an on(troupe::exit_signal) handler).
  envelope* (*make_exit)(exit_signal&& message);
  bool traps_exits;
};

// One monitor of this actor, held until it stops.
struct watch_entry {
  actor_cell* watcher;  // retained
  std::uint64_t id;
  // Set for an actor that awaits this one's stop in a task handler (a supervisor stopping its
  // children in order): it is woken with this generation instead of receiving a down message.
  std::uint64_t wake_generation = 0;
  // A link (ctx.link): the watcher is sent an exit signal, and the other side holds the
  // matching entry for this actor.
  bool link = false;
};

// How a supervised actor reports an exit to its supervisor (set by troupe::supervisor).
// `waiting`: the child kept its mailbox and waits to be restarted (or stopped); otherwise it is
// gone for good.
using exit_notifier = void (*)(actor_cell* supervisor, actor_cell* child, bool failed, bool waiting,
                               const std::string& reason) noexcept;

enum class restart_kind : std::uint8_t { permanent, transient, temporary };

// The rarely used part of an actor record, allocated on first use: death watch (guarded by
// monitor_lock) and supervision (set before the actor first runs, then read-only).
struct watch_state {
  std::vector<watch_entry> entries;
  std::string failure;                       // the failure's text, kept for monitors that come late
  actor_cell* supervisor = nullptr;          // retained while this actor lives
  std::function<void(actor_cell&)> factory;  // builds a fresh instance for a restart
  exit_notifier notify = nullptr;
  restart_kind restart = restart_kind::permanent;
  // Bounded mailboxes: messages waiting, and actors waiting for room (send_when_ready; the
  // list is guarded by monitor_lock, the count tells the consumer whether to look).
  std::atomic<std::size_t> depth{0};
  std::atomic<std::size_t> room_waiter_count{0};
  std::vector<std::pair<actor_cell*, std::uint64_t>> room_waiters;
  // drop_oldest mailboxes keep their messages here, oldest first, instead of in the lock-free
  // mailbox (whose word then only says idle, scheduled or closed): a sender that finds the
  // mailbox full takes the oldest out and dead-letters it, so the bound holds at the send, and
  // the lock-free list lets only the consumer take. Guarded by held_lock.
  std::mutex held_lock;
  envelope* held_head = nullptr;
  envelope* held_tail = nullptr;
  bool held_closed = false;  // the actor stopped: sends are dead-lettered
  // Runtime metrics (runtime_options::metrics): the record exists from spawn on.
  actor_stats stats;
};

// What one activation of an actor on a worker ended with.
enum class activation {
  idle,       // the mailbox ran dry; the actor is idle until the next send
  suspended,  // a task handler is waiting; whatever it waits for will schedule the actor
  yielded,    // the batch limit was reached with messages left; reschedule it
  finished,   // the actor stopped; the runtime no longer schedules it
};

// The actor record is itself the actor's context (no extra pointer per actor).
// Thread ownership: the fields marked "worker" are touched only by the worker running the actor,
// and an actor runs on at most one worker at a time (the mailbox word and the wake word below
// hand it from one thread to the next with release/acquire).
class actor_cell : public context {
 public:
  actor_cell(runtime_core* core, const cell_ops* ops, std::uint64_t id, bool instrumented) noexcept
      : core_(core), ops_(ops), instrumented_(instrumented), id_(id) {}
  actor_cell(const actor_cell&) = delete;
  actor_cell& operator=(const actor_cell&) = delete;

  void retain() noexcept { refs_.fetch_add(1, std::memory_order_relaxed); }
  inline void release() noexcept;

  // Worker: run up to `batch` messages (or resume a suspended handler first).
  inline activation run(std::size_t batch);

  // Any thread: stop after the current handler; `force` also abandons a suspended task handler.
  inline void request_stop(bool force) noexcept;

  // Worker, from an awaiter's await_suspend: the handler will suspend at `resume_point` until
  // wake(generation) is called (from any thread). Returns the generation to wake.
  std::uint64_t arm_suspension(std::coroutine_handle<> resume_point) noexcept {
    task_->resume_point_ = resume_point;
    const std::uint64_t generation = (wake_.load(std::memory_order_relaxed) >> 2) + 1;
    wake_.store(generation << 2 | wake_armed, std::memory_order_release);
    return generation;
  }
  inline void wake(std::uint64_t generation) noexcept;

  [[nodiscard]] std::uint64_t id() const noexcept { return id_; }
  [[nodiscard]] runtime_core* core() const noexcept { return core_; }
  [[nodiscard]] const cell_ops* ops() const noexcept { return ops_; }
  [[nodiscard]] bool closed() const noexcept { return mailbox_.closed(); }
  // Owner only, and exact only on one thread (the simulation): no message, held message or
  // request waits, so the next activation would only go idle.
  [[nodiscard]] bool nothing_waiting() const noexcept {
    return ops_->mailbox.capacity == 0 && mailbox_.looks_empty() &&
           requests_.load(std::memory_order_relaxed) == 0;
  }

  // Field order packs the record into 88 bytes, so that with an empty actor it fills one
  // 96-byte pool block (the idle-actor memory goal: ≤ 96 bytes; the size is checked below).
  mailbox mailbox_;
  // Registry links, guarded by the runtime's registry mutex.
  actor_cell* registry_prev_ = nullptr;
  actor_cell* registry_next_ = nullptr;
  // Death watch, guarded by monitor_lock(this); allocated on first monitor or failure.
  watch_state* watch_ = nullptr;

 private:
  friend class troupe::context;

  // Wake word: generation << 2 | state. The generation tells a stale wake-up (a timer of an
  // abandoned suspension) from the current one.
  static constexpr std::uint64_t wake_running = 0;    // a worker owns the actor
  static constexpr std::uint64_t wake_armed = 1;      // a handler is about to suspend
  static constexpr std::uint64_t wake_suspended = 2;  // suspended; the waker must schedule it
  static constexpr std::uint64_t wake_woken = 3;      // woken; the resume is pending

  inline int dispatch(envelope* e);  // 1 handled, 0 handler suspended, -1 actor stopped
  // The same, with metrics or tracing on.
  inline int dispatch_instrumented(envelope* e);
  inline int settle_task();  // the same, for the running task handler
  inline int begin_task(const handler_start& started, envelope* e);  // run a returned task
  inline activation after_suspension() noexcept;
  inline void finish_message(envelope* e) noexcept;
  inline void fail(std::exception_ptr error, envelope* failing) noexcept;
  inline void finalize() noexcept;
  inline void abandon_task() noexcept;
  inline void destroy_self() noexcept;
  inline void notify_watchers() noexcept;
  inline bool drop_link_back(actor_cell* peer) noexcept;  // link_path.hpp
  inline bool supervised_restartable(bool failed) const noexcept;
  inline void park_for_supervisor(bool failed, const std::string& reason) noexcept;
  inline bool restart_instance() noexcept;
  inline void drop_instance() noexcept;
  inline activation stop_now() noexcept;
  inline void account_bounded_pop(bool depth_taken) noexcept;
  inline envelope* pop_held() noexcept;

 public:
  inline void wake_room_waiters() noexcept;

 private:
  inline void kick_parked() noexcept;

 public:
  // Any thread: restart this supervised actor in place (its mailbox and refs stay), at its next
  // message boundary, or now if it is idle or waiting for its supervisor.
  inline void request_restart() noexcept;
  // Any thread: a stop that a supervisor will not turn into a restart.
  void request_final_stop() noexcept {
    raise_request(req_final);
    request_stop(false);
  }
  [[nodiscard]] watch_state* extras() const noexcept { return watch_; }
  // Worker-free setup before the actor first runs (supervised spawn).
  void set_extras(watch_state* extras) noexcept { watch_ = extras; }

  // Requests from other threads, one bit each in requests_ (one byte, so that the record stays
  // small; each is set with an atomic or, so setting one never loses another).
  static constexpr std::uint8_t req_stop = 1;   // stop after the current handler
  static constexpr std::uint8_t req_force = 2;  // also abandon a suspended task handler
  static constexpr std::uint8_t req_shutdown =
      4;                                          // the stop comes from shutdown: late sends say so
  static constexpr std::uint8_t req_restart = 8;  // supervision: restart at the next boundary
  static constexpr std::uint8_t req_parked =
      16;  // supervision: no instance, waits for its supervisor
  static constexpr std::uint8_t req_final = 32;  // the next stop is for good (not restarted)
  [[nodiscard]] bool requested(std::uint8_t bits,
                               std::memory_order order = std::memory_order_seq_cst) const noexcept {
    return (requests_.load(order) & bits) != 0;
  }
  void raise_request(std::uint8_t bits,
                     std::memory_order order = std::memory_order_seq_cst) noexcept {
    requests_.fetch_or(bits, order);
  }
  // Clears `bits`; true if any of them was set.
  bool take_request(std::uint8_t bits,
                    std::memory_order order = std::memory_order_seq_cst) noexcept {
    return (requests_.fetch_and(static_cast<std::uint8_t>(~bits), order) & bits) != 0;
  }
  // monitor_lock: the actor stopped (why: exit_cause_), so monitors get their down at once.
  [[nodiscard]] bool sealed() const noexcept { return exit_cause_ != stop_cause::none; }

 private:
  runtime_core* const core_;
  const cell_ops* const ops_;
  std::atomic<std::uint32_t> refs_{1};  // one for the runtime while the actor lives
  // Worker-only bits, one byte; the fields after it are separate memory locations (no race).
  bool started_ : 1 = false;        // the first activation happened
  bool start_ran_ : 1 = false;      // on_start returned, so on_stop is due
  bool instance_alive_ : 1 = true;  // the actor object exists (not between restarts)
  // The runtime's metrics or tracing are on (constant): the one branch they cost the handling
  // path when off reads this bit of the record the worker already has in hand (no pointer
  // chase).
  const bool instrumented_ : 1;
  stop_cause cause_ = stop_cause::none;  // worker
  std::atomic<std::uint8_t> requests_{0};

 public:
  // monitor_lock: why it stopped, set when it stops (never none after that: see sealed()).
  stop_cause exit_cause_ = stop_cause::none;

 private:
  std::atomic<std::uint64_t> wake_{0};
  const std::uint64_t id_;
  // worker: the promise of the running task handler, if any; it holds the frame, where the
  // task suspended and the message it handles (promise_base).
  promise_base* task_ = nullptr;
};
static_assert(sizeof(void*) != 8 || sizeof(actor_cell) <= 88,
              "the actor record must fit a 96-byte pool block with an empty actor");

template <class A, class M>
handler_start invoke_handler(actor_cell& cell, envelope& e);

template <class A, class M>
inline constexpr envelope_ops message_ops{.invoke = &invoke_handler<A, M>,
                                          .destroy = &destroy_envelope<M>,
                                          .message_type = type_name<M>(),
                                          .clone = clone_of<M>()};

template <class A>
inline constexpr char type_tag = 0;

template <class A>
concept has_on_start = requires(A& a) {
  a.on_start();
};
template <class A>
concept has_on_stop = requires(A& a) {
  a.on_stop();
};
template <class A>
concept has_on_failure = requires(A& a, const std::exception_ptr& e) {
  a.on_failure(e);
};

// An aggregate actor (a struct of fields) is built with braces: clang 14 does not implement
// parenthesized aggregate initialization.
template <class A, class... Args>
concept brace_constructible = std::is_aggregate_v<A> && requires(Args&&... args) {
  A{std::forward<Args>(args)...};
};

template <class A, class... Args>
struct actor_constructible
    : std::bool_constant<std::is_constructible_v<A, context&, Args&&...> ||
                         std::is_constructible_v<A, Args&&...> || brace_constructible<A, Args...>> {
};

template <class A>
class typed_cell final : public actor_cell {
 public:
  typed_cell(runtime_core* core, std::uint64_t id, bool instrumented) noexcept
      : actor_cell(core, &table, id, instrumented) {}
  typed_cell(const typed_cell&) = delete;
  typed_cell& operator=(const typed_cell&) = delete;
  ~typed_cell() {}  // the instance is destroyed explicitly, when the actor stops

  template <class... Args>
  void construct(Args&&... args) {
    if constexpr (std::is_constructible_v<A, context&, Args&&...>) {
      ::new (static_cast<void*>(&instance_))
          A(static_cast<context&>(*this), std::forward<Args>(args)...);
    } else if constexpr (std::is_constructible_v<A, Args&&...>) {
      ::new (static_cast<void*>(&instance_)) A(std::forward<Args>(args)...);
    } else {
      ::new (static_cast<void*>(&instance_)) A{std::forward<Args>(args)...};
    }
  }

  A& instance() noexcept { return instance_; }

  static void* operator new(std::size_t n) { return block_pool::allocate(n); }
  static void operator delete(void* p, std::size_t n) noexcept { block_pool::deallocate(p, n); }

  static constexpr cell_ops table{
      [](actor_cell& c) {
        if constexpr (has_on_start<A>) static_cast<typed_cell&>(c).instance_.on_start();
      },
      [](actor_cell& c) {
        if constexpr (has_on_stop<A>) static_cast<typed_cell&>(c).instance_.on_stop();
      },
      [](actor_cell& c, const std::exception_ptr& e) {
        if constexpr (has_on_failure<A>) {
          static_cast<typed_cell&>(c).instance_.on_failure(e);
        } else {
          static_cast<void>(c);
          static_cast<void>(e);
        }
      },
      [](actor_cell& c) noexcept { static_cast<typed_cell&>(c).instance_.~A(); },
      [](actor_cell* c) noexcept { delete static_cast<typed_cell*>(c); },
      [](down&& d) -> envelope* {
        if constexpr (Handles<A, down>) {
          return new message_envelope<down>(&message_ops<A, down>, std::move(d));
        } else {
          static_cast<void>(d);
          return nullptr;
        }
      },
      Handles<A, down>,
      type_name<A>(),
      &type_tag<A>,
      mailbox_options_of<A>(),
      [](exit_signal&& x) -> envelope* {
        if constexpr (Handles<A, exit_signal>) {
          return new message_envelope<exit_signal>(&message_ops<A, exit_signal>, std::move(x));
        } else {
          static_cast<void>(x);
          return nullptr;
        }
      },
      Handles<A, exit_signal>,
  };

 private:
  union {
    A instance_;
  };
};

// Calls a handler: a task it returns is handed to the worker to drive; any other result is
// dropped. Shared by every kind of delivery (sends, events, work-queue items).
template <class Call>
handler_start start_handler(Call&& call) {
  using result = decltype(call());
  if constexpr (is_task<result>::value) {
    auto frame = call().release();
    if (!frame) return {};
    return {frame, &frame.promise()};
  } else {
    static_cast<void>(call());
    return {};
  }
}

template <class A, class M>
handler_start invoke_handler(actor_cell& cell, envelope& e) {
  A& actor = static_cast<typed_cell<A>&>(cell).instance();
  M& message = static_cast<message_envelope<M>&>(e).message;
  return start_handler([&]() -> decltype(auto) { return actor.on(std::move(message)); });
}

}  // namespace troupe::detail
