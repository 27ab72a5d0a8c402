// troupe::simulation: a runtime that runs unchanged actors deterministically on the calling thread,
// with a seeded schedule, virtual time and network faults between nodes.
//
//   troupe::simulation sim({.seed = 42, .faults = {.drop = 0.1}});
//   troupe::runtime& rt = sim.runtime();
//   auto a = sim.spawn_on<account>("bank", 100);
//   auto c = sim.spawn_on<client>("shop", a);
//   long b = a.ask(balance{}).get();   // get() runs the simulation until the reply is there
//   sim.run();                         // runs until nothing is left to do
//
// A run is a function of (seed, options, code): the same seed gives the same trace (trace_hash()).
// Properties over many seeds, determinism checks and shrinking: troupe/sim_check.hpp.
#pragma once

#include <chrono>
#include <cstdint>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <troupe/detail/sim_clock.hpp>
#include <troupe/detail/sim_engine.hpp>
#include <troupe/runtime.hpp>
#include <troupe/simulation_faults.hpp>
#include <troupe/tracing.hpp>

namespace troupe {

// Designated initialisers read well: troupe::simulation sim({.seed = 7, .faults = {.drop = .1}}).
struct simulation_options {
  // Picks the order in which runnable actors run, and which faults happen.
  std::uint64_t seed = 0;
  // Faults of every link between two different nodes (simulation::link sets one link's own).
  link_faults faults{};
  // Probability, per activation of an actor assigned to a node, that it crashes (its handler
  // throws simulated_crash at its next message; its supervisor decides what follows).
  double crash = 0;
  // Messages an actor handles per activation before the next random pick (1: the finest
  // interleaving; larger runs faster).
  std::size_t batch = 1;
  // Keep the trace's human-readable lines (trace(), write_trace()); the hash is kept always.
  bool trace = false;
  // A bound on the events of one run(), run_for(), run_until(), get() or shutdown: a guard
  // against timers that re-arm forever (0: none). run() and run_for() throw error(timeout) past
  // it, get() error(would_block); run_until() returns false; shutdown goes on to stop actors.
  std::uint64_t max_events = 50'000'000;
  // Replay: inject exactly these random faults (matched by point and kind, whatever the seed
  // would draw), e.g. a shrunk schedule from sim::check's report. Unset: the faults the seed
  // draws.
  std::optional<std::vector<fault_record>> replay_faults{};
  // The runtime's own options (workers is ignored: there are no threads).
  runtime_options runtime{};
};

// Owns a troupe::runtime whose actors run only inside run(), run_for(), run_until(), a
// reply's get() or shutdown, on the thread that calls them. Not thread-safe: one thread uses
// the simulation and its runtime. The destructor shuts the runtime down (running it).
class simulation {
 public:
  explicit simulation(simulation_options options = {}) : options_(std::move(options)) {
    runtime_options o = options_.runtime;
    if (options_.trace) {
      lines_hook_ = std::make_shared<line_hook>(std::move(o.trace));
      o.trace = lines_hook_;
    }
    rt_.reset(new troupe::runtime(std::move(o), &simulation::wire, this));
    if (lines_hook_) lines_hook_->engine = engine_;
  }
  simulation(const simulation&) = delete;
  simulation& operator=(const simulation&) = delete;
  ~simulation() = default;  // rt_'s destructor shuts down, driving the engine

  // The runtime to spawn on, send through, subscribe to: the same API as a threaded one.
  [[nodiscard]] troupe::runtime& runtime() noexcept { return *rt_; }
  [[nodiscard]] std::uint64_t seed() const noexcept { return options_.seed; }

  // Runs until no actor is runnable and no timer is pending; returns the events run. Throws
  // error(timeout) past options.max_events (a periodic timer never lets it finish: run_for).
  std::uint64_t run() { return engine_->run(); }
  // Runs the events due within `d` of virtual time, then sets the clock to now + d.
  std::uint64_t run_for(std::chrono::nanoseconds d) {
    const auto until = engine_->now() + std::chrono::duration_cast<detail::clock::duration>(d);
    const std::uint64_t n = engine_->run(until);
    engine_->advance_to(until);
    return n;
  }
  // Runs until pred() holds (checked between events) or nothing is left; returns pred().
  template <class Pred>
  bool run_until(Pred pred) {
    return engine_->run_until(
        [](const void* p) {
          return static_cast<bool>((*static_cast<Pred*>(const_cast<void*>(p)))());
        },
        &pred, {});
  }

  // Virtual time: the runtime's clock (ctx.now()), and how far it moved since the start.
  [[nodiscard]] std::chrono::steady_clock::time_point now() const noexcept {
    return engine_->now();
  }
  [[nodiscard]] std::chrono::nanoseconds elapsed() const noexcept { return engine_->elapsed(); }

  // ---- nodes: named groups of actors; faults apply to messages between them ----

  // Spawns A (as runtime().spawn) and assigns it to `node`.
  template <Actor A, class... Args>
  ref<A> spawn_on(std::string_view node, Args&&... args) {
    ref<A> r = rt_->template spawn<A>(std::forward<Args>(args)...);
    assign(r, node);
    return r;
  }
  // Puts an actor on `node` ("" = none). Its supervised children follow it unless assigned.
  // Throws error(invalid_ref) on an empty address.
  void assign(const address& who, std::string_view node) {
    engine_->assign(cell(who), engine_->node(node));
  }
  // The node an actor is on ("" = none).
  [[nodiscard]] std::string node_of(const address& who) const {
    return engine_->node_name(engine_->node_of(cell(who)));
  }
  // The faults of messages from `from` to `to` (one direction), instead of options.faults.
  void link(std::string_view from, std::string_view to, const link_faults& faults) {
    engine_->set_link(engine_->node(from), engine_->node(to), faults);
  }
  // Messages between the two nodes (both ways) are dropped until heal(); each is a dead letter
  // (reason dropped) and a fault_record of kind partition.
  void partition(std::string_view a, std::string_view b) {
    engine_->partition(engine_->node(a), engine_->node(b));
  }
  void heal(std::string_view a, std::string_view b) {
    engine_->heal(engine_->node(a), engine_->node(b));
  }
  void heal() { engine_->heal_all(); }
  // The actor fails when it reaches this (queued) crash: its handler throws simulated_crash,
  // and its supervisor (if any) restarts or stops it. Counted as a message, dead-lettered as a
  // failed handler.
  void crash(const address& who, std::string reason = "crashed by simulation") {
    engine_->crash(cell(who), std::move(reason));
  }
  // Crashes `node`: every running actor assigned to it fails when it reaches the crash (its
  // supervisor decides what follows), and the node is down until restart_node(): its actors do
  // not run, and every message between it and another node (replies too) is lost (a dead letter,
  // reason dropped; a fault_record of kind crash). Returns the actors crashed.
  std::size_t crash_node(std::string_view node, const std::string& reason = "node crashed") {
    return engine_->crash_node(engine_->node(node), reason);
  }
  // Brings a crashed node back up: its actors run again (a supervised one restarts, with its
  // mailbox, when its supervisor asked for that), then the hooks given to on_restart(node) run,
  // in order (to spawn again what had no supervisor). Returns the hooks run; 0 if the node was
  // not down.
  std::size_t restart_node(std::string_view node) {
    const int n = engine_->node(node);
    std::vector<std::function<void()>> hooks;
    for (const auto& [name, hook] : restart_hooks_) {
      if (name == node) hooks.push_back(hook);
    }
    return engine_->restart_node(n, hooks);
  }
  // Runs `hook` (on the simulation's thread, like a test's own code) each time `node` restarts.
  void on_restart(std::string_view node, std::function<void()> hook) {
    restart_hooks_.emplace_back(std::string(node), std::move(hook));
  }
  // Whether `node` crashed and has not restarted.
  [[nodiscard]] bool node_down(std::string_view node) {
    return engine_->is_down(engine_->node(node));
  }

  // ---- the record ----

  // A hash of everything that happened (each activation's actor and virtual time, timers,
  // faults): equal for two runs of one seed and scenario.
  [[nodiscard]] std::uint64_t trace_hash() const noexcept { return engine_->hash(); }
  // The human-readable trace (options.trace; else empty): one line per activation, handled
  // message, arrival of a delayed message and fault, prefixed with the virtual time.
  [[nodiscard]] const std::vector<std::string>& trace() const noexcept { return engine_->lines(); }
  // Writes trace() to `path`, one line each; throws std::runtime_error if it cannot.
  void write_trace(const std::string& path) const {
    std::ofstream out(path);
    for (const std::string& l : trace()) out << l << '\n';
    if (!out) throw std::runtime_error("troupe::simulation: cannot write the trace to " + path);
  }
  // The faults injected so far, in order.
  [[nodiscard]] const std::vector<fault_record>& faults() const noexcept {
    return engine_->faults();
  }
  // Events run so far (activations and timers).
  [[nodiscard]] std::uint64_t events() const noexcept { return engine_->steps(); }

 private:
  // Adds a line per handled message to the trace (and passes every event on to the user's hook).
  struct line_hook final : trace_hook {
    explicit line_hook(std::shared_ptr<trace_hook> next) : user(std::move(next)) {}
    void on_event(const trace_event& t) noexcept override {
      if (engine != nullptr && t.point == trace_point::handle_start) {
        try {
          engine->line("handle " + std::string(t.message_type) + " #" +
                       std::to_string(t.message_id) + " by " + std::string(t.actor_type) + "#" +
                       std::to_string(t.actor_id) +
                       (t.causation_id != 0 ? " (cause #" + std::to_string(t.causation_id) + ")"
                                            : std::string()));
        } catch (...) {
        }
      }
      if (user) user->on_event(t);
    }
    std::shared_ptr<trace_hook> user;
    detail::sim_engine* engine = nullptr;
  };

  static void wire(detail::runtime_core& core, void* self) {
    auto* sim = static_cast<simulation*>(self);
    // An arbitrary, fixed start: far from the clock's epoch, like a real steady clock.
    auto timers = std::make_unique<detail::sim_timer_service>(
        detail::clock::time_point(std::chrono::hours(24 * 365)));
    const simulation_options& o = sim->options_;
    auto engine = std::make_unique<detail::sim_engine>(
        &core, timers.get(),
        detail::sim_settings{o.seed, o.batch == 0 ? 1 : o.batch, o.faults, o.crash, o.trace,
                             o.max_events, o.replay_faults});
    sim->engine_ = engine.get();
    core.set_driver(engine.get());
    core.attach(std::move(timers), std::move(engine));
  }

  static detail::actor_cell* cell(const address& who) {
    detail::actor_cell* c = detail::access::cell_of(who);
    if (c == nullptr) throw error(errc::invalid_ref, "troupe::simulation: an empty address");
    return c;
  }

  simulation_options options_;
  std::vector<std::pair<std::string, std::function<void()>>> restart_hooks_;
  std::shared_ptr<line_hook> lines_hook_;
  detail::sim_engine* engine_ = nullptr;  // owned by the runtime's core
  std::unique_ptr<troupe::runtime> rt_;
};

}  // namespace troupe
