// keyed_orders: orders handled in order per order id by a pool of workers. Every order goes
// through placed -> paid -> shipped; the events of all orders are published interleaved on
// `orders.<step>`, and a keyed consumer group (a troupe::keyed_queue keyed by order id,
// subscribed to `orders.>`) spreads them over four workers so that the events of one order are
// handled one at a time and in order, while different orders run in parallel. Order 7's payment
// hits a transient error once and is retried before order 7 may ship; order 13's payment is
// poison: after its last attempt it is dead-lettered and order 13 moves on. Checked at the end.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <latch>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include <troupe/troupe.hpp>

using namespace std::chrono_literals;

struct order_event {
  long order_id;
  std::string step;  // "placed", "paid", "shipped"
};

constexpr long orders_total = 20;
constexpr int max_attempts = 3;

// What the workers share; it outlives the workers' instances, which a restart rebuilds.
struct ledger {
  std::mutex mutex;
  std::map<long, std::vector<std::string>> steps;  // order id -> steps handled, in order
  std::map<long, int> payment_attempts;
  std::map<long, std::atomic<int>> busy;  // order id -> handlers running now (at most 1)
  std::atomic<int> overlaps{0};
  std::latch* finished;  // one count per event: handled or dead-lettered
};

class worker {
 public:
  explicit worker(ledger* l) : ledger_(l) {}

  void on(const order_event& e) {
    std::atomic<int>& busy = ledger_->busy.at(e.order_id);  // made before publishing
    if (busy.fetch_add(1) != 0) ledger_->overlaps.fetch_add(1);
    struct leave {
      std::atomic<int>& b;
      ~leave() { b.fetch_sub(1); }
    } on_exit{busy};
    if (e.step == "paid") {
      int attempt = 0;
      {
        std::lock_guard lock(ledger_->mutex);
        attempt = ++ledger_->payment_attempts[e.order_id];
      }
      if (e.order_id == 7 && attempt == 1) throw std::runtime_error("order 7: gateway busy");
      if (e.order_id == 13) throw std::runtime_error("order 13: card declined");
    }
    {
      std::lock_guard lock(ledger_->mutex);
      ledger_->steps[e.order_id].push_back(e.step);
    }
    ledger_->finished->count_down();
  }

 private:
  ledger* ledger_;
};

int main() {
  const std::vector<std::string> steps = {"placed", "paid", "shipped"};
  std::latch finished(orders_total * 3);
  ledger l;
  l.finished = &finished;
  for (long id = 1; id <= orders_total; ++id) l.busy[id];

  std::mutex mutex;
  std::vector<std::string> retried;
  std::vector<std::string> dead;
  troupe::runtime_options options;
  options.workers = 2;
  options.on_dead_letter = [&](const troupe::dead_letter& d) {
    std::lock_guard lock(mutex);
    if (d.reason == troupe::dead_letter_reason::retries_exhausted) {
      dead.push_back(std::string(to_string(d.reason)) + ": " + d.detail);
      finished.count_down();
    } else {
      retried.push_back(std::string(to_string(d.reason)) + ": " + d.detail);
    }
  };
  options.on_failure = [](const troupe::address&, std::string_view) {};  // counted above
  troupe::runtime rt(options);

  auto orders = rt.make_keyed_queue<order_event>({.name = "orders", .max_attempts = max_attempts},
                                                 &order_event::order_id);
  auto root = rt.spawn<troupe::supervisor>(troupe::one_for_one{.max_restarts = 10, .within = 10s});
  for (const char* name : {"w1", "w2", "w3", "w4"}) {
    orders.add_consumer(troupe::start_child<worker>(root, {.name = name}, &l));
  }
  auto group = orders.subscribe("orders.>");  // the keyed consumer group
  std::printf("%ld orders x 3 steps published on orders.> to a keyed group of %zu workers\n",
              orders_total, orders.consumers());
  for (const auto& step : steps) {
    for (long id = 1; id <= orders_total; ++id) {
      rt.publish("orders." + step, order_event{id, step});
    }
  }

  finished.wait();
  rt.shutdown();
  std::sort(retried.begin(), retried.end());

  bool ok = l.overlaps.load() == 0;
  int in_order = 0;
  for (long id = 1; id <= orders_total; ++id) {
    const auto& seen = l.steps[id];
    const std::vector<std::string> expected =
        id == 13 ? std::vector<std::string>{"placed", "shipped"} : steps;
    if (seen == expected) ++in_order;
  }
  std::printf("orders whose steps were handled in order, one at a time: %d of %ld\n", in_order,
              orders_total);
  auto line = [&](long id) {
    std::string s;
    for (const auto& step : l.steps[id]) s += " " + step;
    std::printf("  order %ld:%s (payment attempts: %d)\n", id, s.c_str(), l.payment_attempts[id]);
  };
  line(7);
  line(13);
  std::printf("failed attempts, retried before the order's next step: %zu\n", retried.size());
  for (const auto& r : retried) std::printf("  %s\n", r.c_str());
  std::printf("dead-lettered, then the order moved on: %zu\n", dead.size());
  for (const auto& d : dead) std::printf("  %s\n", d.c_str());

  const auto c = rt.counters();
  const bool accounted = c.sent == c.handled + c.dead_lettered + c.rejected;
  std::printf("deliveries: %llu sent = %llu handled + %llu dead-lettered: %s\n",
              static_cast<unsigned long long>(c.sent), static_cast<unsigned long long>(c.handled),
              static_cast<unsigned long long>(c.dead_lettered),
              accounted ? "all accounted for" : "MISMATCH");
  ok = ok && accounted && in_order == orders_total && retried.size() == 3 && dead.size() == 1 &&
       l.payment_attempts[7] == 2 && l.payment_attempts[13] == max_attempts;
  std::printf("%s\n", ok ? "all checks passed" : "CHECKS FAILED");
  return ok ? 0 : 1;
}
