// What docs/guide.md and docs/measuring-latency.md state about edge cases a newcomer asked
// about, checked as the code does it: a late reply's dead letter, send and ask against each
// overflow policy of a full mailbox, a work-queue item's dead letters, monitors across a
// supervised restart, latency_histogram's types and mean, publish/send/ask after shutdown, and
// io_thread::stop() against destroying it. One claim per test case; the guide names them.
#include <atomic>
#include <chrono>
#include <latch>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <asio.hpp>

#include "support.hpp"

using namespace std::chrono_literals;

namespace {

// A handler that holds its worker until the test opens the gate.
struct hold {
  std::latch* entered;
  std::atomic<bool>* open;
};
struct value {
  int n;
};

template <troupe::overflow P>
struct boxed {
  static constexpr troupe::mailbox_options mailbox{.capacity = 2, .overflow = P};
  void on(hold h) {
    h.entered->count_down();
    while (!h.open->load()) std::this_thread::yield();
  }
  int on(value v) { return v.n; }
};

troupe::errc code_of(auto&& reply) {
  try {
    static_cast<void>(reply.get());
  } catch (const troupe::error& e) {
    return e.code();
  }
  FAIL("the ask did not fail");
  return {};
}

// Fills a capacity-2 mailbox behind a held handler, then sends one more and asks one more.
template <troupe::overflow P>
struct overflow_run {
  std::latch entered{1};          // before the runtime: the held handler reads them until
  std::atomic<bool> open{false};  // the runtime has stopped
  test::observer obs;
  troupe::runtime rt{obs.options()};
  troupe::ref<boxed<P>> box = rt.spawn<boxed<P>>();
  bool third_send = false;
  std::unique_ptr<troupe::reply<int>> first;
  std::unique_ptr<troupe::reply<int>> extra;

  overflow_run() {
    box.send(hold{&entered, &open});
    entered.wait();  // the handler runs: the mailbox is empty
    first = std::make_unique<troupe::reply<int>>(box.ask(value{1}, 1h));  // waiting: 1 of 2
    REQUIRE(box.send(value{2}));                                          // waiting: 2 of 2
    third_send = box.send(value{3});                                      // the mailbox is full
    extra = std::make_unique<troupe::reply<int>>(box.ask(value{4}, 1h));
  }
  void release() { open.store(true); }
};

}  // namespace

TEST_CASE("a full mailbox with reject: send returns false (rejected), an ask fails at once",
          "[docs][mailbox]") {
  overflow_run<troupe::overflow::reject> r;
  REQUIRE_FALSE(r.third_send);
  REQUIRE(code_of(std::move(*r.extra)) == troupe::errc::mailbox_full);
  r.release();
  REQUIRE(r.first->get() == 1);
  r.rt.shutdown();
  const auto c = r.rt.counters();
  REQUIRE(c.rejected == 2);
  REQUIRE(r.obs.dead_count(troupe::dead_letter_reason::mailbox_full) == 0);
  test::require_accounted(c);
}

TEST_CASE("a full mailbox with drop_newest: send returns false, the new message is a dead letter",
          "[docs][mailbox]") {
  overflow_run<troupe::overflow::drop_newest> r;
  REQUIRE_FALSE(r.third_send);
  // The ask is the newest: dead-lettered, and the asker knows at once.
  REQUIRE(code_of(std::move(*r.extra)) == troupe::errc::mailbox_full);
  r.release();
  REQUIRE(r.first->get() == 1);
  r.rt.shutdown();
  const auto c = r.rt.counters();
  REQUIRE(c.rejected == 0);
  REQUIRE(r.obs.dead_count(troupe::dead_letter_reason::mailbox_full) == 2);
  test::require_accounted(c);
}

TEST_CASE("a full mailbox with drop_oldest: send returns true, the oldest waiting one is dropped",
          "[docs][mailbox]") {
  overflow_run<troupe::overflow::drop_oldest> r;
  REQUIRE(r.third_send);
  r.release();
  // The oldest waiting messages (the first ask, then value{2}) made room for the newer ones:
  // the dropped ask fails with mailbox_full, the newest ask is answered.
  REQUIRE(code_of(std::move(*r.first)) == troupe::errc::mailbox_full);
  REQUIRE(r.extra->get() == 4);
  r.rt.shutdown();
  const auto c = r.rt.counters();
  REQUIRE(c.rejected == 0);
  REQUIRE(r.obs.dead_count(troupe::dead_letter_reason::mailbox_full) == 2);
  test::require_accounted(c);
}

namespace {

struct slow_answer {
  std::latch* release;
};
struct answerer {
  int on(slow_answer s) {
    s.release->wait();
    return 5;
  }
};
struct ask_through {
  troupe::ref<answerer> target;
  std::latch* release;
};
struct asking_actor {
  troupe::task<int> on(ask_through a) {
    auto r = a.target.ask(slow_answer{a.release}, 5ms);
    try {
      co_return co_await std::move(r);
    } catch (const troupe::error&) {
      a.release->count_down();  // timed out: let the answer go, late
      co_return -1;
    }
  }
};

struct seen_dead_letter {
  std::uint64_t target_id;
  std::string type;
  std::uint64_t correlation;
  std::string detail;
};

}  // namespace

TEST_CASE("a late reply's dead letter: reason expired, the reply's type, the asker as target",
          "[docs][ask]") {
  std::mutex m;
  std::vector<seen_dead_letter> expired;
  troupe::runtime_options o;
  o.workers = 2;
  o.on_dead_letter = [&](const troupe::dead_letter& d) {
    if (d.reason != troupe::dead_letter_reason::expired) return;
    std::lock_guard lock(m);
    expired.push_back({d.target.id(), std::string(d.message_type), d.correlation_id, d.detail});
  };
  troupe::runtime rt(o);
  auto target = rt.spawn<answerer>();

  SECTION("asked from a plain thread: the target is empty") {
    std::latch release(1);
    auto r = target.ask(slow_answer{&release}, 5ms);
    const auto id = r.correlation_id();
    REQUIRE(code_of(std::move(r)) == troupe::errc::timeout);
    release.count_down();
    rt.shutdown();  // the handler finishes; its reply finds the ask completed
    std::lock_guard lock(m);
    REQUIRE(expired.size() == 1);
    CHECK(expired[0].target_id == 0);
    CHECK(expired[0].type == troupe::detail::type_name<int>());
    CHECK(expired[0].correlation == id);
  }
  SECTION("asked from an actor: the target is the asking actor") {
    std::latch release(1);
    auto asker = rt.spawn<asking_actor>();
    REQUIRE(asker.ask(ask_through{target, &release}).get() == -1);
    rt.shutdown();
    std::lock_guard lock(m);
    REQUIRE(expired.size() == 1);
    CHECK(expired[0].target_id == asker.id());
    CHECK(expired[0].type == troupe::detail::type_name<int>());
  }
  test::require_accounted(rt.counters());
}

namespace {

struct task_item {
  int n;
};
struct failing_consumer {
  void on(const task_item&) { throw std::runtime_error("cannot do it"); }
};

}  // namespace

TEST_CASE(
    "a work-queue item failing every attempt: handler_failed per attempt, the last one "
    "retries_exhausted",
    "[docs][queue]") {
  test::observer obs;
  troupe::runtime rt(obs.options());
  auto sup = rt.spawn<troupe::supervisor>(troupe::one_for_one{.max_restarts = 100});
  auto jobs = rt.make_queue<task_item>({.name = "reports", .max_attempts = 3});
  jobs.add_consumer(troupe::start_child<failing_consumer>(sup, {.name = "c"}));
  jobs.push(task_item{1});
  // Three deliveries; bounded poll for the last one's dead letter.
  const auto deadline = std::chrono::steady_clock::now() + 20s;
  while (obs.dead_count(troupe::dead_letter_reason::retries_exhausted) == 0 &&
         std::chrono::steady_clock::now() < deadline) {
    std::this_thread::yield();
  }
  rt.shutdown();
  REQUIRE(obs.dead_count(troupe::dead_letter_reason::handler_failed) == 2);
  REQUIRE(obs.dead_count(troupe::dead_letter_reason::retries_exhausted) == 1);
  std::lock_guard lock(obs.mutex);
  for (const auto& d : obs.dead) {
    // Each names the item's type and carries the handler's exception text.
    CHECK(d.message_type.find("task_item") != std::string::npos);
    CHECK(d.detail.find("cannot do it") != std::string::npos);
  }
  test::require_accounted(rt.counters());
}

namespace {

struct crash {};
struct ping {};
struct watched {
  void on(crash) { throw std::runtime_error("crash"); }
  int on(ping) { return 1; }
};
struct watch {
  troupe::address target;
};
struct watcher {
  explicit watcher(troupe::context& c, std::latch* d, std::vector<troupe::down_reason>* r)
      : ctx(c), got_down(d), reasons(r) {}
  troupe::context& ctx;
  std::latch* got_down;
  std::vector<troupe::down_reason>* reasons;
  bool on(watch w) {
    static_cast<void>(ctx.monitor(w.target));
    return true;
  }
  void on(const troupe::down& d) {
    reasons->push_back(d.reason);
    got_down->count_down();
  }
};

}  // namespace

TEST_CASE("a monitor of a supervised child sees no down when the child is restarted",
          "[docs][monitor]") {
  std::atomic<int> restarts{0};
  troupe::runtime_options o;
  o.workers = 2;
  o.on_failure = [](const troupe::address&, std::string_view) {};
  o.on_supervision = [&](const troupe::supervision_event& e) {
    if (e.what == troupe::supervision_event::kind::restarted) restarts.fetch_add(1);
  };
  troupe::runtime rt(o);
  auto sup = rt.spawn<troupe::supervisor>(troupe::one_for_one{.max_restarts = 10});
  auto child = troupe::start_child<watched>(sup, {.name = "child"});
  std::latch got_down(1);
  std::vector<troupe::down_reason> reasons;
  auto w = rt.spawn<watcher>(&got_down, &reasons);
  REQUIRE(w.ask(watch{child}).get());
  child.send(crash{});
  REQUIRE(child.ask(ping{}).get() == 1);  // queued behind the crash: the new instance answers
  // Removed for good now: the one down the watcher gets is this stop, not the restart before.
  REQUIRE(sup.ask(troupe::remove_child{child}).get());
  got_down.wait();
  rt.shutdown();
  REQUIRE(restarts.load() == 1);
  REQUIRE(reasons.size() == 1);
  CHECK(reasons[0] != troupe::down_reason::failed);
}

TEST_CASE("latency_histogram: what record takes, and a mean in fractional nanoseconds",
          "[docs][latency]") {
  troupe::latency_histogram h;
  h.record(std::chrono::nanoseconds(1));
  h.record(std::uint64_t{2});              // plain integers are nanoseconds
  h.record(std::chrono::microseconds(1));  // coarser durations convert exactly
  h.record(std::chrono::nanoseconds(-5));  // a negative duration counts as 0
  REQUIRE(h.count() == 4);
  REQUIRE(h.min() == 0ns);
  REQUIRE(h.max() == 1000ns);
  // The sum is whole nanoseconds, the mean is not rounded: (1 + 2 + 1000 + 0) / 4.
  REQUIRE(h.mean().count() == Approx(250.75));
  troupe::latency_histogram c;
  c.record_corrected(std::chrono::milliseconds(10), std::chrono::milliseconds(4));
  REQUIRE(c.count() == 2);  // 10 ms and the missed 6 ms sample (2 ms is below the interval)
}

namespace {
struct listener {
  void on(const value&) {}
};
}  // namespace

TEST_CASE(
    "after shutdown: send returns false (rejected), an ask fails with runtime_stopped, "
    "publish, push and spawn throw, send_after is rejected",
    "[docs][runtime]") {
  test::observer obs;
  troupe::runtime rt(obs.options());
  auto a = rt.spawn<listener>();
  auto sub = rt.subscribe<value>("after.*", a);
  auto b = rt.spawn<boxed<troupe::overflow::reject>>();
  auto q = rt.make_queue<value>({.name = "late"});
  rt.shutdown();
  const auto before = rt.counters();
  REQUIRE_FALSE(b.send(value{1}));
  REQUIRE(code_of(b.ask(value{2})) == troupe::errc::runtime_stopped);
  REQUIRE(rt.counters().rejected == before.rejected + 2);
  auto code_of_throw = [](auto&& f) {
    try {
      f();
    } catch (const troupe::error& e) {
      return e.code();
    }
    FAIL("no troupe::error thrown");
    return troupe::errc{};
  };
  // A publish throws runtime_stopped: nothing is published or delivered; the refused event is
  // counted as rejected, like a refused send.
  const auto dead_before = rt.counters().dead_lettered;
  REQUIRE(code_of_throw([&] { static_cast<void>(rt.publish("after.x", value{3})); }) ==
          troupe::errc::runtime_stopped);
  REQUIRE(rt.counters().published == before.published);
  REQUIRE(rt.counters().rejected == before.rejected + 3);
  REQUIRE(rt.counters().dead_lettered == dead_before);
  // A subscribe throws and counts nothing (it carries no message).
  REQUIRE(code_of_throw([&] { static_cast<void>(rt.subscribe<value>("late.*", a)); }) ==
          troupe::errc::runtime_stopped);
  REQUIRE(rt.counters().rejected == before.rejected + 3);
  // A push (counted as rejected) and a spawn throw; a delayed send is counted as rejected.
  REQUIRE(code_of_throw([&] { q.push(value{4}); }) == troupe::errc::runtime_stopped);
  REQUIRE(code_of_throw([&] { static_cast<void>(rt.spawn<listener>()); }) ==
          troupe::errc::runtime_stopped);
  rt.send_after(1ms, b, value{5});
  REQUIRE(rt.counters().rejected == before.rejected + 5);
  test::require_accounted(rt.counters());
}

namespace {
struct await_timer {
  asio::steady_timer* timer;
  std::latch* waiting;
  std::atomic<int>* outcome;  // 0: pending, 1: completed, 2: broken promise
  std::latch* done;
};
struct io_waiter {
  troupe::task<void> on(await_timer m) {
    auto wait = troupe::async_io<std::error_code>([m](auto done) {
      m.timer->async_wait(std::move(done));
      m.waiting->count_down();
    });
    try {
      auto [ec] = co_await std::move(wait);
      m.outcome->store(ec == asio::error::operation_aborted ? 1 : 3);
    } catch (const troupe::error& e) {
      m.outcome->store(e.code() == troupe::errc::broken_promise ? 2 : 4);
    }
    m.done->count_down();
  }
};
}  // namespace

TEST_CASE(
    "io_thread: cancelling completes the operation; stop() leaves it pending until the "
    "io_thread is destroyed",
    "[docs][io]") {
  troupe::runtime rt(troupe::runtime_options{.workers = 2});
  SECTION("cancel (or close) while the io_thread runs: the completion runs, aborted") {
    troupe::io_thread io;
    asio::steady_timer timer(io.context(), 1h);
    std::latch waiting(1), done(1);
    std::atomic<int> outcome{0};
    rt.spawn<io_waiter>().send(await_timer{&timer, &waiting, &outcome, &done});
    waiting.wait();
    asio::post(io.context(), [&timer] { timer.cancel(); });
    done.wait();
    REQUIRE(outcome.load() == 1);
  }
  SECTION("stop(): nothing runs the completion; destroying the io_thread wakes it, broken") {
    auto io = std::make_unique<troupe::io_thread>();
    auto timer = std::make_unique<asio::steady_timer>(io->context(), 1h);
    std::latch waiting(1), done(1);
    std::atomic<int> outcome{0};
    rt.spawn<io_waiter>().send(await_timer{timer.get(), &waiting, &outcome, &done});
    waiting.wait();
    io->stop();
    REQUIRE(outcome.load() == 0);  // still suspended: stop() joined the thread, ran nothing
    timer.reset();                 // cancels: the aborted completion is queued, never run
    REQUIRE(outcome.load() == 0);
    io.reset();  // destroys the queued completion uncalled
    done.wait();
    REQUIRE(outcome.load() == 2);
  }
  rt.shutdown();
  test::require_accounted(rt.counters());
}
