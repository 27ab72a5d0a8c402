// The ask path: the ask envelope, invoking the handler and routing its reply (or error) to the
// reply slot, the ask timeout, and the reply slot's out-of-line members.
// Internal: included only through detail/core.hpp; never by users.
#pragma once

#include <troupe/detail/await_graph.hpp>
#include <troupe/detail/runtime_core.hpp>
#include <troupe/detail/send_path.hpp>

namespace troupe::detail {

template <class M, class R>
struct ask_envelope final : envelope {
  template <class Arg>
  ask_envelope(const envelope_ops* o, reply_slot<R>* s, Arg&& arg)
      : envelope{nullptr, o, s->correlation()}, message(std::forward<Arg>(arg)), slot(s) {}
  ask_envelope(const ask_envelope&) = delete;
  ask_envelope& operator=(const ask_envelope&) = delete;
  ~ask_envelope() {
    // Every path completes the reply (or hands it to a promise) before this; the guard keeps
    // "an ask always completes" true even if one did not.
    if (!promised && !slot->done() && !slot->handed_off()) {
      slot->fail(errc::actor_stopped, "the request was discarded");
    }
    slot->release();
  }

  static void* operator new(std::size_t n) { return block_pool::allocate(n); }
  static void operator delete(void* p, std::size_t n) noexcept { block_pool::deallocate(p, n); }

  M message;
  reply_slot<R>* slot;
  bool promised = false;  // a troupe::promise<R> now answers for the reply
};

template <class A, class M, class R>
handler_start invoke_ask(actor_cell& cell, envelope& e) {
  A& actor = static_cast<typed_cell<A>&>(cell).instance();
  auto& request = static_cast<ask_envelope<M, R>&>(e);
  constexpr reply_style style = reply_style_of<A, M>();
  if constexpr (style == reply_style::returned) {
    request.slot->deliver(R(actor.on(std::move(request.message))));
    return {};
  } else if constexpr (style == reply_style::task) {
    auto frame = actor.on(std::move(request.message)).release();
    if (!frame) {
      request.slot->fail(errc::broken_promise, "the handler returned an empty task");
      return {};
    }
    return {frame, &frame.promise()};
  } else {
    request.slot->retain();  // the promise's reference
    request.slot->mark_promised();
    request.promised = true;
    actor.on(std::move(request.message), troupe::promise<R>(request.slot));
    return {};
  }
}

template <class M, class R>
void ask_task_done(envelope& e, promise_base& result) {
  auto& request = static_cast<ask_envelope<M, R>&>(e);
  request.slot->deliver(static_cast<task_promise<R>&>(result).take_result());
}

template <class M, class R>
void ask_abort(envelope& e, errc code, const std::string& detail,
               const std::exception_ptr& cause) noexcept {
  static_cast<ask_envelope<M, R>&>(e).slot->fail(code, detail, cause);
}

template <class M, class R>
void destroy_ask(envelope* e) noexcept {
  delete static_cast<ask_envelope<M, R>*>(e);
}

template <class M, class R>
reply_slot_base* ask_reply_of(envelope& e) noexcept {
  return static_cast<ask_envelope<M, R>&>(e).slot;
}

template <class A, class M, class R>
inline constexpr envelope_ops ask_ops{&invoke_ask<A, M, R>, &destroy_ask<M, R>, type_name<M>(),
                                      &ask_task_done<M, R>, &ask_abort<M, R>,   nullptr,
                                      &ask_reply_of<M, R>};

// Completes an ask with error(timeout) when its deadline passes first.
class ask_timeout_task final : public timer_task {
 public:
  static void* operator new(std::size_t n) { return block_pool::allocate(n); }
  static void operator delete(void* p, std::size_t n) noexcept { block_pool::deallocate(p, n); }

  ask_timeout_task(reply_slot_base* slot, clock::duration timeout) noexcept
      : slot_(slot), timeout_(timeout) {
    slot_->retain();
  }
  ~ask_timeout_task() override { slot_->release(); }
  void fire() noexcept override {
    try {
      slot_->fail(errc::timeout,
                  "no reply within " +
                      std::to_string(
                          std::chrono::duration_cast<std::chrono::microseconds>(timeout_).count()) +
                      " us");
    } catch (...) {
      slot_->fail(errc::timeout, {});
    }
  }

 private:
  reply_slot_base* slot_;
  clock::duration timeout_;
};

template <class A, class M, class Arg>
auto ask_message(actor_cell* target, Arg&& message, clock::duration timeout, bool use_default) {
  using R = typename reply_type<A, M>::type;
  static_assert(!std::is_void_v<R>, "troupe: ask(): the handler's reply type is void");
  if (target == nullptr) throw error(errc::invalid_ref, "ask() through an empty ref");
  runtime_core* core = target->core();
  if (use_default) timeout = saturating_duration(core->options().ask_timeout);
  // A timeout that has passed before the ask is made is a mistake, not a request: refuse it
  // (nothing is sent), as Akka does. A huge one saturates: it never fires.
  if (timeout <= clock::duration::zero()) [[unlikely]] {
    throw error(errc::invalid_argument,
                std::string(use_default ? "runtime_options::ask_timeout" : "ask() timeout") +
                    " must be positive, got " + std::to_string(timeout.count()) + " ns");
  }
  const thread_identity& id = this_thread_identity;
  const bool on_worker = id.core == core;
  actor_cell* asker = on_worker ? id.cell : nullptr;
  auto* slot = new reply_slot<R>(target, core->next_correlation(), access::make_address(asker));
  troupe::reply<R> result(slot);
  slot->retain();  // the envelope's reference
  envelope* e = nullptr;
  try {
    e = new ask_envelope<M, R>(&ask_ops<A, M, R>, slot, std::forward<Arg>(message));
  } catch (...) {
    slot->release();
    throw;
  }
  // On the runtime's timer service (its own thread, or the simulation's virtual clock), never on
  // the asking worker: a handler blocking that worker — the ask's own target, woken onto it —
  // must not keep the timeout from firing (docs/design.md, Timers). A saturated deadline is
  // never reached: it needs no timer.
  const clock::time_point deadline = deadline_after(core->now(), timeout);
  if (deadline != clock::time_point::max()) [[likely]] {
    core->timers().schedule(deadline, std::make_unique<ask_timeout_task>(slot, timeout),
                            &slot->timer_);
  }
  core->post(target, e, true);
  return result;
}

inline reply_slot_base::reply_slot_base(actor_cell* target, std::uint64_t correlation,
                                        address asker) noexcept
    : target_(target), correlation_(correlation), asker_(std::move(asker)) {
  target_->retain();  // keeps the runtime core alive as long as the reply state
  counter_slot& counters = target_->core()->counters_here();
  counters.add(counters.asks_opened);
}

inline reply_slot_base::~reply_slot_base() {
  if (wake_cell_ != nullptr) wake_cell_->release();
  counter_slot& counters = target_->core()->counters_here();
  counters.add(counters.asks_closed);
  target_->release();
}

inline runtime_core* reply_slot_base::core() const noexcept {
  return target_->core();
}

inline void reply_slot_base::retain_cell(actor_cell* cell) noexcept {
  cell->retain();
}

inline bool reply_slot_base::fail(errc code, const std::string& text,
                                  std::exception_ptr cause) noexcept {
  if (!claim()) return false;
  try {
    error_ = std::make_exception_ptr(troupe::error(code, text, std::move(cause)));
  } catch (...) {
    error_ = std::current_exception();
  }
  publish();
  return true;
}

inline void reply_slot_base::wait_or_drive() {
  if (driver* d = core()->current_driver(); d != nullptr && !done()) {
    const bool completed = d->run_until(
        [](const void* self) { return static_cast<const reply_slot_base*>(self)->done(); }, this,
        {});
    if (!completed) {
      throw troupe::error(errc::would_block,
                          "reply::get() in a simulation: the ask did not complete and nothing is "
                          "left to run (or simulation_options::max_events was reached)");
    }
  }
  wait();
}

inline void reply_slot_base::publish() noexcept {
  // Cancel first, so that whoever sees the ask done also sees its timer gone (pending_timers).
  // Destroying the cancelled task drops its reference; the caller still holds one.
  static_cast<void>(core()->timers().cancel(&timer_));
  if (const std::uint32_t entry = round_trip_entry_.load(std::memory_order_acquire); entry != 0)
      [[unlikely]] {
    core()->record_round_trip(entry - 1, asked_);
  }
  // An exchange, not a store: it must read the sleeper flag (see wait()). seq_cst costs
  // nothing more on x86 and keeps one order for the deadlock search.
  if ((state_.exchange(state_done, std::memory_order_seq_cst) & sleeper) != 0) [[unlikely]] {
    state_.notify_all();
  }
  if (waiter_.exchange(waiter_fired, std::memory_order_acq_rel) == waiter_registered) fire();
}

inline void reply_slot_base::before_free() noexcept {
  await_graph::before_free();
}

inline void reply_slot_base::await_from(actor_cell* cell, std::uint64_t generation) noexcept {
  retain_cell(cell);
  wake_cell_ = cell;  // before entering the graph: a search that finds the slot reads it
  wake_generation_ = generation;
  if (target_ == cell) [[unlikely]] {
    fail_deadlock(cell, true);
  } else {
    // Enter first, then look: of two asks that close a cycle at once, the later search sees the
    // earlier one's entry.
    static_cast<void>(await_graph::enter(cell, this));
    if (await_graph::maybe_awaiting(target_)) [[unlikely]]
      fail_deadlock(cell, false);
  }
  register_waiter();
}

// Out of line and cold: the common path keeps no string and saves no registers for it.
inline void reply_slot_base::fail_deadlock(actor_cell* cell, bool self) noexcept {
  std::string cycle;
  if (self) {
    try {
      cycle = await_graph::name(cell) + " -> " + await_graph::name(cell);
    } catch (...) {
      cycle = "(itself)";
    }
  } else {
    cycle = await_graph::search(cell, this);
  }
  if (cycle.empty()) return;
  try {
    fail(errc::deadlock,
         "the ask closes a cycle of actors awaiting each other's replies: " + cycle);
  } catch (...) {
    fail(errc::deadlock, {});
  }
}

inline void reply_slot_base::end_await() noexcept {
  if (wake_cell_ != nullptr) await_graph::leave(wake_cell_, this);
}

inline void reply_slot_base::fire() noexcept {
  if (wake_cell_ != nullptr) {
    wake_cell_->wake(wake_generation_);
  } else if (callback_) {
    callback_();
  }
}

// A reply held in flight by a simulation's network (driver::reply_fault): completes the ask
// when it fires (or finds it expired); destroyed unfired (the simulation shut down), a dead
// letter.
template <class R>
class delayed_reply_task final : public timer_task {
 public:
  delayed_reply_task(reply_slot<R>* slot, R&& value) : slot_(slot), value_(std::move(value)) {
    slot_->retain();
  }
  ~delayed_reply_task() override {
    if (value_.has_value()) {
      runtime_core* rt = slot_->core();
      counter_slot& counters = rt->counters_here();
      counters.add(counters.sent);
      rt->record_dead_letter(slot_->asker(), type_name<R>(), dead_letter_reason::shutdown,
                             slot_->correlation(),
                             "the simulation shut down with the reply in flight");
    }
    slot_->release();
  }
  void fire() noexcept override {
    R value = std::move(*value_);
    value_.reset();
    slot_->complete(std::move(value));
  }

 private:
  reply_slot<R>* slot_;
  std::optional<R> value_;
};

template <class R>
bool reply_slot<R>::deliver(R&& value) noexcept {
  // A simulation's network sees replies between nodes: one load and branch otherwise.
  if (driver* d = core()->current_driver(); d != nullptr) [[unlikely]] {
    return deliver_through(d, std::move(value));
  }
  return complete(std::move(value));
}

template <class R>
bool reply_slot<R>::deliver_through(driver* d, R&& value) noexcept {
  const actor_cell* to = access::cell_of(asker());
  if (to == nullptr) return complete(std::move(value));  // to outside any actor: never faulted
  const driver::reply_fate fate = d->reply_fault(to, type_name<R>());
  runtime_core* rt = core();
  counter_slot& counters = rt->counters_here();
  if (fate.drop || fate.delay > std::chrono::nanoseconds::zero()) {
    mark_promised();  // in the network now: the request's envelope must not fail the ask
  }
  if (fate.drop) {
    counters.add(counters.sent);
    rt->record_dead_letter(asker(), type_name<R>(), dead_letter_reason::dropped, correlation(),
                           "dropped by simulation");
    return false;  // the asker times out, as over a network
  }
  if (fate.duplicate) {  // the copy finds the ask completed by the original
    counters.add(counters.sent);
    rt->record_dead_letter(asker(), type_name<R>(), dead_letter_reason::expired, correlation(),
                           "a duplicate of the reply (simulation)");
  }
  if (fate.delay > std::chrono::nanoseconds::zero()) {
    try {
      auto task = std::make_unique<delayed_reply_task<R>>(this, std::move(value));
      rt->timers().schedule(
          deadline_after(rt->now(), std::chrono::duration_cast<clock::duration>(fate.delay)),
          std::move(task));
      return true;
    } catch (...) {  // out of memory while faulting: deliver it now (value may be moved from)
      return fail(errc::handler_failed, "the simulation could not hold the reply");
    }
  }
  return complete(std::move(value));
}

template <class R>
bool reply_slot<R>::complete(R&& value) noexcept {
  runtime_core* rt = core();
  counter_slot& counters = rt->counters_here();
  counters.add(counters.sent);  // a reply is a message
  if (!claim()) {
    rt->record_dead_letter(asker(), type_name<R>(), dead_letter_reason::expired, correlation(),
                           "the ask had already completed (timed out or failed)");
    return false;
  }
  try {
    value_.emplace(std::move(value));
  } catch (...) {
    error_ = std::current_exception();
  }
  counters.add(counters.handled);
  publish();
  return true;
}

}  // namespace troupe::detail
