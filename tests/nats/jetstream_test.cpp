// Tests of troupe::nats::jetstream (include/troupe/nats/jetstream.hpp) against a real nats-server
// with JetStream: replay from an offset then live with no gap or duplicate, retention limits,
// durable groups that resume where they were, work queues with redelivery and dead letters,
// producer message ids, bad input on a durable subject, a server restarted on its store, and --
// with separate processes (jetstream_peer.cpp) -- consumers killed with SIGKILL mid-stream.
#include <algorithm>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <troupe/nats/jetstream.hpp>

#include "../support.hpp"
#include "jetstream_messages.hpp"
#include "nats_support.hpp"

using namespace std::chrono_literals;
using durable::order;

namespace {

// What the handlers saw, shared with the test thread.
struct book {
  std::mutex mutex;
  std::vector<std::uint64_t> offsets;  // stream sequences, in handling order
  std::vector<long> values;
  std::map<long, std::uint64_t> attempts;  // value -> the attempt that was handled
  std::vector<std::string> ids;

  std::size_t size() {
    std::lock_guard lock(mutex);
    return values.size();
  }
};

struct by_offset {
  book* b;
  void on(const troupe::retained<order>& r) {
    std::lock_guard lock(b->mutex);
    b->offsets.push_back(r.offset);
    b->values.push_back(r.event.id);
  }
};

// Throws on the first attempt of a negative value, on every attempt of a value below -1000.
struct flaky {
  book* b;
  void on(const troupe::nats::delivery<order>& d) {
    if (d.value.id < -1000 || (d.value.id < 0 && d.attempt == 1)) {
      throw std::runtime_error("cannot do order " + std::to_string(d.value.id));
    }
    std::lock_guard lock(b->mutex);
    b->offsets.push_back(d.sequence);
    b->values.push_back(d.value.id);
    b->attempts[d.value.id] = d.attempt;
    b->ids.emplace_back(d.id);
  }
};

struct setup {
  explicit setup(const std::string& url, std::size_t workers = 2)
      : rt(seen.options(workers)),
        n(rt, {.servers = {url}, .name = "js-test", .prefix = prefix_for()}),
        js(n, {.api_wait = 5000ms}) {}
  static std::string prefix_for() {
    static int k = 0;
    return "js" + std::to_string(::getpid()) + "x" + std::to_string(++k);
  }
  test::observer seen;
  troupe::runtime rt;
  troupe::nats::node n;
  troupe::nats::jetstream js;
};

std::vector<long> sorted(std::vector<long> v) {
  std::sort(v.begin(), v.end());
  return v;
}

// A stored dead letter's troupe-dead-* headers (and its troupe-type), by header name.
using stored_letter = std::map<std::string, std::string>;

// The dead letters stored on `subject`, read back from the dead-letter stream, oldest first.
std::vector<stored_letter> stored_dead_letters(troupe::nats::node& n, const std::string& stream,
                                               const std::string& subject) {
  std::vector<stored_letter> out;
  jsCtx* js = nullptr;
  REQUIRE(natsConnection_JetStream(&js, n.native_handle(), nullptr) == NATS_OK);
  jsStreamInfo* si = nullptr;
  REQUIRE(js_GetStreamInfo(&si, js, stream.c_str(), nullptr, nullptr) == NATS_OK);
  const std::uint64_t first = si->State.FirstSeq;
  const std::uint64_t last = si->State.LastSeq;
  jsStreamInfo_Destroy(si);
  for (std::uint64_t seq = first; seq <= last && last != 0; ++seq) {
    natsMsg* m = nullptr;
    if (js_GetMsg(&m, js, stream.c_str(), seq, nullptr, nullptr) != NATS_OK) continue;
    if (subject == natsMsg_GetSubject(m)) {
      stored_letter letter;
      for (const char* h : {"troupe-type", "troupe-dead-reason", "troupe-dead-detail",
                            "troupe-dead-sequence", "troupe-dead-attempts", "troupe-dead-error"}) {
        const char* v = nullptr;
        if (natsMsgHeader_Get(m, h, &v) == NATS_OK && v != nullptr) letter[h] = v;
      }
      out.push_back(std::move(letter));
    }
    natsMsg_Destroy(m);
  }
  jsCtx_Destroy(js);
  return out;
}

}  // namespace

TEST_CASE("a durable topic replays from an offset, then continues live: no gap, no duplicate",
          "[jetstream][topic]") {
  setup s(test::server_url());
  auto orders = s.js.retain<order>("orders.placed", {.max_messages = 1000});
  for (long i = 1; i <= 20; ++i)
    REQUIRE(orders.publish_sync(order{i}) == static_cast<std::uint64_t>(i));

  book all;
  book from_15;
  auto a = orders.subscribe(s.rt.spawn<by_offset>(&all), troupe::replay::oldest());
  auto b = orders.subscribe(s.rt.spawn<by_offset>(&from_15), troupe::replay::from(15));
  // Publishing goes on while they replay.
  for (long i = 21; i <= 40; ++i) REQUIRE(orders.publish(order{i}));
  REQUIRE(s.js.flush());
  REQUIRE(test::eventually([&] { return all.size() >= 40 && from_15.size() >= 26; }));

  std::vector<std::uint64_t> expect;
  for (std::uint64_t k = 1; k <= 40; ++k) expect.push_back(k);
  {
    std::lock_guard lock(all.mutex);
    CHECK(all.offsets == expect);  // in stream order, each once
  }
  {
    std::lock_guard lock(from_15.mutex);
    CHECK(from_15.offsets == std::vector<std::uint64_t>(expect.begin() + 14, expect.end()));
    CHECK(from_15.values.front() == 15);
  }
  CHECK(a.counters().delivered == 40);
  CHECK(s.js.counters().acknowledged == 40);
  CHECK(s.js.counters().failed == 0);

  // Outside what the stream keeps: refused, as for an in-memory retained topic.
  CHECK_THROWS_AS(orders.subscribe(s.rt.spawn<by_offset>(&all), troupe::replay::from(42)),
                  troupe::error);
  a.end();
  b.end();
  s.js.close();
  s.n.close();
  s.rt.shutdown();
  test::require_accounted(s.rt.counters());
}

TEST_CASE("retention limits are the stream's, visible through the API", "[jetstream][topic]") {
  setup s(test::server_url());
  auto t = s.js.retain<order>("limited", {.max_messages = 5, .dedupe_window = 60s});
  for (long i = 1; i <= 8; ++i) t.publish_sync(order{i});
  const auto st = t.state();
  CHECK(st.max_messages == 5);
  CHECK(st.dedupe_window == 60s);
  CHECK(st.messages == 5);
  CHECK(st.first == 4);  // the oldest went first
  CHECK(st.last == 8);
  CHECK_THROWS_AS(t.subscribe(s.rt.spawn<by_offset>(nullptr), troupe::replay::from(2)),
                  troupe::error);
  // Changing the limits where the topic is made updates the stream and keeps its events.
  auto again = s.js.retain<order>("limited", {.max_messages = 3});
  CHECK(again.state().messages == 3);
  CHECK(again.state().max_messages == 3);
  CHECK_THROWS_AS(s.js.retain<order>("bad..subject"), troupe::error);
}

TEST_CASE("producer message ids: the stream stores one per id; consumers see id and sequence",
          "[jetstream][idempotency]") {
  setup s(test::server_url());
  auto t = s.js.retain<order>("paid");
  CHECK(t.publish_sync(order{1}, {.id = "pay-1"}) == 1);
  CHECK(t.publish_sync(order{2}, {.id = "pay-2"}) == 2);
  CHECK(t.publish_sync(order{1}, {.id = "pay-1"}) == 1);  // a retry: the original's sequence
  REQUIRE(t.publish(order{2}, {.id = "pay-2"}));          // async retry: acked as duplicate
  REQUIRE(s.js.flush());
  CHECK(t.state().messages == 2);
  CHECK(s.js.counters().duplicates == 2);

  book seen;
  auto g = t.subscribe(s.rt.spawn<flaky>(&seen), troupe::group{"ledger"});
  REQUIRE(test::eventually([&] { return seen.size() >= 2; }));
  std::lock_guard lock(seen.mutex);
  CHECK(seen.offsets == std::vector<std::uint64_t>{1, 2});
  CHECK(seen.ids == std::vector<std::string>{"pay-1", "pay-2"});
}

TEST_CASE("a durable group resumes from its committed position; a throw redelivers",
          "[jetstream][group]") {
  setup s(test::server_url());
  auto t = s.js.retain<order>("orders.>");
  for (long i = 1; i <= 10; ++i) t.publish_sync("orders.eu", i == 4 ? order{-4} : order{i});

  auto sup =
      s.rt.spawn<troupe::supervisor>(troupe::one_for_one{.max_restarts = 100, .within = 60s});
  const troupe::nats::consumer_options fast{.max_attempts = 3, .ack_wait = 2000ms, .backoff = 10ms};
  book first;
  {
    auto m = t.subscribe(troupe::start_child<flaky>(sup, {.name = "m1"}, &first),
                         troupe::group{"billing"}, troupe::replay::oldest(), fast);
    REQUIRE(test::eventually([&] { return m.counters().handled >= 10; }));
    CHECK(m.counters().handled == 10);
    CHECK(m.counters().retried == 1);  // -4 failed once
  }
  {
    std::lock_guard lock(first.mutex);
    CHECK(first.attempts.at(-4) == 2);  // handled on its redelivery
    CHECK(sorted(first.values) == std::vector<long>{-4, 1, 2, 3, 5, 6, 7, 8, 9, 10});
  }
  // Another member joins later (a restarted process would be the same): it starts where the
  // group's acknowledgements left off, not at the beginning.
  for (long i = 11; i <= 15; ++i) t.publish_sync("orders.us", order{i});
  book second;
  auto m2 = t.subscribe(troupe::start_child<flaky>(sup, {.name = "m2"}, &second),
                        troupe::group{"billing"}, troupe::replay::oldest(), fast);
  REQUIRE(test::eventually([&] { return second.size() >= 5; }));
  {
    std::lock_guard lock(second.mutex);
    CHECK(second.values == std::vector<long>{11, 12, 13, 14, 15});
  }
  m2.end();
  s.js.close();
  s.n.close();
  s.rt.shutdown();
  test::require_accounted(s.rt.counters());
}

TEST_CASE("a durable work queue: competing consumers, redelivery, dead letters, accounting",
          "[jetstream][queue]") {
  setup s(test::server_url());
  auto q = s.js.make_queue<order>(
      "resize", {.consumer = {.max_attempts = 2, .ack_wait = 2000ms, .backoff = 10ms}});
  auto sup =
      s.rt.spawn<troupe::supervisor>(troupe::one_for_one{.max_restarts = 100, .within = 60s});
  book done;
  auto c1 = q.add_consumer(troupe::start_child<flaky>(sup, {.name = "w1"}, &done));
  auto c2 = q.add_consumer(troupe::start_child<flaky>(sup, {.name = "w2"}, &done));
  constexpr long items = 30;
  long poison = 0;
  for (long i = 1; i <= items; ++i) {
    const long v = i % 10 == 0 ? -2000 - i : (i % 7 == 0 ? -i : i);
    poison += v < -1000 ? 1 : 0;
    REQUIRE(q.push(order{v}));
  }
  REQUIRE(s.js.flush());
  // Garbage on the queue's subject, straight from nats.c: not an order.
  const std::string subject = s.n.internals()->prefix + ".queue.resize";
  REQUIRE(natsConnection_PublishString(s.n.native_handle(), subject.c_str(), "\xc1garbage") ==
          NATS_OK);
  auto dead_seen = [&] { return c1.counters().dead_lettered + c2.counters().dead_lettered; };
  REQUIRE(test::eventually([&] {
    return done.size() >= static_cast<std::size_t>(items - poison) &&
           dead_seen() >= static_cast<std::size_t>(poison + 1);
  }));
  REQUIRE(test::eventually([&] { return q.state().messages == 0; }));
  const auto k1 = c1.counters();
  const auto k2 = c2.counters();
  // published = handled + dead-lettered + still stored
  CHECK(k1.handled + k2.handled + k1.dead_lettered + k2.dead_lettered + q.state().messages ==
        static_cast<std::uint64_t>(items + 1));
  CHECK(k1.bad_input + k2.bad_input == 1);
  // Which consumer takes an item is the server's choice (each asks for one when idle).
  CHECK(k1.delivered + k2.delivered >= static_cast<std::uint64_t>(items + 1));
  {
    std::lock_guard lock(done.mutex);
    std::set<long> unique(done.values.begin(), done.values.end());
    CHECK(unique.size() == done.values.size());  // each item once
    CHECK(done.attempts.at(-7) == 2);
  }

  // The dead letters are stored with their reason, attempts and origin.
  natsMsg* last = nullptr;
  jsCtx* js = nullptr;
  REQUIRE(natsConnection_JetStream(&js, s.n.native_handle(), nullptr) == NATS_OK);
  REQUIRE(js_GetLastMsg(&last, js, s.js.dead_letter_stream().c_str(),
                        q.dead_letter_subject().c_str(), nullptr, nullptr) == NATS_OK);
  const char* reason = nullptr;
  const char* seq = nullptr;
  const char* from = nullptr;
  natsMsgHeader_Get(last, "troupe-dead-reason", &reason);
  natsMsgHeader_Get(last, "troupe-dead-sequence", &seq);
  natsMsgHeader_Get(last, "troupe-dead-subject", &from);
  std::string last_reason = reason != nullptr ? reason : "";
  std::string last_seq = seq != nullptr ? seq : "";
  std::string last_from = from != nullptr ? from : "";
  natsMsg_Destroy(last);
  jsStreamInfo* si = nullptr;
  REQUIRE(js_GetStreamInfo(&si, js, s.js.dead_letter_stream().c_str(), nullptr, nullptr) ==
          NATS_OK);
  const std::uint64_t stored_dead = si->State.Msgs;
  jsStreamInfo_Destroy(si);
  jsCtx_Destroy(js);
  CHECK(stored_dead == static_cast<std::uint64_t>(poison + 1));
  CHECK(last_from == subject);
  // The garbage came last (sequence items + 1) unless a poison item's last attempt came later.
  CHECK((last_reason == "unknown type" || last_reason == "retries exhausted"));
  CHECK(!last_seq.empty());
  CHECK(s.seen.dead_count(troupe::dead_letter_reason::unknown_type) == 1);
  CHECK(s.seen.dead_count(troupe::dead_letter_reason::retries_exhausted) ==
        static_cast<std::size_t>(poison));
  // A handler that threw: the stored dead letter carries the exception's type and text.
  std::size_t with_error = 0;
  for (const auto& letter :
       stored_dead_letters(s.n, s.js.dead_letter_stream(), q.dead_letter_subject())) {
    if (letter.at("troupe-dead-reason") != "retries exhausted") continue;
    ++with_error;
    INFO(letter.at("troupe-dead-detail"));
    CHECK(letter.at("troupe-dead-error").rfind("std::runtime_error: cannot do order -20", 0) == 0);
    CHECK(letter.at("troupe-dead-detail")
              .find("the last threw std::runtime_error: cannot do "
                    "order -20") != std::string::npos);
    CHECK(letter.at("troupe-dead-attempts") == "2");
  }
  CHECK(with_error == static_cast<std::size_t>(poison));

  c1.end();
  c2.end();
  s.js.close();
  s.n.close();
  s.rt.shutdown();
  test::require_accounted(s.rt.counters());
}

TEST_CASE("nats-server restarted on its store mid-run: nothing lost, reconnects by itself",
          "[jetstream][faults]") {
  test::private_server server;
  setup s(server.url());
  auto q = s.js.make_queue<order>("jobs", {.consumer = {.ack_wait = 2000ms, .backoff = 10ms}});
  book done;
  auto c = q.add_consumer(s.rt.spawn<flaky>(&done));
  for (long i = 1; i <= 50; ++i) q.push_sync(order{i});
  REQUIRE(test::eventually([&] { return done.size() >= 50; }));

  server.stop();
  REQUIRE(test::eventually([&] { return !s.n.connected(); }));
  server.start();
  REQUIRE(test::eventually([&] { return s.n.connected(); }, 20000ms));
  for (long i = 51; i <= 100; ++i) {
    REQUIRE(test::eventually([&] {
      try {
        q.push_sync(order{i}, {.id = "job-" + std::to_string(i)});
        return true;
      } catch (const troupe::error&) {
        return false;  // JetStream may need a moment after the restart
      }
    }));
  }
  // A server killed with SIGKILL may lose acknowledgements it had not yet written: those items
  // come again (at least once). None may be missing.
  auto unique_done = [&] {
    std::lock_guard lock(done.mutex);
    return std::set<long>(done.values.begin(), done.values.end());
  };
  REQUIRE(test::eventually([&] { return unique_done().size() >= 100; }, 20000ms));
  const std::set<long> unique = unique_done();
  CHECK(unique.size() == 100);
  CHECK(*unique.begin() == 1);
  CHECK(*unique.rbegin() == 100);
}

TEST_CASE(
    "a three-server cluster: a replicated stream goes on through a stopped server; nothing "
    "is lost",
    "[jetstream][cluster]") {
  test::server_cluster cluster(3);  // declared first: the servers outlive the clients below
  REQUIRE(cluster.wait_for_meta_leader());
  test::observer seen;
  troupe::runtime rt(seen.options(2));
  troupe::nats::node n(
      rt, {.servers = cluster.urls(), .name = "js-cluster", .prefix = setup::prefix_for()});
  troupe::nats::jetstream js(n, {.api_wait = 5000ms, .dead_letter_replicas = 3});
  auto q = js.make_queue<order>(
      "cluster.jobs", {.limits = {.replicas = 3},
                       .consumer = {.max_attempts = 2, .ack_wait = 2000ms, .backoff = 10ms}});
  REQUIRE(q.state().replicas == 3);
  auto sup = rt.spawn<troupe::supervisor>(troupe::one_for_one{.max_restarts = 100, .within = 60s});
  book done;
  auto c = q.add_consumer(troupe::start_child<flaky>(sup, {.name = "w"}, &done));

  constexpr long items = 200;
  std::set<long> poison;
  auto push = [&](long i) {
    const long v = i % 25 == 0 ? -2000 - i : i;
    if (v < -1000) poison.insert(v);
    // While the stream elects a new leader a publish fails: retried under the same message id,
    // which the stream stores once (a retry of a publish that was stored is a duplicate).
    REQUIRE(test::eventually(
        [&] {
          try {
            q.push_sync(order{v}, {.id = "job-" + std::to_string(i)});
            return true;
          } catch (const troupe::error&) {
            return false;
          }
        },
        60000ms));
  };
  for (long i = 1; i <= items / 2; ++i) push(i);

  // Stop the server that leads the stream: the one whose loss is hardest to hide.
  std::string leader;
  {
    jsCtx* raw = nullptr;
    REQUIRE(natsConnection_JetStream(&raw, n.native_handle(), nullptr) == NATS_OK);
    jsStreamInfo* si = nullptr;
    REQUIRE(js_GetStreamInfo(&si, raw, q.stream().c_str(), nullptr, nullptr) == NATS_OK);
    if (si->Cluster != nullptr && si->Cluster->Leader != nullptr) leader = si->Cluster->Leader;
    jsStreamInfo_Destroy(si);
    jsCtx_Destroy(raw);
  }
  const int stopped = cluster.index_of(leader);
  REQUIRE(stopped >= 0);
  cluster.stop(stopped);
  for (long i = items / 2 + 1; i <= items; ++i) push(i);

  auto unique_done = [&] {
    std::lock_guard lock(done.mutex);
    return std::set<long>(done.values.begin(), done.values.end());
  };
  const std::size_t good = static_cast<std::size_t>(items) - poison.size();
  REQUIRE(test::eventually(
      [&] { return unique_done().size() >= good && c.counters().dead_lettered >= poison.size(); },
      60000ms));
  std::uint64_t still_stored = 0;
  REQUIRE(test::eventually(
      [&] {
        try {
          still_stored = q.state().messages;
          return still_stored == 0;
        } catch (const troupe::error&) {
          return false;  // the API may answer late while leaders move
        }
      },
      60000ms));
  std::set<std::string> dead_sequences;
  for (const auto& letter :
       stored_dead_letters(n, js.dead_letter_stream(), q.dead_letter_subject())) {
    dead_sequences.insert(letter.at("troupe-dead-sequence"));
  }
  const std::set<long> handled = unique_done();
  // published = handled + dead-lettered + still stored (each counted once: at least once
  // delivery may repeat an item whose ack was lost with the leader)
  CHECK(static_cast<std::uint64_t>(items) == handled.size() + dead_sequences.size() + still_stored);
  CHECK(handled.size() == good);
  CHECK(dead_sequences.size() == poison.size());
  CHECK(*handled.begin() == 1);
  CHECK(*handled.rbegin() == items - 1);                       // 200 was poison
  CHECK(q.state().last == static_cast<std::uint64_t>(items));  // each id stored once
  c.end();
  js.close();
  n.close();
  rt.shutdown();
  test::require_accounted(rt.counters());
}

// ---- events that outlive their code: versions and upcasters -----------------------------------

namespace versioned {

// Version 1 of a deposit, as it was written before the type changed.
struct deposit_v1 {
  static constexpr std::string_view troupe_wire_name = "bank.deposit";
  long cents = 0;
};
// The changed type: same name, version 2 ("bank.deposit@2" on the wire).
struct deposit {
  static constexpr std::string_view troupe_wire_name = "bank.deposit";
  static constexpr unsigned troupe_wire_version = 2;
  long cents = 0;
  std::string currency;
};
// A version written by newer code than the reader's.
struct deposit_v3 {
  static constexpr std::string_view troupe_wire_name = "bank.deposit";
  static constexpr unsigned troupe_wire_version = 3;
  long cents = 0;
  std::string currency;
  std::string memo;
};

struct ledger {
  std::mutex mutex;
  std::vector<std::uint64_t> offsets;
  std::vector<std::string> entries;  // "<cents> <currency>"
  std::size_t size() {
    std::lock_guard lock(mutex);
    return offsets.size();
  }
};

struct bookkeeper {
  ledger* l;
  void on(const troupe::nats::delivery<deposit>& d) {
    std::lock_guard lock(l->mutex);
    l->offsets.push_back(d.sequence);
    l->entries.push_back(std::to_string(d.value.cents) + " " + d.value.currency);
  }
};

troupe::upcasters<deposit> upcast_v1() {
  troupe::upcasters<deposit> up;
  up.add<deposit_v1>([](deposit_v1 old) { return deposit{old.cents, "EUR"}; });
  return up;
}

}  // namespace versioned

static_assert(troupe::wire_version_of<versioned::deposit_v1>() == 1);
static_assert(troupe::wire_version_of<versioned::deposit>() == 2);
static_assert(troupe::wire_base_name_of<versioned::deposit>() == "bank.deposit");
static_assert(troupe::parse_wire_name("bank.deposit@12").version == 12);
static_assert(troupe::parse_wire_name("bank.deposit").version == 1);
static_assert(troupe::parse_wire_name("bank.deposit@x").version == 0);

TEST_CASE(
    "versioned wire names: an upcaster reads version 1 as the changed type; what it cannot "
    "read is a dead letter with its sequence",
    "[jetstream][versions]") {
  using namespace versioned;
  CHECK(troupe::wire_name_of<deposit_v1>() == "bank.deposit");
  CHECK(troupe::wire_name_of<deposit>() == "bank.deposit@2");
  CHECK(troupe::wire_name_of<deposit_v3>() == "bank.deposit@3");
  CHECK_THROWS_AS(upcast_v1().add<deposit_v1>([](deposit_v1) { return deposit{}; }),
                  troupe::error);  // one step per version

  setup s(test::server_url());
  // Last year's code wrote version 1 (sequences 1..5) ...
  auto old_code = s.js.retain<deposit_v1>("bank.deposits");
  for (long i = 1; i <= 5; ++i) {
    REQUIRE(old_code.publish_sync(deposit_v1{i * 100}) == static_cast<std::uint64_t>(i));
  }
  // ... today's writes version 2 (6, 7), newer code version 3 (8) ...
  auto today = s.js.retain<deposit>("bank.deposits");
  REQUIRE(today.publish_sync(deposit{600, "USD"}) == 6);
  REQUIRE(today.publish_sync(deposit{700, "USD"}) == 7);
  REQUIRE(s.js.retain<deposit_v3>("bank.deposits").publish_sync(deposit_v3{800, "USD", "x"}) == 8);
  // ... and a version-1 event whose bytes do not decode (9).
  {
    natsMsg* m = nullptr;
    const std::string subject = s.n.internals()->prefix + ".topic.bank.deposits";
    REQUIRE(natsMsg_Create(&m, subject.c_str(), nullptr, "\xc1", 1) == NATS_OK);
    natsMsgHeader_Set(m, "troupe-type", "bank.deposit");
    natsMsgHeader_Set(m, "troupe-codec", "msgpack");
    REQUIRE(natsConnection_PublishMsg(s.n.native_handle(), m) == NATS_OK);
    natsMsg_Destroy(m);
    REQUIRE(test::eventually([&] { return today.state().last == 9; }));
  }
  const troupe::nats::consumer_options fast{.max_attempts = 2, .ack_wait = 2000ms, .backoff = 10ms};

  // With the upcaster: version 1 reads as the changed type, in stream order.
  ledger replayed;
  ledger grouped;
  auto reader = today.with_upcasters(upcast_v1());
  auto a = reader.subscribe(s.rt.spawn<bookkeeper>(&replayed), troupe::replay::oldest());
  auto g = reader.subscribe(s.rt.spawn<bookkeeper>(&grouped), troupe::group{"books"},
                            troupe::replay::oldest(), fast);
  // Without one: version 1 cannot be read, and is not skipped either.
  ledger strict;
  auto h = today.subscribe(s.rt.spawn<bookkeeper>(&strict), troupe::group{"strict"},
                           troupe::replay::oldest(), fast);
  REQUIRE(test::eventually([&] {
    return replayed.size() >= 7 && a.counters().bad_input >= 2 && g.counters().handled >= 7 &&
           g.counters().dead_lettered >= 2 && h.counters().handled >= 2 &&
           h.counters().dead_lettered >= 7;
  }));
  const std::vector<std::string> upcast_entries{"100 EUR", "200 EUR", "300 EUR", "400 EUR",
                                                "500 EUR", "600 USD", "700 USD"};
  {
    std::lock_guard lock(replayed.mutex);
    CHECK(replayed.offsets == std::vector<std::uint64_t>{1, 2, 3, 4, 5, 6, 7});
    CHECK(replayed.entries == upcast_entries);
  }
  {
    std::lock_guard lock(grouped.mutex);
    CHECK(grouped.entries == upcast_entries);  // one member: in stream order
  }
  {
    std::lock_guard lock(strict.mutex);
    CHECK(strict.offsets == std::vector<std::uint64_t>{6, 7});
  }
  CHECK(a.counters().bad_input == 2);
  CHECK(g.counters().bad_input == 2);
  CHECK(h.counters().bad_input == 7);
  CHECK(g.counters().retried == 0);  // not read is not retried: dead at once

  // Stored dead letters, with the sequence, the reason and why.
  auto by_sequence = [&](const std::string& group_name) {
    std::map<std::string, stored_letter> out;
    for (auto& letter : stored_dead_letters(s.n, s.js.dead_letter_stream(),
                                            s.js.dead_letter_subject(troupe::group{group_name}))) {
      out[letter.at("troupe-dead-sequence")] = letter;
    }
    return out;
  };
  const auto books = by_sequence("books");
  REQUIRE(books.size() == 2);
  CHECK(books.at("8").at("troupe-dead-reason") == "unknown type");
  CHECK(books.at("8").at("troupe-type") == "bank.deposit@3");
  CHECK(books.at("8").at("troupe-dead-detail").find("newer") != std::string::npos);
  CHECK(books.at("9").at("troupe-dead-reason") == "decode failed");
  const auto strict_letters = by_sequence("strict");
  REQUIRE(strict_letters.size() == 7);
  for (const char* seq : {"1", "2", "3", "4", "5", "9"}) {
    CAPTURE(seq);
    CHECK(strict_letters.at(seq).at("troupe-dead-reason") == "unknown type");
    CHECK(strict_letters.at(seq).at("troupe-dead-detail").find("no upcaster from version 1") !=
          std::string::npos);
  }
  CHECK(strict_letters.at("8").at("troupe-dead-reason") == "unknown type");

  // Acknowledged, so they do not loop: nothing pending on either group.
  for (const char* name : {"books", "strict"}) {
    jsCtx* js = nullptr;
    REQUIRE(natsConnection_JetStream(&js, s.n.native_handle(), nullptr) == NATS_OK);
    REQUIRE(test::eventually([&] {
      jsConsumerInfo* ci = nullptr;
      if (js_GetConsumerInfo(&ci, js, today.stream().c_str(), name, nullptr, nullptr) != NATS_OK)
        return false;
      const bool idle = ci->NumAckPending == 0 && ci->NumPending == 0;
      jsConsumerInfo_Destroy(ci);
      return idle;
    }));
    jsCtx_Destroy(js);
  }
  // The replaying subscriber reports what it could not read as local dead letters, with place.
  {
    std::lock_guard lock(s.seen.mutex);
    std::size_t with_place = 0;
    for (const auto& d : s.seen.dead) {
      with_place += d.detail.find("(sequence 8 on bank.deposits)") != std::string::npos ||
                    d.detail.find("(sequence 9 on bank.deposits)") != std::string::npos;
    }
    CHECK(with_place == 2);
  }
  // Accounting per group: published = handled + dead-lettered (+ still stored: none pending).
  CHECK(g.counters().handled + g.counters().dead_lettered == 9);
  CHECK(h.counters().handled + h.counters().dead_lettered == 9);
  a.end();
  g.end();
  h.end();
  s.js.close();
  s.n.close();
  s.rt.shutdown();
  test::require_accounted(s.rt.counters());
}

// ---- separate processes ------------------------------------------------------------------------

namespace {

struct peer_log {
  std::vector<long> values;
  std::vector<std::uint64_t> attempts;
};

// Reads "handled value=.. attempt=.." lines until `enough` says stop or the peer's output ends.
template <class F>
void read_handled(test::child& p, peer_log& log, F enough) {
  while (!enough(log)) {
    const std::string line = p.read_line_starting("handled");
    if (line.empty()) return;
    const auto f = test::fields(line);
    log.values.push_back(f.at("value"));
    log.attempts.push_back(static_cast<std::uint64_t>(f.at("attempt")));
  }
}

}  // namespace

TEST_CASE("separate processes: a group member killed mid-stream resumes after restart",
          "[jetstream][multiprocess]") {
  const std::string url = test::server_url();
  setup s(url);
  const std::string prefix = s.n.internals()->prefix;
  auto t = s.js.retain<order>("events");
  constexpr long events = 120;
  for (long i = 1; i <= events; ++i) REQUIRE(t.publish(order{i}));
  REQUIRE(s.js.flush());
  auto peer = [&] {
    return std::make_unique<test::child>(std::vector<std::string>{
        TROUPE_JETSTREAM_PEER, url, prefix, "group", "events", "audit", "5"});
  };
  auto first = peer();
  REQUIRE(first->read_line() == "ready");
  peer_log before;
  read_handled(*first, before, [](const peer_log& l) { return l.values.size() >= 30; });
  REQUIRE(before.values.size() == 30);
  first.reset();  // SIGKILL, mid-stream

  auto second = peer();
  REQUIRE(second->read_line() == "ready");
  peer_log after;
  std::set<long> all(before.values.begin(), before.values.end());
  read_handled(*second, after, [&](const peer_log& l) {
    if (!l.values.empty()) all.insert(l.values.back());
    return all.size() >= static_cast<std::size_t>(events);
  });
  CHECK(all.size() == static_cast<std::size_t>(events));  // none lost
  // It resumed where the group was, not from the start: only what the killed process had not
  // yet acknowledged comes again (at least once), recognisable by its attempt.
  REQUIRE(!after.values.empty());
  CHECK(after.values.front() >= 25);
  std::size_t again = 0;
  for (long v : after.values) again += std::count(before.values.begin(), before.values.end(), v);
  CHECK(again <= 5);
  second->write_line("quit");
  const auto totals = test::fields(second->read_line_starting("counters"));
  CHECK(totals.at("dead") == 0);
  CHECK(second->wait() == 0);
}

TEST_CASE(
    "separate processes: a killed worker's item goes to another after the ack wait; "
    "poison reaches the dead letters",
    "[jetstream][multiprocess]") {
  const std::string url = test::server_url();
  setup s(url);
  const std::string prefix = s.n.internals()->prefix;
  auto q = s.js.make_queue<order>(
      "hold", {.consumer = {.max_attempts = 2, .ack_wait = 600ms, .backoff = 10ms}});
  auto worker = [&] {
    return std::make_unique<test::child>(
        std::vector<std::string>{TROUPE_JETSTREAM_PEER, url, prefix, "work", "hold", "600", "2"});
  };
  auto holder = worker();
  REQUIRE(holder->read_line() == "ready");
  // 0: held until the process dies (longer than the ack wait: in-progress keeps it).
  q.push_sync(order{0});
  REQUIRE(holder->read_line_starting("took") == "took value=0 attempt=1");
  auto other = worker();
  REQUIRE(other->read_line() == "ready");
  // Three ack waits pass: the holder still has it (the other would print "took").
  std::this_thread::sleep_for(1800ms);
  holder.reset();                                                        // SIGKILL while holding
  CHECK(other->read_line_starting("took") == "took value=0 attempt=2");  // after the ack wait
  // A poison item: fails on both attempts, then the dead letters.
  q.push_sync(order{-5000});
  q.push_sync(order{7});
  peer_log log;
  read_handled(*other, log, [](const peer_log& l) { return l.values.size() >= 2; });
  CHECK(log.values == std::vector<long>{0, 7});  // the taken-over item, then the good one
  REQUIRE(test::eventually([&] { return q.state().messages == 0; }));
  other->write_line("quit");
  const auto totals = test::fields(other->read_line_starting("counters"));
  CHECK(totals.at("dead") == 1);
  CHECK(totals.at("handled") == 2);
  CHECK(other->wait() == 0);
}
