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
        allowed_.insert_or_assign({f.point, static_cast<int>(f.kind)}, f.delay);
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
  [[nodiscard]] bool idle() const noexcept override {
    // Actors held on a down node count once the runtime shuts down (step() releases them).
    return runnable_.empty() && in_flight_ == 0 && (held_.empty() || core_->accepting());
  }
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
    if (nodes_.size() == 1) return core_->enqueue(target, e);  // no nodes: no network
    const thread_identity& id = this_thread_identity;
    actor_cell* sender = id.core == core_ ? id.cell : nullptr;
    if (sender == nullptr || e->ops == &sim_crash_ops) return core_->enqueue(target, e);
    const int from = node_of(sender);
    const int to = node_of(target);
    if (from == to || supervises(sender, target) || supervises(target, sender)) {
      return core_->enqueue(target, e);
    }
    return cross(sender, target, from, to, e);
  }

  // A reply between nodes meets the faults of its link, as a request does (drawn the same way:
  // a fixed number of draws, one fault point).
  reply_fate reply_fault(const actor_cell* asker, std::string_view type) noexcept override {
    const thread_identity& id = this_thread_identity;
    const actor_cell* sender = id.core == core_ ? id.cell : nullptr;
    if (nodes_.size() == 1 || sender == nullptr) return {};
    const int from = node_of(sender);
    const int to = node_of(asker);
    if (from == to) return {};
    const std::uint64_t point = message_key(sender->id(), asker->id(), true);
    const fault_draw draw = decide(faults_for(from, to), point);
    reply_fate fate;
    try {
      const std::string what = "reply " + std::string(type) + " " + describe_cell(sender) + " -> " +
                               describe_cell(asker) + " (" + label(from) + " -> " + label(to) + ")";
      if (!down_.empty() && (down_.count(from) != 0 || down_.count(to) != 0)) {
        record_fault(point, fault_kind::crash, what + ": a node is down", false);
        fate.drop = true;
        return fate;
      }
      if (blocked_.count({from, to}) != 0) {
        record_fault(point, fault_kind::partition, what, false);
        fate.drop = true;
        return fate;
      }
      if (draw.drop) {
        record_fault(point, fault_kind::drop, what, true);
        fate.drop = true;
        return fate;
      }
      if (draw.delay > std::chrono::nanoseconds(0)) {
        fate.delay = draw.delay;
        record_fault(point, fault_kind::delay,
                     what + " by " + std::to_string(fate.delay.count() / 1000) + " us", true,
                     draw.delay);
      }
      if (draw.duplicate) {
        record_fault(point, fault_kind::duplicate, what, true);
        fate.duplicate = true;
      }
    } catch (...) {  // out of memory while describing it: deliver it plainly
      return {};
    }
    return fate;
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
    crash(cell, std::move(reason), false, key_of(4, cell->id(), explicit_crashes_++, 0));
  }
  // Every actor assigned to node `n` (not those that inherit it from a supervisor: the crash of
  // a supervisor's child is the supervisor's to handle).
  std::size_t crash_node(int n, const std::string& reason) {
    if (n != 0 && down_.insert(n).second) note("node " + nodes_[n] + " is down");
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

  // Brings a crashed node back: its actors run again (supervised ones restart, as their
  // supervisors decided, when they get to run), then the node's restart hooks run, in order.
  // Returns the number of hooks run.
  template <class Hook>
  std::size_t restart_node(int n, const std::vector<Hook>& hooks) {
    if (down_.erase(n) == 0) return 0;
    note("node " + nodes_[n] + " restarts");
    std::vector<actor_cell*> still;
    for (actor_cell* c : held_) {
      if (node_of(c) == n) {
        runnable_.push_back(c);
      } else {
        still.push_back(c);
      }
    }
    held_ = std::move(still);
    for (const Hook& h : hooks) h();
    return hooks.size();
  }
  [[nodiscard]] bool is_down(int n) const noexcept { return down_.count(n) != 0; }

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
    if (!held_.empty() && !core_->accepting()) {  // shutting down: every actor must stop
      runnable_.insert(runnable_.end(), held_.begin(), held_.end());
      held_.clear();
    }
    if (!runnable_.empty()) {
      const std::size_t n = runnable_.size();
      const std::size_t i = n == 1 ? 0 : schedule_rng_.below(n);
      actor_cell* cell = runnable_[i];
      runnable_[i] = runnable_.back();
      runnable_.pop_back();
      if (!down_.empty() && hold(cell)) return true;
      ++steps_;
      if (settings_.crash > 0) maybe_crash(cell);
      mix(1, cell->id());
      if (settings_.keep_lines) line("run " + describe_cell(cell));
      this_thread_identity.cell = cell;
      activation outcome = cell->run(settings_.batch);  // may free the cell
      // An actor whose batch ended with its mailbox empty goes idle in this step: picking it
      // again only to find nothing cost half a step per message. (Both are orders the threaded
      // runtime can produce: a message sent later schedules it again.)
      if (outcome == activation::yielded && cell->nothing_waiting()) {
        outcome = cell->run(settings_.batch);
      }
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

  // A supervisor and its children live in one process (supervision does not span nodes): what
  // passes between them (a child's exit, the supervisor's stop) is never faulted.
  static bool supervises(const actor_cell* a, const actor_cell* b) noexcept {
    const watch_state* x = b->extras();
    return x != nullptr && x->supervisor == a;
  }

  // An actor on a down node does not run until the node restarts, unless it has a crash to
  // reach (that is how it goes down) or the runtime is shutting down (which must stop it).
  bool hold(actor_cell* cell) {
    if (!core_->accepting()) return false;
    if (down_.count(node_of(cell)) == 0 || crashes_pending_.count(cell->id()) != 0) return false;
    try {
      held_.push_back(cell);
    } catch (...) {
      std::terminate();  // as schedule(): nowhere to keep the actor
    }
    return true;
  }

  void maybe_crash(actor_cell* cell) {
    const int n = node_of(cell);
    // An actor with a crash still queued is not crashed again: the first ends it (or its
    // instance), so a second would never be a failure of its own.
    if (n == 0 || crashes_pending_.count(cell->id()) != 0) return;
    const double u = fault_rng_.unit();
    const std::uint64_t point = key_of(3, cell->id(), activations_[cell->id()]++, 0);
    if (settings_.replay ? allowed(point, fault_kind::crash) : u < settings_.crash) {
      crash(cell, "random crash on node " + nodes_[n], true, point);
    }
  }

  bool cross(actor_cell* sender, actor_cell* target, int from, int to, envelope* e) noexcept {
    const std::uint64_t point = message_key(sender->id(), target->id(), false);
    const link_faults& f = faults_for(from, to);
    const fault_draw draw = decide(f, point);
    try {
      auto what = [&] {
        return std::string(e->ops->message_type) + " " + describe_cell(sender) + " -> " +
               describe_cell(target) + " (" + label(from) + " -> " + label(to) + ")";
      };
      if (!down_.empty() && (down_.count(from) != 0 || down_.count(to) != 0)) {
        const int down = down_.count(to) != 0 ? to : from;
        record_fault(point, fault_kind::crash, what() + ": node " + label(down) + " is down",
                     false);
        return drop(target, e, "dropped by simulation: node " + label(down) + " is down");
      }
      if (blocked_.count({from, to}) != 0) {
        record_fault(point, fault_kind::partition, what(), false);
        return drop(
            target, e,
            "dropped by simulation: " + label(from) + " and " + label(to) + " are partitioned");
      }
      if (draw.drop) {
        record_fault(point, fault_kind::drop, what(), true);
        return drop(target, e, "dropped by simulation");
      }
      clock::duration delay{0};
      if (draw.delay > std::chrono::nanoseconds(0)) {
        delay = std::chrono::duration_cast<clock::duration>(draw.delay);
        record_fault(point, fault_kind::delay,
                     what() + " by " + std::to_string(delay.count() / 1000) + " us", true,
                     draw.delay);
      }
      envelope* copy = nullptr;
      if (draw.duplicate && e->ops->clone != nullptr) {
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

  // Uniform in [min_delay, max_delay] from one draw.
  static std::chrono::nanoseconds draw_delay(const link_faults& f, std::uint64_t r) noexcept {
    const auto lo = static_cast<std::uint64_t>(f.min_delay.count());
    const auto hi = static_cast<std::uint64_t>(std::max(f.max_delay, f.min_delay).count());
    return std::chrono::nanoseconds(lo + r % (hi - lo + 1));
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
    return allowed_.count({point, static_cast<int>(kind)}) != 0;
  }

  // A fault's name, stable when other faults are left out of a replay (shrinking): which
  // message it hit (the n-th from one actor to another, requests and replies counted apart) or
  // which activation (the n-th of an actor). A counter of all decisions would shift as soon as
  // a removed delay changed the order of later messages, and name another message.
  std::uint64_t message_key(std::uint64_t from, std::uint64_t to, bool reply) {
    std::uint64_t& n = pair_sequence_[{from, to * 2 + (reply ? 1 : 0)}];
    return key_of(reply ? 2 : 1, from, to, n++);
  }
  static std::uint64_t key_of(std::uint64_t kind, std::uint64_t a, std::uint64_t b,
                              std::uint64_t c) noexcept {
    std::uint64_t h = 0x8a5cd789635d2dffULL * (kind + 1);
    for (const std::uint64_t w : {a, b, c}) {
      h ^= w + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
      h *= 0xff51afd7ed558ccdULL;
      h ^= h >> 32;
    }
    return h;
  }

  // What happens to one crossing message: drawn from the seed (a fixed number of draws per
  // message, whatever is injected), or in a replay exactly the faults listed for it.
  struct fault_draw {
    bool drop = false;
    bool duplicate = false;
    std::chrono::nanoseconds delay{0};
  };
  fault_draw decide(const link_faults& f, std::uint64_t point) {
    const double u_drop = fault_rng_.unit();
    const double u_duplicate = fault_rng_.unit();
    const double u_delay = fault_rng_.unit();
    const std::uint64_t r_delay = fault_rng_.next();
    fault_draw d;
    if (settings_.replay) {
      d.drop = allowed(point, fault_kind::drop);
      d.duplicate = allowed(point, fault_kind::duplicate);
      if (auto it = allowed_.find({point, static_cast<int>(fault_kind::delay)});
          it != allowed_.end()) {
        d.delay = std::max(it->second, std::chrono::nanoseconds(1));
      }
      return d;
    }
    d.drop = u_drop < f.drop;
    d.duplicate = u_duplicate < f.duplicate;
    if (u_delay < f.delay && f.max_delay > std::chrono::nanoseconds(0)) {
      d.delay = draw_delay(f, r_delay);
    }
    return d;
  }

  [[nodiscard]] const link_faults& faults_for(int from, int to) const {
    auto it = links_.find({from, to});
    return it != links_.end() ? it->second : settings_.faults;
  }

  [[nodiscard]] std::string label(int n) const {
    return n == 0 ? std::string("(no node)") : nodes_[n];
  }

  void record_fault(std::uint64_t point, fault_kind kind, std::string text, bool random,
                    std::chrono::nanoseconds delay = {}) {
    mix(3 + static_cast<std::uint64_t>(kind), point);
    if (settings_.keep_lines) line("fault " + std::string(to_string(kind)) + " " + text);
    faults_.push_back(fault_record{point, kind, elapsed(), std::move(text), random, delay});
  }
  void note(const std::string& text) {
    mix(9, faults_.size());
    line(text);
  }

  // Folds (kind, virtual time, value) into the trace hash, a word at a time (a byte-wise FNV
  // cost more than the rest of a step).
  // Two multiply-xorshift rounds per event (kind and time, then value): every step pays for
  // it, so it is kept short; it only has to tell two runs apart, not resist an adversary.
  void mix(std::uint64_t kind, std::uint64_t value) noexcept {
    const auto time = static_cast<std::uint64_t>((timers_->now() - start_).count());
    hash_ = (hash_ ^ (time * 0x9e3779b97f4a7c15ULL + kind)) * 0xff51afd7ed558ccdULL;
    hash_ = (hash_ ^ (hash_ >> 29) ^ value) * 0xc4ceb9fe1a85ec53ULL;
  }

  runtime_core* core_;
  sim_timer_service* timers_;
  clock::time_point start_;
  sim_rng schedule_rng_;
  sim_rng fault_rng_;
  sim_settings settings_;
  counter_slot counters_;
  std::vector<actor_cell*> runnable_;
  std::vector<actor_cell*> held_;  // runnable, on a down node: waiting for its restart
  std::set<int> down_;             // crashed nodes not restarted yet
  std::size_t in_flight_ = 0;
  std::vector<envelope*> limbo_;
  std::vector<std::string> nodes_;
  std::unordered_map<std::uint64_t, int> assigned_;
  std::map<std::pair<int, int>, link_faults> links_;
  std::set<std::pair<int, int>> blocked_;
  std::map<std::pair<std::uint64_t, std::uint64_t>, clock::time_point> last_due_;
  // replay: the faults to inject, by (point, kind), with a delay's length
  std::map<std::pair<std::uint64_t, int>, std::chrono::nanoseconds> allowed_;
  std::map<std::pair<std::uint64_t, std::uint64_t>, std::uint64_t> pair_sequence_;
  std::unordered_map<std::uint64_t, std::uint64_t> activations_;  // per actor, with random crashes
  std::uint64_t explicit_crashes_ = 0;
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
