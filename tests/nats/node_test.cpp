// Tests of troupe::nats::node (include/troupe/nats/node.hpp) against a real nats-server: remote
// send and ask between two nodes (each with its own runtime and connection), FIFO per pair, every
// way an ask fails, bad input on an exposed subject, a server that dies and comes back, and the
// accounting on both sides.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include <troupe/nats/node.hpp>

#include "../support.hpp"
#include "nats_support.hpp"

using namespace std::chrono_literals;

namespace bank {

struct deposit {
  static constexpr std::string_view troupe_wire_name = "bank.deposit";
  long cents = 0;
  long seq = 0;
};
struct balance {
  static constexpr std::string_view troupe_wire_name = "bank.balance";
};
struct audit {
  static constexpr std::string_view troupe_wire_name = "bank.audit";
  std::string who;
};
struct statement {
  static constexpr std::string_view troupe_wire_name = "bank.statement";
  long cents = 0;
  long deposits = 0;
  bool in_order = true;
};
struct explode {
  static constexpr std::string_view troupe_wire_name = "bank.explode";
};
struct slow {
  static constexpr std::string_view troupe_wire_name = "bank.slow";
  int millis = 0;
};
struct hang {
  static constexpr std::string_view troupe_wire_name = "bank.hang";
};

class account {
 public:
  explicit account(troupe::context& ctx) : ctx_(ctx) {}
  void on(deposit d) {
    in_order_ = in_order_ && d.seq == last_seq_ + 1;
    last_seq_ = d.seq;
    cents_ += d.cents;
    ++deposits_;
  }
  long on(balance) const { return cents_; }
  statement on(const audit&) const { return {cents_, deposits_, in_order_}; }
  int on(explode) { throw std::invalid_argument("the vault is empty"); }
  troupe::task<int> on(slow s) {
    co_await ctx_.sleep_for(std::chrono::milliseconds(s.millis));
    co_return s.millis;
  }
  void on(hang, troupe::promise<int> reply) { held_.push_back(std::move(reply)); }

 private:
  troupe::context& ctx_;
  long cents_ = 0;
  long deposits_ = 0;
  long last_seq_ = 0;
  bool in_order_ = true;
  std::vector<troupe::promise<int>> held_;
};

// What a client compiles against: declarations only.
struct account_api {
  void on(deposit);
  long on(balance);
  statement on(const audit&);
  int on(explode);
  int on(slow);
  int on(hang);
};

// An actor that asks a remote actor from a coroutine handler.
struct go {};
class teller {
 public:
  explicit teller(troupe::nats::remote_ref<account_api> acc) : acc_(std::move(acc)) {}
  troupe::task<long> on(go) {
    acc_.send(deposit{5, 1001});
    co_return co_await acc_.ask(balance{}, 5s);
  }

 private:
  troupe::nats::remote_ref<account_api> acc_;
};

}  // namespace bank

namespace {

template <class R>
troupe::errc ask_error(troupe::reply<R> r) {
  try {
    r.get();
  } catch (const troupe::error& e) {
    return e.code();
  }
  return troupe::errc{};
}

// One side of the wire: a runtime and its node.
struct side {
  test::observer seen;
  troupe::runtime rt;
  troupe::nats::node node;
  side(const std::string& url, const std::string& name, std::size_t max_bytes = 0,
       std::chrono::milliseconds ask_timeout = 5000ms,
       const std::function<void(troupe::nats::node_options&)>& tweak = {})
      : rt([&] {
          auto o = seen.options(2);
          o.ask_timeout = ask_timeout;
          return o;
        }()),
        node(rt, [&] {
          troupe::nats::node_options o{.servers = {url},
                                       .name = name,
                                       .prefix = "t" + std::to_string(::getpid()),
                                       .max_message_bytes = max_bytes};
          if (tweak) tweak(o);
          return o;
        }()) {}
};

void expose_account(troupe::nats::node& n, const troupe::ref<bank::account>& acc) {
  using namespace bank;
  n.expose<deposit, balance, audit, explode, slow, hang>("bank.account", acc);
}

}  // namespace

TEST_CASE("remote send and ask: FIFO per pair, replies, asks from actors", "[nats][node]") {
  const std::string url = test::server_url();
  side server(url, "server");
  side client(url, "client");
  expose_account(server.node, server.rt.spawn<bank::account>());
  auto acc = client.node.remote<bank::account_api>("bank.account");

  constexpr long n = 2000;
  for (long i = 1; i <= n; ++i) REQUIRE(acc.send(bank::deposit{2, i}));
  const bank::statement st = acc.ask(bank::audit{"test"}).get();  // after every deposit: FIFO
  CHECK(st.deposits == n);
  CHECK(st.cents == 2 * n);
  CHECK(st.in_order);
  CHECK(acc.ask(bank::balance{}).get() == 2 * n);

  // From a coroutine handler: suspends the teller only, resumes on a worker.
  auto t = client.rt.spawn<bank::teller>(acc);
  CHECK(t.ask(bank::go{}).get() == 2 * n + 5);

  // Many asks in flight at once, each matched to its reply by correlation id.
  std::vector<troupe::reply<int>> replies;
  for (int i = 0; i < 200; ++i) replies.push_back(acc.ask(bank::slow{i % 3}));
  for (int i = 0; i < 200; ++i) CHECK(replies[static_cast<std::size_t>(i)].get() == i % 3);

  client.node.close();
  server.node.close();
  client.rt.shutdown();
  server.rt.shutdown();
  const auto c = client.node.counters();
  const auto s = server.node.counters();
  // Client: n + 1 sends, 1 + 1 + 1 + 200 asks out; their replies back. Server: the mirror.
  CHECK(c.sent == n + 1 + 203);
  CHECK(s.received == c.sent);
  CHECK(s.delivered == s.received);
  CHECK(s.sent == 203);
  CHECK(c.received == s.sent);
  CHECK(c.delivered == c.received);
  CHECK(c.dead_lettered + s.dead_lettered + c.rejected + s.rejected == 0);
  test::require_accounted(client.rt.counters());
  test::require_accounted(server.rt.counters());
}

TEST_CASE("remote asks fail at once and say why", "[nats][node][errors]") {
  const std::string url = test::server_url();
  side server(url, "server", 4096);
  side client(url, "client", 4096);
  expose_account(server.node, server.rt.spawn<bank::account>());
  auto acc = client.node.remote<bank::account_api>("bank.account");

  SECTION("no responders: nobody exposes the name") {
    auto nobody = client.node.remote<bank::account_api>("bank.nobody");
    const auto start = std::chrono::steady_clock::now();
    CHECK(ask_error(nobody.ask(bank::balance{}, 30s)) == troupe::errc::no_responders);
    CHECK(std::chrono::steady_clock::now() - start < 10s);  // not the 30 s timeout
  }
  SECTION("the handler threw: its type and text travel back") {
    auto r = acc.ask(bank::explode{});
    try {
      r.get();
      FAIL("no error");
    } catch (const troupe::error& e) {
      CHECK(e.code() == troupe::errc::handler_failed);
      CHECK_THAT(e.what(),
                 Catch::Contains("std::invalid_argument") && Catch::Contains("the vault is empty"));
      try {
        e.rethrow_cause();
      } catch (const troupe::nats::remote_error& cause) {
        CHECK(cause.type_name() == "std::invalid_argument");
        CHECK(std::string(cause.what()) == "the vault is empty");
      }
    }
  }
  SECTION("timeout on troupe's clock; the late reply is a counted dead letter") {
    CHECK(ask_error(acc.ask(bank::slow{300}, 20ms)) == troupe::errc::timeout);
    REQUIRE(test::eventually([&] { return client.node.counters().late_replies == 1; }));
    CHECK(client.seen.dead_count(troupe::dead_letter_reason::expired) == 1);
  }
  SECTION("too large: refused before it leaves") {
    auto r = acc.ask(bank::audit{std::string(8192, 'x')});
    CHECK(ask_error(std::move(r)) == troupe::errc::too_large);
    CHECK(acc.send(bank::deposit{1, 1}));  // a small one still goes
    CHECK(client.node.counters().rejected == 1);
  }
  SECTION("a closed node refuses sends and fails asks") {
    client.node.close();
    CHECK_FALSE(acc.send(bank::deposit{1, 1}));
    CHECK(ask_error(acc.ask(bank::balance{})) == troupe::errc::disconnected);
    CHECK(client.node.counters().rejected == 2);
  }
  client.node.close();
  server.node.close();
  client.rt.shutdown();
  server.rt.shutdown();
  test::require_accounted(client.rt.counters());
  test::require_accounted(server.rt.counters());
}

TEST_CASE("bad input on an exposed subject is a dead letter with a reason each", "[nats][node]") {
  const std::string url = test::server_url();
  side server(url, "server", 4096);
  side client(url, "raw");
  expose_account(server.node, server.rt.spawn<bank::account>());
  const std::string subject = server.node.subject_of("bank.account");
  natsConnection* raw = client.node.native_handle();

  auto inject = [&](const char* type, const char* codec, const std::string& bytes) {
    natsMsg* m = nullptr;
    REQUIRE(natsMsg_Create(&m, subject.c_str(), nullptr, bytes.data(),
                           static_cast<int>(bytes.size())) == NATS_OK);
    if (type != nullptr) natsMsgHeader_Set(m, "troupe-type", type);
    if (codec != nullptr) natsMsgHeader_Set(m, "troupe-codec", codec);
    REQUIRE(natsConnection_PublishMsg(raw, m) == NATS_OK);
    natsMsg_Destroy(m);
  };
  std::string good;
  troupe::encode(bank::deposit{7, 1}, good);
  inject("bank.deposit", "msgpack", "\xc1\xc1 garbage");               // decode failed
  inject("bank.deposit", "msgpack", good.substr(0, good.size() - 1));  // truncated
  inject("bank.withdraw", "msgpack", good);                            // unknown type
  inject(nullptr, nullptr, good);                                      // no headers at all
  inject("bank.deposit", "json", good);                                // wrong codec
  inject("bank.deposit", "msgpack", std::string(5000, '\x01'));        // too large
  inject("bank.deposit", "msgpack", good);                             // and a good one
  using reason = troupe::dead_letter_reason;
  REQUIRE(test::eventually([&] { return server.node.counters().received == 7; }));
  REQUIRE(test::eventually([&] { return server.node.counters().dead_lettered == 6; }));
  CHECK(server.seen.dead_count(reason::decode_failed) == 2);
  CHECK(server.seen.dead_count(reason::unknown_type) == 2);
  CHECK(server.seen.dead_count(reason::wrong_codec) == 1);
  CHECK(server.seen.dead_count(reason::too_large) == 1);
  CHECK(server.node.counters().decode_failures == 2);
  auto acc = client.node.remote<bank::account_api>("bank.account");
  CHECK(acc.ask(bank::balance{}).get() == 7);  // the good one arrived; nothing crashed

  client.node.close();
  server.node.close();
  client.rt.shutdown();
  server.rt.shutdown();
  test::require_accounted(server.rt.counters());
}

TEST_CASE("a slow consumer: what nats.c drops is counted, dead-lettered and reported",
          "[nats][node][slow]") {
  const std::string url = test::server_url();
  std::mutex reported_mutex;
  std::uint64_t reported = 0;
  std::string reported_subject;
  // A pending limit of 2 KiB per subscription: a 4 KB message can never be queued.
  side server(url, "slow-server", 0, 5000ms, [&](troupe::nats::node_options& o) {
    o.pending_limit_bytes = 2048;
    o.heartbeat_interval = 100ms;  // the periodic look for drops that raised no new error
    o.on_slow_consumer = [&](std::string_view subject, std::uint64_t dropped) {
      std::lock_guard lock(reported_mutex);
      reported += dropped;
      reported_subject = std::string(subject);
    };
  });
  side client(url, "slow-client");
  expose_account(server.node, server.rt.spawn<bank::account>());
  const std::string subject = server.node.subject_of("bank.account");
  natsConnection* raw = client.node.native_handle();
  constexpr int big = 5;
  for (int i = 0; i < big; ++i) {
    REQUIRE(natsConnection_Publish(raw, subject.c_str(), std::string(4000, 'x').data(), 4000) ==
            NATS_OK);
  }
  // Small traffic still passes, one message pending at a time.
  auto acc = client.node.remote<bank::account_api>("bank.account");
  acc.send(bank::deposit{7, 1});
  CHECK(acc.ask(bank::balance{}).get() == 7);

  using reason = troupe::dead_letter_reason;
  REQUIRE(test::eventually([&] { return server.node.counters().slow_consumer_drops == big; }));
  REQUIRE(test::eventually([&] {
    std::lock_guard lock(reported_mutex);
    return reported == big;
  }));
  CHECK(server.seen.dead_count(reason::slow_consumer) == big);
  {
    std::lock_guard lock(reported_mutex);
    CHECK(reported_subject == subject);
  }
  CHECK(server.node.counters().received == 2);  // the deposit and the ask; the rest never came
  client.node.close();
  server.node.close();
  client.rt.shutdown();
  server.rt.shutdown();
  CHECK(server.node.counters().slow_consumer_drops == big);  // none counted twice
  test::require_accounted(server.rt.counters());
}

TEST_CASE("a server that dies fails pending asks at once; traffic resumes after it returns",
          "[nats][node][faults]") {
  test::private_server nats;
  std::atomic<int> disconnects{0};
  std::atomic<int> reconnects{0};
  test::observer seen_server;
  test::observer seen_client;
  troupe::runtime server_rt(seen_server.options(2));
  troupe::runtime client_rt(seen_client.options(2));
  troupe::nats::node server(server_rt, {.servers = {nats.url()}, .name = "server"});
  troupe::nats::node client(client_rt, {.servers = {nats.url()},
                                        .name = "client",
                                        .on_state = [&](troupe::nats::connection_state s) {
                                          if (s == troupe::nats::connection_state::disconnected)
                                            ++disconnects;
                                          if (s == troupe::nats::connection_state::reconnected)
                                            ++reconnects;
                                        }});
  expose_account(server, server_rt.spawn<bank::account>());
  auto acc = client.remote<bank::account_api>("bank.account");
  REQUIRE(acc.ask(bank::balance{}).get() == 0);

  std::vector<troupe::reply<int>> pending;
  for (int i = 0; i < 5; ++i) pending.push_back(acc.ask(bank::hang{}, 60s));
  // All five reached the actor (they hang there) before the server goes.
  REQUIRE(test::eventually([&] { return server.counters().delivered == 6; }));
  const auto start = std::chrono::steady_clock::now();
  nats.stop();
  for (auto& r : pending) CHECK(ask_error(std::move(r)) == troupe::errc::disconnected);
  CHECK(std::chrono::steady_clock::now() - start < 20s);  // at once, not after 60 s
  // The hook runs after the pending asks have failed (node.hpp), on a worker: wait for it.
  CHECK(test::eventually([&] { return disconnects.load() >= 1; }));
  CHECK(ask_error(acc.ask(bank::balance{})) == troupe::errc::disconnected);

  nats.start();
  REQUIRE(test::eventually([&] { return client.connected() && server.connected(); }, 20000ms));
  REQUIRE(test::eventually([&] { return reconnects.load() >= 1; }));
  REQUIRE(acc.send(bank::deposit{9, 1}));
  CHECK(acc.ask(bank::balance{}).get() == 9);
  CHECK(client.counters().disconnects >= 1);
  CHECK(client.counters().reconnects >= 1);

  client.close();
  server.close();
  client_rt.shutdown();
  server_rt.shutdown();
  test::require_accounted(client_rt.counters());
  test::require_accounted(server_rt.counters());
}

namespace shop {

struct order_placed {
  static constexpr std::string_view troupe_wire_name = "shop.order_placed";
  long id = 0;
};

class tally {
 public:
  explicit tally(std::atomic<long>* count, std::atomic<long>* sum) : count_(count), sum_(sum) {}
  void on(const order_placed& o) {
    count_->fetch_add(1);
    sum_->fetch_add(o.id);
  }

 private:
  std::atomic<long>* count_;
  std::atomic<long>* sum_;
};

}  // namespace shop

TEST_CASE("topics across processes: bridges with wildcards, no echo, queue groups",
          "[nats][node][topics]") {
  const std::string url = test::server_url();
  side a(url, "a");
  side b(url, "b");
  std::atomic<long> a_count{0}, a_sum{0}, b_count{0}, b_sum{0}, other_count{0}, other_sum{0};
  std::atomic<long> g_count[4] = {}, g_sum[4] = {};
  // Plain local subscribers on both sides, fed by the bridges.
  auto sa = a.rt.subscribe<shop::order_placed>("orders.*.placed",
                                               a.rt.spawn<shop::tally>(&a_count, &a_sum));
  auto sb =
      b.rt.subscribe<shop::order_placed>("orders.>", b.rt.spawn<shop::tally>(&b_count, &b_sum));
  auto sother = b.rt.subscribe<shop::order_placed>(
      "returns.>", b.rt.spawn<shop::tally>(&other_count, &other_sum));
  a.node.bridge<shop::order_placed>("orders.>");
  b.node.bridge<shop::order_placed>("orders.*.placed");
  // A consumer group with two members in each process.
  for (int i = 0; i < 4; ++i) {
    side& s = i < 2 ? a : b;
    s.node.subscribe<shop::order_placed>(
        "orders.>", s.rt.spawn<shop::tally>(&g_count[i], &g_sum[i]), troupe::group{"billing"});
  }
  constexpr long n = 200;
  long expected_sum = 0;
  for (long i = 1; i <= n; ++i) {
    expected_sum += i;
    // Alternate publishers; "orders.eu.placed" matches every pattern above.
    REQUIRE((i % 2 == 0 ? a : b).node.publish("orders.eu.placed", shop::order_placed{i}));
  }
  // Not bridged by b (b bridges orders.*.placed only), and no subscriber for returns.> remote.
  REQUIRE(a.node.publish("orders.eu.cancelled", shop::order_placed{1000}));
  auto group_total = [&] {
    long t = 0;
    for (auto& c : g_count) t += c.load();
    return t;
  };
  REQUIRE(test::eventually([&] { return a_count.load() == n && b_count.load() == n; }));
  REQUIRE(test::eventually([&] { return group_total() == n + 1; }));
  // Each side saw each event once: its own publishes locally, the other's through its bridge.
  CHECK(a_sum.load() == expected_sum);
  CHECK(b_sum.load() == expected_sum);
  // The group: every event exactly once across both processes (the count and the sum of ids).
  long group_sum = 0;
  for (auto& s : g_sum) group_sum += s.load();
  CHECK(group_sum == expected_sum + 1000);
  a.node.close();
  b.node.close();
  a.rt.shutdown();
  b.rt.shutdown();
  CHECK(a_count.load() == n);  // nothing more arrived late: no echo, no duplicate
  CHECK(b_count.load() == n);
  CHECK(other_count.load() == 0);
  const auto ca = a.node.counters();
  const auto cb = b.node.counters();
  CHECK(ca.events_published + cb.events_published == n + 1);
  test::require_accounted(a.rt.counters());
  test::require_accounted(b.rt.counters());
}

namespace shop {

struct order_note {  // another event type on the same subjects: it stays local
  static constexpr std::string_view troupe_wire_name = "shop.order_note";
  long id = 0;
};
struct note_counter {
  std::atomic<long>* count;
  void on(const order_note&) { count->fetch_add(1); }
};

// Publishes from inside a handler (context::publish), as a service would.
struct publish_order {
  long id = 0;
};
class shopfront {
 public:
  explicit shopfront(troupe::context& ctx) : ctx_(ctx) {}
  void on(publish_order p) { ctx_.publish("orders.web.placed", order_placed{p.id}); }

 private:
  troupe::context& ctx_;
};

}  // namespace shop

TEST_CASE("a bridge works both ways: local publishes go out once, nothing echoes or loops",
          "[nats][node][topics]") {
  const std::string url = test::server_url();
  side a(url, "out-a");
  side b(url, "out-b");
  std::atomic<long> a_count{0}, a_sum{0}, b_count{0}, b_sum{0}, g_count{0}, g_sum{0}, notes{0};
  auto sa =
      a.rt.subscribe<shop::order_placed>("orders.>", a.rt.spawn<shop::tally>(&a_count, &a_sum));
  auto sb =
      b.rt.subscribe<shop::order_placed>("orders.>", b.rt.spawn<shop::tally>(&b_count, &b_sum));
  auto sn = b.rt.subscribe<shop::order_note>("orders.>", b.rt.spawn<shop::note_counter>(&notes));
  // Both sides bridge the same pattern: each side's bridge-in must not send on what came in,
  // or the two would bounce every event between them.
  auto bridge_a = a.node.bridge<shop::order_placed>("orders.>");
  b.node.bridge<shop::order_placed>("orders.>");
  // A queue group member in b: the only way to it is NATS, for a's and b's publishes alike.
  b.node.subscribe<shop::order_placed>("orders.>", b.rt.spawn<shop::tally>(&g_count, &g_sum),
                                       troupe::group{"bill"});
  auto front = a.rt.spawn<shop::shopfront>();
  constexpr long n = 100;
  long expected = 0;
  for (long i = 1; i <= n; ++i) {
    expected += i;
    if (i % 2 == 0) {
      CHECK(a.rt.publish("orders.eu.placed", shop::order_placed{i}) == 2);  // a's tally, NATS
    } else {
      front.send(shop::publish_order{i});  // context::publish inside a handler
    }
  }
  a.rt.publish("orders.eu.placed", shop::order_note{1});  // not bridged: stays in a
  REQUIRE(test::eventually([&] { return b_count.load() == n && g_count.load() == n; }));
  // b publishes a sentinel locally; it reaches a after anything b might have sent before it
  // (FIFO per pair), such as an echo of a's events.
  CHECK(b.rt.publish("orders.eu.placed", shop::order_placed{1'000'000}) == 2);  // b's tally, NATS
  REQUIRE(test::eventually([&] { return a_count.load() == n + 1 && g_count.load() == n + 1; }));
  CHECK(a_sum.load() == expected + 1'000'000);  // each once: its own locally, b's through NATS
  CHECK(b_count.load() == n + 1);
  CHECK(b_sum.load() == expected + 1'000'000);
  CHECK(g_sum.load() == expected + 1'000'000);
  CHECK(notes.load() == 0);
  CHECK(a.node.counters().events_published == n);
  CHECK(b.node.counters().events_published == 1);
  // node::publish on a bridged subject goes out once, not once more through the bridge.
  CHECK(a.node.publish("orders.eu.placed", shop::order_placed{7}));
  CHECK(a.node.counters().events_published == n + 1);
  REQUIRE(test::eventually([&] { return b_count.load() == n + 2; }));
  // A closed bridge no longer takes local publishes out.
  CHECK(bridge_a.close());
  CHECK(a.rt.publish("orders.eu.placed", shop::order_placed{9}) == 1);
  CHECK(a.node.counters().events_published == n + 1);
  a.node.close();
  b.node.close();
  a.rt.shutdown();
  b.rt.shutdown();
  CHECK(a_count.load() == n + 3);
  CHECK(b_count.load() == n + 2);
  test::require_accounted(a.rt.counters());
  test::require_accounted(b.rt.counters());
}

TEST_CASE("bindings undo expose and group membership", "[nats][node][binding]") {
  const std::string url = test::server_url();
  side a(url, "bind-a");
  side b(url, "bind-b");
  // A group of two members, one per process; b's member leaves.
  std::atomic<long> a_count{0}, a_sum{0}, b_count{0}, b_sum{0};
  auto in_a = a.node.subscribe<shop::order_placed>(
      "shop.>", a.rt.spawn<shop::tally>(&a_count, &a_sum), troupe::group{"leaving"});
  auto in_b = b.node.subscribe<shop::order_placed>(
      "shop.>", b.rt.spawn<shop::tally>(&b_count, &b_sum), troupe::group{"leaving"});
  CHECK(in_b.active());
  CHECK(in_b.close());
  CHECK(!in_b.active());
  CHECK(!in_b.close());  // once
  constexpr long n = 50;
  for (long i = 1; i <= n; ++i) REQUIRE(b.node.publish("shop.x", shop::order_placed{i}));
  // Each event goes to one member: all to the one left, so none reached b's.
  REQUIRE(test::eventually([&] { return a_count.load() == n; }));
  CHECK(b_count.load() == 0);
  CHECK(in_a.active());

  // An exposed name that is withdrawn: asks find nobody, at once.
  auto served = a.node.expose<bank::balance>("bank.withdrawn", a.rt.spawn<bank::account>());
  auto acc = b.node.remote<bank::account_api>("bank.withdrawn");
  CHECK(acc.ask(bank::balance{}).get() == 0);
  CHECK(served.close());
  CHECK(ask_error(acc.ask(bank::balance{})) == troupe::errc::no_responders);
  CHECK(!troupe::nats::binding{}.close());  // an empty handle
  try {
    troupe::nats::node bad(b.rt, {.servers = {url}, .heartbeat_interval = 0ms});
    FAIL("a node without heartbeats was made");
  } catch (const troupe::error& e) {
    CHECK(e.code() == troupe::errc::invalid_argument);
  }

  a.node.close();
  CHECK(!in_a.active());  // the node's close ends every binding
  CHECK(!in_a.close());
  b.node.close();
  a.rt.shutdown();
  b.rt.shutdown();
  test::require_accounted(a.rt.counters());
  test::require_accounted(b.rt.counters());
}

namespace {

struct recorded_trace final : troupe::trace_hook {
  std::mutex mutex;
  std::vector<troupe::trace_event> events;
  void on_event(const troupe::trace_event& e) noexcept override {
    std::lock_guard lock(mutex);
    events.push_back(e);
  }
};

}  // namespace

TEST_CASE("tracing across processes: the causation chain crosses the wire", "[nats][node][trace]") {
  const std::string url = test::server_url();
  auto hook = std::make_shared<recorded_trace>();
  troupe::runtime_options o;
  o.workers = 2;
  o.trace = hook;  // one hook sees both runtimes, as a collector would see both processes
  troupe::runtime ra(o);
  troupe::runtime rb(o);
  const std::string prefix = "tr" + std::to_string(::getpid());
  troupe::nats::node na(ra, {.servers = {url}, .name = "trace-a", .prefix = prefix});
  troupe::nats::node nb(rb, {.servers = {url}, .name = "trace-b", .prefix = prefix});
  nb.expose<bank::deposit, bank::balance>("bank.traced", rb.spawn<bank::account>());
  auto teller = ra.spawn<bank::teller>(na.remote<bank::account_api>("bank.traced"));
  CHECK(teller.ask(bank::go{}).get() == 5);  // a deposit, then a balance, across the wire
  na.close();
  nb.close();
  ra.shutdown();
  rb.shutdown();

  std::lock_guard lock(hook->mutex);
  auto starts = [&](std::string_view message_part, std::string_view actor_part) {
    std::vector<troupe::trace_event> found;
    for (const auto& e : hook->events) {
      if (e.point == troupe::trace_point::handle_start &&
          e.message_type.find(message_part) != std::string_view::npos &&
          e.actor_type.find(actor_part) != std::string_view::npos) {
        found.push_back(e);
      }
    }
    return found;
  };
  auto by_id = [&](std::uint64_t id) -> const troupe::trace_event* {
    for (const auto& e : hook->events) {
      if (e.point == troupe::trace_point::handle_start && e.message_id == id) return &e;
    }
    return nullptr;
  };
  // In "process" a: the teller handles go. In b: the node's agent takes the deposit off the wire,
  // then the account handles it. The chain: go -> (wire) -> agent's inbound -> deposit.
  const auto go = starts("go", "teller");
  REQUIRE(go.size() == 1);
  const auto deposit = starts("deposit", "account");
  REQUIRE(deposit.size() == 1);
  const troupe::trace_event* inbound = by_id(deposit[0].causation_id);
  REQUIRE(inbound != nullptr);
  CHECK(inbound->actor_type.find("agent") != std::string_view::npos);
  CHECK(inbound->causation_id == go[0].message_id);  // across the wire (traceparent's parent)
  // One trace, the one go started (a root: sent from main), through every hop of both
  // processes: go -> (wire) -> b's agent -> deposit; go -> (wire) -> b's agent -> balance ->
  // (wire) -> a's agent, which completes the ask.
  const troupe::trace_id trace = go[0].trace;
  CHECK(trace == troupe::root_trace_of(go[0].message_id));
  CHECK(inbound->trace == trace);
  CHECK(deposit[0].trace == trace);
  const auto balance = starts("balance", "account");
  REQUIRE(balance.size() == 1);
  CHECK(balance[0].trace == trace);
  const troupe::trace_event* asked = by_id(balance[0].causation_id);
  REQUIRE(asked != nullptr);
  CHECK(asked->causation_id == go[0].message_id);
  CHECK(asked->trace == trace);
  std::size_t replies = 0;
  for (const auto& e : hook->events) {
    if (e.point == troupe::trace_point::handle_start && e.causation_id == balance[0].message_id) {
      ++replies;  // the reply, taken off the wire by a's agent
      CHECK(e.actor_type.find("agent") != std::string_view::npos);
      CHECK(e.trace == trace);
    }
  }
  CHECK(replies == 1);
  // Every event of the run has a trace; every send, start and end of one message the same.
  for (const auto& e : hook->events) {
    CHECK(static_cast<bool>(e.trace));
    if (const troupe::trace_event* s = by_id(e.message_id)) CHECK(s->trace == e.trace);
  }
  CHECK(na.counters().malformed_traceparents == 0);
  CHECK(nb.counters().malformed_traceparents == 0);
  // Ids are unique across both runtimes, so a causation id names one message.
  std::vector<std::uint64_t> ids;
  for (const auto& e : hook->events) {
    if (e.point == troupe::trace_point::handle_start) ids.push_back(e.message_id);
  }
  std::sort(ids.begin(), ids.end());
  CHECK(std::adjacent_find(ids.begin(), ids.end()) == ids.end());
}

TEST_CASE("traceparent: a foreign trace is joined, a malformed one starts a new trace",
          "[nats][node][trace]") {
  const std::string url = test::server_url();
  auto hook = std::make_shared<recorded_trace>();
  troupe::runtime_options o;
  o.workers = 2;
  o.trace = hook;
  troupe::runtime rt(o);
  troupe::nats::node n(
      rt, {.servers = {url}, .name = "w3c", .prefix = "tp" + std::to_string(::getpid())});
  auto acc = rt.spawn<bank::account>();
  n.expose<bank::deposit, bank::audit>("bank.w3c", acc);
  // What another (not necessarily troupe) process would send, on the node's own connection.
  auto inject = [&](const char* traceparent, long seq) {
    std::string bytes;
    troupe::encode(bank::deposit{1, seq}, bytes);
    natsMsg* m = nullptr;
    REQUIRE(natsMsg_Create(&m, n.subject_of("bank.w3c").c_str(), nullptr, bytes.data(),
                           static_cast<int>(bytes.size())) == NATS_OK);
    const std::string codec(troupe::codec_id_of<bank::deposit>());
    natsMsgHeader_Set(m, "troupe-type", "bank.deposit");
    natsMsgHeader_Set(m, "troupe-codec", codec.c_str());
    if (traceparent != nullptr) natsMsgHeader_Set(m, "traceparent", traceparent);
    CHECK(natsConnection_PublishMsg(n.native_handle(), m) == NATS_OK);
    natsMsg_Destroy(m);
  };
  const troupe::trace_id foreign{0x4bf92f3577b34da6ULL, 0xa3ce929d0e0e4736ULL};
  inject("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", 1);    // joined
  inject("00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01", 2);    // upper case
  inject("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-x", 3);  // a later version
  inject("00-00000000000000000000000000000000-00f067aa0ba902b7-01", 4);    // zero trace
  inject("00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", 5);    // zero parent
  inject("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x", 6);  // 00 is 55 long
  inject(nullptr, 7);                                                      // none: a new trace
  // All arrive in order on one connection; the statement comes after them.
  const auto st = n.remote<bank::account_api>("bank.w3c").ask(bank::audit{"w3c"}).get();
  CHECK(st.deposits == 7);
  CHECK(st.in_order);
  CHECK(n.counters().malformed_traceparents == 4);
  n.close();
  rt.shutdown();
  CHECK(troupe::detail::access::cell_of(acc)->core()->traces_kept() == 0);  // none left behind

  std::lock_guard lock(hook->mutex);
  std::vector<troupe::trace_event> deposits;
  std::vector<troupe::trace_event> starts;
  for (const auto& e : hook->events) {
    if (e.point != troupe::trace_point::handle_start) continue;
    starts.push_back(e);
    if (e.message_type.find("deposit") != std::string_view::npos &&
        e.actor_type.find("account") != std::string_view::npos) {
      deposits.push_back(e);
    }
  }
  REQUIRE(deposits.size() == 7);  // handled in the order sent (FIFO on the connection)
  auto inbound_of = [&](const troupe::trace_event& d) -> troupe::trace_event {
    for (const auto& e : starts) {
      if (e.message_id == d.causation_id) return e;
    }
    FAIL("no inbound message for a deposit");
    return {};
  };
  for (std::size_t i = 0; i < deposits.size(); ++i) {
    const troupe::trace_event in = inbound_of(deposits[i]);
    CHECK(deposits[i].trace == in.trace);  // the agent's hop keeps the trace
    if (i == 0 || i == 2) {                // joined: the foreign trace, the foreign parent span
      CHECK(in.trace == foreign);
      CHECK(in.causation_id == 0x00f067aa0ba902b7ULL);
    } else {  // a new trace, rooted at the message that took it off the wire
      CHECK(in.trace == troupe::root_trace_of(in.message_id));
      CHECK(in.causation_id == 0);
    }
  }
}
