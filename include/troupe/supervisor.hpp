// troupe::supervisor: an actor that starts children and restarts them when they fail.
//
//   auto sup = rt.spawn<troupe::supervisor>(troupe::one_for_one{.max_restarts = 5, .within = 10s});
//   troupe::ref<worker> w = troupe::start_child<worker>(sup, {.name = "w1"}, args...);
//   // w stays valid across restarts; messages queued behind a failure go to the new instance.
//
// A child fails when an exception escapes one of its handlers (or on_start). The failing
// message is dead-lettered (an ask gets the error); the child's instance is destroyed (on_stop,
// and on_failure(std::exception_ptr) first if the class has it) but its mailbox is kept; the
// supervisor decides, by strategy and restart type, to rebuild it in place from the same
// arguments, after a backoff delay. More than max_restarts within `within` and the supervisor
// stops its children (newest first) and fails itself: its own supervisor, or the runtime's
// on_failure hook for a root, hears of it.
#pragma once

#include <algorithm>
#include <chrono>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <troupe/actor.hpp>
#include <troupe/ask.hpp>
#include <troupe/ref.hpp>
#include <troupe/runtime_options.hpp>

namespace troupe {

// When a child is restarted: always (permanent), only after a failure (transient), never
// (temporary).
enum class restart_type { permanent, transient, temporary };

// Restart delay: min * factor^(n-1) for the n-th restart in a row, capped at max, spread by
// ±jitter (a fraction), and back to min after reset_after without a failure.
struct backoff {
  std::chrono::milliseconds min{0};
  std::chrono::milliseconds max{1000};
  double factor = 2.0;
  double jitter = 0.0;
  std::chrono::milliseconds reset_after{5000};
};

// Strategies: which children restart when one fails.
struct one_for_one {  // only the failed child
  int max_restarts = 3;
  std::chrono::milliseconds within{5000};
  troupe::backoff backoff{};
};
struct one_for_all {  // every child
  int max_restarts = 3;
  std::chrono::milliseconds within{5000};
  troupe::backoff backoff{};
};
struct rest_for_one {  // the failed child and those started after it
  int max_restarts = 3;
  std::chrono::milliseconds within{5000};
  troupe::backoff backoff{};
};

// What a supervisor did, for runtime_options::on_supervision.
struct supervision_event {
  // What happened; gave_up: the supervisor exceeded its restart intensity and failed itself;
  // start_failed: a start_child's constructor threw (the caller gets the exception; the
  // supervisor carries on, and the child never existed).
  enum class kind { started, failed, restarted, stopped, gave_up, start_failed };
  kind what;
  address supervisor;
  address child;  // empty for gave_up and start_failed
  std::string name;
  // The failure's text for failed, gave_up and start_failed; empty otherwise.
  std::string reason;
};

// The subject supervision events are published on (as troupe::supervision_event).
inline constexpr std::string_view supervision_subject = "troupe.supervision";

// How a supervisor treats one child (start_child): its name in supervision events, when it
// is restarted, and how long stop_tree waits for it.
struct child_options {
  std::string name;
  restart_type restart = restart_type::permanent;
  // How long stop_tree waits for this child to stop before forcing it (a forced stop abandons a
  // suspended handler; a synchronous handler that never returns cannot be interrupted).
  std::chrono::milliseconds shutdown_timeout{5000};
};

// Dynamic children of one kind, started on demand (Erlang's simple_one_for_one): the supervisor
// starts only children of class A, each with `child`'s options, from start_child<A>(sup,
// args...) — as many as asked for, each restarted alone per its restart type, stopped newest
// first.
template <class A>
struct simple_one_for_one {
  int max_restarts = 3;
  std::chrono::milliseconds within{5000};
  troupe::backoff backoff{};
  child_options child{};  // every child's: name (shared), restart type, shutdown_timeout
};

// Ordered shutdown of a tree: the supervisor stops its children newest first, one after the
// other, each within its shutdown_timeout (child supervisors do the same with theirs), then
// stops itself. Replies how many children had to be forced.
struct stop_tree {};

// Removes (and stops for good) a child. Replies whether it was a child.
struct remove_child {
  address child;
};
// Replies the children, in start order.
struct which_children {};

class supervisor;

namespace detail {

struct add_child_request {
  child_options options;
  // The child's class; from_spec: started with a simple_one_for_one supervisor's options.
  const void* type = nullptr;
  std::string_view type_name;
  bool from_spec = false;
  std::function<actor_cell*(actor_cell* supervisor, restart_kind restart, exit_notifier notify)>
      spawn;
};
// The supervisor's reply to add_child_request: the child, or what building it threw.
struct child_started {
  address child;
  std::exception_ptr error;
};
struct child_exit {
  address child;
  bool failed;
  bool waiting;
  std::string reason;
};
struct restart_due {
  address child;
};

}  // namespace detail

// An actor that supervises children (start_child) under one strategy; spawn it with
// rt.spawn<troupe::supervisor>(troupe::one_for_one{...}) or start it as a child of another.
// Its handlers are its protocol: stop_tree, remove_child, which_children.
class supervisor {
 public:
  enum class strategy_kind { one_for_one, one_for_all, rest_for_one, simple_one_for_one };

  // One constructor per strategy; the strategy's fields set the restart intensity and backoff.
  supervisor(context& ctx, one_for_one s)
      : supervisor(ctx, strategy_kind::one_for_one, s.max_restarts, s.within, s.backoff) {}
  supervisor(context& ctx, one_for_all s)
      : supervisor(ctx, strategy_kind::one_for_all, s.max_restarts, s.within, s.backoff) {}
  supervisor(context& ctx, rest_for_one s)
      : supervisor(ctx, strategy_kind::rest_for_one, s.max_restarts, s.within, s.backoff) {}
  template <class A>
  supervisor(context& ctx, simple_one_for_one<A> s)
      : supervisor(ctx, strategy_kind::simple_one_for_one, s.max_restarts, s.within, s.backoff) {
    static_assert(Actor<A>, "troupe: simple_one_for_one<A>: A is not an actor class");
    spec_type_ = &detail::type_tag<A>;
    spec_type_name_ = detail::type_name<A>();
    spec_options_ = std::move(s.child);
  }

  // A child's constructor that throws fails the start, not the supervisor: the exception goes
  // back to the caller of start_child, which rethrows it.
  detail::child_started on(detail::add_child_request request) {
    if (std::exception_ptr refused = check_kind(request)) return {{}, std::move(refused)};
    if (request.from_spec) request.options = spec_options_;
    detail::actor_cell* self = &detail::cell_of(ctx_);
    const auto restart = static_cast<detail::restart_kind>(request.options.restart);
    detail::actor_cell* cell = nullptr;
    try {
      cell = request.spawn(self, restart, &notify_exit);
    } catch (...) {
      std::exception_ptr error = std::current_exception();
      emit(supervision_event{supervision_event::kind::start_failed,
                             ctx_.self(),
                             {},
                             request.options.name,
                             detail::describe(error)});
      return {{}, std::move(error)};
    }
    address child = detail::access::make_address(cell);
    cell->release();  // the reference spawn returned; `child` holds one
    children_.push_back(child_record{child, std::move(request.options)});
    report(supervision_event::kind::started, children_.back(), {});
    return {std::move(child), nullptr};
  }

  bool on(remove_child request) {
    auto it = find(request.child);
    if (it == children_.end()) return false;
    detail::access::cell_of(it->ref)->request_final_stop();
    children_.erase(it);
    return true;
  }

  std::vector<address> on(which_children) const {
    std::vector<address> out;
    for (const auto& c : children_) out.push_back(c.ref);
    return out;
  }

  void on(detail::child_exit exit) {
    auto it = find(exit.child);
    if (it == children_.end()) {
      // Removed meanwhile: a child still waiting for a decision is stopped for good.
      if (exit.waiting) detail::access::cell_of(exit.child)->request_final_stop();
      return;
    }
    if (exit.failed) report(supervision_event::kind::failed, *it, exit.reason);
    if (!exit.waiting) {  // gone for good (transient after a normal stop, temporary, ...)
      report(supervision_event::kind::stopped, *it, exit.reason);
      children_.erase(it);
      return;
    }
    const auto now = ctx_.now();  // the runtime's clock: virtual in a simulation
    while (!restarts_.empty() && now - restarts_.front() > within_) restarts_.pop_front();
    if (static_cast<int>(restarts_.size()) >= max_restarts_) {
      give_up(exit.reason);  // throws: this supervisor fails, its parent decides
    }
    restarts_.push_back(now);
    if (now - last_failure_ > backoff_.reset_after) consecutive_ = 0;
    last_failure_ = now;
    ++consecutive_;
    const auto delay = next_delay();
    const std::size_t position = static_cast<std::size_t>(it - children_.begin());
    for (std::size_t i = 0; i < children_.size(); ++i) {
      if (i == position) continue;
      const bool also = strategy_ == strategy_kind::one_for_all ||
                        (strategy_ == strategy_kind::rest_for_one && i > position);
      if (also) {
        detail::access::cell_of(children_[i].ref)->request_restart();
        report(supervision_event::kind::restarted, children_[i], "sibling " + it->options.name);
      }
    }
    if (delay.count() == 0) {
      detail::access::cell_of(exit.child)->request_restart();
      report(supervision_event::kind::restarted, *it, exit.reason);
    } else {
      ctx_.send_after(delay, ctx_.self_as<supervisor>(), detail::restart_due{exit.child});
    }
  }

  void on(detail::restart_due due) {
    if (auto it = find(due.child); it != children_.end()) {
      detail::access::cell_of(due.child)->request_restart();
      report(supervision_event::kind::restarted, *it, "after backoff");
    } else {
      detail::access::cell_of(due.child)->request_final_stop();
    }
  }

  task<std::size_t> on(stop_tree) {
    std::size_t forced = 0;
    while (!children_.empty()) {
      child_record child = std::move(children_.back());
      children_.pop_back();
      detail::actor_cell* cell = detail::access::cell_of(child.ref);
      detail::runtime_core* core = cell->core();
      if (cell->ops()->type_tag == &detail::type_tag<supervisor>) {
        cell->raise_request(detail::actor_cell::req_final, std::memory_order_seq_cst);
        detail::access::make_ref<supervisor>(cell).send(stop_tree{});
      } else {
        cell->request_final_stop();
      }
      const auto timeout = detail::saturating_duration(child.options.shutdown_timeout);
      if (!co_await detail::stopped_awaiter(cell, detail::deadline_after(core->now(), timeout))) {
        ++forced;
        cell->request_stop(true);
        static_cast<void>(
            co_await detail::stopped_awaiter(cell, detail::deadline_after(core->now(), timeout)));
      }
      report(supervision_event::kind::stopped, child, "stop_tree");
    }
    ctx_.stop();
    co_return forced;
  }

  // Children stop for good when the supervisor stops, newest first.
  void on_stop() {
    for (auto it = children_.rbegin(); it != children_.rend(); ++it) {
      detail::access::cell_of(it->ref)->request_final_stop();
    }
    children_.clear();
  }

 private:
  struct child_record {
    address ref;
    child_options options;
  };

  supervisor(context& ctx, strategy_kind kind, int max_restarts, std::chrono::milliseconds within,
             troupe::backoff b)
      : ctx_(ctx),
        strategy_(kind),
        max_restarts_(max_restarts),
        within_(within),
        backoff_(b),
        rng_(static_cast<std::uint32_t>(detail::cell_of(ctx).id())) {}

  // A simple_one_for_one supervisor starts children of its one class only; the short form
  // start_child<A>(sup, args...) needs such a supervisor. Null if the request is fine.
  std::exception_ptr check_kind(const detail::add_child_request& request) const {
    if (spec_type_ != nullptr && request.type != spec_type_) {
      return std::make_exception_ptr(
          error(errc::bad_actor_type, "start_child<" + std::string(request.type_name) +
                                          ">() on a simple_one_for_one supervisor of " +
                                          std::string(spec_type_name_)));
    }
    if (spec_type_ == nullptr && request.from_spec) {
      return std::make_exception_ptr(
          error(errc::bad_actor_type, "start_child<" + std::string(request.type_name) +
                                          ">(sup, args...) without child_options needs a "
                                          "simple_one_for_one supervisor"));
    }
    return nullptr;
  }

  std::vector<child_record>::iterator find(const address& a) {
    return std::find_if(children_.begin(), children_.end(),
                        [&a](const child_record& c) { return c.ref == a; });
  }

  std::chrono::milliseconds next_delay() {
    if (backoff_.min.count() <= 0) return std::chrono::milliseconds{0};
    double d = static_cast<double>(backoff_.min.count());
    for (int i = 1; i < consecutive_ && d < static_cast<double>(backoff_.max.count()); ++i) {
      d *= backoff_.factor;
    }
    d = std::min(d, static_cast<double>(backoff_.max.count()));
    if (backoff_.jitter > 0) {
      std::uniform_real_distribution<double> spread(1.0 - backoff_.jitter, 1.0 + backoff_.jitter);
      d *= spread(rng_);
    }
    // Capped where the delay still fits the clock's nanoseconds (about 292 years; beyond, the
    // double-to-integer cast and the conversion to nanoseconds would overflow).
    constexpr auto cap =
        std::chrono::floor<std::chrono::milliseconds>(std::chrono::nanoseconds::max());
    d = std::clamp(d, 0.0, static_cast<double>(cap.count()));
    return std::chrono::milliseconds{static_cast<long long>(d)};
  }

  void report(supervision_event::kind what, const child_record& child, std::string reason) {
    emit(supervision_event{what, ctx_.self(), child.ref, child.options.name, std::move(reason)});
  }

  // To the hook, and on the system topic troupe::supervision_subject.
  void emit(const supervision_event& event) {
    detail::runtime_core* core = detail::cell_of(ctx_).core();
    if (const auto& hook = core->options().on_supervision) {
      try {
        hook(event);
      } catch (...) {  // a throwing hook must not take the supervisor down
      }
    }
    if (!core->topics().empty()) {
      try {
        detail::publish_event<supervision_event>(core, supervision_subject,
                                                 std::make_shared<const supervision_event>(event));
      } catch (...) {
      }
    }
  }

  [[noreturn]] void give_up(const std::string& last_reason) {
    emit(supervision_event{supervision_event::kind::gave_up, ctx_.self(), {}, {}, last_reason});
    for (auto it = children_.rbegin(); it != children_.rend(); ++it) {
      detail::access::cell_of(it->ref)->request_final_stop();
    }
    children_.clear();
    throw error(errc::handler_failed, "restart intensity exceeded (" +
                                          std::to_string(max_restarts_) + " restarts within " +
                                          std::to_string(within_.count()) +
                                          " ms); last failure: " + last_reason);
  }

  static void notify_exit(detail::actor_cell* sup, detail::actor_cell* child, bool failed,
                          bool waiting, const std::string& reason) noexcept;

  context& ctx_;
  strategy_kind strategy_;
  int max_restarts_;
  std::chrono::milliseconds within_;
  troupe::backoff backoff_;
  std::deque<std::chrono::steady_clock::time_point> restarts_;
  std::chrono::steady_clock::time_point last_failure_{};
  int consecutive_ = 0;
  std::minstd_rand rng_;
  std::vector<child_record> children_;
  // simple_one_for_one: the one class of child, and every child's options.
  const void* spec_type_ = nullptr;
  std::string_view spec_type_name_;
  child_options spec_options_;
};

inline void supervisor::notify_exit(detail::actor_cell* sup, detail::actor_cell* child, bool failed,
                                    bool waiting, const std::string& reason) noexcept {
  try {
    auto* e = new detail::message_envelope<detail::child_exit>(
        &detail::message_ops<supervisor, detail::child_exit>,
        detail::child_exit{detail::access::make_address(child), failed, waiting, reason});
    // Dead-lettered: the supervisor is stopping or stopped and will decide nothing. A waiting
    // child is stopped for good rather than left waiting until shutdown's timeout.
    if (!sup->core()->post(sup, e, true) && waiting) child->request_final_stop();
  } catch (...) {
    // Out of memory: a waiting child would wait forever; stop it for good instead.
    if (waiting) child->request_final_stop();
  }
}

namespace detail {

// The request that makes the supervisor spawn a child of class A from copies of args.
template <Actor A, class... Args>
add_child_request make_add_child_request(child_options options, bool from_spec, Args... args) {
  return add_child_request{std::move(options), &type_tag<A>, type_name<A>(), from_spec,
                           [args...](actor_cell* supervisor_cell, restart_kind restart,
                                     exit_notifier notify) -> actor_cell* {
                             auto factory = [args...](actor_cell& cell) {
                               static_cast<typed_cell<A>&>(cell).construct(args...);
                             };
                             return supervisor_cell->core()->template spawn_supervised<A>(
                                 std::move(factory), supervisor_cell, restart, notify);
                           }};
}

}  // namespace detail

namespace detail {
// The blocking start_child refuses on a runtime thread before it sends anything.
inline void refuse_blocking_start() {
  if (this_thread_identity.core != nullptr) {
    throw error(errc::would_block,
                "start_child() blocks, so not on a runtime thread: in a task handler, co_await "
                "start_child_async() instead (nothing was started)");
  }
}

template <Actor A>
ref<A> started_child(child_started started) {
  if (started.error) std::rethrow_exception(started.error);
  return access::make_ref<A>(access::cell_of(started.child));
}
}  // namespace detail

// Starts a child of class A under `sup`, built from args now and at every restart (args are
// copied into the child's factory). Blocks until the supervisor has registered it: call from a
// plain thread. On one of a runtime's threads it throws error(would_block) before sending
// anything (nothing is started): from an actor, co_await start_child_async. Throws
// error(runtime_stopped) during shutdown, and what A's constructor throws (the supervisor and
// its other children carry on).
template <Actor A, class... Args>
ref<A> start_child(const ref<supervisor>& sup, child_options options, Args... args) {
  detail::refuse_blocking_start();
  return detail::started_child<A>(
      sup.ask(detail::make_add_child_request<A>(std::move(options), false, std::move(args)...))
          .get());
}

// The same, from inside an actor's task handler: suspends only that handler. Its errors are
// start_child's (the constructor's exception is rethrown at the co_await).
template <Actor A, class... Args>
task<ref<A>> start_child_async(ref<supervisor> sup, child_options options, Args... args) {
  // No temporaries with destructors in the co_await operand (g++ 12 destroys them twice).
  auto pending =
      sup.ask(detail::make_add_child_request<A>(std::move(options), false, std::move(args)...));
  detail::child_started started = co_await std::move(pending);
  co_return detail::started_child<A>(std::move(started));
}

namespace detail {
template <class... Args>
struct first_is_child_options : std::false_type {};
template <class First, class... Rest>
struct first_is_child_options<First, Rest...>
    : std::is_same<std::remove_cvref_t<First>, child_options> {};
}  // namespace detail

// Starts a child of a simple_one_for_one<A> supervisor from args, with the supervisor's child
// options: blocking, from a plain thread, like the form above (same errors), and
// error(bad_actor_type) — nothing started — if `sup` is not a simple_one_for_one of A.
template <Actor A, class... Args>
requires(!detail::first_is_child_options<Args...>::value) ref<A> start_child(
    const ref<supervisor>& sup, Args... args) {
  detail::refuse_blocking_start();
  return detail::started_child<A>(
      sup.ask(detail::make_add_child_request<A>(child_options{}, true, std::move(args)...)).get());
}

// The same, from inside an actor's task handler.
template <Actor A, class... Args>
requires(!detail::first_is_child_options<Args...>::value) task<ref<A>> start_child_async(
    ref<supervisor> sup, Args... args) {
  // No temporaries with destructors in the co_await operand (g++ 12 destroys them twice).
  auto pending =
      sup.ask(detail::make_add_child_request<A>(child_options{}, true, std::move(args)...));
  detail::child_started started = co_await std::move(pending);
  co_return detail::started_child<A>(std::move(started));
}

}  // namespace troupe
