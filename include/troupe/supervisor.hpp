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
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <string_view>
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
  // What happened; gave_up: the supervisor exceeded its restart intensity and failed itself.
  enum class kind { started, failed, restarted, stopped, gave_up };
  kind what;
  address supervisor;
  address child;  // empty for gave_up
  std::string name;
  // The failure's text for failed and gave_up; empty otherwise.
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
  std::function<actor_cell*(actor_cell* supervisor, restart_kind restart, exit_notifier notify)>
      spawn;
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
  enum class strategy_kind { one_for_one, one_for_all, rest_for_one };

  // One constructor per strategy; the strategy's fields set the restart intensity and backoff.
  supervisor(context& ctx, one_for_one s)
      : supervisor(ctx, strategy_kind::one_for_one, s.max_restarts, s.within, s.backoff) {}
  supervisor(context& ctx, one_for_all s)
      : supervisor(ctx, strategy_kind::one_for_all, s.max_restarts, s.within, s.backoff) {}
  supervisor(context& ctx, rest_for_one s)
      : supervisor(ctx, strategy_kind::rest_for_one, s.max_restarts, s.within, s.backoff) {}

  address on(detail::add_child_request request) {
    detail::actor_cell* self = &detail::cell_of(ctx_);
    const auto restart = static_cast<detail::restart_kind>(request.options.restart);
    detail::actor_cell* cell = request.spawn(self, restart, &notify_exit);
    address child = detail::access::make_address(cell);
    cell->release();  // the reference spawn returned; `child` holds one
    children_.push_back(child_record{child, std::move(request.options)});
    report(supervision_event::kind::started, children_.back(), {});
    return child;
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
    const auto now = std::chrono::steady_clock::now();
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
        cell->final_stop_.store(true, std::memory_order_seq_cst);
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
};

inline void supervisor::notify_exit(detail::actor_cell* sup, detail::actor_cell* child, bool failed,
                                    bool waiting, const std::string& reason) noexcept {
  try {
    auto* e = new detail::message_envelope<detail::child_exit>(
        &detail::message_ops<supervisor, detail::child_exit>,
        detail::child_exit{detail::access::make_address(child), failed, waiting, reason});
    sup->core()->post(sup, e, true);
  } catch (...) {
    // Out of memory: a waiting child would wait forever; stop it for good instead.
    if (waiting) child->request_final_stop();
  }
}

namespace detail {

// The request that makes the supervisor spawn a child of class A from copies of args.
template <Actor A, class... Args>
add_child_request make_add_child_request(child_options options, Args... args) {
  return add_child_request{std::move(options),
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

// Starts a child of class A under `sup`, built from args now and at every restart (args are
// copied into the child's factory). Blocks until the supervisor has registered it: call from a
// plain thread (from an actor, co_await start_child_async). Throws error(runtime_stopped) during
// shutdown, and what A's constructor throws.
template <Actor A, class... Args>
ref<A> start_child(const ref<supervisor>& sup, child_options options, Args... args) {
  address child =
      sup.ask(detail::make_add_child_request<A>(std::move(options), std::move(args)...)).get();
  return detail::access::make_ref<A>(detail::access::cell_of(child));
}

// The same, from inside an actor's task handler.
template <Actor A, class... Args>
task<ref<A>> start_child_async(ref<supervisor> sup, child_options options, Args... args) {
  address child =
      co_await sup.ask(detail::make_add_child_request<A>(std::move(options), std::move(args)...));
  co_return detail::access::make_ref<A>(detail::access::cell_of(child));
}

}  // namespace troupe
