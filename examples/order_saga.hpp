// order_saga's actors, messages and wiring: an order goes through inventory -> payment -> shipping
// as a saga. A coordinator actor sends each step its command and moves on when the step's result
// event comes back on a topic; when a step fails, the steps already done are compensated in
// reverse order (refund the payment, release the stock) and the order is cancelled.
//
// The same classes run in examples/order_saga.cpp (a threaded runtime) and, unchanged, in
// tests/sim_check_test.cpp, which checks the saga's invariants under a lossy, duplicating,
// reordering network over many seeds of troupe::simulation.
//
// What it shows:
//  * idempotent handlers: every command and event carries an id; a duplicate (the transport is
//    at-least-once) is detected by id and answered or ignored, and the payment provider takes an
//    idempotency key so that a retried charge never charges twice;
//  * retries: payments go through a work queue; a transient gateway error is retried (the queue
//    redelivers, the supervisor restarts the failed consumer), and a charge that fails every
//    attempt lands in a dead-letter queue, which tells the coordinator to compensate;
//  * timeouts: a command whose result does not come back is sent again (same id); a payment that
//    never answers is given up, and since its answer may be what was lost, its charge is voided
//    by its key (saga_timing::unanswered_charge says so; the other choice is the classic bug the
//    simulation test finds and shrinks).
#pragma once

#include <chrono>
#include <latch>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <troupe/troupe.hpp>

namespace order_saga {

using namespace std::chrono_literals;

// ---- commands (to a step) and events (from a step); each carries its id ----------------------

struct place_order {
  std::string id;  // the event id: a client retrying a placement sends the same id
  int order;
  std::string sku;
  int quantity;
  int cents;
  std::string destination;
};
struct reserve {
  std::string id;
  int order;
  std::string sku;
  int quantity;
};
struct release {
  std::string id;
  int order;
};
struct charge_request {
  std::string id;  // also the payment provider's idempotency key
  int order;
  int cents;
};
struct refund {
  std::string id;
  int order;
};
struct ship {
  std::string id;
  int order;
  std::string destination;
};
struct step_result {  // published by every step, on "<step>.<outcome>"
  std::string id;     // the event id: the command id plus "/done"
  int order;
  bool ok;
  std::string detail;
};

struct stock_of {
  std::string sku;
};
struct duplicates_ignored {};

// ---- external systems, shared and thread-safe (outside the actor system) ---------------------

// A payment provider with idempotency keys, as real ones have: a replayed key returns the first
// result without charging again, and a refunded key stays refunded (a charge that arrives after
// its refund is void).
class payment_provider {
 public:
  void charge(const std::string& key, int cents) {
    std::lock_guard lock(mutex_);
    if (charges_.count(key) != 0) {
      ++replays_;
      return;
    }
    charges_[key] = cents;
  }
  // True if this refunded a charge; false if nothing was charged (yet) or it was refunded before.
  bool refund(const std::string& key) {
    std::lock_guard lock(mutex_);
    return refunded_.insert(key).second && charges_.count(key) != 0;
  }
  int net_cents() {
    std::lock_guard lock(mutex_);
    int total = 0;
    for (const auto& [key, cents] : charges_) total += refunded_.count(key) ? 0 : cents;
    return total;
  }
  // What the key holds now: its charge, or 0 if never charged or refunded.
  int net_cents(const std::string& key) {
    std::lock_guard lock(mutex_);
    auto it = charges_.find(key);
    return it == charges_.end() || refunded_.count(key) != 0 ? 0 : it->second;
  }
  int replays() {
    std::lock_guard lock(mutex_);
    return replays_;
  }

 private:
  std::mutex mutex_;
  std::map<std::string, int> charges_;
  std::set<std::string> refunded_;
  int replays_ = 0;
};

// Charge attempts per order, as the gateways see them (the demo's gateway misbehaves on some).
class charge_attempts {
 public:
  int next(int order) {
    std::lock_guard lock(mutex_);
    return ++attempts_[order];
  }
  int of(int order) {
    std::lock_guard lock(mutex_);
    return attempts_[order];
  }

 private:
  std::mutex mutex_;
  std::map<int, int> attempts_;
};

// ---- the steps -------------------------------------------------------------------------------

class inventory {
 public:
  explicit inventory(troupe::context& ctx) : ctx_(ctx) {}

  void on(const reserve& r) {
    auto seen = results_.find(r.id);
    if (seen != results_.end()) {  // a duplicate: answer the same, reserve nothing again
      ++duplicates_;
      ctx_.publish(seen->second.ok ? "inventory.reserved" : "inventory.rejected", seen->second);
      return;
    }
    int& left = stock_[r.sku];
    step_result result{r.id + "/done", r.order, left >= r.quantity, ""};
    if (result.ok) {
      left -= r.quantity;
      reserved_[r.order] = {r.sku, r.quantity};
    } else {
      result.detail = "out of stock: " + r.sku;
    }
    results_[r.id] = result;
    ctx_.publish(result.ok ? "inventory.reserved" : "inventory.rejected", result);
  }
  void on(const release& r) {
    if (!released_.insert(r.id).second) {
      ++duplicates_;
    } else if (auto it = reserved_.find(r.order); it != reserved_.end()) {
      stock_[it->second.first] += it->second.second;
      reserved_.erase(it);
    }
    ctx_.publish("inventory.released", step_result{r.id + "/done", r.order, true, ""});
  }
  std::string on(const stock_of& q) const {
    auto it = stock_.find(q.sku);
    return q.sku + " " + std::to_string(it == stock_.end() ? 0 : it->second);
  }
  int on(duplicates_ignored) const { return duplicates_; }

 private:
  troupe::context& ctx_;
  std::map<std::string, int> stock_{{"lamp", 10}, {"sofa", 1}};
  std::map<int, std::pair<std::string, int>> reserved_;
  std::map<std::string, step_result> results_;  // command id -> the result given
  std::set<std::string> released_;
  int duplicates_ = 0;
};

// A consumer of the payment work queue (several compete). Throws on a transient gateway error,
// so that the queue retries; a declined card is a business outcome, published, not retried.
class payment_gateway {
 public:
  payment_gateway(troupe::context& ctx, payment_provider* provider, charge_attempts* attempts)
      : ctx_(ctx), provider_(provider), attempts_(attempts) {}

  void on(const charge_request& c) {
    const int attempt = attempts_->next(c.order);
    if (c.order == 1003) {
      ctx_.publish("payment.declined",
                   step_result{c.id + "/done", c.order, false, "card declined"});
      return;
    }
    if (c.order == 1005) {
      throw std::runtime_error("order 1005: payment gateway unreachable");
    }
    provider_->charge(c.id, c.cents);  // idempotent by key: a retry cannot charge twice
    if (c.order == 1004 && attempt == 1) {
      // Charged, but the acknowledgement was lost: the retry replays the key.
      throw std::runtime_error("order 1004: connection reset after charging");
    }
    ctx_.publish("payment.charged", step_result{c.id + "/done", c.order, true, ""});
  }

 private:
  troupe::context& ctx_;
  payment_provider* provider_;
  charge_attempts* attempts_;
};

// Refunds by the charge's key; idempotent by command id (a repeated refund gets the same answer).
class refunds {
 public:
  refunds(troupe::context& ctx, payment_provider* provider) : ctx_(ctx), provider_(provider) {}
  void on(const refund& r) {
    auto [it, fresh] = results_.try_emplace(r.id);
    if (fresh) {
      const bool refunded = provider_->refund(r.id.substr(0, r.id.find("/refund")) + "/charge");
      it->second = step_result{r.id + "/done", r.order, true, refunded ? "" : "nothing charged"};
    }
    ctx_.publish("payment.refunded", it->second);
  }

 private:
  troupe::context& ctx_;
  payment_provider* provider_;
  std::map<std::string, step_result> results_;
};

class shipping {
 public:
  explicit shipping(troupe::context& ctx) : ctx_(ctx) {}
  void on(const ship& s) {
    const bool ok = s.destination != "Atlantis";
    ctx_.publish(ok ? "shipping.shipped" : "shipping.failed",
                 step_result{s.id + "/done", s.order, ok, ok ? "" : "no carrier to Atlantis"});
  }

 private:
  troupe::context& ctx_;
};

// ---- the saga coordinator ----------------------------------------------------------------------

struct payment_abandoned {  // from the dead-letter queue
  int order;
  std::string reason;
};
struct get_summary {};
struct get_outcomes {};  // order -> "completed" or "cancelled: ..." ("" while still open)
struct saga_check {};    // the coordinator's own timer

// What a payment that never answered means to the coordinator.
enum class unanswered_charge {
  void_it,             // it may have charged (its answer may be what was lost): refund its key
  assume_not_charged,  // the tempting shortcut, wrong: a lost answer leaves the order charged
};

struct saga_timing {
  std::chrono::milliseconds check_every = 100ms;  // the timer, armed while a saga is open
  std::chrono::milliseconds resend_after = 30s;   // a command unanswered this long: send it again
  std::chrono::milliseconds payment_deadline = 60s;  // a charge unanswered this long: give up
  unanswered_charge on_unanswered_charge = unanswered_charge::void_it;
};

class coordinator {
 public:
  coordinator(troupe::context& ctx, troupe::ref<inventory> inv,
              troupe::work_queue<charge_request> payments, troupe::ref<refunds> refunder,
              troupe::ref<shipping> shipper, std::latch* finished, saga_timing timing = {})
      : ctx_(ctx),
        inventory_(std::move(inv)),
        payments_(std::move(payments)),
        refunds_(std::move(refunder)),
        shipping_(std::move(shipper)),
        finished_(finished),
        timing_(timing) {}

  void on(const place_order& p) {
    if (duplicate(p.id)) return;
    saga& s = sagas_[p.order];
    s.order = p;
    start(s, "reserve");
    // The transport is at-least-once: show a duplicate delivery once.
    if (p.order == 1001) send_command(s);
  }

  // Every step result arrives here, on the topic it was published on.
  void on(const step_result& r) {
    if (duplicate(r.id)) return;
    auto found = sagas_.find(r.order);
    if (found == sagas_.end()) return;
    saga& s = found->second;
    const std::string step = r.id.substr(r.id.find('/') + 1, r.id.rfind('/') - r.id.find('/') - 1);
    if (step != s.waiting_for) return;  // late: that step was given up or already answered
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
      s.done.push_back("shipped");
      finish(s, "completed");
    } else if (step == "refund") {
      if (r.detail.empty()) s.undone.push_back("refunded");  // else nothing had been charged
      undo_next(s);
    } else if (step == "release") {
      s.undone.push_back("stock released");
      undo_next(s);
    }
  }

  // Every attempt failed. The last failure may have followed a charge (a connection reset after
  // charging), so the charge is voided by its key.
  void on(const payment_abandoned& a) {
    auto found = sagas_.find(a.order);
    if (found == sagas_.end() || found->second.waiting_for != "charge") return;
    found->second.done.push_back("charge attempted");
    compensate(found->second, a.reason);
  }

  // Resends what went unanswered; gives up on a silent payment.
  void on(saga_check) {
    check_armed_ = false;
    const auto now = ctx_.now();
    for (auto& [order, s] : sagas_) {
      if (s.waiting_for.empty()) continue;
      if (s.waiting_for == "charge") {  // the work queue retries; the coordinator only waits
        if (now - s.step_began < timing_.payment_deadline) continue;
        if (timing_.on_unanswered_charge == unanswered_charge::void_it) {
          s.done.push_back("charge attempted");
        }
        compensate(s, "payment did not answer");
      } else if (now - s.sent_at >= timing_.resend_after) {
        send_command(s);
      }
    }
    arm_check();
  }

  std::string on(get_summary) const {
    std::string out;
    for (const auto& [order, s] : sagas_) {
      out += "order " + std::to_string(order) + ": " + s.outcome;
      if (!s.undone.empty()) {
        out += " (compensated:";
        for (const auto& u : s.undone) out += " " + u + ",";
        out.back() = ')';
      }
      out += "\n";
    }
    out += "duplicate events ignored by the coordinator: " + std::to_string(duplicates_);
    return out;
  }
  std::map<int, std::string> on(get_outcomes) const {
    std::map<int, std::string> out;
    for (const auto& [order, s] : sagas_) out[order] = s.outcome;
    return out;
  }

 private:
  struct saga {
    place_order order;
    std::vector<std::string> done;    // steps completed (or possibly completed), in order
    std::vector<std::string> undone;  // compensations completed
    std::string failure;
    std::string outcome;      // set once, when the saga ends
    std::string waiting_for;  // the step whose result is awaited; empty once the saga ended
    std::chrono::steady_clock::time_point step_began{};
    std::chrono::steady_clock::time_point sent_at{};  // the step's command, last sent
  };

  static std::string cmd(int order, const char* step) { return std::to_string(order) + "/" + step; }
  bool duplicate(const std::string& id) {
    if (seen_.insert(id).second) return false;
    ++duplicates_;
    return true;
  }

  void start(saga& s, const char* step) {
    s.waiting_for = step;
    s.step_began = ctx_.now();
    send_command(s);
    arm_check();
  }
  void send_command(saga& s) {
    s.sent_at = ctx_.now();
    const place_order& p = s.order;
    const std::string& step = s.waiting_for;
    if (step == "reserve") {
      inventory_.send(reserve{cmd(p.order, "reserve"), p.order, p.sku, p.quantity});
    } else if (step == "charge") {
      payments_.push(charge_request{cmd(p.order, "charge"), p.order, p.cents});
    } else if (step == "ship") {
      shipping_.send(ship{cmd(p.order, "ship"), p.order, p.destination});
    } else if (step == "refund") {
      refunds_.send(refund{cmd(p.order, "refund"), p.order});
    } else if (step == "release") {
      inventory_.send(release{cmd(p.order, "release"), p.order});
    }
  }
  // One timer for all sagas, armed while any is open (so an idle coordinator has none pending).
  void arm_check() {
    if (check_armed_) return;
    for (const auto& [order, s] : sagas_) {
      if (s.waiting_for.empty()) continue;
      ctx_.send_after(timing_.check_every, ctx_.self_as<coordinator>(), saga_check{});
      check_armed_ = true;
      return;
    }
  }

  // Undo what was done, newest first, one compensation at a time.
  void compensate(saga& s, const std::string& why) {
    s.failure = why;
    undo_next(s);
  }
  void undo_next(saga& s) {
    if (s.done.empty()) return finish(s, "cancelled: " + s.failure);
    const std::string last = s.done.back();
    s.done.pop_back();
    if (last == "charged" || last == "charge attempted") return start(s, "refund");
    if (last == "reserved") return start(s, "release");
    undo_next(s);
  }
  void finish(saga& s, std::string outcome) {
    s.waiting_for.clear();
    s.outcome = std::move(outcome);
    finished_->count_down();
  }

  troupe::context& ctx_;
  troupe::ref<inventory> inventory_;
  troupe::work_queue<charge_request> payments_;
  troupe::ref<refunds> refunds_;
  troupe::ref<shipping> shipping_;
  std::latch* finished_;
  saga_timing timing_;
  std::map<int, saga> sagas_;
  std::set<std::string> seen_;
  int duplicates_ = 0;
  bool check_armed_ = false;
};

// ---- the dead-letter queue ---------------------------------------------------------------------

// Keeps the payment requests that failed every attempt, for an operator, and tells the
// coordinator so that the saga compensates. The dead letter no longer holds the message, so the
// order id travels in the failure's text; a failure without one (a request lost in transit) is
// parked only, and the coordinator's payment deadline covers that order.
class dead_letter_queue {
 public:
  explicit dead_letter_queue(troupe::ref<coordinator> c) : coordinator_(std::move(c)) {}
  void on(const troupe::dead_letter& d) {
    if (std::string_view(d.message_type).find("charge_request") == std::string_view::npos) return;
    // A failed attempt that the work queue redelivers is not parked.
    if (d.reason != troupe::dead_letter_reason::retries_exhausted) return;
    parked_.push_back(std::string(to_string(d.reason)) + ": " + d.detail);
    const auto at = d.detail.find("order ");
    const auto colon = d.detail.find(": ");
    if (at == std::string::npos || colon == std::string::npos) return;
    coordinator_.send(payment_abandoned{std::stoi(d.detail.substr(at + 6)),
                                        "payment failed: " + d.detail.substr(colon + 2)});
  }
  std::vector<std::string> on(get_summary) const { return parked_; }

 private:
  troupe::ref<coordinator> coordinator_;
  std::vector<std::string> parked_;
};

// ---- the system --------------------------------------------------------------------------------

struct shop {
  troupe::ref<order_saga::inventory> inventory;
  troupe::ref<order_saga::shipping> shipping;
  troupe::ref<order_saga::refunds> refunds;
  troupe::work_queue<charge_request> payments;
  troupe::ref<troupe::supervisor> gateways;
  troupe::ref<order_saga::coordinator> coordinator;
  troupe::ref<dead_letter_queue> dead_letters;
  std::vector<troupe::subscription> subscriptions;
};

// Spawns and wires the saga's actors on `rt`. `provider`, `attempts` and `finished` (counted
// down once per order that ends) must outlive the runtime's actors.
inline shop open_shop(troupe::runtime& rt, payment_provider& provider, charge_attempts& attempts,
                      std::latch& finished, saga_timing timing = {}) {
  auto stock = rt.spawn<inventory>();
  auto shipper = rt.spawn<shipping>();
  auto refunder = rt.spawn<refunds>(&provider);
  auto payments = rt.make_queue<charge_request>({.name = "payments", .max_attempts = 3});
  auto gateways =
      rt.spawn<troupe::supervisor>(troupe::one_for_one{.max_restarts = 10, .within = 10s});
  for (const char* name : {"gateway-1", "gateway-2"}) {
    payments.add_consumer(
        troupe::start_child<payment_gateway>(gateways, {.name = name}, &provider, &attempts));
  }
  auto coord = rt.spawn<coordinator>(stock, payments, refunder, shipper, &finished, timing);
  auto dlq = rt.spawn<dead_letter_queue>(coord);
  std::vector<troupe::subscription> subscriptions;
  for (const char* subject : {"inventory.*", "payment.*", "shipping.*"}) {
    subscriptions.push_back(rt.subscribe<step_result>(subject, coord));
  }
  subscriptions.push_back(rt.subscribe<troupe::dead_letter>(troupe::dead_letter_subject, dlq));
  return shop{stock, shipper, refunder, payments, gateways, coord, dlq, std::move(subscriptions)};
}

// Orders 1001 and 1004 complete (1004 after a retried charge), 1002 is out of stock, 1003's card
// is declined, 1005's gateway never answers (dead-lettered), 1006 cannot be shipped.
inline std::vector<place_order> demo_orders() {
  return {
      {"evt-1001", 1001, "lamp", 2, 4000, "Oslo"},
      {"evt-1002", 1002, "sofa", 2, 90000, "Lima"},  // one sofa in stock
      {"evt-1003", 1003, "lamp", 1, 2000, "Pune"},   // card declined
      {"evt-1004", 1004, "lamp", 1, 2000, "Kyiv"},   // charge retried once
      {"evt-1005", 1005, "lamp", 1, 2000, "Quito"},  // gateway never answers
      {"evt-1006", 1006, "lamp", 3, 6000, "Atlantis"},
  };
}

}  // namespace order_saga
