// Tests of the runtime's timers (include/troupe/detail/timer_service.hpp and what rides on it):
// sleeps, delayed sends and supervisor backoff at the ends of the duration range (zero,
// negative, the minimum, the maximum: saturated, never undefined behaviour — these run under
// UBSan too), and a delayed send that finds a full mailbox.
#include <chrono>
#include <condition_variable>
#include <latch>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>

#include "support.hpp"

using namespace std::chrono_literals;

namespace {

struct nap {
  std::chrono::nanoseconds length;
};
struct ping {};

// Sleeps, then replies; pings are counted.
class sleeper {
 public:
  explicit sleeper(troupe::context& ctx) : ctx_(ctx) {}
  troupe::task<int> on(nap n) {
    co_await ctx_.sleep_for(n.length);
    co_return 1;
  }
  int on(ping) { return ++pings_; }

 private:
  troupe::context& ctx_;
  int pings_ = 0;
};

}  // namespace

TEST_CASE("detail::deadline_after and saturating_duration saturate at the clock's ends",
          "[timer]") {
  using troupe::detail::deadline_after;
  using troupe::detail::saturating_duration;
  using tp = std::chrono::steady_clock::time_point;
  const tp now = std::chrono::steady_clock::now();
  REQUIRE(deadline_after(now, std::chrono::nanoseconds::max()) == tp::max());
  REQUIRE(deadline_after(now, std::chrono::nanoseconds::min()) == now);
  REQUIRE(deadline_after(now, -1ns) == now);
  REQUIRE(deadline_after(now, 0ns) == now);
  REQUIRE(deadline_after(now, 5ms) == now + 5ms);
  REQUIRE(deadline_after(tp::max() - 1ns, 2ns) == tp::max());
  REQUIRE(saturating_duration(std::chrono::milliseconds::max()) == std::chrono::nanoseconds::max());
  REQUIRE(saturating_duration(std::chrono::hours::min()) == std::chrono::nanoseconds::min());
  REQUIRE(saturating_duration(std::chrono::seconds{3}) == 3s);
  REQUIRE(saturating_duration(std::chrono::nanoseconds::max()) == std::chrono::nanoseconds::max());
}

TEST_CASE("sleep_for: zero and negative do not suspend; nanoseconds::max() never wakes",
          "[timer][sleep]") {
  test::observer obs;
  troupe::runtime rt(obs.options(1));
  auto s = rt.spawn<sleeper>();
  for (const std::chrono::nanoseconds d :
       {std::chrono::nanoseconds{0}, std::chrono::nanoseconds{-1},
        std::chrono::nanoseconds::min()}) {
    REQUIRE(s.ask(nap{d}, 60s).get() == 1);
  }
  REQUIRE(rt.pending_timers() == 0);
  {  // (the replies are dropped before the count of open asks below)
    // A sleep of the maximum: the handler suspends (the actor is busy), with its wake-up at the
    // saturated deadline; a shorter timer armed after it still fires on time.
    auto forever = s.ask(nap{std::chrono::nanoseconds::max()}, 60s);
    auto pinged = s.ask(ping{}, 10ms);  // queued behind the sleeping handler: times out
    try {
      static_cast<void>(pinged.get());
      FAIL("the ping was answered during an endless sleep");
    } catch (const troupe::error& e) {
      REQUIRE(e.code() == troupe::errc::timeout);
    }
    REQUIRE(!forever.ready());
    rt.shutdown(10ms);  // the sleeping handler is abandoned
    try {
      static_cast<void>(forever.get());
      FAIL("the endless sleep returned");
    } catch (const troupe::error& e) {
      REQUIRE(e.code() != troupe::errc::timeout);
    }
  }
  REQUIRE(rt.counters().open_asks == 0);
  test::require_accounted(rt.counters());
}

TEST_CASE("send_after: zero and negative send at once; nanoseconds::max() never comes due",
          "[timer][send_after]") {
  test::observer obs;
  troupe::runtime rt(obs.options(1));
  auto s = rt.spawn<sleeper>();
  REQUIRE(rt.send_after(0ns, s, ping{}));
  REQUIRE(rt.send_after(-1ms, s, ping{}));
  REQUIRE(rt.send_after(std::chrono::nanoseconds::min(), s, ping{}));
  REQUIRE(rt.send_after(std::chrono::nanoseconds::max(), s, ping{}));
  // The three due ones come at once: ask for the ping count until it shows them (each ask is
  // a ping too), bounded against a hang.
  int asks = 0;
  int pings = 0;
  const auto give_up = std::chrono::steady_clock::now() + 60s;
  while (pings - asks < 3 && std::chrono::steady_clock::now() < give_up) {
    pings = s.ask(ping{}, 60s).get();
    ++asks;
  }
  REQUIRE(pings - asks == 3);
  REQUIRE(rt.pending_timers() == 1);  // the endless one
  rt.shutdown(50ms);                  // it never comes due: dead-lettered at shutdown
  REQUIRE(obs.dead_count(troupe::dead_letter_reason::shutdown) == 1);
  const auto c = rt.counters();
  REQUIRE(c.rejected == 0);
  test::require_accounted(c);
  REQUIRE(!rt.send_after(1ms, s, ping{}));  // refused after shutdown: rejected, and said so
  REQUIRE(rt.counters().rejected == 1);
  test::require_accounted(rt.counters());
}

namespace {

struct block {
  std::latch* entered;
  std::latch* gate;
};
struct late {};

class bounded {
 public:
  static constexpr troupe::mailbox_options mailbox{.capacity = 1,
                                                   .overflow = troupe::overflow::reject};
  void on(block b) {
    b.entered->count_down();
    b.gate->wait();
  }
  void on(ping) {}
  void on(late) {}
};

}  // namespace

TEST_CASE("a delayed send that finds a full reject mailbox is a dead letter (mailbox_full)",
          "[timer][send_after]") {
  test::observer obs;
  troupe::runtime rt(obs.options(1));
  auto b = rt.spawn<bounded>();
  std::latch entered(1);
  std::latch gate(1);
  REQUIRE(b.send(block{&entered, &gate}));
  entered.wait();            // the handler runs (and blocks): the mailbox is empty again
  REQUIRE(b.send(ping{}));   // fills it
  REQUIRE(!b.send(ping{}));  // a direct send is rejected, and told so
  REQUIRE(rt.send_after(1ms, b, late{}));
  // When the delayed send comes due the mailbox is still full: nobody can be told any more, so
  // it must become a dead letter. (Waits on the outcome itself, with a bound against a hang.)
  const auto give_up = std::chrono::steady_clock::now() + 60s;
  while (obs.dead_count(troupe::dead_letter_reason::mailbox_full) == 0 &&
         rt.counters().rejected < 2 && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::yield();
  }
  gate.count_down();
  rt.shutdown();
  REQUIRE(obs.dead_count(troupe::dead_letter_reason::mailbox_full) == 1);
  {
    std::lock_guard lock(obs.mutex);
    REQUIRE(obs.dead.size() == 1);
    REQUIRE(obs.dead[0].message_type.find("late") != std::string::npos);
    REQUIRE(obs.dead[0].target_id == b.id());
  }
  const auto c = rt.counters();
  REQUIRE(c.rejected == 1);  // only the direct send
  REQUIRE(c.dead_lettered == 1);
  REQUIRE(c.handled == 2);  // block, the first ping
  REQUIRE(c.sent == 4);
  test::require_accounted(c);
}

namespace {

struct boom {};
class fragile {
 public:
  void on(boom) { throw std::runtime_error("boom"); }
  void on(ping) {}
};

}  // namespace

TEST_CASE("supervisor backoff and shutdown_timeout of milliseconds::max() saturate",
          "[timer][supervisor]") {
  std::mutex mutex;
  int failed = 0;
  std::condition_variable changed;
  troupe::runtime_options o;
  o.workers = 1;
  o.on_supervision = [&](const troupe::supervision_event& e) {
    std::lock_guard lock(mutex);
    if (e.what == troupe::supervision_event::kind::failed) ++failed;
    changed.notify_all();
  };
  troupe::runtime rt(o);
  auto sup = rt.spawn<troupe::supervisor>(
      troupe::one_for_one{.max_restarts = 10,
                          .within = 1s,
                          .backoff = {.min = std::chrono::milliseconds::max(),
                                      .max = std::chrono::milliseconds::max(),
                                      .factor = 2.0,
                                      .jitter = 0.5}});
  auto child = troupe::start_child<fragile>(
      sup, {.name = "fragile", .shutdown_timeout = std::chrono::milliseconds::max()});
  child.send(boom{});
  {
    std::unique_lock lock(mutex);
    changed.wait(lock, [&] { return failed == 1; });
  }
  // The restart is due in ~292 years: a pending timer, not an immediate restart. (The
  // supervisor has scheduled it once it answers the next request.)
  REQUIRE(sup.ask(troupe::which_children{}, 60s).get().size() == 1);
  REQUIRE(rt.pending_timers() == 1);
  // stop_tree waits up to the child's (saturated) shutdown_timeout: the parked child stops at
  // once, so it returns without forcing anyone.
  REQUIRE(sup.ask(troupe::stop_tree{}, 60s).get() == 0);
  rt.shutdown(50ms);  // the endless restart timer is dropped
  test::require_accounted(rt.counters());
}
