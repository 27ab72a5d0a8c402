// Tests of request-reply (include/troupe/ask.hpp): replies from sync, task and promise
// handlers; from plain threads, actors and callbacks; every error; timeouts; late replies;
// nothing left behind after many asks.
#include <atomic>
#include <chrono>
#include <future>
#include <latch>
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
class cyclic {
 public:
  void on(troupe::ref<cyclic> peer) { peer_ = std::move(peer); }
  // Asks its peer, which asks back: both are busy awaiting, so the cycle can only end in
  // timeouts, never a hang.
  troupe::task<int> on(ping_peer) {
    try {
      co_return co_await peer_.ask(ping_peer{}, 50ms);
    } catch (const troupe::error& e) {
      if (e.code() == troupe::errc::timeout) co_return -1;
      throw;
    }
  }

 private:
  troupe::ref<cyclic> peer_;
};

}  // namespace

TEST_CASE("nested asks: A asks B which asks C", "[ask][nested]") {
  troupe::runtime rt(troupe::runtime_options{.workers = 2});
  auto c = rt.spawn<server>();
  auto b = rt.spawn<forwarder>(c);
  auto a = rt.spawn<top>(b);
  for (int i = 0; i < 100; ++i) REQUIRE(a.ask(relay_get{}).get() == 44);
}

TEST_CASE("a cycle of asks ends in timeouts, not a hang", "[ask][timeout]") {
  troupe::runtime rt(troupe::runtime_options{.workers = 2});
  auto x = rt.spawn<cyclic>();
  auto y = rt.spawn<cyclic>();
  x.send(troupe::ref<cyclic>(y));
  y.send(troupe::ref<cyclic>(x));
  // x asks y, y asks x (queued behind x's suspended handler): y's ask times out, then x's
  // completes with y's -1 — or x's times out first. Either way the outer ask completes.
  const int answer = x.ask(ping_peer{}, 10s).get();
  REQUIRE(answer == -1);
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
