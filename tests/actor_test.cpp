// Tests of actors and troupe::context (include/troupe/actor.hpp): construction, lifecycle
// hooks, one handler at a time (also across task suspensions), ordering across suspensions,
// failures, self, timers and delayed sends.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <latch>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

using namespace std::chrono_literals;

namespace {

using event_log = std::vector<std::string>;

struct note {
  std::string text;
};
struct boom {};

class hooked {
 public:
  hooked(event_log* log, std::mutex* m) : log_(log), m_(m) { record("constructed"); }
  ~hooked() { record("destroyed"); }
  hooked(const hooked&) = delete;
  hooked& operator=(const hooked&) = delete;
  void on_start() { record("on_start"); }
  void on_stop() { record("on_stop"); }
  void on(const note& n) { record(n.text); }
  void on(boom) { throw std::runtime_error("kaboom"); }

 private:
  void record(std::string s) {
    std::lock_guard lock(*m_);
    log_->push_back(std::move(s));
  }
  event_log* log_;
  std::mutex* m_;
};

}  // namespace

TEST_CASE("lifecycle: on_start before the first message, on_stop after the last",
          "[actor][lifecycle]") {
  event_log log;
  std::mutex m;
  {
    troupe::runtime rt(troupe::runtime_options{.workers = 2});
    auto a = rt.spawn<hooked>(&log, &m);
    a.send(note{"one"});
    a.send(note{"two"});
  }  // the destructor shuts down
  REQUIRE(log == event_log{"constructed", "on_start", "one", "two", "on_stop", "destroyed"});
}

TEST_CASE("a failing handler stops the actor; its message and the rest are dead-lettered",
          "[actor][failure]") {
  event_log log;
  std::mutex m;
  test::observer obs;
  troupe::runtime rt(obs.options(1));
  auto a = rt.spawn<hooked>(&log, &m);
  a.send(note{"before"});
  a.send(boom{});
  a.send(note{"after"});
  rt.shutdown();
  REQUIRE(log == event_log{"constructed", "on_start", "before", "on_stop", "destroyed"});
  REQUIRE(obs.failures == std::vector<std::string>{"kaboom"});
  REQUIRE(obs.dead.size() == 2);
  REQUIRE(obs.dead[0].reason == troupe::dead_letter_reason::handler_failed);
  REQUIRE(obs.dead[0].detail == "kaboom");
  REQUIRE(obs.dead[0].message_type.find("boom") != std::string::npos);
  REQUIRE(obs.dead[0].target_id == a.id());
  REQUIRE(obs.dead[1].reason == troupe::dead_letter_reason::target_stopped);
  REQUIRE(obs.dead[1].message_type.find("note") != std::string::npos);
  auto c = rt.counters();
  REQUIRE(c.failed == 1);
  REQUIRE(c.handled == 1);
  test::require_accounted(c);
}

namespace {
struct starter_fails {
  void on_start() { throw std::logic_error("cannot start"); }
  void on(const note&) {}
};
}  // namespace

TEST_CASE("an exception from on_start fails the actor before any message", "[actor][failure]") {
  test::observer obs;
  troupe::runtime rt(obs.options());
  auto a = rt.spawn<starter_fails>();
  a.send(note{"x"});
  rt.shutdown();
  REQUIRE(obs.failures == std::vector<std::string>{"cannot start"});
  REQUIRE(rt.counters().handled == 0);
  test::require_accounted(rt.counters());
}

namespace {

struct work {
  std::uint32_t sequence;
  bool suspend;
};

// Fails the test if two handlers ever overlap, and records the order messages finish in.
class exclusive {
 public:
  exclusive(troupe::context& ctx, std::atomic<int>* overlaps, std::vector<std::uint32_t>* order,
            std::latch* finished)
      : ctx_(ctx), overlaps_(overlaps), order_(order), finished_(finished) {}

  troupe::task<void> on(work w) {
    enter();
    if (w.suspend) {
      co_await ctx_.sleep_for(std::chrono::microseconds(50 + w.sequence % 7 * 20));
    }
    order_->push_back(w.sequence);  // unsynchronised on purpose: TSan flags any overlap
    leave();
    finished_->count_down();
  }

 private:
  void enter() {
    if (inside_.fetch_add(1) != 0) overlaps_->fetch_add(1);
  }
  void leave() { inside_.fetch_sub(1); }

  troupe::context& ctx_;
  std::atomic<int> inside_{0};
  std::atomic<int>* overlaps_;
  std::vector<std::uint32_t>* order_;
  std::latch* finished_;
};

}  // namespace

TEST_CASE("one handler at a time, and order kept across task suspensions",
          "[actor][ordering][coroutine]") {
  constexpr std::uint32_t messages = 2'000;
  std::atomic<int> overlaps{0};
  std::vector<std::uint32_t> order;
  std::latch finished(messages);
  troupe::runtime rt(troupe::runtime_options{.workers = 2});
  auto a = rt.spawn<exclusive>(&overlaps, &order, &finished);
  // Two threads race sends, so messages arrive while handlers are suspended.
  std::thread other([&] {
    for (std::uint32_t i = 1; i < messages; i += 2) {
      // odd numbers come from this thread; order is per sender
      a.send(work{i, i % 3 == 0});
    }
  });
  for (std::uint32_t i = 0; i < messages; i += 2) a.send(work{i, i % 4 == 0});
  other.join();
  finished.wait();
  REQUIRE(overlaps.load() == 0);
  REQUIRE(order.size() == messages);
  // Per sender, completion order equals send order although some handlers suspended.
  std::int64_t last_even = -1;
  std::int64_t last_odd = -1;
  for (auto s : order) {
    auto& last = s % 2 == 0 ? last_even : last_odd;
    REQUIRE(static_cast<std::int64_t>(s) > last);
    last = s;
  }
  rt.shutdown();
  test::require_accounted(rt.counters());
}

namespace {

struct nap {
  std::chrono::milliseconds length;
  std::chrono::steady_clock::duration* slept;
  bool* on_worker;
  std::latch* done;
};

class napper {
 public:
  explicit napper(troupe::context& ctx) : ctx_(ctx) {}
  troupe::task<void> on(nap n) {
    const auto start = std::chrono::steady_clock::now();
    co_await ctx_.sleep_for(n.length);
    *n.slept = std::chrono::steady_clock::now() - start;
    // Resumed through the scheduler on one of this runtime's workers, not the timer thread.
    *n.on_worker = troupe::detail::this_thread_identity.worker != nullptr;
    n.done->count_down();
  }

 private:
  troupe::context& ctx_;
};

}  // namespace

TEST_CASE("sleep_for resumes on a worker, never early", "[actor][timers]") {
  troupe::runtime rt(troupe::runtime_options{.workers = 2});
  auto a = rt.spawn<napper>();
  for (auto length : {1ms, 5ms, 20ms}) {
    std::chrono::steady_clock::duration slept{};
    bool on_worker = false;
    std::latch done(1);
    a.send(nap{length, &slept, &on_worker, &done});
    done.wait();
    REQUIRE(slept >= length);
    REQUIRE(slept < length + 10s);  // generous: only catches a lost wake-up
    REQUIRE(on_worker);
  }
}

namespace {

struct stamp {
  int id;
};
struct arm {
  std::chrono::steady_clock::time_point* sent_at;
};

class stamper {
 public:
  stamper(troupe::context& ctx,
          std::vector<std::pair<int, std::chrono::steady_clock::time_point>>* got, std::latch* done)
      : ctx_(ctx), got_(got), done_(done) {}
  void on(stamp s) {
    got_->emplace_back(s.id, std::chrono::steady_clock::now());
    done_->count_down();
  }
  void on(arm a) {
    *a.sent_at = std::chrono::steady_clock::now();
    auto self = ctx_.self_as<stamper>();
    ctx_.send_after(30ms, self, stamp{3});
    ctx_.send_after(10ms, self, stamp{2});
    ctx_.send_after(0ms, self, stamp{1});
  }

 private:
  troupe::context& ctx_;
  std::vector<std::pair<int, std::chrono::steady_clock::time_point>>* got_;
  std::latch* done_;
};

}  // namespace

TEST_CASE("delayed sends arrive in deadline order, not before their delay", "[actor][timers]") {
  std::vector<std::pair<int, std::chrono::steady_clock::time_point>> got;
  std::latch done(4);
  std::chrono::steady_clock::time_point sent_at;
  troupe::runtime rt(troupe::runtime_options{.workers = 2});
  auto a = rt.spawn<stamper>(&got, &done);
  a.send(arm{&sent_at});
  const auto outside = std::chrono::steady_clock::now();
  rt.send_after(15ms, a, stamp{4});
  done.wait();
  REQUIRE(got.size() == 4);
  std::vector<int> ids;
  for (auto& [id, at] : got) ids.push_back(id);
  // 1 (0 ms), 2 (10 ms) and 3 (30 ms) were armed together, so they arrive in deadline order;
  // 4 (15 ms) was armed from outside, at about the same time.
  auto position = [&ids](int id) { return std::find(ids.begin(), ids.end(), id) - ids.begin(); };
  REQUIRE(position(1) < position(2));
  REQUIRE(position(2) < position(3));
  // By id, not by position: under load the outside send (15 ms) may overtake stamp 2.
  for (auto& [id, at] : got) {
    if (id == 2) REQUIRE(at - sent_at >= 10ms);
    if (id == 3) REQUIRE(at - sent_at >= 30ms);
  }
  for (auto& [id, at] : got) {
    if (id == 4) REQUIRE(at - outside >= 15ms);
  }
  rt.shutdown();
  REQUIRE(rt.counters().handled == 5);
  test::require_accounted(rt.counters());
}

namespace {

struct make_child {
  std::latch* done;
  troupe::runtime** seen_runtime;
};
struct hello {
  std::latch* done;
};
struct child {
  void on(hello h) { h.done->count_down(); }
};
struct wrong_type {};
class parent {
 public:
  explicit parent(troupe::context& ctx) : ctx_(ctx) {}
  void on(make_child m) {
    *m.seen_runtime = &ctx_.runtime();
    ctx_.spawn<child>().send(hello{m.done});
  }
  void on(wrong_type) { static_cast<void>(ctx_.self_as<child>()); }

 private:
  troupe::context& ctx_;
};

}  // namespace

TEST_CASE("context: spawn children, reach the runtime, typed self is checked", "[actor]") {
  test::observer obs;
  troupe::runtime rt(obs.options());
  auto p = rt.spawn<parent>();
  std::latch done(1);
  troupe::runtime* seen = nullptr;
  p.send(make_child{&done, &seen});
  done.wait();
  REQUIRE(seen == &rt);
  p.send(wrong_type{});
  rt.shutdown();
  REQUIRE(obs.failures.size() == 1);
  REQUIRE(obs.failures[0].find("bad actor type") != std::string::npos);
  REQUIRE(rt.counters().spawned == 2);
  test::require_accounted(rt.counters());
}

namespace {
struct quit {};
class quitter {
 public:
  explicit quitter(troupe::context& ctx) : ctx_(ctx) {}
  void on(quit) { ctx_.stop(); }
  void on(const note&) {}

 private:
  troupe::context& ctx_;
};
}  // namespace

TEST_CASE("ctx.stop: messages queued behind the stopping one are dead-lettered", "[actor][stop]") {
  test::observer obs;
  troupe::runtime rt(obs.options(1));
  auto q = rt.spawn<quitter>();
  // Queue everything before the actor can run: one worker, and it is busy starting the actor
  // at the earliest, so all of these are in the mailbox in this order.
  q.send(note{"a"});
  q.send(quit{});
  for (int i = 0; i < 10; ++i) q.send(note{"late"});
  rt.shutdown();
  auto c = rt.counters();
  REQUIRE(c.handled == 2);
  REQUIRE(c.dead_lettered == 10);
  REQUIRE(obs.dead_count(troupe::dead_letter_reason::target_stopped) == 10);
  test::require_accounted(c);
}
