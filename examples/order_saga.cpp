// order_saga: an order goes through inventory -> payment -> shipping as a saga, with
// compensation, idempotent handlers, retries through a work queue and a dead-letter queue. The
// actors and their wiring are in order_saga.hpp, which tests/sim_check_test.cpp also runs,
// unchanged, under a simulated faulty network over many seeds.
//
// Orders: 1001 and 1004 complete (1004 after a retried charge), 1002 is out of stock, 1003's
// card is declined, 1005's gateway never answers (dead-lettered), 1006 cannot be shipped.
#include "order_saga.hpp"

#include <cstdio>
#include <latch>
#include <string>
#include <vector>

int main() {
  using namespace order_saga;
  const std::vector<place_order> orders = demo_orders();
  std::latch finished(static_cast<std::ptrdiff_t>(orders.size()));
  payment_provider provider;
  charge_attempts attempts;

  troupe::runtime_options options;
  options.workers = 2;
  options.on_failure = [](const troupe::address&, std::string_view) {};  // the DLQ reports
  troupe::runtime rt(options);
  shop s = open_shop(rt, provider, attempts, finished);

  for (const auto& o : orders) s.coordinator.send(o);
  s.coordinator.send(orders[0]);  // the client retried its placement: the same event id again

  finished.wait();
  const std::string summary = s.coordinator.ask(get_summary{}).get();
  const std::vector<std::string> parked = s.dead_letters.ask(get_summary{}).get();
  const std::string lamps = s.inventory.ask(stock_of{"lamp"}).get();
  const std::string sofas = s.inventory.ask(stock_of{"sofa"}).get();
  const int inventory_duplicates = s.inventory.ask(duplicates_ignored{}).get();
  rt.shutdown();

  std::printf("%s\n", summary.c_str());
  std::printf("duplicate commands ignored by the inventory: %d\n", inventory_duplicates);
  std::printf("charges replayed by idempotency key (not charged twice): %d\n", provider.replays());
  std::printf("dead-letter queue:\n");
  for (const auto& p : parked) std::printf("  %s\n", p.c_str());
  std::printf("stock left: %s, %s\n", lamps.c_str(), sofas.c_str());
  std::printf("charge attempts: 1004 %d, 1005 %d\n", attempts.of(1004), attempts.of(1005));
  // Completed orders keep their charge and their stock; every other one was undone.
  std::printf("net charged: %d cents (orders 1001 + 1004)\n", provider.net_cents());
  const auto c = rt.counters();
  std::printf("accounting: %s\n", c.sent == c.handled + c.dead_lettered + c.rejected
                                      ? "every message handled or dead-lettered"
                                      : "MISMATCH");
}
