// Tests of keyed queues and keyed consumer groups (include/troupe/keyed.hpp): per-key order and
// one-at-a-time under concurrency, membership changes mid-stream, redelivery and dead letters
// within a key, halted keys, a topic feed, items left behind and misuse.
#include <atomic>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

using namespace std::chrono_literals;

namespace {

struct event {
  int key;
  int seq;             // 1, 2, ... per key, in push order
  int fail_times = 0;  // deliveries of this event that throw before one succeeds
  int skipped = 0;     // events of the key just before this one that are given up (dead)
};

// Per-key checks. `busy` is an atomic in-flight counter per key; `last` and `attempts` are
// plain ints on purpose: only the key's one in-flight handler touches them, so under
// ThreadSanitizer a second handler of the key at once (on another member) is a reported race.
struct book {
  explicit book(int keys)
      : busy(std::make_unique<std::atomic<int>[]>(static_cast<std::size_t>(keys))),
        last(static_cast<std::size_t>(keys), 0),
        attempts(static_cast<std::size_t>(keys), 0) {}
  std::unique_ptr<std::atomic<int>[]> busy;
  std::vector<int> last;      // the last seq handled per key
  std::vector<int> attempts;  // deliveries of the key's current event so far
  std::atomic<int> overlaps{0};
  std::atomic<int> out_of_order{0};
  std::atomic<int> handled{0};
  std::atomic<int> failed{0};

  void wait_handled(int expected) {
    for (int seen = handled.load(); seen < expected; seen = handled.load()) handled.wait(seen);
  }

  // The handler's body: checks, then fails (throws) or records the event.
  void handle(const event& e) {
    const auto k = static_cast<std::size_t>(e.key);
    if (busy[k].fetch_add(1, std::memory_order_relaxed) != 0) overlaps.fetch_add(1);
    std::this_thread::yield();  // widen the window a second handler of the key would hit
    const bool fail = ++attempts[k] <= e.fail_times;
    if (e.seq != last[k] + 1 + e.skipped) out_of_order.fetch_add(1);
    busy[k].fetch_sub(1, std::memory_order_relaxed);
    if (fail) {
      failed.fetch_add(1);
      throw std::runtime_error("key " + std::to_string(e.key) + " seq " + std::to_string(e.seq));
    }
    attempts[k] = 0;
    last[k] = e.seq;
    handled.fetch_add(1);
    handled.notify_all();
  }
};

struct member {
  book* b;
  void on(const event& e) { b->handle(e); }
};

// A member whose handler suspends: the key stays in flight across the suspension.
class slow_member {
 public:
  slow_member(troupe::context& ctx, book* b) : ctx_(ctx), b_(b) {}
  troupe::task<void> on(const event& e) {
    if (e.seq % 7 == 0) co_await ctx_.sleep_for(50us);
    b_->handle(e);
  }

 private:
  troupe::context& ctx_;
  book* b_;
};

troupe::runtime_options quiet(test::observer& obs, std::size_t workers = 2) {
  troupe::runtime_options o = obs.options(workers);
  o.on_failure = [](const troupe::address&, std::string_view) {};
  return o;
}

void require_clean(const book& b) {
  REQUIRE(b.overlaps.load() == 0);
  REQUIRE(b.out_of_order.load() == 0);
}

}  // namespace

TEST_CASE("keyed: one item per key at a time, in push order, many keys over many consumers",
          "[keyed]") {
  constexpr int keys = 500;
  constexpr int producers = 4;
  constexpr int per_key = 20;
  book b(keys);
  test::observer obs;
  troupe::runtime rt(quiet(obs, 4));
  auto q = rt.make_keyed_queue<event>({.name = "events"}, &event::key);
  for (int i = 0; i < 6; ++i) q.add_consumer(rt.spawn<member>(&b));
  for (int i = 0; i < 2; ++i) q.add_consumer(rt.spawn<slow_member>(&b));
  REQUIRE(q.consumers() == 8);
  std::vector<std::thread> threads;
  for (int p = 0; p < producers; ++p) {
    threads.emplace_back([&, p] {  // each producer owns the keys k with k % producers == p
      for (int s = 1; s <= per_key; ++s) {
        for (int k = p; k < keys; k += producers) q.push(event{k, s});
      }
    });
  }
  for (auto& t : threads) t.join();
  b.wait_handled(keys * per_key);
  require_clean(b);
  for (int k = 0; k < keys; ++k) REQUIRE(b.last[static_cast<std::size_t>(k)] == per_key);
  REQUIRE(q.pending() == 0);
  rt.shutdown();
  REQUIRE(q.in_flight() == 0);
  test::require_accounted(rt.counters());
}

TEST_CASE("keyed: the publisher may give the key", "[keyed]") {
  book b(2);
  test::observer obs;
  troupe::runtime rt(quiet(obs));
  auto q = rt.make_keyed_queue<event, std::string>({.name = "by-name"});
  q.add_consumer(rt.spawn<member>(&b));
  q.add_consumer(rt.spawn<member>(&b));
  for (int s = 1; s <= 100; ++s) {
    q.push("alpha", event{0, s});
    q.push("beta", event{1, s});
  }
  b.wait_handled(200);
  require_clean(b);
  REQUIRE(b.last[0] == 100);
  REQUIRE(b.last[1] == 100);
}

TEST_CASE("keyed: members join, leave, stop and restart mid-stream without breaking a key",
          "[keyed][membership]") {
  constexpr int keys = 64;
  constexpr int per_key = 150;
  book b(keys);
  test::observer obs;
  troupe::runtime rt(quiet(obs, 3));
  auto sup = rt.spawn<troupe::supervisor>(troupe::one_for_one{.max_restarts = 1000, .within = 60s});
  auto q = rt.make_keyed_queue<event>({.name = "churn", .max_attempts = 3}, &event::key);
  q.add_consumer(troupe::start_child<member>(sup, {.name = "s0"}, &b));  // restarted on failure
  q.add_consumer(rt.spawn<member>(&b));
  std::thread producer([&] {
    for (int s = 1; s <= per_key; ++s) {
      for (int k = 0; k < keys; ++k) q.push(event{k, s, (s % 10 == 0 && k % 3 == 0) ? 1 : 0});
    }
  });
  // Churn while the producer runs: members come and go, one is stopped, one removed.
  std::vector<troupe::ref<member>> joined;
  for (int round = 0; round < 6; ++round) {
    joined.push_back(rt.spawn<member>(&b));
    q.add_consumer(joined.back());
    joined.push_back(troupe::start_child<member>(sup, {.name = "c" + std::to_string(round)}, &b));
    q.add_consumer(joined.back());
    b.wait_handled((round + 1) * keys * per_key / 8);
    if (round % 2 == 0) {
      joined[joined.size() - 2].stop();  // an item queued at it comes back, in its place
    } else {
      REQUIRE(q.remove_consumer(joined.back()));  // supervised: still in the pool until now
    }
  }
  producer.join();
  b.wait_handled(keys * per_key);
  require_clean(b);
  for (int k = 0; k < keys; ++k) REQUIRE(b.last[static_cast<std::size_t>(k)] == per_key);
  REQUIRE(b.failed.load() > 0);  // failures (and restarts) did happen mid-stream
  rt.shutdown();
  REQUIRE(obs.dead_count(troupe::dead_letter_reason::retries_exhausted) == 0);
  test::require_accounted(rt.counters());
}

TEST_CASE(
    "keyed: a failing item is retried before its key's next; then dead-lettered and the "
    "key moves on",
    "[keyed][retry]") {
  book b(3);
  test::observer obs;
  troupe::runtime rt(quiet(obs));
  auto sup = rt.spawn<troupe::supervisor>(troupe::one_for_one{.max_restarts = 100, .within = 60s});
  auto q = rt.make_keyed_queue<event>({.name = "retry", .max_attempts = 3}, &event::key);
  for (int i = 0; i < 3; ++i) {
    q.add_consumer(troupe::start_child<member>(sup, {.name = "m" + std::to_string(i)}, &b));
  }
  q.push(event{0, 1, 2});  // fails twice, the third attempt succeeds
  q.push(event{0, 2});     // must wait for it
  q.push(event{0, 3});
  q.push(event{1, 1, 9});                             // fails on every attempt: dead after 3
  q.push(event{1, 2, 0, 1});                          // then the key goes on
  for (int s = 1; s <= 50; ++s) q.push(event{2, s});  // an unrelated key is not held back
  b.wait_handled(3 + 1 + 50);
  rt.shutdown();
  require_clean(b);
  REQUIRE(b.last[0] == 3);
  REQUIRE(b.last[2] == 50);
  REQUIRE(b.failed.load() == 2 + 3);
  REQUIRE(b.last[1] == 2);
  REQUIRE(obs.dead_count(troupe::dead_letter_reason::handler_failed) == 2 + 2);
  REQUIRE(obs.dead_count(troupe::dead_letter_reason::retries_exhausted) == 1);
  {
    std::lock_guard lock(obs.mutex);
    for (const auto& d : obs.dead) {
      if (d.reason == troupe::dead_letter_reason::retries_exhausted) {
        REQUIRE(d.detail == "key 1 seq 1");
      }
    }
  }
  test::require_accounted(rt.counters());
}

TEST_CASE("keyed: key_failure::halt stops only the poisoned key until resume()", "[keyed][retry]") {
  book b(2);
  test::observer obs;
  troupe::runtime rt(quiet(obs));
  auto sup = rt.spawn<troupe::supervisor>(troupe::one_for_one{.max_restarts = 100, .within = 60s});
  auto q = rt.make_keyed_queue<event>(
      {.name = "poison", .max_attempts = 2, .on_exhausted = troupe::key_failure::halt},
      &event::key);
  q.add_consumer(troupe::start_child<member>(sup, {.name = "a"}, &b));
  q.add_consumer(troupe::start_child<member>(sup, {.name = "b"}, &b));
  q.push(event{0, 1, 5});  // poison: dead after 2 attempts, and key 0 halts
  q.push(event{0, 2, 0, 1});
  q.push(event{0, 3});
  for (int s = 1; s <= 20; ++s) q.push(event{1, s});
  b.wait_handled(20);
  for (;;) {  // the halt is recorded when the last failure comes back
    if (obs.dead_count(troupe::dead_letter_reason::retries_exhausted) == 1) break;
    std::this_thread::yield();
  }
  REQUIRE(q.halted_keys() == std::vector<int>{0});
  REQUIRE(q.pending() == 2);  // key 0's later items wait
  REQUIRE(b.last[0] == 0);
  REQUIRE_FALSE(q.resume(1));  // not halted
  REQUIRE(q.resume(0));
  b.wait_handled(22);
  REQUIRE(b.last[0] == 3);
  REQUIRE(q.halted_keys().empty());
  rt.shutdown();
  require_clean(b);
  test::require_accounted(rt.counters());
}

TEST_CASE("keyed group: a keyed queue subscribed to a topic takes each event once, by key",
          "[keyed][topic]") {
  constexpr int keys = 100;
  constexpr int per_key = 30;
  book b(keys);
  book other(keys);
  test::observer obs;
  troupe::runtime rt(quiet(obs, 3));
  auto g = rt.make_keyed_queue<event>({.name = "billing"}, &event::key);
  for (int i = 0; i < 4; ++i) g.add_consumer(rt.spawn<member>(&b));
  auto sub = g.subscribe("orders.>");
  REQUIRE(sub.active());
  REQUIRE(sub.pattern() == "orders.>");
  auto plain = rt.subscribe<event>("orders.*", rt.spawn<member>(&other));  // broadcast too
  std::atomic<int> deliveries{0};
  std::vector<std::thread> threads;
  for (int p = 0; p < 2; ++p) {
    threads.emplace_back([&, p] {
      for (int s = 1; s <= per_key; ++s) {
        for (int k = p; k < keys; k += 2) {
          deliveries.fetch_add(static_cast<int>(rt.publish("orders.placed", event{k, s})));
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  REQUIRE(deliveries.load() == 2 * keys * per_key);  // the group counts once, as one group
  b.wait_handled(keys * per_key);
  other.wait_handled(keys * per_key);
  require_clean(b);
  for (int k = 0; k < keys; ++k) REQUIRE(b.last[static_cast<std::size_t>(k)] == per_key);
  sub.unsubscribe();
  REQUIRE(rt.publish("orders.placed", event{0, per_key + 1}) == 1);  // only the plain one now
  rt.shutdown();
  test::require_accounted(rt.counters());
}

TEST_CASE("keyed: items still waiting when the queue goes away are dead-lettered and counted",
          "[keyed]") {
  test::observer obs;
  troupe::runtime rt(quiet(obs));
  {
    auto q = rt.make_keyed_queue<event>({.name = "orphans"}, &event::key);
    for (int i = 0; i < 5; ++i) q.push(event{i % 2, i});
    REQUIRE(q.pending() == 5);
    REQUIRE(q.consumers() == 0);
  }
  REQUIRE(obs.dead_count(troupe::dead_letter_reason::shutdown) == 5);
  rt.shutdown();
  test::require_accounted(rt.counters());
}

TEST_CASE("keyed: misuse is a clear error", "[keyed]") {
  test::observer obs;
  troupe::runtime rt(quiet(obs));
  auto q = rt.make_keyed_queue<event, int>({.name = "no-key-fn"});
  REQUIRE_THROWS_MATCHES(q.push(event{1, 1}), troupe::error,
                         Catch::Predicate<troupe::error>([](const troupe::error& e) {
                           return e.code() == troupe::errc::invalid_argument;
                         }));
  REQUIRE_THROWS_AS(q.subscribe("a.b"), troupe::error);
  REQUIRE_THROWS_AS(q.add_consumer(troupe::ref<member>{}), troupe::error);
  auto k = rt.make_keyed_queue<event>({.name = "k"}, [](const event& e) { return e.key; });
  REQUIRE_THROWS_AS(k.subscribe("a..b"), troupe::error);  // invalid subject
  rt.shutdown();
  REQUIRE_THROWS_AS(k.push(event{1, 1}), troupe::error);  // after shutdown began
  REQUIRE(k.pending() == 0);
}
