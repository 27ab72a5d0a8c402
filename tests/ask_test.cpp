// Tests of request-reply (include/troupe/ask.hpp): replies from sync, task and promise
// handlers; from plain threads, actors and callbacks; every error; timeouts; late replies;
// nothing left behind after many asks.
#include <atomic>
#include <chrono>
#include <future>
#include <latch>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

using namespace std::chrono_literals;

namespace {

struct get {};
struct get_later {
  std::chrono::milliseconds delay;
};
struct get_deferred {};
struct get_gated {
  std::latch* started;
  std::chrono::milliseconds delay;
};
struct get_dropped {};
struct get_failing {};
struct get_move_only {};
struct nap {
  std::chrono::milliseconds length;
};
struct keep {
  std::promise<troupe::promise<int>>* out;
};

class server {
 public:
  explicit server(troupe::context& ctx) : ctx_(ctx) {}
  int on(get) const { return 42; }
  troupe::task<int> on(get_later g) {
    co_await ctx_.sleep_for(g.delay);
    co_return 7;
  }
  troupe::task<int> on(get_gated g) {
    g.started->count_down();
    co_await ctx_.sleep_for(g.delay);
    co_return 8;
  }
  void on(get_deferred, troupe::promise<int> reply) {
    // Fulfilled from another thread, later.
    std::thread([p = std::move(reply)]() mutable { p.set_value(9); }).detach();
  }
  void on(get_dropped, troupe::promise<int>) {}  // drops it
  int on(get_failing) { throw std::invalid_argument("bad request"); }
  std::unique_ptr<int> on(get_move_only) { return std::make_unique<int>(5); }
  troupe::task<void> on(nap n) { co_await ctx_.sleep_for(n.length); }

 private:
  troupe::context& ctx_;
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

}  // namespace

TEST_CASE("replies from sync, task and promise handlers, from a plain thread", "[ask]") {
  test::observer obs;
  troupe::runtime rt(obs.options());
  auto s = rt.spawn<server>();
  REQUIRE(s.ask(get{}).get() == 42);
  REQUIRE(s.ask(get_later{1ms}).get() == 7);
  REQUIRE(s.ask(get_deferred{}).get() == 9);
  REQUIRE(*s.ask(get_move_only{}).get() == 5);
  {
    auto a = s.ask(get{});
    auto b = s.ask(get{});
    REQUIRE(a.correlation_id() != 0);
    REQUIRE(a.correlation_id() != b.correlation_id());
    REQUIRE(a.get() + b.get() == 84);
  }  // replies still held keep their state open
  rt.shutdown();
  auto c = rt.counters();
  REQUIRE(c.open_asks == 0);
  REQUIRE(c.dead_lettered == 0);
  test::require_accounted(c);
}

TEST_CASE("a failing handler's exception travels back with its type and text", "[ask]") {
  test::observer obs;
  troupe::runtime rt(obs.options());
  auto s = rt.spawn<server>();
  auto r = s.ask(get_failing{});
  try {
    static_cast<void>(r.get());
    FAIL("no exception");
  } catch (const troupe::error& e) {
    REQUIRE(e.code() == troupe::errc::handler_failed);
    REQUIRE(std::string(e.what()).find("bad request") != std::string::npos);
    REQUIRE_THROWS_AS(e.rethrow_cause(), std::invalid_argument);
  }
  rt.shutdown();
  REQUIRE(obs.dead_count(troupe::dead_letter_reason::handler_failed) == 1);
  test::require_accounted(rt.counters());
}

TEST_CASE("an ask to a stopped actor fails at once, not after the timeout", "[ask]") {
  test::observer obs;
  troupe::runtime rt(obs.options());
  auto s = rt.spawn<server>();
  s.stop();
  // After the stop has certainly landed (an ask that the stopped actor cannot answer fails),
  // asks with an hour's timeout must fail immediately.
  troupe::errc first = troupe::errc::timeout;
  while ((first = [&] {
           try {
             static_cast<void>(s.ask(get{}, 1h).get());
             return troupe::errc::timeout;  // answered: the stop had not landed yet
           } catch (const troupe::error& e) {
             return e.code();
           }
         }()) == troupe::errc::timeout) {
  }
  REQUIRE(first == troupe::errc::actor_stopped);
  const auto start = std::chrono::steady_clock::now();
  REQUIRE(code_of(s.ask(get{}, 1h)) == troupe::errc::actor_stopped);
  REQUIRE(std::chrono::steady_clock::now() - start < 30s);
}

TEST_CASE("an actor stopping with asks queued fails them with actor_stopped", "[ask]") {
  troupe::runtime rt(troupe::runtime_options{.workers = 1});
  auto s = rt.spawn<server>();
  std::latch started(1);
  auto busy = s.ask(get_gated{&started, 20ms}, 1h);  // keeps the actor busy
  started.wait();
  auto queued = s.ask(get{}, 1h);
  s.stop();  // takes effect after the current handler: `queued` is still in the mailbox
  REQUIRE(busy.get() == 8);
  REQUIRE(code_of(std::move(queued)) == troupe::errc::actor_stopped);
}

TEST_CASE("timeouts fire within a generous bound and never early; late replies are counted",
          "[ask][timeout]") {
  test::observer obs;
  troupe::runtime rt(obs.options());
  auto s = rt.spawn<server>();
  const auto start = std::chrono::steady_clock::now();
  REQUIRE(code_of(s.ask(get_later{200ms}, 20ms)) == troupe::errc::timeout);
  const auto waited = std::chrono::steady_clock::now() - start;
  REQUIRE(waited >= 20ms);
  REQUIRE(waited < 20ms + 20s);
  rt.shutdown();  // lets the handler finish: its reply arrives late
  REQUIRE(obs.dead_count(troupe::dead_letter_reason::expired) == 1);
  auto c = rt.counters();
  REQUIRE(c.open_asks == 0);
  test::require_accounted(c);
}

TEST_CASE("the runtime's default ask timeout applies when none is given", "[ask][timeout]") {
  troupe::runtime_options o;
  o.workers = 1;
  o.ask_timeout = 10ms;
  troupe::runtime rt(o);
  auto s = rt.spawn<server>();
  REQUIRE(code_of(s.ask(get_later{1s})) == troupe::errc::timeout);
  rt.shutdown(0ms);
}

TEST_CASE("ask timeouts at the ends: non-positive ones are refused, huge ones never fire",
          "[ask][timeout]") {
  test::observer obs;
  troupe::runtime rt(obs.options(1));
  auto s = rt.spawn<server>();
  for (const std::chrono::nanoseconds t :
       {std::chrono::nanoseconds{0}, std::chrono::nanoseconds{-1}, std::chrono::nanoseconds{-1h},
        std::chrono::nanoseconds::min()}) {
    INFO("timeout " << t.count() << " ns");
    try {
      static_cast<void>(s.ask(get{}, t));
      FAIL("the ask was accepted");
    } catch (const troupe::error& e) {
      REQUIRE(e.code() == troupe::errc::invalid_argument);
      REQUIRE(std::string(e.what()).find("must be positive") != std::string::npos);
    }
  }
  REQUIRE(rt.counters().sent == 0);  // refused before anything was sent
  // The largest timeouts mean "no timeout": these asks wait for their (delayed) replies
  // instead of timing out at once, and arm no timer.
  REQUIRE(s.ask(get_later{20ms}, std::chrono::nanoseconds::max()).get() == 7);
  REQUIRE(s.ask(get{}, std::chrono::nanoseconds::max() - 1ns).get() == 42);
  REQUIRE(s.ask(get{}, std::chrono::nanoseconds{std::chrono::hours{24 * 365 * 290}}).get() == 42);
  REQUIRE(rt.pending_timers() == 0);
  rt.shutdown();
  REQUIRE(obs.dead.empty());
  REQUIRE(rt.counters().open_asks == 0);
  test::require_accounted(rt.counters());
}

TEST_CASE("a non-positive default ask timeout is refused at the ask; a huge one never fires",
          "[ask][timeout]") {
  SECTION("zero") {
    troupe::runtime rt(troupe::runtime_options{.workers = 1, .ask_timeout = 0ms});
    auto s = rt.spawn<server>();
    REQUIRE_THROWS_WITH(s.ask(get{}), Catch::Contains("runtime_options::ask_timeout"));
  }
  SECTION("milliseconds::max()") {
    troupe::runtime rt(
        troupe::runtime_options{.workers = 1, .ask_timeout = std::chrono::milliseconds::max()});
    auto s = rt.spawn<server>();
    REQUIRE(s.ask(get_later{10ms}).get() == 7);
    REQUIRE(rt.pending_timers() == 0);
  }
}

namespace {
struct fulfil {
  troupe::promise<int> reply;
  int value;
};
struct delegate_get {};
class helper {
 public:
  void on(fulfil f) { f.reply.set_value(f.value * 2); }
};
class front {
 public:
  explicit front(troupe::ref<helper> h) : helper_(std::move(h)) {}
  // Hands its reply promise to another actor, which answers the asker directly.
  void on(delegate_get, troupe::promise<int> reply) { helper_.send(fulfil{std::move(reply), 21}); }

 private:
  troupe::ref<helper> helper_;
};
}  // namespace

TEST_CASE("a reply promise can be delegated to another actor", "[ask][promise]") {
  troupe::runtime rt(troupe::runtime_options{.workers = 2});
  auto f = rt.spawn<front>(rt.spawn<helper>());
  REQUIRE(f.ask(delegate_get{}).get() == 42);
  rt.shutdown();
  test::require_accounted(rt.counters());
}

TEST_CASE("a dropped promise completes the ask with broken_promise", "[ask][promise]") {
  troupe::runtime rt(troupe::runtime_options{.workers = 1});
  auto s = rt.spawn<server>();
  REQUIRE(code_of(s.ask(get_dropped{})) == troupe::errc::broken_promise);
}

TEST_CASE("asks after shutdown fail with runtime_stopped", "[ask][misuse]") {
  troupe::runtime rt(troupe::runtime_options{.workers = 1});
  auto s = rt.spawn<server>();
  rt.shutdown();
  REQUIRE(code_of(s.ask(get{})) == troupe::errc::runtime_stopped);
  REQUIRE(rt.counters().rejected == 1);
  test::require_accounted(rt.counters());
}

TEST_CASE("callbacks run once with the result or the error", "[ask][callback]") {
  troupe::runtime rt(troupe::runtime_options{.workers = 2});
  auto s = rt.spawn<server>();
  std::promise<int> value;
  std::promise<troupe::errc> failure;
  s.ask(get{}).then([&](troupe::result<int> r) { value.set_value(r.value()); });
  // (No assertions inside callbacks: they run on a worker, and Catch2 is single-threaded.)
  s.ask(get_failing{}).then([&](troupe::result<int> r) {
    try {
      static_cast<void>(r.value());  // rethrows the error
      failure.set_value(troupe::errc::timeout);
    } catch (const troupe::error& e) {
      failure.set_value(e.code());
    }
  });
  REQUIRE(value.get_future().get() == 42);
  REQUIRE(failure.get_future().get() == troupe::errc::handler_failed);
}

namespace {

struct relay_get {
  troupe::ref<server> to;
};
struct chain_get {
  troupe::address next;  // a forwarder or the server
};

class forwarder {
 public:
  explicit forwarder(troupe::ref<server> s) : server_(std::move(s)) {}
  // Asks the server and replies with the answer plus one: an ask inside an ask.
  troupe::task<int> on(relay_get) { co_return 1 + co_await server_.ask(get{}); }

 private:
  troupe::ref<server> server_;
};

class top {
 public:
  explicit top(troupe::ref<forwarder> f) : forwarder_(std::move(f)) {}
  troupe::task<int> on(relay_get) { co_return 1 + co_await forwarder_.ask(relay_get{}); }

 private:
  troupe::ref<forwarder> forwarder_;
};

struct ping_peer {};
// Where an actor of a cycle reports the deadlock it detected (the error's text).
struct deadlock_log {
  std::mutex mutex;
  std::vector<std::string> texts;
  void add(std::string text) {
    std::lock_guard lock(mutex);
    texts.push_back(std::move(text));
  }
  std::vector<std::string> all() {
    std::lock_guard lock(mutex);
    return texts;
  }
};
// Asks the next actor of a ring (itself, in a ring of one), which asks on: every member is busy
// awaiting, so the ask that closes the ring fails at once with deadlock (the timeout is far).
class cyclic {
 public:
  explicit cyclic(deadlock_log* log) : log_(log) {}
  void on(troupe::ref<cyclic> next) { next_ = std::move(next); }
  troupe::task<int> on(ping_peer) {
    // Only the first ping asks on: a failed ask's request stays queued at its target, and
    // asking again for each of those would keep the ring busy for ever.
    if (asked_) co_return 0;
    asked_ = true;
    try {
      co_return co_await next_.ask(ping_peer{}, 60s);
    } catch (const troupe::error& e) {
      if (e.code() != troupe::errc::deadlock) throw;
      log_->add(e.what());
    }
    co_return -1;
  }

 private:
  deadlock_log* log_;
  troupe::ref<cyclic> next_;
  bool asked_ = false;
};

// How a deadlock's text names an actor: its type's name, '#', its id.
std::string tag(const troupe::ref<cyclic>& r) {
  return std::string(r.type_name()) + "#" + std::to_string(r.id());
}

}  // namespace

TEST_CASE("nested asks: A asks B which asks C", "[ask][nested]") {
  troupe::runtime rt(troupe::runtime_options{.workers = 2});
  auto c = rt.spawn<server>();
  auto b = rt.spawn<forwarder>(c);
  auto a = rt.spawn<top>(b);
  for (int i = 0; i < 100; ++i) REQUIRE(a.ask(relay_get{}).get() == 44);
}

// A ring of n cyclic actors; the ask from outside to the first one must come back with -1 (the
// member that detected the deadlock answers -1, and so then does everyone before it) well
// before the 60 s timeouts, and the detection names the members in ring order.
void require_ring_deadlock(std::size_t n) {
  test::observer obs;
  deadlock_log log;
  troupe::runtime rt(obs.options(2));
  std::vector<troupe::ref<cyclic>> ring;
  for (std::size_t i = 0; i < n; ++i) ring.push_back(rt.spawn<cyclic>(&log));
  for (std::size_t i = 0; i < n; ++i) ring[i].send(troupe::ref<cyclic>(ring[(i + 1) % n]));
  const auto start = std::chrono::steady_clock::now();
  REQUIRE(ring[0].ask(ping_peer{}, 120s).get() == -1);
  REQUIRE(std::chrono::steady_clock::now() - start < 50s);  // not a timeout (60 s)
  rt.shutdown();  // quiet at once: the ring's leftover pings are answered without asking
  const auto texts = log.all();
  // One detection, or two when two asks closed the ring at the same moment.
  REQUIRE(!texts.empty());
  REQUIRE(texts.size() <= 2);
  for (const auto& text : texts) {
    INFO(text);
    REQUIRE(text.find("troupe: deadlock: ") == 0);
    // The cycle, from the asker round to the asker: "cyclic#a -> cyclic#b -> ... -> cyclic#a",
    // starting with whichever member detected it.
    std::size_t at = std::string::npos;
    std::size_t member = 0;
    for (std::size_t i = 0; i < ring.size(); ++i) {
      const auto found = text.find(tag(ring[i]));
      if (found < at) {
        at = found;
        member = i;
      }
    }
    REQUIRE(at != std::string::npos);
    for (std::size_t k = 0; k <= n; ++k) {
      const std::string expected = tag(ring[(member + k) % n]);
      REQUIRE(text.compare(at, expected.size(), expected) == 0);
      at += expected.size();
      if (k < n) {
        REQUIRE(text.compare(at, 4, " -> ") == 0);
        at += 4;
      }
    }
  }
  // Each leftover request was answered after its ask had failed: an expired reply.
  REQUIRE(obs.dead_count(troupe::dead_letter_reason::expired) == texts.size());
  REQUIRE(rt.counters().open_asks == 0);
  test::require_accounted(rt.counters());
}

TEST_CASE("an actor that asks itself fails at once with deadlock", "[ask][deadlock]") {
  require_ring_deadlock(1);
}

TEST_CASE("two actors asking each other fail at once with deadlock", "[ask][deadlock]") {
  require_ring_deadlock(2);
}

TEST_CASE("a cycle of three asking actors fails at once with deadlock", "[ask][deadlock]") {
  require_ring_deadlock(3);
}

namespace {
struct slow_get {
  std::latch* entered;
  std::latch* gate;
};
struct probe {};
// Waits on a gate inside its handler (blocking its worker: the test opens the gate).
class gated_server {
 public:
  int on(slow_get g) {
    g.entered->count_down();
    g.gate->wait();
    return 5;
  }
};
class middle {
 public:
  explicit middle(troupe::ref<gated_server> s) : server_(std::move(s)) {}
  troupe::task<int> on(slow_get g) { co_return 1 + co_await server_.ask(g, 60s); }
  int on(probe) const { return 100; }

 private:
  troupe::ref<gated_server> server_;
};
class prober {
 public:
  explicit prober(troupe::ref<middle> m) : middle_(std::move(m)) {}
  troupe::task<int> on(probe) { co_return 1 + co_await middle_.ask(probe{}, 60s); }

 private:
  troupe::ref<middle> middle_;
};
}  // namespace

TEST_CASE("asking an actor that awaits someone else is no deadlock: it waits", "[ask][deadlock]") {
  // middle awaits the gated server; prober asks middle meanwhile (middle is busy awaiting, but
  // not on prober): prober's ask must wait for middle, then succeed.
  test::observer obs;
  troupe::runtime rt(obs.options(3));
  std::latch entered(1);
  std::latch gate(1);
  auto s = rt.spawn<gated_server>();
  auto m = rt.spawn<middle>(s);
  auto p = rt.spawn<prober>(m);
  auto first = m.ask(slow_get{&entered, &gate}, 60s);
  entered.wait();  // middle is now suspended awaiting the server
  auto second = p.ask(probe{}, 60s);
  gate.count_down();
  REQUIRE(first.get() == 6);
  REQUIRE(second.get() == 101);
  rt.shutdown();
  REQUIRE(obs.dead.empty());
  test::require_accounted(rt.counters());
}

TEST_CASE("many plain threads asking concurrently", "[ask][concurrency]") {
  constexpr int threads = 6;
  constexpr int per_thread = 5'000;
  troupe::runtime rt(troupe::runtime_options{.workers = 2});
  auto s = rt.spawn<server>();
  std::atomic<long> sum{0};
  std::vector<std::thread> askers;
  for (int t = 0; t < threads; ++t) {
    askers.emplace_back([&] {
      for (int i = 0; i < per_thread; ++i) sum.fetch_add(s.ask(get{}).get());
    });
  }
  for (auto& t : askers) t.join();
  REQUIRE(sum.load() == 42L * threads * per_thread);
  rt.shutdown();
  REQUIRE(rt.counters().open_asks == 0);
  test::require_accounted(rt.counters());
}

namespace {
struct run_asks {
  int count;
};
class asker {
 public:
  explicit asker(troupe::ref<server> s) : server_(std::move(s)) {}
  troupe::task<long> on(run_asks r) {
    long sum = 0;
    for (int i = 0; i < r.count; ++i) sum += co_await server_.ask(get{});
    co_return sum;
  }

 private:
  troupe::ref<server> server_;
};
}  // namespace

TEST_CASE("1,000,000 asks leave no reply state or timer behind", "[ask][leak]") {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  constexpr int asks = 100'000;  // the same paths, at sanitizer speed
#else
  constexpr int asks = 1'000'000;
#endif
  troupe::runtime rt(troupe::runtime_options{.workers = 2});
  auto s = rt.spawn<server>();
  auto a = rt.spawn<asker>(s);
  REQUIRE(a.ask(run_asks{asks}, 600s).get() == 42L * asks);
  REQUIRE(rt.pending_timers() == 0);  // every timeout was cancelled when its reply came
  rt.shutdown();
  REQUIRE(rt.counters().open_asks == 0);
  REQUIRE(troupe::task_frames_alive() == 0);
  test::require_accounted(rt.counters());
}

// The timeouts of asks made inside actors: they must fire while the asking worker sleeps and
// while it stays busy, a reply completed on another thread must cancel them, and a worker that
// stops must leave nothing behind. (They were once armed on each worker's own timers, which a
// handler blocking that worker kept from firing: docs/performance.md, "Asks on one core".)
namespace {
struct timed_ask {
  troupe::ref<server> target;
  std::chrono::milliseconds delay;    // how long the server takes
  std::chrono::milliseconds timeout;  // the ask's timeout
};
struct deferred_ask {
  troupe::ref<server> target;
  int count;
};
struct held {
  std::promise<troupe::promise<int>>* out;
};
struct held_ask {
  troupe::ref<class holder> target;
  std::promise<troupe::promise<int>>* out;
};
struct tick {};
struct stop_ticking {};

class holder {
 public:
  void on(held h, troupe::promise<int> reply) { h.out->set_value(std::move(reply)); }
};

class timed_asker {
 public:
  // The error the ask failed with (as an int), or -1 if it was answered.
  troupe::task<int> on(timed_ask a) {
    try {
      static_cast<void>(co_await a.target.ask(get_later{a.delay}, a.timeout));
      co_return -1;
    } catch (const troupe::error& e) {
      co_return static_cast<int>(e.code());
    }
  }
  // Replies come from plain threads (the server's promises): each cancels the timeout of an
  // ask made on this actor's worker from another thread.
  troupe::task<int> on(deferred_ask a) {
    int sum = 0;
    for (int i = 0; i < a.count; ++i) sum += co_await a.target.ask(get_deferred{}, 60s);
    co_return sum;
  }
  troupe::task<int> on(held_ask a) {
    try {
      co_return co_await a.target.ask(held{a.out}, 60s);
    } catch (const troupe::error& e) {
      co_return -static_cast<int>(e.code());
    }
  }
};

// Keeps its worker busy: every tick sends the next one, until told to stop.
class ticker {
 public:
  explicit ticker(troupe::context& ctx) : ctx_(ctx) {}
  void on(tick) {
    ++ticks;
    if (!stopped_) ctx_.self_as<ticker>().send(tick{});
  }
  void on(stop_ticking) { stopped_ = true; }
  long ticks = 0;

 private:
  troupe::context& ctx_;
  bool stopped_ = false;
};
}  // namespace

TEST_CASE("an actor's ask times out while its worker sleeps", "[ask][timeout]") {
  troupe::runtime rt(troupe::runtime_options{.workers = 1});
  auto s = rt.spawn<server>();
  auto a = rt.spawn<timed_asker>();
  const auto start = std::chrono::steady_clock::now();
  // The server sleeps 10 s: nothing runs, the worker parks with the asker's timer armed.
  REQUIRE(a.ask(timed_ask{s, 10s, 30ms}, 60s).get() == static_cast<int>(troupe::errc::timeout));
  const auto waited = std::chrono::steady_clock::now() - start;
  REQUIRE(waited >= 30ms);
  REQUIRE(waited < 30ms + 20s);
  // The answered case on the same worker (another server: the first one is still asleep): the
  // reply cancels the timeout.
  auto s2 = rt.spawn<server>();
  REQUIRE(a.ask(timed_ask{s2, 1ms, 60s}, 60s).get() == -1);
  REQUIRE(rt.pending_timers() == 1);  // only the first server's 10 s sleep
  rt.shutdown(0ms);
  REQUIRE(rt.counters().open_asks == 0);
}

TEST_CASE("an actor's ask times out while its worker stays busy", "[ask][timeout]") {
  troupe::runtime rt(troupe::runtime_options{.workers = 1});
  auto s = rt.spawn<server>();
  auto a = rt.spawn<timed_asker>();
  auto t = rt.spawn<ticker>();
  t.send(tick{});  // from here on the only worker never runs out of work
  const auto start = std::chrono::steady_clock::now();
  REQUIRE(a.ask(timed_ask{s, 10s, 30ms}, 60s).get() == static_cast<int>(troupe::errc::timeout));
  const auto waited = std::chrono::steady_clock::now() - start;
  REQUIRE(waited >= 30ms);
  REQUIRE(waited < 30ms + 20s);
  t.send(stop_ticking{});
  rt.shutdown(0ms);
  REQUIRE(rt.counters().open_asks == 0);
}

TEST_CASE("replies completed on other threads cancel the timeouts of asks made on a worker",
          "[ask]") {
  troupe::runtime rt(troupe::runtime_options{.workers = 2});
  auto s = rt.spawn<server>();
  auto a = rt.spawn<timed_asker>();
  REQUIRE(a.ask(deferred_ask{s, 200}, 120s).get() == 9 * 200);
  REQUIRE(rt.pending_timers() == 0);
  rt.shutdown();
  REQUIRE(rt.counters().open_asks == 0);
  test::require_accounted(rt.counters());
}

TEST_CASE("an ask made on a worker completes after that worker stopped", "[ask]") {
  std::promise<troupe::promise<int>> out;
  auto kept = out.get_future();
  troupe::runtime rt(troupe::runtime_options{.workers = 1});
  auto h = rt.spawn<holder>();
  auto a = rt.spawn<timed_asker>();
  {
    auto outer = a.ask(held_ask{h, &out}, 60s);
    troupe::promise<int> reply = kept.get();  // the asker now awaits it, its timer armed
    rt.shutdown(0ms);                         // abandons the asker; its worker stops
    // The inner ask completes from this thread after its worker is gone: its timeout is
    // cancelled, and the reply state is freed.
    static_cast<void>(reply.set_value(5));
    REQUIRE_THROWS_AS(outer.get(), troupe::error);  // the asker never answered
  }
  REQUIRE(rt.counters().open_asks == 0);
  REQUIRE(rt.pending_timers() == 0);
}
