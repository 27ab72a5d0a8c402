// order_saga: an order goes through inventory -> payment -> shipping as a saga. A coordinator
// actor sends each step its command and moves on when the step's result event comes back on a
// topic; when a step fails, the steps already done are compensated in reverse order (refund the
// payment, release the stock) and the order is cancelled.
//
// What it shows:
//  * idempotent handlers: every command and event carries an id; a duplicate (the transport
//    here is at-least-once, and one duplicate of each kind is injected) is detected by id and
//    ignored, and the payment provider takes an idempotency key so that a retried charge never
//    charges twice;
//  * retries: payments go through a work queue; a transient gateway error is retried (the
//    queue redelivers, the supervisor restarts the failed consumer), and a charge that fails
//    every attempt lands in a dead-letter queue, which tells the coordinator to compensate.
//
// Orders: 1001 and 1004 complete (1004 after a retried charge), 1002 is out of stock, 1003's
// card is declined, 1005's gateway never answers (dead-lettered), 1006 cannot be shipped.
#include <chrono>
#include <cstdio>
#include <latch>
#include <map>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <troupe/troupe.hpp>

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
  std::string id;     // the event id: the command id plus the outcome
  int order;
  bool ok;
  std::string detail;
};

struct stock_of {
  std::string sku;
};
struct duplicates_ignored {};

// ---- external systems, shared and thread-safe (outside the actor system) ---------------------

// A payment provider with idempotency keys, as real ones have: a replayed key returns the
// first result without charging again.
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
  void refund(const std::string& key) {
    std::lock_guard lock(mutex_);
    refunded_.insert(key);
  }
  int net_cents() {
    std::lock_guard lock(mutex_);
    int total = 0;
    for (const auto& [key, cents] : charges_) total += refunded_.count(key) ? 0 : cents;
    return total;
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
  payment_gateway(troupe::context& ctx, payment_provider* provider, std::map<int, int>* attempts,
                  std::mutex* attempts_mutex)
      : ctx_(ctx), provider_(provider), attempts_(attempts), attempts_mutex_(attempts_mutex) {}

  void on(const charge_request& c) {
    int attempt = 0;
    {
      std::lock_guard lock(*attempts_mutex_);
      attempt = ++(*attempts_)[c.order];
    }
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
  std::map<int, int>* attempts_;
  std::mutex* attempts_mutex_;
};

class refunds {
 public:
  refunds(troupe::context& ctx, payment_provider* provider) : ctx_(ctx), provider_(provider) {}
  void on(const refund& r) {
    provider_->refund(r.id.substr(0, r.id.find("/refund")) + "/charge");
    ctx_.publish("payment.refunded", step_result{r.id + "/done", r.order, true, ""});
  }

 private:
  troupe::context& ctx_;
  payment_provider* provider_;
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

class coordinator {
 public:
  coordinator(troupe::ref<inventory> inv, troupe::work_queue<charge_request> payments,
              troupe::ref<refunds> refunder, troupe::ref<shipping> shipper, std::latch* finished)
      : inventory_(std::move(inv)),
        payments_(std::move(payments)),
        refunds_(std::move(refunder)),
        shipping_(std::move(shipper)),
        finished_(finished) {}

  void on(const place_order& p) {
    if (duplicate(p.id)) return;
    saga& s = sagas_[p.order];
    s.order = p;
    const reserve command{cmd(p.order, "reserve"), p.order, p.sku, p.quantity};
    inventory_.send(command);
    // The transport is at-least-once: show a duplicate delivery once.
    if (p.order == 1001) inventory_.send(command);
  }

  // Every step result arrives here, on the topic it was published on.
  void on(const step_result& r) {
    if (duplicate(r.id)) return;
    saga& s = sagas_.at(r.order);
    const std::string step = r.id.substr(r.id.find('/') + 1, r.id.rfind('/') - r.id.find('/') - 1);
    if (step == "reserve") {
      if (!r.ok) return finish(s, "cancelled: " + r.detail);
      s.done.push_back("reserved");
      payments_.push(charge_request{cmd(r.order, "charge"), r.order, s.order.cents});
    } else if (step == "charge") {
      if (!r.ok) return compensate(s, r.detail);
      s.done.push_back("charged");
      shipping_.send(ship{cmd(r.order, "ship"), r.order, s.order.destination});
    } else if (step == "ship") {
      if (!r.ok) return compensate(s, r.detail);
      s.done.push_back("shipped");
      finish(s, "completed");
    } else if (step == "refund") {
      s.undone.push_back("refunded");
      undo_next(s);
    } else if (step == "release") {
      s.undone.push_back("stock released");
      undo_next(s);
    }
  }

  void on(const payment_abandoned& a) { compensate(sagas_.at(a.order), a.reason); }

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

 private:
  struct saga {
    place_order order;
    std::vector<std::string> done;    // steps completed, in order
    std::vector<std::string> undone;  // compensations completed
    std::string failure;
    std::string outcome;
  };

  static std::string cmd(int order, const char* step) { return std::to_string(order) + "/" + step; }
  bool duplicate(const std::string& id) {
    if (seen_.insert(id).second) return false;
    ++duplicates_;
    return true;
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
    const int order = s.order.order;
    if (last == "charged") refunds_.send(refund{cmd(order, "refund"), order});
    if (last == "reserved") inventory_.send(release{cmd(order, "release"), order});
  }
  void finish(saga& s, std::string outcome) {
    s.outcome = std::move(outcome);
    finished_->count_down();
  }

  troupe::ref<inventory> inventory_;
  troupe::work_queue<charge_request> payments_;
  troupe::ref<refunds> refunds_;
  troupe::ref<shipping> shipping_;
  std::latch* finished_;
  std::map<int, saga> sagas_;
  std::set<std::string> seen_;
  int duplicates_ = 0;
};

// ---- the dead-letter queue ---------------------------------------------------------------------

// Keeps the payment requests that failed every attempt, for an operator, and tells the
// coordinator so that the saga compensates. The dead letter no longer holds the message, so
// the order id travels in the failure's text.
class dead_letter_queue {
 public:
  explicit dead_letter_queue(troupe::ref<coordinator> c) : coordinator_(std::move(c)) {}
  void on(const troupe::dead_letter& d) {
    if (std::string_view(d.message_type).find("charge_request") == std::string_view::npos) return;
    // A failed attempt that the work queue redelivers is not parked.
    if (d.reason != troupe::dead_letter_reason::retries_exhausted) return;
    parked_.push_back(std::string(to_string(d.reason)) + ": " + d.detail);
    const int order = std::stoi(d.detail.substr(d.detail.find("order ") + 6));
    coordinator_.send(
        payment_abandoned{order, "payment failed: " + d.detail.substr(d.detail.find(": ") + 2)});
  }
  std::vector<std::string> on(get_summary) const { return parked_; }

 private:
  troupe::ref<coordinator> coordinator_;
  std::vector<std::string> parked_;
};

int main() {
  std::latch finished(6);
  payment_provider provider;
  std::map<int, int> attempts;  // charge attempts per order
  std::mutex attempts_mutex;

  troupe::runtime_options options;
  options.workers = 2;
  options.on_failure = [](const troupe::address&, std::string_view) {};  // the DLQ reports
  troupe::runtime rt(options);

  auto inv = rt.spawn<inventory>();
  auto shipper = rt.spawn<shipping>();
  auto refunder = rt.spawn<refunds>(&provider);
  auto payments = rt.make_queue<charge_request>({.name = "payments", .max_attempts = 3});
  auto gateways =
      rt.spawn<troupe::supervisor>(troupe::one_for_one{.max_restarts = 10, .within = 10s});
  for (const char* name : {"gateway-1", "gateway-2"}) {
    payments.add_consumer(troupe::start_child<payment_gateway>(gateways, {.name = name}, &provider,
                                                               &attempts, &attempts_mutex));
  }
  auto coord = rt.spawn<coordinator>(inv, payments, refunder, shipper, &finished);
  auto dlq = rt.spawn<dead_letter_queue>(coord);

  std::vector<troupe::subscription> subscriptions;
  for (const char* subject : {"inventory.*", "payment.*", "shipping.*"}) {
    subscriptions.push_back(rt.subscribe<step_result>(subject, coord));
  }
  subscriptions.push_back(rt.subscribe<troupe::dead_letter>(troupe::dead_letter_subject, dlq));

  const std::vector<place_order> orders = {
      {"evt-1001", 1001, "lamp", 2, 4000, "Oslo"},
      {"evt-1002", 1002, "sofa", 2, 90000, "Lima"},  // one sofa in stock
      {"evt-1003", 1003, "lamp", 1, 2000, "Pune"},   // card declined
      {"evt-1004", 1004, "lamp", 1, 2000, "Kyiv"},   // charge retried once
      {"evt-1005", 1005, "lamp", 1, 2000, "Quito"},  // gateway never answers
      {"evt-1006", 1006, "lamp", 3, 6000, "Atlantis"},
  };
  for (const auto& o : orders) coord.send(o);
  coord.send(orders[0]);  // the client retried its placement: the same event id again

  finished.wait();
  const std::string summary = coord.ask(get_summary{}).get();
  const std::vector<std::string> parked = dlq.ask(get_summary{}).get();
  const std::string lamps = inv.ask(stock_of{"lamp"}).get();
  const std::string sofas = inv.ask(stock_of{"sofa"}).get();
  const int inventory_duplicates = inv.ask(duplicates_ignored{}).get();
  rt.shutdown();

  std::printf("%s\n", summary.c_str());
  std::printf("duplicate commands ignored by the inventory: %d\n", inventory_duplicates);
  std::printf("charges replayed by idempotency key (not charged twice): %d\n", provider.replays());
  std::printf("dead-letter queue:\n");
  for (const auto& p : parked) std::printf("  %s\n", p.c_str());
  std::printf("stock left: %s, %s\n", lamps.c_str(), sofas.c_str());
  {
    std::lock_guard lock(attempts_mutex);
    std::printf("charge attempts: 1004 %d, 1005 %d\n", attempts[1004], attempts[1005]);
  }
  // Completed orders keep their charge and their stock; every other one was undone.
  std::printf("net charged: %d cents (orders 1001 + 1004)\n", provider.net_cents());
  const auto c = rt.counters();
  std::printf("accounting: %s\n", c.sent == c.handled + c.dead_lettered + c.rejected
                                      ? "every message handled or dead-lettered"
                                      : "MISMATCH");
}
