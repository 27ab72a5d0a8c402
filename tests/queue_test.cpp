// Tests of work queues (include/troupe/queue.hpp): exactly-once handling under concurrency,
// redelivery and dead-lettering, pools that grow and shrink, consumers that stop, and items
// left behind.
#include <atomic>
#include <map>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "support.hpp"

using namespace std::chrono_literals;

namespace {

struct job {
  int id;
  int fail_times = 0;  // how many deliveries of this job throw before one succeeds
};

struct ledger {
  std::mutex mutex;
  std::map<int, int> handled;   // id -> times handled successfully
  std::map<int, int> attempts;  // id -> deliveries
  std::map<int, int> by_consumer;
  std::atomic<int> total{0};

  void wait_total(int expected) {
    for (int seen = total.load(); seen < expected; seen = total.load()) total.wait(seen);
  }
};

struct consumer {
  ledger* book;
  int me;
  void on(const job& j) {
    int attempt = 0;
    {
      std::lock_guard lock(book->mutex);
      attempt = ++book->attempts[j.id];
    }
    if (attempt <= j.fail_times) throw std::runtime_error("job " + std::to_string(j.id));
    {
      std::lock_guard lock(book->mutex);
      ++book->handled[j.id];
      ++book->by_consumer[me];
    }
    book->total.fetch_add(1);
    book->total.notify_all();
  }
};

troupe::runtime_options quiet(test::observer& obs) {
  troupe::runtime_options o = obs.options();
  o.on_failure = [](const troupe::address&, std::string_view) {};
  return o;
}

}  // namespace

TEST_CASE("each item is handled by exactly one consumer, under concurrency", "[queue]") {
  constexpr int producers = 4;
  constexpr int per_producer = 5'000;
  ledger book;
  test::observer obs;
  troupe::runtime rt(quiet(obs));
  auto q = rt.make_queue<job>({.name = "jobs"});
  for (int i = 0; i < 4; ++i) q.add_consumer(rt.spawn<consumer>(&book, i));
  REQUIRE(q.consumers() == 4);
  std::vector<std::thread> threads;
  for (int p = 0; p < producers; ++p) {
    threads.emplace_back([&, p] {
      for (int i = 0; i < per_producer; ++i) q.push(job{p * per_producer + i});
    });
  }
  for (auto& t : threads) t.join();
  book.wait_total(producers * per_producer);
  std::lock_guard lock(book.mutex);
  REQUIRE(book.handled.size() == static_cast<std::size_t>(producers * per_producer));
  for (const auto& [id, times] : book.handled) REQUIRE(times == 1);
  REQUIRE(book.by_consumer.size() == 4);  // competing consumers all took part
}

TEST_CASE("a failed item is redelivered, then dead-lettered when attempts run out",
          "[queue][retry]") {
  ledger book;
  test::observer obs;
  troupe::runtime rt(quiet(obs));
  auto sup = rt.spawn<troupe::supervisor>(troupe::one_for_one{.max_restarts = 100, .within = 60s});
  auto q = rt.make_queue<job>({.name = "jobs", .max_attempts = 3});
  q.add_consumer(troupe::start_child<consumer>(sup, {.name = "a"}, &book, 0));
  q.add_consumer(troupe::start_child<consumer>(sup, {.name = "b"}, &book, 1));
  q.push(job{1, 0});  // fine
  q.push(job{2, 2});  // fails twice, third attempt succeeds
  q.push(job{3, 5});  // always fails: dead after 3 attempts
  book.wait_total(2);
  // Job 3's last attempt is recorded when its third failure is processed; wait for it.
  for (;;) {
    if (obs.dead_count(troupe::dead_letter_reason::retries_exhausted) == 1) break;
    std::this_thread::yield();
  }
  rt.shutdown();
  std::lock_guard lock(book.mutex);
  REQUIRE(book.handled[1] == 1);
  REQUIRE(book.handled[2] == 1);
  REQUIRE(book.handled.count(3) == 0);
  REQUIRE(book.attempts[2] == 3);
  REQUIRE(book.attempts[3] == 3);
  REQUIRE(obs.dead_count(troupe::dead_letter_reason::handler_failed) == 4);  // 2 + 2
  REQUIRE(obs.dead_count(troupe::dead_letter_reason::retries_exhausted) == 1);
  test::require_accounted(rt.counters());
}

TEST_CASE("pools grow and shrink at run time", "[queue][pool]") {
  ledger book;
  test::observer obs;
  troupe::runtime rt(quiet(obs));
  auto q = rt.make_queue<job>({.name = "jobs"});
  for (int i = 0; i < 50; ++i) q.push(job{i});
  REQUIRE(q.pending() == 50);  // nobody to take them yet
  auto first = rt.spawn<consumer>(&book, 0);
  q.add_consumer(first);
  book.wait_total(50);
  REQUIRE(q.remove_consumer(first));
  REQUIRE_FALSE(q.remove_consumer(first));
  for (int i = 50; i < 60; ++i) q.push(job{i});
  REQUIRE(q.pending() == 10);  // the removed consumer takes no more
  q.add_consumer(rt.spawn<consumer>(&book, 1));
  book.wait_total(60);
  std::lock_guard lock(book.mutex);
  REQUIRE(book.by_consumer[0] == 50);
  REQUIRE(book.by_consumer[1] == 10);
}

TEST_CASE("a consumer that stops leaves the pool; its item goes to another", "[queue][failover]") {
  ledger book;
  test::observer obs;
  troupe::runtime rt(quiet(obs));
  auto q = rt.make_queue<job>({.name = "jobs", .max_attempts = 5});
  // Unsupervised: a failing consumer stops for good.
  q.add_consumer(rt.spawn<consumer>(&book, 0));
  q.add_consumer(rt.spawn<consumer>(&book, 1));
  q.push(job{7, 1});  // the first delivery fails (and kills its consumer); the retry succeeds
  for (int i = 100; i < 120; ++i) q.push(job{i});
  book.wait_total(21);
  REQUIRE(q.consumers() == 1);
  rt.shutdown();
  std::lock_guard lock(book.mutex);
  REQUIRE(book.handled[7] == 1);
  test::require_accounted(rt.counters());
}

TEST_CASE("items still queued when the queue goes away are dead-lettered and counted", "[queue]") {
  test::observer obs;
  troupe::runtime rt(quiet(obs));
  {
    auto q = rt.make_queue<job>({.name = "orphans"});
    for (int i = 0; i < 5; ++i) q.push(job{i});
  }
  REQUIRE(obs.dead_count(troupe::dead_letter_reason::shutdown) == 5);
  rt.shutdown();
  test::require_accounted(rt.counters());
}

namespace {

struct always_fails {
  void on(const job& j) { throw std::runtime_error("job " + std::to_string(j.id)); }
};

}  // namespace

TEST_CASE("unsupervised consumers that failed leave the pool; later items wait, counted",
          "[queue][failover]") {
  ledger book;
  test::observer obs;
  troupe::runtime rt(quiet(obs));
  auto q = rt.make_queue<job>({.name = "jobs", .max_attempts = 1});
  q.add_consumer(rt.spawn<always_fails>());
  q.push(job{1});  // kills the only consumer; one attempt allowed: dead-lettered
  while (rt.live_actors() != 0) std::this_thread::yield();
  REQUIRE(q.consumers() == 0);
  q.push(job{2});  // nobody to take it: it waits, visible
  REQUIRE(q.pending() == 1);
  q.add_consumer(rt.spawn<consumer>(&book, 0));  // a new consumer takes what waited
  book.wait_total(1);
  REQUIRE(q.pending() == 0);
  rt.shutdown();
  REQUIRE(obs.dead_count(troupe::dead_letter_reason::retries_exhausted) == 1);
  test::require_accounted(rt.counters());
}
