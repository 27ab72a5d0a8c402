// order_saga, distributed and durable: the saga of examples/order_saga.cpp (inventory -> payment
// -> shipping, compensated in reverse when a step fails) as separate processes -- orders (the
// coordinator), inventory (with shipping) and payments -- over one nats-server with JetStream.
// Every command is an item of a durable work queue, every step's answer an event of a durable
// topic, so a service process that dies loses nothing: what it held comes back to the next one.
//
// The driver (this program without a role) starts the services as child processes of its own
// binary, places order 1001, and kills the payments process with SIGKILL while it holds 1001's
// charge request: charged and answered, not yet acknowledged. It places the other orders while
// payments is down, starts payments again, and waits until every saga ended and every queue is
// empty. Then it checks, across the processes: every order completed or compensated, none lost,
// none charged twice (the provider's ledger, a stream keyed by idempotency key), and that each
// queue's items were handled or dead-lettered -- none left.
//
// Idempotency, in two layers (the messages and actions are those of order_saga.hpp):
//  * once_by_key (below): a service remembers, by command id, the answer it gave; a redelivered
//    command (delivery::attempt > 1) or a repeated one gets that answer again and does nothing.
//    It survives the process because it is rebuilt at start from the service's own answers, kept
//    by the results stream, before the service takes work.
//  * the payment provider's idempotency key: a crash between charging and storing the answer
//    leaves no answer to find, so the redelivered charge reaches the provider again; the
//    provider (here a stream de-duplicating by message id) charges each key once.
//
// What stays in memory: the coordinator's open sagas and the inventory's stock (their processes
// are not killed here; a coordinator that must survive a crash rebuilds its sagas by replaying
// the results stream -- event sourcing).
//
//   example_order_saga_distributed nats://127.0.0.1:4222    (or @file: the URL is in it)
//   (scripts/demo.sh --distributed saga starts a nats-server and runs it)
#include "../order_saga.hpp"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <spawn.h>
#include <stdexcept>
#include <string>
#include <string_view>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include <troupe/nats/jetstream.hpp>
#include <troupe/nats/node.hpp>

extern char** environ;

using namespace std::chrono_literals;
using order_saga::charge_request;
using order_saga::place_order;
using order_saga::refund;
using order_saga::release;
using order_saga::reserve;
using order_saga::ship;
using order_saga::step_result;
using troupe::nats::delivery;

// The saga's messages, named for the wire (order_saga.hpp's types, unchanged).
TROUPE_WIRE_NAME(order_saga::place_order, "saga.place_order")
TROUPE_WIRE_NAME(order_saga::reserve, "saga.reserve")
TROUPE_WIRE_NAME(order_saga::release, "saga.release")
TROUPE_WIRE_NAME(order_saga::charge_request, "saga.charge_request")
TROUPE_WIRE_NAME(order_saga::refund, "saga.refund")
TROUPE_WIRE_NAME(order_saga::ship, "saga.ship")
TROUPE_WIRE_NAME(order_saga::step_result, "saga.step_result")

// A line of the payment provider's ledger: a charge, or the refund of one, by its key.
struct ledger_entry {
  static constexpr std::string_view troupe_wire_name = "saga.ledger_entry";
  std::string key;  // the charge's idempotency key (the charge command's id)
  int order = 0;
  int cents = 0;
  bool refund = false;
};
// How a saga ended, published by the coordinator once per order.
struct saga_outcome {
  static constexpr std::string_view troupe_wire_name = "saga.outcome";
  int order = 0;
  std::string text;
};

namespace {

constexpr int payment_attempts = 3;  // deliveries of a charge request before giving up

// ---- idempotent handling by key ---------------------------------------------------------------

// What a service already did, by key (a command id), and the answer it gave. A repeat of a key
// -- redelivered after a crash or a throw, or sent again -- gets the recorded answer instead of
// the work being done twice. Durable only as far as what it is rebuilt from: here the answers
// the service published (each with its key as message id) on a durable topic, replayed at
// start. A crash after the work but before its answer was stored leaves nothing to find; what
// the work touched must then be idempotent by the same key (a payment provider's key).
template <class Result>
class once_by_key {
 public:
  [[nodiscard]] const Result* find(std::string_view key) const {
    auto it = done_.find(key);
    return it == done_.end() ? nullptr : &it->second;
  }
  void remember(std::string key, Result answer) {
    done_.insert_or_assign(std::move(key), std::move(answer));
  }
  [[nodiscard]] std::size_t size() const noexcept { return done_.size(); }

 private:
  std::map<std::string, Result, std::less<>> done_;
};

// The key of a command whose answer is `r` (answers' ids are the command's id plus "/done").
std::string key_of(const step_result& r) {
  return r.id.substr(0, r.id.rfind("/done"));
}

// A step's answer and the subject it went out on ("payment.charged", ...).
struct answer {
  std::string subject;
  step_result result;
};

// A no-op a service's main thread asks its actor at "quit": once answered, every delivery posted
// before it was handled and settled (so the counters read next are final).
struct sync_point {};

// A value that only grows, waited for by another thread (bounded).
class watermark {
 public:
  void raise(std::uint64_t v) {
    {
      std::lock_guard lock(mutex_);
      if (v <= value_) return;
      value_ = v;
    }
    cv_.notify_all();
  }
  bool wait_for(std::uint64_t v, std::chrono::milliseconds bound) {
    std::unique_lock lock(mutex_);
    return cv_.wait_for(lock, bound, [&] { return value_ >= v; });
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  std::uint64_t value_ = 0;
};

// ---- the durable queues and topics every process opens (the first one makes them) -------------

struct saga_streams {
  explicit saga_streams(troupe::nats::jetstream& js)
      : orders(js.make_queue<place_order>("saga.orders", queue_options())),
        reserves(js.make_queue<reserve>("saga.reserve", queue_options())),
        releases(js.make_queue<release>("saga.release", queue_options())),
        shipments(js.make_queue<ship>("saga.ship", queue_options())),
        charges(js.make_queue<charge_request>("saga.charge", queue_options())),
        refunds(js.make_queue<refund>("saga.refund", queue_options())),
        results(js.retain<step_result>("saga.results.>")),
        outcomes(js.retain<saga_outcome>("saga.outcomes")),
        ledger(js.retain<ledger_entry>("provider.ledger")) {}

  static troupe::nats::durable_queue_options queue_options() {
    // ack_wait: how long a dead consumer's item waits before another process gets it.
    return {.consumer = {.max_attempts = payment_attempts,
                         .ack_wait = 2000ms,
                         .backoff = 10ms,
                         .max_backoff = 100ms}};
  }
  // Publishes a step's answer and waits until the stream stored it: the command is acknowledged
  // only after its answer is safe. The answer's id is its message id: a repeat is stored once.
  void publish(const answer& a) const {
    results.publish_sync("saga.results." + a.subject, a.result, {.id = a.result.id});
  }

  troupe::nats::durable_queue<place_order> orders;
  troupe::nats::durable_queue<reserve> reserves;
  troupe::nats::durable_queue<release> releases;
  troupe::nats::durable_queue<ship> shipments;
  troupe::nats::durable_queue<charge_request> charges;
  troupe::nats::durable_queue<refund> refunds;
  troupe::nats::durable_topic<step_result> results;
  troupe::nats::durable_topic<saga_outcome> outcomes;
  troupe::nats::durable_topic<ledger_entry> ledger;
};

void say(const char* format, int order, std::uint64_t attempt) {
  std::printf(format, order, static_cast<unsigned long long>(attempt));
  std::fflush(stdout);
}

// ---- the services -----------------------------------------------------------------------------

// Inventory and shipping (the rules of order_saga::inventory and order_saga::shipping): each
// command answered once by id; a repeat gets the same answer.
class inventory_service {
 public:
  explicit inventory_service(const saga_streams* s) : streams_(s) {}

  void on(const delivery<reserve>& d) {
    const reserve& r = d.value;
    if (repeat(r.id)) return;
    int& left = stock_[r.sku];
    step_result result{r.id + "/done", r.order, left >= r.quantity, ""};
    if (result.ok) {
      left -= r.quantity;
      reserved_[r.order] = {r.sku, r.quantity};
    } else {
      result.detail = "out of stock: " + r.sku;
    }
    reply(result.ok ? "inventory.reserved" : "inventory.rejected", result);
  }
  void on(const delivery<release>& d) {
    if (repeat(d.value.id)) return;
    if (auto it = reserved_.find(d.value.order); it != reserved_.end()) {
      stock_[it->second.first] += it->second.second;
      reserved_.erase(it);
    }
    reply("inventory.released", step_result{d.value.id + "/done", d.value.order, true, ""});
  }
  void on(const delivery<ship>& d) {
    if (repeat(d.value.id)) return;
    const bool ok = d.value.destination != "Atlantis";
    reply(ok ? "shipping.shipped" : "shipping.failed",
          step_result{d.value.id + "/done", d.value.order, ok, ok ? "" : "no carrier to Atlantis"});
  }
  bool on(sync_point) const { return true; }
  std::string on(const order_saga::stock_of& q) const {
    auto it = stock_.find(q.sku);
    return q.sku + " " + std::to_string(it == stock_.end() ? 0 : it->second);
  }

 private:
  bool repeat(const std::string& key) {
    const answer* before = done_.find(key);
    if (before == nullptr) return false;
    streams_->publish(*before);  // stored once: the same message id
    return true;
  }
  void reply(const char* subject, const step_result& r) {
    answer a{subject, r};
    streams_->publish(a);
    done_.remember(key_of(r), std::move(a));
  }

  const saga_streams* streams_;
  std::map<std::string, int> stock_{{"lamp", 10}, {"sofa", 1}};
  std::map<int, std::pair<std::string, int>> reserved_;
  once_by_key<answer> done_;
};

// What the payments service did, for its report (read at "quit").
struct payments_report {
  std::uint64_t provider_calls = 0;  // charges sent to the provider (a retry calls it again)
  std::uint64_t recognised = 0;      // commands answered from once_by_key, not done again
};

// Payments (the rules of order_saga::payment_gateway and order_saga::refunds): charges at the
// provider with the command id as idempotency key; throws on a transient error so that the queue
// redelivers. `done` outlives the actor's restarts (it is the process's); `hold` keeps order
// 1001's first charge, answered but unacknowledged, until the process is killed (the demo).
class payments_service {
 public:
  payments_service(const saga_streams* s, once_by_key<answer>* done, payments_report* report,
                   watermark* replayed, bool hold)
      : streams_(s), done_(done), report_(report), replayed_(replayed), hold_(hold) {}

  // The answers already given, replayed from the results stream at start (then live).
  void on(const delivery<step_result>& d) {
    if (d.subject.starts_with("saga.results.payment.")) {
      done_->remember(key_of(d.value), answer{std::string(d.subject.substr(13)), d.value});
    }
    replayed_->raise(d.sequence);
  }

  void on(const delivery<charge_request>& d) {
    const charge_request& c = d.value;
    if (repeat(c.id, c.order, d.attempt)) return;
    say("charging order=%d attempt=%llu\n", c.order, d.attempt);
    if (c.order == 1003)
      return reply("payment.declined", {c.id + "/done", c.order, false, "card declined"});
    if (c.order == 1005) {
      if (d.attempt < payment_attempts) {
        throw std::runtime_error("order 1005: payment gateway unreachable");
      }
      // The last attempt: a business answer instead of a dead letter, so the saga compensates.
      return reply("payment.failed", {c.id + "/done", c.order, false,
                                      "payment gateway unreachable after " +
                                          std::to_string(payment_attempts) + " attempts"});
    }
    ++report_->provider_calls;
    streams_->ledger.publish_sync(ledger_entry{c.id, c.order, c.cents, false}, {.id = c.id});
    if (c.order == 1004 && d.attempt == 1) {
      throw std::runtime_error("order 1004: connection reset after charging");
    }
    reply("payment.charged", {c.id + "/done", c.order, true, ""});
    if (hold_ && c.order == 1001 && d.attempt == 1) {
      say("holding order=%d attempt=%llu (charged and answered, not acknowledged)\n", c.order,
          d.attempt);
      for (;;) std::this_thread::sleep_for(1h);  // until SIGKILL
    }
  }

  bool on(sync_point) const { return true; }

  void on(const delivery<refund>& d) {
    const refund& r = d.value;
    if (repeat(r.id, r.order, d.attempt)) return;
    const std::string key = std::to_string(r.order) + "/charge";
    streams_->ledger.publish_sync(ledger_entry{key, r.order, 0, true}, {.id = key + "/refund"});
    reply("payment.refunded", {r.id + "/done", r.order, true, ""});
  }

 private:
  bool repeat(const std::string& key, int order, std::uint64_t attempt) {
    const answer* before = done_->find(key);
    if (before == nullptr) return false;
    ++report_->recognised;
    say("recognised order=%d attempt=%llu: answered before, not done again\n", order, attempt);
    streams_->publish(*before);  // stored once: the same message id
    return true;
  }
  void reply(const char* subject, const step_result& r) {
    answer a{subject, r};
    streams_->publish(a);
    done_->remember(key_of(r), std::move(a));
  }

  const saga_streams* streams_;
  once_by_key<answer>* done_;  // the process's: outlives the actor's restarts
  payments_report* report_;
  watermark* replayed_;
  bool hold_;
};

// The coordinator (the saga of order_saga::coordinator, on durable queues): commands go out as
// queue items with their id as message id, answers come back from the results stream through
// the durable group "orders"; each answer is handled once by id.
class coordinator_service {
 public:
  explicit coordinator_service(const saga_streams* s) : streams_(s) {}

  void on(const delivery<place_order>& d) {
    if (sagas_.contains(d.value.order)) return;  // placed before
    saga& s = sagas_[d.value.order];
    s.order = d.value;
    start(s, "reserve");
  }

  bool on(sync_point) const { return true; }

  void on(const delivery<step_result>& d) {
    const step_result& r = d.value;
    if (!seen_.insert(r.id).second) return;  // redelivered: handled before
    auto found = sagas_.find(r.order);
    if (found == sagas_.end()) return;
    saga& s = found->second;
    const auto slash = r.id.find('/');
    const std::string step = r.id.substr(slash + 1, r.id.rfind('/') - slash - 1);
    if (step != s.waiting_for) return;
    if (step == "reserve") {
      if (!r.ok) return finish(s, "cancelled: " + r.detail);
      s.done.push_back("reserved");
      start(s, "charge");
    } else if (step == "charge") {
      if (!r.ok) return compensate(s, r.detail);
      s.done.push_back("charged");
      start(s, "ship");
    } else if (step == "ship") {
      if (!r.ok) return compensate(s, r.detail);
      finish(s, "completed");
    } else if (step == "refund") {
      s.undone.push_back("refunded");
      undo_next(s);
    } else if (step == "release") {
      s.undone.push_back("stock released");
      undo_next(s);
    }
  }

 private:
  struct saga {
    place_order order;
    std::vector<std::string> done;
    std::vector<std::string> undone;
    std::string failure;
    std::string waiting_for;
  };

  void start(saga& s, const char* step) {
    s.waiting_for = step;
    const place_order& p = s.order;
    const std::string id = std::to_string(p.order) + "/" + step;
    const troupe::nats::publish_options once{.id = id};
    if (s.waiting_for == "reserve") {
      streams_->reserves.push_sync(reserve{id, p.order, p.sku, p.quantity}, once);
    } else if (s.waiting_for == "charge") {
      streams_->charges.push_sync(charge_request{id, p.order, p.cents}, once);
    } else if (s.waiting_for == "ship") {
      streams_->shipments.push_sync(ship{id, p.order, p.destination}, once);
    } else if (s.waiting_for == "refund") {
      streams_->refunds.push_sync(refund{id, p.order}, once);
    } else if (s.waiting_for == "release") {
      streams_->releases.push_sync(release{id, p.order}, once);
    }
  }
  void compensate(saga& s, const std::string& why) {
    s.failure = why;
    undo_next(s);
  }
  void undo_next(saga& s) {
    if (s.done.empty()) return finish(s, "cancelled: " + s.failure);
    const std::string last = s.done.back();
    s.done.pop_back();
    if (last == "charged") return start(s, "refund");
    if (last == "reserved") return start(s, "release");
    undo_next(s);
  }
  void finish(saga& s, std::string outcome) {
    s.waiting_for.clear();
    if (!s.undone.empty()) {
      outcome += " (compensated:";
      for (const auto& u : s.undone) outcome += " " + u + ",";
      outcome.back() = ')';
    }
    streams_->outcomes.publish_sync(saga_outcome{s.order.order, outcome},
                                    {.id = "outcome/" + std::to_string(s.order.order)});
  }

  const saga_streams* streams_;
  std::map<int, saga> sagas_;
  std::set<std::string> seen_;
};

// A service process: its runtime, node, JetStream context and actors; "ready" on stdout once it
// takes work; at "quit" on stdin its report ("report ..." lines, then "end").
int serve(const std::string& url, const std::string& prefix, const std::string& role, bool hold) {
  troupe::runtime_options options;
  options.workers = 2;
  options.on_failure = [](const troupe::address&, std::string_view) {};  // the report counts
  troupe::runtime rt(options);
  troupe::nats::node node(rt, {.servers = {url}, .name = role, .prefix = prefix});
  troupe::nats::consumer_counters queued;   // of the queue consumers
  troupe::nats::consumer_counters grouped;  // of the coordinator's results group
  std::vector<std::string> lines;
  payments_report report;
  {
    troupe::nats::jetstream js(node);
    const saga_streams streams(js);
    auto sup =
        rt.spawn<troupe::supervisor>(troupe::one_for_one{.max_restarts = 100, .within = 60s});
    std::vector<troupe::nats::durable_subscription> queue_subs;
    troupe::nats::durable_subscription group_sub;
    troupe::nats::durable_subscription replay_sub;
    once_by_key<answer> done;
    watermark replayed;
    troupe::ref<inventory_service> inventory;
    std::function<void()> sync;  // asks the service's actor a sync_point
    if (role == "orders") {
      auto c = troupe::start_child<coordinator_service>(sup, {.name = "coordinator"}, &streams);
      group_sub = streams.results.subscribe(c, troupe::group{"orders"});
      queue_subs.push_back(streams.orders.add_consumer(c));
      sync = [c] { c.ask(sync_point{}).get(); };
    } else if (role == "inventory") {
      inventory = troupe::start_child<inventory_service>(sup, {.name = "inventory"}, &streams);
      queue_subs.push_back(streams.reserves.add_consumer(inventory));
      queue_subs.push_back(streams.releases.add_consumer(inventory));
      queue_subs.push_back(streams.shipments.add_consumer(inventory));
      sync = [inventory] { inventory.ask(sync_point{}).get(); };
    } else if (role == "payments") {
      auto p = troupe::start_child<payments_service>(sup, {.name = "payments"}, &streams, &done,
                                                     &report, &replayed, hold);
      sync = [p] { p.ask(sync_point{}).get(); };
      // Rebuild what was answered before taking work: replay the results up to now.
      const std::uint64_t last = streams.results.state().last;
      replay_sub = streams.results.subscribe(p, troupe::replay::oldest());
      if (!replayed.wait_for(last, 60s)) throw std::runtime_error("results replay stalled");
      std::printf("rebuilt: %zu answers given before\n", done.size());
      queue_subs.push_back(streams.charges.add_consumer(p));
      queue_subs.push_back(streams.refunds.add_consumer(p));
    } else {
      std::fprintf(stderr, "unknown role '%s'\n", role.c_str());
      return 2;
    }
    std::printf("ready\n");
    std::fflush(stdout);
    std::string line;
    while (std::getline(std::cin, line) && line != "quit") {
    }
    sync();
    for (auto& q : queue_subs) {
      const auto c = q.counters();
      queued.handled += c.handled;
      queued.dead_lettered += c.dead_lettered;
      queued.retried += c.retried;
      q.end();
    }
    grouped = group_sub.counters();
    group_sub.end();
    replay_sub.end();
    if (inventory) {
      lines.push_back("stock " + inventory.ask(order_saga::stock_of{"lamp"}).get() + ", " +
                      inventory.ask(order_saga::stock_of{"sofa"}).get());
    }
    js.close();
  }
  node.close();
  rt.shutdown();
  for (const auto& l : lines) std::printf("report %s\n", l.c_str());
  if (role == "payments") {
    std::printf("report payments provider_calls=%llu recognised=%llu\n",
                static_cast<unsigned long long>(report.provider_calls),
                static_cast<unsigned long long>(report.recognised));
  }
  const auto c = rt.counters();
  std::printf(
      "report counters queue_handled=%llu queue_dead=%llu queue_retried=%llu group_handled=%llu "
      "sent=%llu handled=%llu dead=%llu rejected=%llu\n",
      static_cast<unsigned long long>(queued.handled),
      static_cast<unsigned long long>(queued.dead_lettered),
      static_cast<unsigned long long>(queued.retried),
      static_cast<unsigned long long>(grouped.handled), static_cast<unsigned long long>(c.sent),
      static_cast<unsigned long long>(c.handled), static_cast<unsigned long long>(c.dead_lettered),
      static_cast<unsigned long long>(c.rejected));
  std::printf("end\n");
  std::fflush(stdout);
  return 0;
}

// ---- the driver ---------------------------------------------------------------------------------

// A service process, its stdin and stdout on pipes.
class service_process {
 public:
  service_process(const char* self, std::vector<std::string> args) {
    int in[2];
    int out[2];
    if (::pipe(in) != 0 || ::pipe(out) != 0) throw std::runtime_error("pipe");
    args.insert(args.begin(), self);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in[0], 0);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    posix_spawn_file_actions_addclose(&actions, in[1]);
    posix_spawn_file_actions_addclose(&actions, out[0]);
    const int rc = posix_spawn(&pid_, self, &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    ::close(in[0]);
    ::close(out[1]);
    to_ = ::fdopen(in[1], "w");
    from_ = ::fdopen(out[0], "r");
    if (rc != 0) throw std::runtime_error("cannot start " + args[3]);
    if (read_until("ready").empty()) throw std::runtime_error(args[3] + " did not start");
  }
  service_process(const service_process&) = delete;
  service_process& operator=(const service_process&) = delete;
  ~service_process() {
    kill();
    if (to_ != nullptr) std::fclose(to_);
    if (from_ != nullptr) std::fclose(from_);
  }
  // The next line starting with `prefix`, skipping (and keeping) others; empty at EOF.
  std::string read_until(std::string_view prefix) {
    for (;;) {
      std::string line;
      int c = std::fgetc(from_);
      if (c == EOF) return {};
      for (; c != EOF && c != '\n'; c = std::fgetc(from_)) line.push_back(static_cast<char>(c));
      if (line.rfind(prefix, 0) == 0) return line;
      said_.push_back(line);
    }
  }
  // SIGKILL: no goodbye on the wire, as a crash.
  void kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  // Asks it to stop; its "report ..." lines; true if it exited with status 0.
  bool quit(std::vector<std::string>& report) {
    std::fputs("quit\n", to_);
    std::fflush(to_);
    for (std::string line = read_until("report "); !line.empty(); line = read_until("report ")) {
      report.push_back(line.substr(7));
    }
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
  }
  // The other lines it printed so far.
  [[nodiscard]] const std::vector<std::string>& said() const noexcept { return said_; }

 private:
  pid_t pid_ = -1;
  FILE* to_ = nullptr;
  FILE* from_ = nullptr;
  std::vector<std::string> said_;
};

// What the driver reads back from the streams: the outcomes and the provider's ledger.
struct board {
  std::mutex mutex;
  std::map<int, std::string> outcomes;
  std::vector<ledger_entry> ledger;
  watermark outcome_count;
  watermark ledger_seen;
};
struct outcome_reader {
  board* b;
  void on(const saga_outcome& o) {
    std::size_t n = 0;
    {
      std::lock_guard lock(b->mutex);
      b->outcomes.emplace(o.order, o.text);
      n = b->outcomes.size();
    }
    b->outcome_count.raise(n);
  }
};
struct ledger_reader {
  board* b;
  void on(const troupe::retained<ledger_entry>& e) {
    {
      std::lock_guard lock(b->mutex);
      b->ledger.push_back(e.event);
    }
    b->ledger_seen.raise(e.offset);
  }
};

// Waits (bounded) until `done` holds, polling what only the server knows (a stream's state).
template <class F>
bool eventually(F done, std::chrono::milliseconds bound) {
  const auto until = std::chrono::steady_clock::now() + bound;
  while (!done()) {
    if (std::chrono::steady_clock::now() > until) return done();
    std::this_thread::sleep_for(20ms);
  }
  return true;
}

std::map<std::string, unsigned long long> fields(const std::string& line) {
  std::map<std::string, unsigned long long> out;
  std::size_t i = 0;
  while (i < line.size()) {
    const std::size_t end = std::min(line.find(' ', i), line.size());
    const std::string token = line.substr(i, end - i);
    if (const auto eq = token.find('='); eq != std::string::npos) {
      out[token.substr(0, eq)] = std::stoull(token.substr(eq + 1));
    }
    i = end + 1;
  }
  return out;
}

int drive(const char* self, const std::string& url) {
  constexpr auto bound = 90s;  // generous: a sanitizer build on a loaded machine
  const std::string prefix = "saga" + std::to_string(::getpid());
  std::printf(
      "troupe order_saga, distributed: orders, inventory and payments as processes over "
      "durable JetStream queues and topics (%s)\n",
      url.c_str());
  troupe::runtime rt({.workers = 2});
  troupe::nats::node node(rt, {.servers = {url}, .name = "driver", .prefix = prefix});
  troupe::nats::jetstream js(node);
  const saga_streams streams(js);
  board b;
  auto outcomes = streams.outcomes.subscribe(rt.spawn<outcome_reader>(&b));

  auto start = [&](const char* role, bool hold = false) {
    std::vector<std::string> args{url, prefix, role};
    if (hold) args.emplace_back("hold");
    return std::make_unique<service_process>(self, std::move(args));
  };
  auto orders = start("orders");
  auto inventory = start("inventory");
  auto payments = start("payments", true);

  const std::vector<place_order> placed = order_saga::demo_orders();
  unsigned long long provider_calls = 0;
  streams.orders.push_sync(placed[0], {.id = placed[0].id});
  const std::string held = payments->read_until("holding");
  if (held.empty()) throw std::runtime_error("payments never held order 1001");
  std::printf("payments: %s\n", held.c_str());
  payments->kill();
  for (const auto& line : payments->said()) provider_calls += line.rfind("charging", 0) == 0;
  std::printf("payments: killed (SIGKILL); placing the other orders while it is down\n");
  for (std::size_t i = 1; i < placed.size(); ++i) {
    streams.orders.push_sync(placed[i], {.id = placed[i].id});
  }
  streams.orders.push_sync(placed[0], {.id = placed[0].id});  // a client's retry: stored once
  payments = start("payments");
  for (const auto& line : payments->said()) {
    if (line.rfind("rebuilt", 0) == 0) std::printf("payments: restarted; %s\n", line.c_str());
  }

  const bool ended = b.outcome_count.wait_for(placed.size(), bound);
  // The held charge comes back to the new process after the ack wait; then every queue is empty.
  auto items_left = [&] {
    return streams.orders.state().messages + streams.reserves.state().messages +
           streams.releases.state().messages + streams.shipments.state().messages +
           streams.charges.state().messages + streams.refunds.state().messages;
  };
  const bool drained = eventually([&] { return items_left() == 0; }, bound);
  const std::uint64_t left = items_left();
  const std::uint64_t items_stored =
      streams.orders.state().last + streams.reserves.state().last + streams.releases.state().last +
      streams.shipments.state().last + streams.charges.state().last + streams.refunds.state().last;
  const std::uint64_t results_stored = streams.results.state().last;

  // Every process's report.
  unsigned long long queue_handled = 0, queue_dead = 0, queue_retried = 0, group_handled = 0;
  unsigned long long sent = 0, handled = 0, dead = 0, rejected = 0, recognised = 0;
  std::string stock;
  bool clean = true;
  for (auto* s : {orders.get(), inventory.get(), payments.get()}) {
    std::vector<std::string> report;
    clean = s->quit(report) && clean;
    for (const std::string& line : report) {
      auto f = fields(line);
      if (line.rfind("counters", 0) == 0) {
        queue_handled += f["queue_handled"], queue_dead += f["queue_dead"];
        queue_retried += f["queue_retried"], group_handled += f["group_handled"];
        sent += f["sent"], handled += f["handled"], dead += f["dead"], rejected += f["rejected"];
      } else if (line.rfind("payments", 0) == 0) {
        provider_calls += f["provider_calls"];
        recognised += f["recognised"];
      } else if (line.rfind("stock ", 0) == 0) {
        stock = line.substr(6);
      }
    }
  }
  for (const auto& line : payments->said()) {
    if (line.rfind("recognised", 0) == 0) std::printf("payments: %s\n", line.c_str());
  }

  // The provider's ledger, read back from its stream.
  const std::uint64_t ledger_last = streams.ledger.state().last;
  auto ledger = streams.ledger.subscribe(rt.spawn<ledger_reader>(&b));
  const bool ledger_read = b.ledger_seen.wait_for(ledger_last, bound);
  ledger.end();
  outcomes.end();
  const unsigned long long duplicates = js.counters().duplicates;
  js.close();
  node.close();
  rt.shutdown();
  const auto c = rt.counters();
  sent += c.sent, handled += c.handled, dead += c.dead_lettered, rejected += c.rejected;

  std::lock_guard lock(b.mutex);  // the readers are gone; for form
  for (const auto& [order, text] : b.outcomes) std::printf("order %d: %s\n", order, text.c_str());
  std::map<std::string, int> charged;  // key -> times stored
  std::set<std::string> refunded;
  for (const auto& e : b.ledger) {
    if (e.refund) {
      refunded.insert(e.key);
    } else {
      ++charged[e.key];
    }
  }
  int net = 0;
  for (const auto& e : b.ledger) {
    if (!e.refund && refunded.count(e.key) == 0) net += e.cents;
  }
  bool once_each = true;
  for (const auto& [key, times] : charged) once_each = once_each && times == 1;
  std::printf("provider: %zu charges, %zu refunded, net %d cents (orders 1001 + 1004); %s\n",
              charged.size(), refunded.size(), net,
              once_each ? "no key charged twice" : "A KEY CHARGED TWICE");
  std::printf(
      "idempotency: %llu redelivered command(s) answered from once_by_key, not done again; %llu "
      "provider calls for %zu charges (a retry after a reset replays its key)\n",
      recognised, provider_calls, charged.size());
  std::printf("stock left: %s\n", stock.c_str());
  std::printf("a client's retried placement: stored once (%llu duplicate)\n", duplicates);
  // Across the processes: each queue item handled or dead-lettered, none left; the killed
  // process acknowledged nothing (what it held came back).
  const bool queues_balanced = items_stored == queue_handled + queue_dead + left;
  std::printf(
      "accounting (queues, 3 processes and a killed one): items stored %llu = handled %llu + "
      "dead-lettered %llu + left %llu: %s\n",
      static_cast<unsigned long long>(items_stored), queue_handled, queue_dead,
      static_cast<unsigned long long>(left), queues_balanced ? "balanced" : "NOT BALANCED");
  std::printf(
      "accounting (results): stored %llu, handled by the coordinator's group %llu; failed "
      "attempts given back %llu\n",
      static_cast<unsigned long long>(results_stored), group_handled, queue_retried);
  const bool runtimes_balanced = sent == handled + dead + rejected;
  std::printf(
      "accounting (4 runtimes): sent %llu = handled %llu + dead-lettered %llu + rejected %llu: "
      "%s\n",
      sent, handled, dead, rejected, runtimes_balanced ? "balanced" : "NOT BALANCED");

  const bool ok = clean && ended && drained && ledger_read && b.outcomes.size() == placed.size() &&
                  once_each && net == 6000 && queues_balanced && runtimes_balanced &&
                  results_stored == group_handled && stock == "lamp 7, sofa 1";
  if (!ok) std::printf("FAILED\n");
  return ok ? 0 : 1;
}

}  // namespace

int main(int argc, char* argv[]) {
  try {
    if (argc == 4 || argc == 5) {
      return serve(argv[1], argv[2], argv[3], argc == 5 && std::string(argv[4]) == "hold");
    }
    if (argc == 2 && argv[1][0] == '@') {  // @file: the URL is the file's first line (the tests)
      std::ifstream in(argv[1] + 1);
      std::string url;
      std::getline(in, url);
      return drive(argv[0], url);
    }
    if (argc == 2) return drive(argv[0], argv[1]);
    std::fprintf(stderr, "usage: %s nats://host:port\n", argv[0]);
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "order_saga (distributed): %s\n", e.what());
    return 1;
  }
}
