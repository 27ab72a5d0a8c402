// Runtime metrics (runtime_options::metrics): counts against known traffic, latency bounds on a
// handler that sleeps, mailbox depth, topic deliveries, and the three export formats.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "support.hpp"

using namespace std::chrono_literals;

namespace {

struct ping {
  int n;
};
struct boom {};
struct nap {};
struct hold {};

struct counter {
  int count = 0;
  void on(ping) { ++count; }
  int on(nap) {
    std::this_thread::sleep_for(2ms);
    return count;
  }
};

struct flaky {
  void on(boom) { throw std::runtime_error("boom"); }
  int on(ping p) { return p.n; }
};

// Blocks its worker until released: messages pile up behind it.
struct gate {
  std::atomic<bool>* open;
  std::atomic<bool>* entered;
  void on(hold) {
    entered->store(true);
    while (!open->load()) std::this_thread::yield();
  }
  void on(ping) {}
  int on(nap) { return 0; }
};

struct event {
  int n;
};
struct listener {
  void on(const event&) {}
};

struct small_box {
  static constexpr troupe::mailbox_options mailbox{.capacity = 1,
                                                   .overflow = troupe::overflow::drop_newest};
  std::atomic<bool>* open;
  std::atomic<bool>* entered;
  void on(hold) {
    entered->store(true);
    while (!open->load()) std::this_thread::yield();
  }
  void on(ping) {}
};

troupe::runtime_options metrics_options(std::size_t workers = 2) {
  troupe::runtime_options o;
  o.workers = workers;
  o.metrics = true;
  o.on_failure = [](const troupe::address&, std::string_view) {};
  return o;
}

const troupe::message_metrics* find(const troupe::metrics_snapshot& m, std::string_view actor,
                                    std::string_view message) {
  for (const auto& x : m.messages) {
    if (x.actor_type.find(actor) != std::string::npos &&
        x.message_type.find(message) != std::string::npos) {
      return &x;
    }
  }
  return nullptr;
}

// The reply of an ask is out before its handler's end is recorded, so right after the last
// reply the last handler may not be counted yet; every earlier one is (an actor's handlers run
// one after another).
void require_all_but_last(std::uint64_t actual, std::uint64_t expected) {
  INFO("actual " << actual << " expected " << expected << " (or one less)");
  REQUIRE(actual <= expected);
  REQUIRE(actual + 1 >= expected);
}

const troupe::actor_metrics* find_actor(const troupe::metrics_snapshot& m, std::uint64_t id) {
  for (const auto& a : m.actors) {
    if (a.id == id) return &a;
  }
  return nullptr;
}

// ---- a small JSON parser: enough to prove the export is well-formed and read values back ----

struct json;
using json_object = std::map<std::string, json>;
using json_array = std::vector<json>;
struct json {
  std::variant<std::nullptr_t, bool, double, std::string, json_array, json_object> value;
  const json& operator[](const std::string& key) const {
    return std::get<json_object>(value).at(key);
  }
  const json_array& array() const { return std::get<json_array>(value); }
  double number() const { return std::get<double>(value); }
  const std::string& string() const { return std::get<std::string>(value); }
};

class json_parser {
 public:
  explicit json_parser(const std::string& text) : s_(text) {}
  json parse() {
    json j = value();
    skip();
    if (i_ != s_.size()) throw std::runtime_error("trailing characters at " + std::to_string(i_));
    return j;
  }

 private:
  void skip() {
    while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\n' || s_[i_] == '\t' || s_[i_] == '\r'))
      ++i_;
  }
  char peek() {
    skip();
    if (i_ >= s_.size()) throw std::runtime_error("unexpected end");
    return s_[i_];
  }
  void expect(char c) {
    if (peek() != c)
      throw std::runtime_error(std::string("expected ") + c + " at " + std::to_string(i_));
    ++i_;
  }
  json value() {
    const char c = peek();
    if (c == '{') {
      ++i_;
      json_object o;
      if (peek() == '}') {
        ++i_;
        return {o};
      }
      for (;;) {
        std::string k = str();
        expect(':');
        o.emplace(std::move(k), value());
        if (peek() == ',') {
          ++i_;
          continue;
        }
        expect('}');
        return {o};
      }
    }
    if (c == '[') {
      ++i_;
      json_array a;
      if (peek() == ']') {
        ++i_;
        return {a};
      }
      for (;;) {
        a.push_back(value());
        if (peek() == ',') {
          ++i_;
          continue;
        }
        expect(']');
        return {a};
      }
    }
    if (c == '"') return {str()};
    if (s_.compare(i_, 4, "true") == 0) {
      i_ += 4;
      return {true};
    }
    if (s_.compare(i_, 5, "false") == 0) {
      i_ += 5;
      return {false};
    }
    if (s_.compare(i_, 4, "null") == 0) {
      i_ += 4;
      return {nullptr};
    }
    std::size_t used = 0;
    const double d = std::stod(s_.substr(i_), &used);
    if (used == 0) throw std::runtime_error("bad number");
    i_ += used;
    return {d};
  }
  std::string str() {
    expect('"');
    std::string out;
    while (i_ < s_.size() && s_[i_] != '"') {
      if (s_[i_] == '\\') {
        ++i_;
        if (i_ >= s_.size()) break;
        if (s_[i_] == 'u') {
          out += '?';
          i_ += 4;
        } else {
          out += s_[i_] == 'n' ? '\n' : s_[i_];
        }
      } else {
        if (static_cast<unsigned char>(s_[i_]) < 0x20) throw std::runtime_error("control char");
        out += s_[i_];
      }
      ++i_;
    }
    expect('"');
    return out;
  }
  const std::string& s_;
  std::size_t i_ = 0;
};

}  // namespace

TEST_CASE("metrics are off by default") {
  troupe::runtime rt(troupe::runtime_options{.workers = 1});
  auto c = rt.spawn<counter>();
  c.send(ping{1});
  REQUIRE(c.ask(nap{}).get() == 1);
  const auto m = rt.metrics();
  REQUIRE_FALSE(rt.metrics_enabled());
  REQUIRE_FALSE(m.enabled);
  REQUIRE(m.actors.empty());
  REQUIRE(m.messages.empty());
  REQUIRE(m.counters.handled >= 2);
  REQUIRE(troupe::to_text(m).find("metrics are off") != std::string::npos);
  REQUIRE_NOTHROW(json_parser(troupe::to_json(m)).parse());
}

TEST_CASE("metrics counts match known traffic") {
  troupe::runtime rt(metrics_options());
  auto c = rt.spawn<counter>();
  constexpr int n = 1000;
  for (int i = 0; i < n; ++i) c.send(ping{i});
  for (int i = 0; i < 10; ++i) REQUIRE(c.ask(nap{}).get() == n);
  const auto m = rt.metrics();
  REQUIRE(m.enabled);
  const auto* a = find_actor(m, c.id());
  REQUIRE(a != nullptr);
  require_all_but_last(a->handled, n + 10);
  REQUIRE(a->failed == 0);
  REQUIRE(a->mailbox_depth == 0);
  REQUIRE(a->mailbox_high_water >= 1);
  REQUIRE(a->mailbox_high_water <= n + 1);
  REQUIRE(a->name == a->type + "#" + std::to_string(c.id()));
  const auto* pings = find(m, "counter", "ping");
  REQUIRE(pings != nullptr);
  REQUIRE(pings->queue_wait.count() == n);
  REQUIRE(pings->service_time.count() == n);
  REQUIRE(pings->ask_round_trip.count() == 0);
  const auto* naps = find(m, "counter", "nap");
  REQUIRE(naps != nullptr);
  REQUIRE(naps->ask_round_trip.count() == 10);
  require_all_but_last(naps->service_time.count(), 10);
}

TEST_CASE("queue wait and service time bound a handler that sleeps") {
  std::atomic<bool> open{false}, entered{false};  // outlive the runtime: the gate reads them
  troupe::runtime rt(metrics_options(1));
  auto c = rt.spawn<counter>();
  // Five naps queued at once on one actor: each sleeps 2 ms, so the last waits >= 8 ms. The
  // only worker is held by a gate while they are queued, so none starts before all are in,
  // however the asking thread is scheduled.
  auto g = rt.spawn<gate>(&open, &entered);
  g.send(hold{});
  while (!entered.load()) std::this_thread::yield();
  std::vector<troupe::reply<int>> replies;
  for (int i = 0; i < 5; ++i) replies.push_back(c.ask(nap{}));
  open.store(true);
  for (auto& r : replies) static_cast<void>(r.get());
  const auto m = rt.metrics();
  const auto* naps = find(m, "counter", "nap");
  REQUIRE(naps != nullptr);
  require_all_but_last(naps->service_time.count(), 5);
  REQUIRE(naps->service_time.min() >= 2ms);
  REQUIRE(naps->service_time.max() < 10s);  // generous: a loaded machine
  REQUIRE(naps->queue_wait.max() >= 8ms);
  REQUIRE(naps->ask_round_trip.max() >= 10ms);
  REQUIRE(naps->ask_round_trip.min() >= 2ms);
  // Percentiles lie between min and max.
  REQUIRE(naps->queue_wait.percentile(50) <= naps->queue_wait.max());
}

TEST_CASE("mailbox depth and high-water mark follow a blocked actor") {
  std::atomic<bool> open{false}, entered{false};  // outlive the runtime: the gate reads them
  troupe::runtime rt(metrics_options(1));
  auto g = rt.spawn<gate>(&open, &entered);
  g.send(hold{});
  while (!entered.load()) std::this_thread::yield();
  for (int i = 0; i < 50; ++i) g.send(ping{i});
  auto m = rt.metrics();
  REQUIRE(find_actor(m, g.id())->mailbox_depth == 50);
  REQUIRE(find_actor(m, g.id())->mailbox_high_water == 50);
  open.store(true);
  g.ask(nap{}).get();
  m = rt.metrics();
  REQUIRE(find_actor(m, g.id())->mailbox_depth == 0);
  require_all_but_last(find_actor(m, g.id())->mailbox_high_water, 51);  // the nap may queue
  require_all_but_last(find_actor(m, g.id())->handled, 52);
}

TEST_CASE("failures, restarts and dead letters are counted per actor") {
  // Outlive the runtime: small_box's handler reads them until the runtime has stopped it.
  std::atomic<bool> open{false}, entered{false};
  troupe::runtime rt(metrics_options());
  auto sup = rt.spawn<troupe::supervisor>(troupe::one_for_one{.max_restarts = 10, .within = 60s});
  auto f = troupe::start_child<flaky>(sup, {.name = "f"});
  f.send(boom{});
  REQUIRE(f.ask(ping{7}).get() == 7);  // handled by the restarted instance
  f.send(boom{});
  REQUIRE(f.ask(ping{8}).get() == 8);
  auto m = rt.metrics();
  const auto* a = find_actor(m, f.id());
  REQUIRE(a != nullptr);
  REQUIRE(a->failed == 2);
  REQUIRE(a->restarts == 2);
  require_all_but_last(a->handled, 2);
  REQUIRE(a->dead_letters == 2);  // each failing message is dead-lettered (handler_failed)
  const auto* booms = find(m, "flaky", "boom");
  REQUIRE(booms != nullptr);
  REQUIRE(booms->failed == 2);
  REQUIRE(booms->service_time.count() == 2);

  // A full bounded mailbox dead-letters (drop_newest) to a live actor.
  auto b = rt.spawn<small_box>(&open, &entered);
  struct release_on_exit {
    std::atomic<bool>& flag;
    ~release_on_exit() { flag.store(true); }
  } release{open};
  b.send(hold{});
  while (!entered.load()) std::this_thread::yield();
  for (int i = 0; i < 5; ++i) b.send(ping{i});  // one fits, four are dropped
  m = rt.metrics();
  REQUIRE(find_actor(m, b.id())->dead_letters == 4);
  REQUIRE(find_actor(m, b.id())->mailbox_high_water == 1);
}

TEST_CASE("topic deliveries are counted per subject") {
  troupe::runtime rt(metrics_options());
  std::vector<troupe::subscription> subs;
  std::vector<troupe::ref<listener>> ls;
  for (int i = 0; i < 3; ++i) {
    ls.push_back(rt.spawn<listener>());
    subs.push_back(rt.subscribe<event>("prices.*", ls.back()));
  }
  for (int i = 0; i < 10; ++i) REQUIRE(rt.publish("prices.eur", event{i}) == 3);
  REQUIRE(rt.publish("other", event{0}) == 0);
  const auto m = rt.metrics();
  REQUIRE(m.topics.size() == 2);
  REQUIRE(m.topics[0].subject == "other");
  REQUIRE(m.topics[0].deliveries == 0);
  REQUIRE(m.topics[1].subject == "prices.eur");
  REQUIRE(m.topics[1].published == 10);
  REQUIRE(m.topics[1].deliveries == 30);
}

TEST_CASE("exports: text table, JSON that parses, Prometheus lines in the format") {
  troupe::runtime rt(metrics_options());
  auto c = rt.spawn<counter>();
  for (int i = 0; i < 100; ++i) c.send(ping{i});
  REQUIRE(c.ask(nap{}).get() == 100);
  auto l = rt.spawn<listener>();
  auto sub = rt.subscribe<event>("a.\"quoted\"", l);
  rt.publish("a.\"quoted\"", event{1});
  const auto m = rt.metrics();

  const std::string text = troupe::to_text(m);
  INFO(text);
  REQUIRE(text.find("queue_wait") != std::string::npos);
  REQUIRE(text.find("p99.99") != std::string::npos);
  REQUIRE(text.find(find_actor(m, c.id())->name) != std::string::npos);

  const std::string js = troupe::to_json(m);
  INFO(js);
  const json doc = json_parser(js).parse();
  REQUIRE(std::get<bool>(doc["enabled"].value));
  REQUIRE(doc["counters"]["sent"].number() == static_cast<double>(m.counters.sent));
  bool seen = false;
  for (const json& msg : doc["messages"].array()) {
    if (msg["message_type"].string().find("ping") == std::string::npos) continue;
    seen = true;
    REQUIRE(msg["queue_wait"]["count"].number() == 100);
    REQUIRE(msg["service_time"]["p50_ns"].number() <= msg["service_time"]["max_ns"].number());
  }
  REQUIRE(seen);
  REQUIRE(doc["topics"].array().at(0)["subject"].string() == "a.\"quoted\"");

  // Prometheus text format 0.0.4: comments (# HELP / # TYPE), or samples
  // name{label="value",...} number.
  const std::string prom = troupe::to_prometheus(m);
  INFO(prom);
  const std::regex help(R"(# HELP [a-zA-Z_:][a-zA-Z0-9_:]* .+)");
  const std::regex type(
      R"(# TYPE [a-zA-Z_:][a-zA-Z0-9_:]* (counter|gauge|summary|histogram|untyped))");
  const std::regex sample(
      R"([a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*"(,[a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*")*\})? [-+]?([0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?|NaN|[-+]Inf))");
  std::istringstream lines(prom);
  std::string line;
  std::size_t samples = 0;
  std::map<std::string, std::string> types;
  while (std::getline(lines, line)) {
    INFO(line);
    if (line.rfind("# HELP", 0) == 0) {
      REQUIRE(std::regex_match(line, help));
    } else if (line.rfind("# TYPE", 0) == 0) {
      REQUIRE(std::regex_match(line, type));
    } else {
      REQUIRE(std::regex_match(line, sample));
      ++samples;
    }
  }
  REQUIRE(samples > 20);
  REQUIRE(prom.find("troupe_queue_wait_seconds_count{actor_type=") != std::string::npos);
  REQUIRE(prom.find("# TYPE troupe_queue_wait_seconds histogram") != std::string::npos);
  REQUIRE(prom.find("troupe_queue_wait_seconds_bucket{actor_type=") != std::string::npos);
  REQUIRE(prom.find("le=\"+Inf\"} ") != std::string::npos);
  REQUIRE(prom.find("quantile=") == std::string::npos);
  REQUIRE(prom.find(R"(troupe_topic_deliveries_total{subject="a.\"quoted\""} 1)") !=
          std::string::npos);
}

TEST_CASE("metrics under concurrent senders stay consistent") {
  troupe::runtime rt(metrics_options());
  auto c = rt.spawn<counter>();
  std::vector<std::thread> senders;
  for (int t = 0; t < 3; ++t) {
    senders.emplace_back([&] {
      for (int i = 0; i < 2000; ++i) c.send(ping{i});
    });
  }
  // Snapshots while traffic flows must not crash or tear badly.
  for (int i = 0; i < 20; ++i) {
    const auto m = rt.metrics();
    static_cast<void>(troupe::to_prometheus(m));
  }
  for (auto& s : senders) s.join();
  REQUIRE(c.ask(nap{}).get() == 6000);
  const auto m = rt.metrics();
  REQUIRE(find(m, "counter", "ping")->queue_wait.count() == 6000);
  require_all_but_last(find_actor(m, c.id())->handled, 6001);
  REQUIRE(find_actor(m, c.id())->mailbox_depth == 0);
  rt.shutdown();
  test::require_accounted(rt.metrics().counters);
}

TEST_CASE("ask round trips are recorded for timed-out asks too") {
  troupe::runtime rt(metrics_options());
  auto c = rt.spawn<counter>();
  // Each nap sleeps 2 ms; with a 1 us timeout most asks time out on the timer thread, some
  // possibly before their request is even queued.
  int timed_out = 0;
  for (int i = 0; i < 50; ++i) {
    try {
      static_cast<void>(c.ask(nap{}, 1us).get());
    } catch (const troupe::error& e) {
      REQUIRE(e.code() == troupe::errc::timeout);
      ++timed_out;
    }
  }
  REQUIRE(timed_out > 0);
  REQUIRE(c.ask(nap{}).get() == 0);
  const auto m = rt.metrics();
  const auto* naps = find(m, "counter", "nap");
  REQUIRE(naps != nullptr);
  REQUIRE(naps->ask_round_trip.count() >= 1);
  REQUIRE(naps->ask_round_trip.count() <= 51);
  rt.shutdown();
}

// A hand-made snapshot with known values: every cumulative bucket count, +Inf, _sum and _count.
TEST_CASE("latencies are exported to Prometheus as cumulative histograms") {
  troupe::metrics_snapshot m;
  m.enabled = true;
  troupe::message_metrics msg;
  msg.actor_type = "worker";
  msg.message_type = "job";
  troupe::latency_histogram& h = msg.service_time;
  h.record_n(90, 10);            // exact below 128 ns: le=1e-07
  h.record_n(300, 5);            // le=5e-07
  h.record(999);                 // bucket [992, 999]: le=1e-06
  h.record(1'000);               // bucket [1000, 1007] straddles 1 us: counted from le=2.5e-06
  h.record_n(3'000'000'000, 2);  // le=5
  h.record(20'000'000'000);      // above the last bound (10 s): only +Inf
  m.messages.push_back(msg);
  const std::string prom = troupe::to_prometheus(m);
  INFO(prom);

  std::map<std::string, std::uint64_t> buckets;  // le -> cumulative count
  std::vector<std::string> order;
  const std::string prefix =
      R"(troupe_service_time_seconds_bucket{actor_type="worker",message_type="job",le=")";
  std::istringstream lines(prom);
  std::string line;
  std::string sum_line;
  std::string count_line;
  while (std::getline(lines, line)) {
    if (line.rfind(prefix, 0) == 0) {
      const auto close = line.find("\"} ", prefix.size());
      REQUIRE(close != std::string::npos);
      const std::string le = line.substr(prefix.size(), close - prefix.size());
      buckets[le] = std::stoull(line.substr(close + 3));
      order.push_back(le);
    } else if (line.rfind("troupe_service_time_seconds_sum{", 0) == 0) {
      sum_line = line;
    } else if (line.rfind("troupe_service_time_seconds_count{", 0) == 0) {
      count_line = line;
    }
  }
  REQUIRE(order.size() == std::size(troupe::prometheus_bucket_bounds_ns) + 1);
  REQUIRE(order.back() == "+Inf");
  // Ascending bounds, non-decreasing counts.
  for (std::size_t i = 1; i + 1 < order.size(); ++i) {
    REQUIRE(std::stod(order[i - 1]) < std::stod(order[i]));
    REQUIRE(buckets[order[i - 1]] <= buckets[order[i]]);
  }
  REQUIRE(buckets["1e-07"] == 10);
  REQUIRE(buckets["2.5e-07"] == 10);
  REQUIRE(buckets["5e-07"] == 15);
  REQUIRE(buckets["1e-06"] == 16);
  REQUIRE(buckets["2.5e-06"] == 17);
  REQUIRE(buckets["2.5"] == 17);
  REQUIRE(buckets["5"] == 19);
  REQUIRE(buckets["10"] == 19);
  REQUIRE(buckets["+Inf"] == 20);
  REQUIRE(count_line ==
          R"(troupe_service_time_seconds_count{actor_type="worker",message_type="job"} 20)");
  const double sum = std::stod(sum_line.substr(sum_line.rfind(' ') + 1));
  REQUIRE(sum == Approx((900.0 + 1500.0 + 999.0 + 1000.0 + 6e9 + 20e9) / 1e9).epsilon(1e-8));
  // Empty histograms (queue wait, ask round trip here) export no series.
  REQUIRE(prom.find("troupe_queue_wait_seconds_bucket") == std::string::npos);
  REQUIRE(prom.find("# TYPE troupe_service_time_seconds histogram") != std::string::npos);
}
