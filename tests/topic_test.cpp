// Tests of topics (include/troupe/topic.hpp): subject matching and validation, fan-out with a
// shared event, groups (balance and failover), unsubscribing under load, unrouted publishes,
// publishing from actors, and the dead-letter topic.
#include <atomic>
#include <future>
#include <latch>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

using namespace std::chrono_literals;

namespace {

bool matches(const std::string& pattern, const std::string& subject) {
  troupe::detail::topic_registry registry;
  static const char tag = 0;
  auto entry =
      std::make_shared<troupe::detail::subscriber_entry>(nullptr, &tag, nullptr, "", pattern);
  registry.add(entry);
  return !registry.route_for(subject, &tag)->empty();
}

}  // namespace

TEST_CASE("wildcard matching", "[topic][subject]") {
  struct row {
    const char* pattern;
    const char* subject;
    bool match;
  };
  const row table[] = {
      {"orders.created", "orders.created", true},
      {"orders.created", "orders.updated", false},
      {"orders.*", "orders.created", true},
      {"orders.*", "orders", false},
      {"orders.*", "orders.eu.created", false},
      {"*.created", "orders.created", true},
      {"*.*", "a.b", true},
      {"*.*", "a", false},
      {"orders.>", "orders.created", true},
      {"orders.>", "orders.eu.created", true},
      {"orders.>", "orders", false},
      {">", "anything.at.all", true},
      {">", "one", true},
      {"orders.*.created", "orders.eu.created", true},
      {"orders.*.created", "orders.eu.deleted", false},
      {"a.*.>", "a.b.c.d", true},
      {"a.*.>", "a.b", false},
  };
  for (const auto& r : table) {
    INFO(r.pattern << " vs " << r.subject);
    REQUIRE(matches(r.pattern, r.subject) == r.match);
  }
}

TEST_CASE("invalid subjects and patterns are rejected with a clear error", "[topic][subject]") {
  using troupe::detail::split_subject;
  for (const char* bad : {"", ".a", "a.", "a..b", "a.>.b", "a*", "or>ders", "a b"}) {
    INFO(bad);
    REQUIRE_THROWS_AS(split_subject(bad, true), troupe::error);
  }
  for (const char* bad : {"a.*", "a.>", "*"}) {
    INFO(bad);
    try {
      split_subject(bad, false);
      FAIL("accepted a wildcard in a published subject");
    } catch (const troupe::error& e) {
      REQUIRE(e.code() == troupe::errc::invalid_subject);
    }
  }
  REQUIRE(split_subject("a.b.c", false).size() == 3);
}

namespace {

struct registered {
  std::string email;
};

struct fan_sink {
  std::atomic<int>* received;
  std::mutex* mutex;
  std::set<const registered*>* addresses;
  std::latch* done;
  void on(const registered& r) {
    received->fetch_add(1);
    {
      std::lock_guard lock(*mutex);
      addresses->insert(&r);
    }
    done->count_down();
  }
};

}  // namespace

TEST_CASE("fan-out to 1,000 subscribers shares one immutable event", "[topic][fanout]") {
  constexpr int subscribers = 1'000;
  std::atomic<int> received{0};
  std::mutex mutex;
  std::set<const registered*> addresses;
  std::latch done(subscribers);
  troupe::runtime rt(troupe::runtime_options{.workers = 2});
  std::vector<troupe::subscription> subs;
  for (int i = 0; i < subscribers; ++i) {
    auto s = rt.spawn<fan_sink>(&received, &mutex, &addresses, &done);
    subs.push_back(rt.subscribe<registered>("user.*", s));
  }
  REQUIRE(rt.publish("user.registered", registered{"ada@example.org"}) == subscribers);
  done.wait();
  REQUIRE(received.load() == subscribers);
  REQUIRE(addresses.size() == 1);  // one event object, not a copy per subscriber
  rt.shutdown();
  REQUIRE(rt.counters().published == 1);
  test::require_accounted(rt.counters());
}

namespace {
struct member_sink {
  std::atomic<int>* count;
  std::atomic<int>* total;
  void on(const registered&) {
    count->fetch_add(1);
    total->fetch_add(1);
    total->notify_all();
  }
};
void wait_total(std::atomic<int>& total, int expected) {
  for (int seen = total.load(); seen < expected; seen = total.load()) total.wait(seen);
}
}  // namespace

TEST_CASE("groups: one member per event, balanced, and broadcast across groups", "[topic][group]") {
  constexpr int events = 300;
  std::atomic<int> counts[4] = {};
  std::atomic<int> total{0};
  troupe::runtime rt(troupe::runtime_options{.workers = 2});
  std::vector<troupe::subscription> subs;
  for (int i = 0; i < 3; ++i) {
    subs.push_back(rt.subscribe<registered>("user.>", rt.spawn<member_sink>(&counts[i], &total),
                                            troupe::group{"billing"}));
  }
  subs.push_back(
      rt.subscribe<registered>("user.registered", rt.spawn<member_sink>(&counts[3], &total)));
  for (int i = 0; i < events; ++i) REQUIRE(rt.publish("user.registered", registered{}) == 2);
  wait_total(total, 2 * events);
  REQUIRE(counts[3].load() == events);  // the plain subscriber sees every event
  REQUIRE(counts[0] + counts[1] + counts[2] == events);
  for (int i = 0; i < 3; ++i) REQUIRE(counts[i].load() == events / 3);  // in turn
}

TEST_CASE("groups: a stopped member's share goes to the others", "[topic][group]") {
  constexpr int events = 200;
  std::atomic<int> counts[3] = {};
  std::atomic<int> total{0};
  test::observer obs;
  troupe::runtime rt(obs.options());
  std::vector<troupe::ref<member_sink>> members;
  std::vector<troupe::subscription> subs;
  for (int i = 0; i < 3; ++i) {
    members.push_back(rt.spawn<member_sink>(&counts[i], &total));
    subs.push_back(rt.subscribe<registered>("user.>", members.back(), troupe::group{"g"}));
  }
  members[1].stop();
  // Wait until the stop has landed: an ask-free way is a monitor, but here the runtime's own
  // view suffices: publish until a delivery to the stopped member is impossible.
  while (rt.live_actors() != 2) std::this_thread::yield();
  for (int i = 0; i < events; ++i) rt.publish("user.registered", registered{});
  wait_total(total, events);
  REQUIRE(counts[1].load() == 0);
  REQUIRE(counts[0] + counts[2] == events);
  rt.shutdown();
  REQUIRE(obs.dead.empty());  // nothing went to the stopped member
  test::require_accounted(rt.counters());
}

TEST_CASE("unsubscribing while publishes are in flight is safe; RAII unsubscribes",
          "[topic][concurrency]") {
  std::atomic<int> count{0};
  std::atomic<int> total{0};
  troupe::runtime rt(troupe::runtime_options{.workers = 2});
  auto sink = rt.spawn<member_sink>(&count, &total);
  std::atomic<bool> stop{false};
  std::thread publisher([&] {
    while (!stop.load()) rt.publish("load.tick", registered{});
  });
  for (int i = 0; i < 200; ++i) {
    auto s = rt.subscribe<registered>("load.*", sink);
    if (i % 2 == 0) s.unsubscribe();
  }  // each subscription ends here at the latest
  stop = true;
  publisher.join();
  REQUIRE(rt.publish("load.tick", registered{}) == 0);  // nobody subscribed any more
  rt.shutdown();
  // Deliveries made before an unsubscribe may still have been queued; all were handled.
  REQUIRE(static_cast<std::uint64_t>(total.load()) == rt.counters().handled);
  REQUIRE(rt.counters().unrouted >= 1);
  test::require_accounted(rt.counters());
}

namespace {
struct announce {
  std::string subject;
};
class announcer {
 public:
  explicit announcer(troupe::context& ctx) : ctx_(ctx) {}
  std::size_t on(announce a) { return ctx_.publish(a.subject, registered{"from an actor"}); }

 private:
  troupe::context& ctx_;
};
struct letter_sink {
  std::promise<troupe::dead_letter>* got;
  bool first = true;
  void on(const troupe::dead_letter& d) {
    if (first) got->set_value(d);
    first = false;
  }
};
struct noop {};
struct quiet {
  void on(noop) {}
};
}  // namespace

TEST_CASE("actors publish; unrouted publishes are counted, not errors", "[topic]") {
  std::atomic<int> count{0};
  std::atomic<int> total{0};
  troupe::runtime rt(troupe::runtime_options{.workers = 2});
  auto sub = rt.subscribe<registered>("news.*", rt.spawn<member_sink>(&count, &total));
  auto a = rt.spawn<announcer>();
  REQUIRE(a.ask(announce{"news.today"}).get() == 1);
  REQUIRE(a.ask(announce{"sports.today"}).get() == 0);
  wait_total(total, 1);
  rt.shutdown();
  REQUIRE(rt.counters().published == 2);
  REQUIRE(rt.counters().unrouted == 1);
}

TEST_CASE("dead letters are published on the dead-letter topic", "[topic][dead_letter]") {
  troupe::runtime rt(troupe::runtime_options{.workers = 2});
  std::promise<troupe::dead_letter> got;
  auto sub =
      rt.subscribe<troupe::dead_letter>(troupe::dead_letter_subject, rt.spawn<letter_sink>(&got));
  auto q = rt.spawn<quiet>();
  q.stop();
  while (q.send(noop{})) {  // until the stop has landed, sends are still handled
  }
  auto d = got.get_future().get();
  REQUIRE(d.target == q);
  REQUIRE(d.reason == troupe::dead_letter_reason::target_stopped);
  REQUIRE(d.message_type.find("noop") != std::string_view::npos);
}

// ---------------------------------------------------------------------------------------------
// Retained topics: offsets, the window, replay then live with no gap and no duplicate.
// ---------------------------------------------------------------------------------------------
namespace {

struct tick {
  int value;
};
struct get_offsets {};

// Records every offset (and value) it receives, in arrival order.
struct offset_log {
  std::vector<std::uint64_t> offsets;
  std::vector<int> values;
  void on(const troupe::retained<tick>& r) {
    offsets.push_back(r.offset);
    values.push_back(r.event.value);
  }
  std::vector<std::uint64_t> on(get_offsets) const { return offsets; }
};

// Takes both shapes: retained subjects give it offsets, the others plain events.
struct both_shapes {
  int plain = 0;
  std::vector<std::uint64_t> offsets;
  void on(const tick&) { ++plain; }
  void on(const troupe::retained<tick>& r) { offsets.push_back(r.offset); }
  std::pair<int, std::vector<std::uint64_t>> on(get_offsets) const { return {plain, offsets}; }
};

void require_contiguous(const std::vector<std::uint64_t>& offsets, std::uint64_t first,
                        std::uint64_t next) {
  INFO("received " << offsets.size() << " offsets, expected [" << first << ", " << next << ")");
  REQUIRE(offsets.size() == next - first);
  for (std::size_t i = 0; i < offsets.size(); ++i) REQUIRE(offsets[i] == first + i);
}

template <class F>
troupe::errc error_code_of(F&& f) {
  try {
    f();
  } catch (const troupe::error& e) {
    return e.code();
  }
  FAIL("no troupe::error thrown");
  return {};
}

}  // namespace

TEST_CASE("a retained topic assigns offsets and keeps the last N events", "[topic][retained]") {
  troupe::runtime rt(troupe::runtime_options{.workers = 2});
  auto topic = rt.retain<tick>("metrics.ticks", 3);
  REQUIRE(topic.subject() == "metrics.ticks");
  REQUIRE(topic.window() == troupe::retention_window{0, 0, 3});
  REQUIRE(topic.publish(tick{0}) == 0);
  REQUIRE(topic.publish(tick{1}) == 1);
  for (int i = 2; i < 5; ++i) REQUIRE(rt.publish("metrics.ticks", tick{i}) == 0);  // unrouted
  const auto w = topic.window();
  REQUIRE(w == troupe::retention_window{2, 5, 3});
  REQUIRE(w.size() == 3);
  REQUIRE(rt.counters().unrouted == 5);

  // Replay from the oldest kept: offsets 2, 3, 4 with their values; then live.
  auto log = rt.spawn<offset_log>();
  auto sub = rt.subscribe<tick>("metrics.ticks", log, troupe::replay::oldest());
  REQUIRE(topic.publish(tick{5}) == 5);
  require_contiguous(log.ask(get_offsets{}).get(), 2, 6);

  // Replay from a given offset.
  auto later = rt.spawn<offset_log>();
  auto sub2 = rt.subscribe<tick>("metrics.ticks", later, troupe::replay::from(4));
  require_contiguous(later.ask(get_offsets{}).get(), 4, 6);

  // Same retention again: the same topic; another capacity or type: a conflict.
  REQUIRE(rt.retain<tick>("metrics.ticks", 3).window().next == 6);
  rt.shutdown();
  test::require_accounted(rt.counters());
}

namespace {
// A coroutine handler that takes its retained event by reference and reads it only after it
// has suspended: the reference must outlive the call that started the handler.
class suspending_offset_log {
 public:
  explicit suspending_offset_log(troupe::context& ctx) : ctx_(ctx) {}
  troupe::task<void> on(const troupe::retained<tick>& r) {
    co_await ctx_.sleep_for(std::chrono::milliseconds(1));
    offsets_.push_back(r.offset);
    values_.push_back(r.event.value);
  }
  std::pair<std::vector<std::uint64_t>, std::vector<int>> on(get_offsets) const {
    return {offsets_, values_};
  }

 private:
  troupe::context& ctx_;
  std::vector<std::uint64_t> offsets_;
  std::vector<int> values_;
};
}  // namespace

TEST_CASE("a coroutine handler may keep its const retained<E>& across a suspension",
          "[topic][retained][task]") {
  troupe::runtime rt(troupe::runtime_options{.workers = 2});
  auto topic = rt.retain<tick>("co.ticks", 8);
  for (int i = 0; i < 3; ++i) static_cast<void>(topic.publish(tick{100 + i}));
  auto log = rt.spawn<suspending_offset_log>();
  auto sub = rt.subscribe<tick>("co.ticks", log, troupe::replay::oldest());
  for (int i = 3; i < 6; ++i) static_cast<void>(topic.publish(tick{100 + i}));
  const auto [offsets, values] = log.ask(get_offsets{}).get();
  require_contiguous(offsets, 0, 6);
  REQUIRE(values == std::vector<int>{100, 101, 102, 103, 104, 105});
  rt.shutdown();
  test::require_accounted(rt.counters());
}

TEST_CASE("retained topics report misuse with clear errors", "[topic][retained]") {
  troupe::runtime rt(troupe::runtime_options{.workers = 1});
  auto topic = rt.retain<tick>("a.b", 4);
  for (int i = 0; i < 6; ++i) topic.publish(tick{i});  // window [2, 6)
  auto log = rt.spawn<offset_log>();
  using troupe::errc;
  REQUIRE(error_code_of([&] { (void)rt.retain<tick>("a.b", 5); }) == errc::retention_conflict);
  REQUIRE(error_code_of([&] { (void)rt.retain<registered>("a.b", 4); }) ==
          errc::retention_conflict);
  REQUIRE(error_code_of([&] { (void)rt.retain<tick>("a.c", 0); }) == errc::retention_conflict);
  REQUIRE(error_code_of([&] { (void)rt.retain<tick>("a.*", 4); }) == errc::invalid_subject);
  REQUIRE(error_code_of([&] { (void)rt.retain<tick>("a..b", 4); }) == errc::invalid_subject);
  // Evicted, and not yet published, offsets cannot be replayed.
  REQUIRE(error_code_of([&] { (void)rt.subscribe<tick>("a.b", log, troupe::replay::from(1)); }) ==
          errc::invalid_offset);
  REQUIRE(error_code_of([&] { (void)rt.subscribe<tick>("a.b", log, troupe::replay::from(7)); }) ==
          errc::invalid_offset);
  // Replay needs a retained subject of this event type, named exactly.
  REQUIRE(error_code_of([&] {
            (void)rt.subscribe<tick>("a.other", log, troupe::replay::oldest());
          }) == errc::not_retained);
  REQUIRE(error_code_of([&] { (void)rt.subscribe<tick>("a.*", log, troupe::replay::oldest()); }) ==
          errc::invalid_subject);
  // An actor that only takes offsets cannot subscribe to a subject that has none.
  REQUIRE(error_code_of([&] { (void)rt.subscribe<tick>("a.>", log); }) == errc::not_retained);
  // from(next) is live only: nothing replayed.
  auto sub = rt.subscribe<tick>("a.b", log, troupe::replay::from(6));
  REQUIRE(log.ask(get_offsets{}).get().empty());
  REQUIRE(topic.publish(tick{6}) == 6);
  require_contiguous(log.ask(get_offsets{}).get(), 6, 7);
  // A plain subscription to the exact retained subject is live, with offsets.
  auto plain = rt.spawn<offset_log>();
  auto sub2 = rt.subscribe<tick>("a.b", plain);
  topic.publish(tick{7});
  require_contiguous(plain.ask(get_offsets{}).get(), 7, 8);
}

TEST_CASE("a handler taking both shapes gets offsets only from retained subjects",
          "[topic][retained]") {
  troupe::runtime rt(troupe::runtime_options{.workers = 2});
  auto topic = rt.retain<tick>("feed.kept", 100);
  auto sink = rt.spawn<both_shapes>();
  auto sub = rt.subscribe<tick>("feed.*", sink);
  for (int i = 0; i < 10; ++i) {
    REQUIRE(rt.publish("feed.kept", tick{i}) == 1);
    REQUIRE(rt.publish("feed.plain", tick{i}) == 1);
  }
  const auto [plain, offsets] = sink.ask(get_offsets{}).get();
  REQUIRE(plain == 10);
  require_contiguous(offsets, 0, 10);
  REQUIRE(topic.window().next == 10);
}

TEST_CASE("replay then live: no gap and no duplicate while publishing goes on",
          "[topic][retained][concurrency]") {
  // Several publisher threads keep publishing while subscribers join with a replay; each
  // subscriber must see every offset from its start to the end exactly once, in order.
  constexpr int publishers = 2;
  constexpr int per_publisher = 20'000;
  constexpr int joiners = 24;
  const std::size_t capacity = GENERATE(std::size_t{64}, std::size_t{1'000'000});
  INFO("capacity " << capacity);
  troupe::runtime rt(troupe::runtime_options{.workers = 2});
  auto topic = rt.retain<tick>("stream.events", capacity);

  std::atomic<int> ready{0};
  std::vector<std::thread> threads;
  for (int p = 0; p < publishers; ++p) {
    threads.emplace_back([&, p] {
      ready.fetch_add(1);
      for (int i = 0; i < per_publisher; ++i) topic.publish(tick{p * per_publisher + i});
    });
  }
  struct joined {
    troupe::ref<offset_log> log;
    troupe::subscription sub;
    std::uint64_t start;  // the first offset it must see (exactly, or at least: see exact)
    bool exact;           // replay::from(start) took: the first offset is `start` itself
  };
  std::vector<joined> subs;
  while (ready.load() < publishers) std::this_thread::yield();
  for (int j = 0; j < joiners; ++j) {
    auto log = rt.spawn<offset_log>();
    if (j % 2 == 0) {
      // From the oldest kept: the start is whatever the window began with at that moment,
      // which the first received offset tells (checked below against the window bounds).
      const auto before = topic.window();
      auto sub = rt.subscribe<tick>("stream.events", log, troupe::replay::oldest());
      subs.push_back({log, std::move(sub), before.first, false});
    } else {
      // From a given offset. With a small window it may be evicted before the subscription
      // takes the log: that is reported (invalid_offset), then retried from the oldest.
      const auto w = topic.window();
      const std::uint64_t from = w.first + (w.next - w.first) / 2;
      try {
        auto sub = rt.subscribe<tick>("stream.events", log, troupe::replay::from(from));
        subs.push_back({log, std::move(sub), from, true});
      } catch (const troupe::error& e) {
        REQUIRE(e.code() == troupe::errc::invalid_offset);
        REQUIRE(capacity == 64);
        const auto before = topic.window();
        auto sub = rt.subscribe<tick>("stream.events", log, troupe::replay::oldest());
        subs.push_back({log, std::move(sub), before.first, false});
      }
    }
    std::this_thread::yield();
  }
  for (auto& t : threads) t.join();
  const std::uint64_t end = topic.window().next;
  REQUIRE(end == publishers * per_publisher);
  for (std::size_t j = 0; j < subs.size(); ++j) {
    INFO("subscriber " << j);
    const auto offsets = subs[j].log.ask(get_offsets{}).get();
    REQUIRE_FALSE(offsets.empty());
    if (subs[j].exact) {
      require_contiguous(offsets, subs[j].start, end);
    } else {
      // From the oldest kept at subscription time: at or after the window seen just before.
      REQUIRE(offsets.front() >= subs[j].start);
      require_contiguous(offsets, offsets.front(), end);
    }
  }
  rt.shutdown();
  test::require_accounted(rt.counters());
}

TEST_CASE("routes stay current: subscribe, unsubscribe and retain after publishes; many subjects",
          "[topic][route]") {
  std::atomic<int> count{0};
  std::atomic<int> total{0};
  troupe::runtime rt(troupe::runtime_options{.workers = 2});
  auto sink = rt.spawn<member_sink>(&count, &total);
  REQUIRE(rt.publish("route.a", registered{}) == 0);  // a route with nobody, now cached
  {
    auto s = rt.subscribe<registered>("route.a", sink);
    REQUIRE(rt.publish("route.a", registered{}) == 1);
    auto s2 = rt.subscribe<registered>("route.*", sink);
    REQUIRE(rt.publish("route.a", registered{}) == 2);
  }
  REQUIRE(rt.publish("route.a", registered{}) == 0);
  // More distinct subjects than the route cache keeps: every publish still routes correctly.
  auto s = rt.subscribe<registered>("many.>", sink);
  for (int i = 0; i < 5'000; ++i) {
    REQUIRE(rt.publish("many.s" + std::to_string(i), registered{}) == 1);
  }
  wait_total(total, 3 + 5'000);
  REQUIRE(count.load() == 3 + 5'000);
  // Retaining a subject that was already published on: later publishes get offsets.
  auto log = rt.spawn<offset_log>();
  REQUIRE(rt.publish("route.kept", tick{0}) == 0);
  auto kept = rt.retain<tick>("route.kept", 8);
  auto sub = rt.subscribe<tick>("route.kept", log);
  REQUIRE(rt.publish("route.kept", tick{1}) == 1);
  require_contiguous(log.ask(get_offsets{}).get(), 0, 1);
  REQUIRE(kept.window().next == 1);
}

// ---------------------------------------------------------------------------------------------
// Hardening (issue 12): handles that outlive the runtime, deep and malformed subjects, misuse
// after shutdown, trie memory, unsubscribe cost.
// ---------------------------------------------------------------------------------------------
namespace {

// A subject of `tokens` one-letter tokens ("a.a.a...").
std::string deep_subject(std::size_t tokens, std::string_view last = "a") {
  std::string s;
  s.reserve(tokens * 2);
  for (std::size_t i = 0; i + 1 < tokens; ++i) s += "a.";
  s += last;
  return s;
}

}  // namespace

TEST_CASE("a retained_topic that outlives its runtime is safe: publish reports runtime_stopped",
          "[topic][retained][shutdown]") {
  std::optional<troupe::retained_topic<tick>> topic;
  {
    troupe::runtime rt(troupe::runtime_options{.workers = 1});
    topic.emplace(rt.retain<tick>("kept.after", 4));
    REQUIRE(topic->publish(tick{0}) == 0);
  }
  const troupe::retained_topic<tick> copy = *topic;  // copies keep what they need alive too
  topic.reset();
  try {
    copy.publish(tick{1});
    FAIL("a publish after the runtime was destroyed was accepted");
  } catch (const troupe::error& e) {
    REQUIRE(e.code() == troupe::errc::runtime_stopped);
    REQUIRE(std::string(e.what()).find("kept.after") != std::string::npos);
  }
  REQUIRE(copy.subject() == "kept.after");
  REQUIRE(copy.window() == troupe::retention_window{0, 1, 4});  // nothing was appended
}

TEST_CASE("publish, subscribe and retain after shutdown are clear errors (runtime_stopped)",
          "[topic][shutdown]") {
  std::atomic<int> count{0};
  std::atomic<int> total{0};
  troupe::runtime rt(troupe::runtime_options{.workers = 1});
  auto sink = rt.spawn<member_sink>(&count, &total);
  auto kept = rt.retain<tick>("late.kept", 4);
  auto log = rt.spawn<offset_log>();
  rt.shutdown();
  using troupe::errc;
  REQUIRE(error_code_of([&] { (void)rt.subscribe<registered>("late.*", sink); }) ==
          errc::runtime_stopped);
  REQUIRE(error_code_of([&] {
            (void)rt.subscribe<tick>("late.kept", log, troupe::replay::oldest());
          }) == errc::runtime_stopped);
  REQUIRE(error_code_of([&] { (void)rt.retain<tick>("late.other", 4); }) == errc::runtime_stopped);
  REQUIRE(error_code_of([&] { (void)rt.publish("late.x", registered{}); }) ==
          errc::runtime_stopped);
  REQUIRE(error_code_of([&] { (void)kept.publish(tick{0}); }) == errc::runtime_stopped);
  REQUIRE(kept.window().next == 0);
  REQUIRE(rt.counters().published == 0);
  test::require_accounted(rt.counters());
}

TEST_CASE("subjects with control characters are rejected (invalid_subject)", "[topic][subject]") {
  using troupe::detail::split_subject;
  const std::string bad[] = {"a\vb",
                             "a\fb",
                             std::string("a\0b", 3),
                             "a\x01"
                             "b",
                             "a.\x1f",
                             "a\x7f"
                             "b",
                             "\t",
                             "a.b\n",
                             "a\rb"};
  troupe::runtime rt(troupe::runtime_options{.workers = 1});
  std::atomic<int> count{0};
  std::atomic<int> total{0};
  auto sink = rt.spawn<member_sink>(&count, &total);
  for (const std::string& s : bad) {
    INFO("byte " << static_cast<int>(static_cast<unsigned char>(s[s.size() == 1 ? 0 : 1])));
    REQUIRE(error_code_of([&] { split_subject(s, true); }) == troupe::errc::invalid_subject);
    REQUIRE(error_code_of([&] { (void)rt.subscribe<registered>(s, sink); }) ==
            troupe::errc::invalid_subject);
    REQUIRE(error_code_of([&] { (void)rt.publish(s, registered{}); }) ==
            troupe::errc::invalid_subject);
  }
  // Bytes from 0x80 up (UTF-8) stay valid.
  REQUIRE(split_subject("caf\xc3\xa9.menu", false).size() == 2);
}

TEST_CASE("a subject of 300,000 tokens neither overflows the stack nor is accepted",
          "[topic][subject][deep]") {
  // Before the limits and the iterative walks, subscribing and unsubscribing this pattern, then
  // destroying the runtime, overflowed the stack (SIGSEGV), as did publishing on it.
  const std::string deep = deep_subject(300'000);
  const std::string wide = deep_subject(300'000, ">");
  std::atomic<int> count{0};
  std::atomic<int> total{0};
  {
    troupe::runtime rt(troupe::runtime_options{.workers = 1});
    auto sink = rt.spawn<member_sink>(&count, &total);
    for (const std::string* s : {&deep, &wide}) {
      try {
        (void)rt.subscribe<registered>(*s, sink);
        FAIL("a pattern of 300,000 tokens was accepted");
      } catch (const troupe::error& e) {
        REQUIRE(e.code() == troupe::errc::invalid_subject);
        REQUIRE(std::string(e.what()).find(std::to_string(troupe::max_subject_bytes)) !=
                std::string::npos);
        REQUIRE(std::string(e.what()).size() < 400);  // the subject is not quoted in full
      }
    }
    REQUIRE(error_code_of([&] { (void)rt.publish(deep, registered{}); }) ==
            troupe::errc::invalid_subject);
  }
  // The registry itself copes with any depth: matching, caching, pruning and teardown are
  // iterative (a registry without limits, as only tests build one).
  troupe::detail::topic_registry registry(troupe::detail::subject_limits::unlimited());
  static const char tag = 0;
  auto exact = std::make_shared<troupe::detail::subscriber_entry>(nullptr, &tag, nullptr, "", deep);
  auto rest = std::make_shared<troupe::detail::subscriber_entry>(nullptr, &tag, nullptr, "", wide);
  registry.add(exact);
  registry.add(rest);
  REQUIRE(registry.node_count() == 300'001);  // they share all but their last token
  REQUIRE(registry.route_for(deep, &tag)->plain.size() == 2);
  REQUIRE(registry.cached_subjects() == 1);
  registry.remove(exact);
  REQUIRE(registry.cached_subjects() == 0);   // its route held it: dropped, the nodes freed
  REQUIRE(registry.node_count() == 300'000);  // its last node went; '>' needs the rest
  REQUIRE(registry.route_for(deep, &tag)->plain.size() == 1);
  // The registry is destroyed with a deep trie and a deep cached subject in it.
}

TEST_CASE("subject limits: bytes and tokens, with the limit in the message", "[topic][subject]") {
  using troupe::detail::split_subject;
  const std::string at_tokens = deep_subject(troupe::max_subject_tokens);
  REQUIRE(split_subject(at_tokens, false).size() == troupe::max_subject_tokens);
  try {
    split_subject(at_tokens + ".a", false);
    FAIL("a subject over the token limit was accepted");
  } catch (const troupe::error& e) {
    REQUIRE(e.code() == troupe::errc::invalid_subject);
    REQUIRE(std::string(e.what()).find("limit of " + std::to_string(troupe::max_subject_tokens) +
                                       " tokens") != std::string::npos);
  }
  const std::string at_bytes(troupe::max_subject_bytes, 'x');
  REQUIRE(split_subject(at_bytes, false).size() == 1);
  try {
    split_subject(at_bytes + "x", true);
    FAIL("a subject over the byte limit was accepted");
  } catch (const troupe::error& e) {
    REQUIRE(e.code() == troupe::errc::invalid_subject);
    REQUIRE(std::string(e.what()).find("limit of " + std::to_string(troupe::max_subject_bytes) +
                                       " bytes") != std::string::npos);
  }
  troupe::runtime rt(troupe::runtime_options{.workers = 1});
  REQUIRE(error_code_of([&] { (void)rt.retain<tick>(at_tokens + ".a", 4); }) ==
          troupe::errc::invalid_subject);
  REQUIRE(rt.publish(at_tokens, registered{}) == 0);  // at the limit: fine
}

namespace {
troupe::detail::topic_registry& registry_of(const troupe::address& a) {
  return troupe::detail::access::cell_of(a)->core()->topics();
}
}  // namespace

TEST_CASE("unsubscribing frees the trie nodes: 20,000 distinct patterns leave none behind",
          "[topic][memory]") {
  std::atomic<int> count{0};
  std::atomic<int> total{0};
  troupe::runtime rt(troupe::runtime_options{.workers = 1});
  auto sink = rt.spawn<member_sink>(&count, &total);
  auto& registry = registry_of(sink);
  auto keep = rt.subscribe<registered>("keep.this.one", sink);
  auto keep_wide = rt.subscribe<registered>("keep.*.>", sink);
  const std::size_t baseline = registry.node_count();
  REQUIRE(baseline == 5);  // keep, this, one, *, >
  constexpr int patterns = 20'000;
  std::vector<troupe::subscription> subs;
  subs.reserve(patterns);
  for (int i = 0; i < patterns; ++i) {
    const std::string n = std::to_string(i);
    const std::string pattern = i % 3 == 0   ? "load." + n + ".x"
                                : i % 3 == 1 ? "load.*." + n + ".>"
                                             : "keep." + n + ".*";
    subs.push_back(rt.subscribe<registered>(pattern, sink));
  }
  REQUIRE(registry.node_count() > baseline + patterns);
  REQUIRE(rt.publish("keep.this.one", registered{}) == 2);
  // Out of order, the shared prefixes going last for some and first for others.
  for (int i = patterns - 1; i >= 0; i -= 2) subs[static_cast<std::size_t>(i)].unsubscribe();
  for (int i = 0; i < patterns; i += 2) subs[static_cast<std::size_t>(i)].unsubscribe();
  REQUIRE(registry.node_count() == baseline);
  REQUIRE(rt.publish("keep.this.one", registered{}) == 2);
  REQUIRE(rt.publish("keep.7.x", registered{}) == 1);
  keep.unsubscribe();
  keep_wide.unsubscribe();
  REQUIRE(registry.node_count() == 0);
}

TEST_CASE("unsubscribing in any order keeps the others, and groups keep their turns",
          "[topic][group]") {
  // Unsubscribe swaps the last subscriber of a pattern into the leaver's place (no scan): the
  // remaining plain subscribers and group members must be exactly the ones still subscribed.
  constexpr int plain = 200;
  constexpr int members = 6;
  std::atomic<int> counts[plain + members] = {};
  std::atomic<int> total{0};
  test::observer obs;
  troupe::runtime rt(obs.options());
  std::vector<troupe::subscription> subs;
  for (int i = 0; i < plain + members; ++i) {
    auto sink = rt.spawn<member_sink>(&counts[i], &total);
    subs.push_back(i < plain ? rt.subscribe<registered>("order.>", sink)
                             : rt.subscribe<registered>("order.>", sink, troupe::group{"g"}));
  }
  // Leave: every third plain subscriber, in a scrambled order, and members 0 and 3.
  std::vector<int> leaving;
  for (int i = 0; i < plain; i += 3) leaving.push_back(i);
  for (std::size_t i = 0; i < leaving.size(); ++i) {
    std::swap(leaving[i], leaving[(i * 7919) % leaving.size()]);
  }
  leaving.push_back(plain + 0);
  leaving.push_back(plain + 3);
  for (int i : leaving) subs[static_cast<std::size_t>(i)].unsubscribe();
  const int staying_plain = plain - (plain + 2) / 3;
  constexpr int staying_members = members - 2;
  constexpr int events = 40 * staying_members;
  for (int e = 0; e < events; ++e) {
    REQUIRE(rt.publish("order.created", registered{}) == staying_plain + 1);
  }
  wait_total(total, events * (staying_plain + 1));
  for (int i = 0; i < plain; ++i) {
    INFO("plain subscriber " << i);
    REQUIRE(counts[i].load() == (i % 3 == 0 ? 0 : events));
  }
  for (int m = 0; m < members; ++m) {
    INFO("member " << m);
    const bool left = m == 0 || m == 3;
    REQUIRE(counts[plain + m].load() == (left ? 0 : events / staying_members));  // in turn
  }
  rt.shutdown();
  test::require_accounted(rt.counters());
}

TEST_CASE("a subscribe or unsubscribe drops only the cached routes its pattern matches",
          "[topic][route]") {
  std::atomic<int> count{0};
  std::atomic<int> total{0};
  troupe::runtime rt(troupe::runtime_options{.workers = 1});
  auto sink = rt.spawn<member_sink>(&count, &total);
  auto& registry = registry_of(sink);
  auto hot = rt.subscribe<registered>("hot.path", sink);
  for (const char* s : {"hot.path", "cold.a", "cold.b.c", "other.x"}) {
    (void)rt.publish(s, registered{});
  }
  const std::size_t cached = registry.cached_subjects();
  REQUIRE(cached >= 4);
  {
    auto unrelated = rt.subscribe<registered>("cold.*", sink);  // matches cold.a only
    REQUIRE(registry.cached_subjects() == cached - 1);
    REQUIRE(rt.publish("cold.a", registered{}) == 1);
    REQUIRE(rt.publish("cold.b.c", registered{}) == 0);
    REQUIRE(rt.publish("hot.path", registered{}) == 1);
    REQUIRE(registry.cached_subjects() == cached);
  }  // unsubscribed: cold.a dropped again
  REQUIRE(registry.cached_subjects() == cached - 1);
  REQUIRE(rt.publish("cold.a", registered{}) == 0);
  {
    auto tap = rt.subscribe<registered>("cold.>", sink);  // cold.a and cold.b.c
    REQUIRE(registry.cached_subjects() == cached - 2);
    REQUIRE(rt.publish("cold.b.c", registered{}) == 1);
  }
  auto everything = rt.subscribe<registered>(">", sink);  // every route
  REQUIRE(registry.cached_subjects() == 0);
  REQUIRE(rt.publish("hot.path", registered{}) == 2);
  auto kept = rt.retain<tick>("other.x", 4);  // retention changes that subject's route only
  REQUIRE(registry.cached_subjects() == 1);
  (void)rt.publish("other.x", tick{0});
  REQUIRE(registry.cached_subjects() == 2);
  REQUIRE(kept.window().next == 1);
}

namespace {

// NATS matching, naively: what the trie and the route cache must agree with.
bool naive_match(const std::vector<std::string>& pattern, const std::vector<std::string>& subject) {
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] == ">") return subject.size() > i;
    if (i >= subject.size()) return false;
    if (pattern[i] != "*" && pattern[i] != subject[i]) return false;
  }
  return pattern.size() == subject.size();
}

std::string join(const std::vector<std::string>& tokens) {
  std::string s;
  for (const auto& t : tokens) s += (s.empty() ? "" : ".") + t;
  return s;
}

}  // namespace

TEST_CASE(
    "routes always agree with naive matching under random subscribes, unsubscribes and "
    "publishes",
    "[topic][route]") {
  // Seeded: the cache drops only the routes a change matches, so every route served from it
  // must be exactly what matching from scratch gives.
  std::mt19937 rng(12);
  const char* alphabet[] = {"a", "b", "c"};
  auto random_tokens = [&](bool pattern) {
    std::vector<std::string> t(1 + rng() % 3);
    for (std::size_t i = 0; i < t.size(); ++i) {
      const unsigned r = rng() % (pattern ? 5 : 3);
      t[i] = r < 3 ? alphabet[r] : (r == 3 || i + 1 < t.size()) ? "*" : ">";
    }
    return t;
  };
  troupe::detail::topic_registry registry;
  static const char tag = 0;
  struct live {
    std::vector<std::string> pattern;
    std::shared_ptr<troupe::detail::subscriber_entry> entry;
  };
  std::vector<live> subs;
  for (int op = 0; op < 3'000; ++op) {
    const unsigned kind = rng() % 10;
    if (kind < 4) {
      auto p = random_tokens(true);
      auto e =
          std::make_shared<troupe::detail::subscriber_entry>(nullptr, &tag, nullptr, "", join(p));
      registry.add(e);
      subs.push_back({std::move(p), std::move(e)});
    } else if (kind < 7 && !subs.empty()) {
      const std::size_t i = rng() % subs.size();
      registry.remove(subs[i].entry);
      subs.erase(subs.begin() + static_cast<std::ptrdiff_t>(i));
    } else {
      const auto subject = random_tokens(false);
      std::multiset<const troupe::detail::subscriber_entry*> expected;
      for (const auto& s : subs) {
        if (naive_match(s.pattern, subject)) expected.insert(s.entry.get());
      }
      const auto r = registry.route_for(join(subject), &tag);
      std::multiset<const troupe::detail::subscriber_entry*> got;
      for (const auto& e : r->plain) got.insert(e.get());
      INFO("op " << op << ": " << join(subject));
      REQUIRE(got == expected);
    }
  }
  for (const auto& s : subs) registry.remove(s.entry);
  REQUIRE(registry.node_count() == 0);
  for (const char* x : alphabet) {
    for (const char* y : alphabet) {
      REQUIRE(registry.route_for(std::string(x) + "." + y, &tag)->empty());
      REQUIRE(registry.route_for(x, &tag)->empty());
    }
  }
}
