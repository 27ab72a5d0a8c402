// Internal: the simulation's engine. It is the runtime's scheduler (the runnable actors, one of
// them picked at random by a seeded generator at each step), its driver (runs events on the
// caller's thread whenever someone waits) and its network (faults between nodes).
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <troupe/detail/core.hpp>
#include <troupe/detail/driver.hpp>
#include <troupe/detail/sim_clock.hpp>
#include <troupe/error.hpp>
#include <troupe/simulation_faults.hpp>

namespace troupe::detail {

class sim_engine;

// The message that makes an actor fail: its "handler" throws simulated_crash.
struct sim_crash_envelope final : envelope {
  sim_crash_envelope(const envelope_ops* o, std::string why, sim_engine* e, std::uint64_t target)
      : envelope{nullptr, o, 0}, reason(std::move(why)), engine(e), target_id(target) {}
  std::string reason;
  sim_engine* engine;
  std::uint64_t target_id;
};

inline handler_start sim_crash_invoke(actor_cell&, envelope& e) {
  throw simulated_crash(static_cast<sim_crash_envelope&>(e).reason);
}
inline void sim_crash_destroy(envelope* e) noexcept;  // after sim_engine
inline constexpr envelope_ops sim_crash_ops{.invoke = &sim_crash_invoke,
                                            .destroy = &sim_crash_destroy,
                                            .message_type = "troupe::simulated_crash"};

// A message held in flight by a network delay.
class sim_delivery_task final : public timer_task {
 public:
  inline sim_delivery_task(sim_engine* engine, actor_cell* target, envelope* e) noexcept;
  inline ~sim_delivery_task() override;
  inline void fire() noexcept override;

 private:
  sim_engine* engine_;
  actor_cell* target_;
  envelope* envelope_;
};

struct sim_settings {
  std::uint64_t seed = 0;
  std::size_t batch = 1;
  link_faults faults{};
  double crash = 0;
  bool keep_lines = false;
  std::uint64_t max_events = 0;
  std::optional<std::vector<fault_record>> replay;
};

class sim_engine final : public scheduler, public driver {
 public:
  sim_engine(runtime_core* core, sim_timer_service* timers, sim_settings settings)
      : core_(core),
        timers_(timers),
        start_(timers->now()),
        schedule_rng_(settings.seed),
        fault_rng_(settings.seed ^ 0x5eedfa017ULL),
        settings_(std::move(settings)) {
    counters_.single_writer = true;
    nodes_.emplace_back();  // node 0: actors assigned to no node
    if (settings_.replay) {
      for (const fault_record& f : *settings_.replay) {
        allowed_.insert({f.point, static_cast<int>(f.kind)});
      }
    }
  }

  // ---- scheduler ----
  void schedule(actor_cell* cell) noexcept override {
    try {
      runnable_.push_back(cell);
    } catch (...) {
      std::terminate();  // out of memory: nowhere to put the actor (as the thread pool)
    }
  }
  [[nodiscard]] bool idle() const noexcept override { return runnable_.empty() && in_flight_ == 0; }
  void stop() noexcept override {
    for (envelope* e : limbo_) e->destroy();
    limbo_.clear();
    cells_.clear();  // their references keep the records (and so the core) alive
  }
  [[nodiscard]] std::size_t thread_count() const noexcept override { return 1; }
  [[nodiscard]] const counter_slot& counters_of(std::size_t) const noexcept override {
    return counters_;
  }

  // ---- driver ----
  bool run_until(bool (*done)(const void*), const void* arg,
                 std::chrono::nanoseconds budget) override {
    const clock::time_point limit =
        budget.count() > 0 ? timers_->now() + std::chrono::duration_cast<clock::duration>(budget)
                           : clock::time_point::max();
    identity_guard guard(this);
    // Never throws (shutdown calls it): past max_events it gives up, and the caller reports.
    for (std::uint64_t n = 0; !done(arg); ++n) {
      if (settings_.max_events != 0 && n >= settings_.max_events) return false;
      if (!step(limit)) return done(arg);
    }
    return true;
  }

  bool intercept(actor_cell* target, envelope* e) noexcept override {
    const thread_identity& id = this_thread_identity;
    actor_cell* sender = id.core == core_ ? id.cell : nullptr;
    if (nodes_.size() == 1 || sender == nullptr || e->ops == &sim_crash_ops) {
      return core_->enqueue(target, e);
    }
    const int from = node_of(sender);
    const int to = node_of(target);
    if (from == to) return core_->enqueue(target, e);
    return cross(sender, target, from, to, e);
  }

  // ---- the simulation's controls ----

  // Runs events until none is left, or until `limit` for timers. Returns the events run.
  std::uint64_t run(clock::time_point limit = clock::time_point::max()) {
    identity_guard guard(this);
    std::uint64_t n = 0;
    while (step(limit)) {
      if (settings_.max_events != 0 && ++n > settings_.max_events) {
        throw error(errc::timeout, "the simulation ran " + std::to_string(n) +
                                       " events in one run (simulation_options::max_events): a "
                                       "timer that re-arms forever? bound the run with run_for()");
      }
    }
    return n;
  }
  void advance_to(clock::time_point t) noexcept { timers_->advance_to(t); }
  [[nodiscard]] clock::time_point now() const noexcept { return timers_->now(); }
  [[nodiscard]] std::chrono::nanoseconds elapsed() const noexcept { return now() - start_; }

  int node(std::string_view name) {
    if (name.empty()) return 0;
    for (std::size_t i = 1; i < nodes_.size(); ++i) {
      if (nodes_[i] == name) return static_cast<int>(i);
    }
    nodes_.emplace_back(name);
    return static_cast<int>(nodes_.size() - 1);
  }
  [[nodiscard]] const std::string& node_name(int n) const noexcept { return nodes_[n]; }
  void assign(actor_cell* cell, int n) {
    assigned_[cell->id()] = n;
    cells_.insert_or_assign(cell->id(), access::make_address(cell));
  }
  // An actor's node: its own, else its supervisor's (a supervised tree stays on one node).
  [[nodiscard]] int node_of(const actor_cell* cell) const noexcept {
    for (int depth = 0; cell != nullptr && depth < 64; ++depth) {
      auto it = assigned_.find(cell->id());
      if (it != assigned_.end()) return it->second;
      const watch_state* x = cell->extras();
      cell = x != nullptr ? x->supervisor : nullptr;
    }
    return 0;
  }
  void set_link(int from, int to, const link_faults& f) { links_[{from, to}] = f; }
  void partition(int a, int b) {
    blocked_.insert({a, b});
    blocked_.insert({b, a});
    note("partition " + label(a) + " | " + label(b));
  }
  void heal(int a, int b) {
    blocked_.erase({a, b});
    blocked_.erase({b, a});
    note("heal " + label(a) + " | " + label(b));
  }
  void heal_all() {
    blocked_.clear();
    note("heal all");
  }

  // Makes `cell` fail when it reaches this message (its supervisor decides what follows).
  void crash(actor_cell* cell, std::string reason, bool random, std::uint64_t point) {
    record_fault(point, fault_kind::crash, describe_cell(cell) + ": " + reason, random);
    envelope* e = new sim_crash_envelope(&sim_crash_ops, std::move(reason), this, cell->id());
    ++crashes_pending_[cell->id()];
    core_->post(cell, e, true);
  }
  void crash(actor_cell* cell, std::string reason) {
    crash(cell, std::move(reason), false, points_++);
  }
  // Every actor assigned to node `n` (not those that inherit it from a supervisor: the crash of
  // a supervisor's child is the supervisor's to handle).
  std::size_t crash_node(int n, const std::string& reason) {
    std::vector<std::uint64_t> ids;
    for (const auto& [id, node] : assigned_) {
      if (node == n) ids.push_back(id);
    }
    std::sort(ids.begin(), ids.end());
    std::size_t crashed = 0;
    for (std::uint64_t id : ids) {
      auto it = cells_.find(id);
      if (it == cells_.end()) continue;
      actor_cell* c = access::cell_of(it->second);
      if (c->closed()) continue;
      crash(c, reason);
      ++crashed;
    }
    return crashed;
  }

  // ---- the record ----
  [[nodiscard]] std::uint64_t hash() const noexcept { return hash_; }
  [[nodiscard]] const std::vector<std::string>& lines() const noexcept { return lines_; }
  [[nodiscard]] const std::vector<fault_record>& faults() const noexcept { return faults_; }
  [[nodiscard]] std::uint64_t steps() const noexcept { return steps_; }
  [[nodiscard]] bool keeps_lines() const noexcept { return settings_.keep_lines; }
  // A trace line (kept only with keep_lines), prefixed with the virtual time.
  void line(const std::string& text) {
    if (!settings_.keep_lines) return;
    char stamp[40];
    const auto ns = elapsed().count();
    std::snprintf(stamp, sizeof stamp, "%10lld.%06lld ms  ", static_cast<long long>(ns / 1000000),
                  static_cast<long long>(ns % 1000000));
    lines_.push_back(stamp + text);
  }
  [[nodiscard]] static std::string describe_cell(const actor_cell* c) {
    return std::string(c->ops()->type_name) + "#" + std::to_string(c->id());
  }

 private:
  friend class sim_delivery_task;

  // Marks the calling thread as the simulation's (internal to the runtime, with its own
  // counters) while it runs events; restores what it was.
  struct identity_guard {
    explicit identity_guard(sim_engine* e) : saved(this_thread_identity) {
      if (saved.core == e->core_) {
        nested = true;
        return;
      }
      if (saved.core != nullptr) {
        throw error(errc::would_block, "a simulation was driven from another runtime's thread");
      }
      this_thread_identity = thread_identity{e->core_, &e->counters_, e, nullptr, 0};
    }
    ~identity_guard() {
      if (!nested) this_thread_identity = saved;
    }
    identity_guard(const identity_guard&) = delete;
    identity_guard& operator=(const identity_guard&) = delete;
    thread_identity saved;
    bool nested = false;
  };

  // One event: an activation of a runnable actor picked at random or, when none is runnable,
  // the earliest timer (due no later than `limit`; the clock jumps to it).
  bool step(clock::time_point limit) {
    if (!runnable_.empty()) {
      const std::size_t n = runnable_.size();
      const std::size_t i = n == 1 ? 0 : schedule_rng_.below(n);
      actor_cell* cell = runnable_[i];
      runnable_[i] = runnable_.back();
      runnable_.pop_back();
      ++steps_;
      if (settings_.crash > 0) maybe_crash(cell);
      mix(1, cell->id());
      if (settings_.keep_lines) line("run " + describe_cell(cell));
      this_thread_identity.cell = cell;
      const activation outcome = cell->run(settings_.batch);  // may free the cell
      this_thread_identity.cell = nullptr;
      if (outcome == activation::yielded) runnable_.push_back(cell);
      return true;
    }
    if (timers_->empty() || timers_->next_due() > limit) return false;
    std::unique_ptr<timer_task> task = timers_->pop_due();
    ++steps_;
    mix(2, static_cast<std::uint64_t>(elapsed().count()));
    task->fire();
    task.reset();
    if (!limbo_.empty()) sweep_limbo();
    return true;
  }

  void maybe_crash(actor_cell* cell) {
    const int n = node_of(cell);
    // An actor with a crash still queued is not crashed again: the first ends it (or its
    // instance), so a second would never be a failure of its own.
    if (n == 0 || crashes_pending_.count(cell->id()) != 0) return;
    const double u = fault_rng_.unit();
    const std::uint64_t point = points_++;
    if (u < settings_.crash && allowed(point, fault_kind::crash)) {
      crash(cell, "random crash on node " + nodes_[n], true, point);
    }
  }

  bool cross(actor_cell* sender, actor_cell* target, int from, int to, envelope* e) noexcept {
    const std::uint64_t point = points_++;
    const link_faults& f = faults_for(from, to);
    // A fixed number of draws per message, whatever is injected: leaving a fault out of a
    // replay then disturbs the rest of the run as little as possible.
    const double u_drop = fault_rng_.unit();
    const double u_duplicate = fault_rng_.unit();
    const double u_delay = fault_rng_.unit();
    const std::uint64_t r_delay = fault_rng_.next();
    try {
      auto what = [&] {
        return std::string(e->ops->message_type) + " " + describe_cell(sender) + " -> " +
               describe_cell(target) + " (" + label(from) + " -> " + label(to) + ")";
      };
      if (blocked_.count({from, to}) != 0) {
        record_fault(point, fault_kind::partition, what(), false);
        return drop(
            target, e,
            "dropped by simulation: " + label(from) + " and " + label(to) + " are partitioned");
      }
      if (u_drop < f.drop && allowed(point, fault_kind::drop)) {
        record_fault(point, fault_kind::drop, what(), true);
        return drop(target, e, "dropped by simulation");
      }
      clock::duration delay{0};
      if (u_delay < f.delay && f.max_delay > std::chrono::nanoseconds(0) &&
          allowed(point, fault_kind::delay)) {
        const auto lo = static_cast<std::uint64_t>(f.min_delay.count());
        const auto hi = static_cast<std::uint64_t>(std::max(f.max_delay, f.min_delay).count());
        delay = std::chrono::duration_cast<clock::duration>(
            std::chrono::nanoseconds(lo + r_delay % (hi - lo + 1)));
        record_fault(point, fault_kind::delay,
                     what() + " by " + std::to_string(delay.count() / 1000) + " us", true);
      }
      envelope* copy = nullptr;
      if (u_duplicate < f.duplicate && e->ops->clone != nullptr &&
          allowed(point, fault_kind::duplicate)) {
        copy = e->ops->clone(*e);
        copy->correlation = e->correlation;
        if (core_->instrumented()) {  // written only then (envelope.hpp)
          copy->causation = e->causation;
          copy->queued = e->queued;
        }
        counter_slot& counters = core_->counters_here();
        counters.add(counters.sent);  // the copy is a message of its own, counted as one
        if (target->ops()->mailbox.capacity != 0) {
          target->extras()->depth.fetch_add(1, std::memory_order_relaxed);
        }
        if (core_->metrics_on()) target->extras()->stats.queued();
        record_fault(point, fault_kind::duplicate, what(), true);
      }
      const bool queued = deliver(sender, target, e, delay, f.reorder);
      if (copy != nullptr) deliver(sender, target, copy, delay, f.reorder);
      return queued;
    } catch (...) {  // out of memory while faulting: deliver it plainly
      return core_->enqueue(target, e);
    }
  }

  bool deliver(actor_cell* sender, actor_cell* target, envelope* e, clock::duration delay,
               bool reorder) {
    clock::time_point due = now() + delay;
    if (!reorder) {
      clock::time_point& last = last_due_[{sender->id(), target->id()}];
      due = std::max(due, last);
      last = due;
    }
    if (due <= now()) return core_->enqueue(target, e);
    ++in_flight_;
    timers_->schedule(due, std::make_unique<sim_delivery_task>(this, target, e));
    return true;
  }

  // A lost message: a dead letter now. A lost request of an ask stays "in the network" until
  // its ask completes otherwise (a timeout, as over a real network), then is discarded.
  bool drop(actor_cell* target, envelope* e, const std::string& why) noexcept {
    if (target->ops()->mailbox.capacity != 0) {
      target->extras()->depth.fetch_sub(1, std::memory_order_seq_cst);
    }
    if (core_->metrics_on()) target->extras()->stats.dequeued();
    if (e->ops->reply_of != nullptr) {
      core_->record_dead_letter(target, e->ops->message_type, dead_letter_reason::dropped,
                                e->correlation, why);
      try {
        limbo_.push_back(e);
      } catch (...) {
        e->destroy();
      }
      return false;
    }
    core_->dead_letter_out(target, e, dead_letter_reason::dropped, why);
    return false;
  }

  void sweep_limbo() noexcept {
    auto done = [](envelope* e) {
      if (!e->ops->reply_of(*e)->done()) return false;
      e->destroy();
      return true;
    };
    limbo_.erase(std::remove_if(limbo_.begin(), limbo_.end(), done), limbo_.end());
  }

  [[nodiscard]] bool allowed(std::uint64_t point, fault_kind kind) const {
    return !settings_.replay || allowed_.count({point, static_cast<int>(kind)}) != 0;
  }

  [[nodiscard]] const link_faults& faults_for(int from, int to) const {
    auto it = links_.find({from, to});
    return it != links_.end() ? it->second : settings_.faults;
  }

  [[nodiscard]] std::string label(int n) const {
    return n == 0 ? std::string("(no node)") : nodes_[n];
  }

  void record_fault(std::uint64_t point, fault_kind kind, std::string text, bool random) {
    mix(3 + static_cast<std::uint64_t>(kind), point);
    if (settings_.keep_lines) line("fault " + std::string(to_string(kind)) + " " + text);
    faults_.push_back(fault_record{point, kind, elapsed(), std::move(text), random});
  }
  void note(const std::string& text) {
    mix(9, faults_.size());
    line(text);
  }

  // Folds (kind, virtual time, value) into the trace hash, a word at a time (a byte-wise FNV
  // cost more than the rest of a step).
  void mix(std::uint64_t kind, std::uint64_t value) noexcept {
    const auto time = static_cast<std::uint64_t>((now() - start_).count());
    for (const std::uint64_t w : {kind, time, value}) {
      hash_ ^= w + 0x9e3779b97f4a7c15ULL + (hash_ << 6) + (hash_ >> 2);
      hash_ *= 0xff51afd7ed558ccdULL;
    }
  }

  runtime_core* core_;
  sim_timer_service* timers_;
  clock::time_point start_;
  sim_rng schedule_rng_;
  sim_rng fault_rng_;
  sim_settings settings_;
  counter_slot counters_;
  std::vector<actor_cell*> runnable_;
  std::size_t in_flight_ = 0;
  std::vector<envelope*> limbo_;
  std::vector<std::string> nodes_;
  std::unordered_map<std::uint64_t, int> assigned_;
  std::map<std::pair<int, int>, link_faults> links_;
  std::set<std::pair<int, int>> blocked_;
  std::map<std::pair<std::uint64_t, std::uint64_t>, clock::time_point> last_due_;
  std::set<std::pair<std::uint64_t, int>> allowed_;
  std::uint64_t points_ = 0;
  std::uint64_t steps_ = 0;
  std::uint64_t hash_ = 0xcbf29ce484222325ULL;
  std::vector<std::string> lines_;
  std::vector<fault_record> faults_;
  std::map<std::uint64_t, address> cells_;  // the assigned actors, for crash_node

 public:
  // Crashes queued and not yet handled or discarded, per actor id.
  std::unordered_map<std::uint64_t, int> crashes_pending_;
};

inline void sim_crash_destroy(envelope* e) noexcept {
  auto* crash = static_cast<sim_crash_envelope*>(e);
  auto& pending = crash->engine->crashes_pending_;
  if (auto it = pending.find(crash->target_id); it != pending.end() && --it->second == 0) {
    pending.erase(it);
  }
  delete crash;
}

inline sim_delivery_task::sim_delivery_task(sim_engine* engine, actor_cell* target,
                                            envelope* e) noexcept
    : engine_(engine), target_(target), envelope_(e) {
  target_->retain();
}

inline sim_delivery_task::~sim_delivery_task() {
  if (envelope_ != nullptr) {
    target_->core()->dead_letter_out(target_, envelope_, dead_letter_reason::shutdown,
                                     "the simulation shut down with the message in flight");
  }
  --engine_->in_flight_;
  target_->release();
}

inline void sim_delivery_task::fire() noexcept {
  envelope* e = std::exchange(envelope_, nullptr);
  if (engine_->keeps_lines()) {
    try {
      engine_->line("arrive " + std::string(e->ops->message_type) + " -> " +
                    sim_engine::describe_cell(target_));
    } catch (...) {
    }
  }
  target_->core()->enqueue(target_, e);
}

}  // namespace troupe::detail
