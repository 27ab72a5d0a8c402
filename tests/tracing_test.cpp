// Tracing hooks (runtime_options::trace): every message is seen sent, started and finished, with
// its id and the id of the message whose handler sent it; json_lines_trace writes spans.
#include <algorithm>
#include <array>
#include <map>
#include <memory>
#include <mutex>
#include <regex>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

using namespace std::chrono_literals;

namespace {

struct recorder final : troupe::trace_hook {
  std::mutex mutex;
  std::vector<troupe::trace_event> events;
  void on_event(const troupe::trace_event& e) noexcept override {
    std::lock_guard lock(mutex);
    events.push_back(e);
  }
  std::vector<troupe::trace_event> copy() {
    std::lock_guard lock(mutex);
    return events;
  }
};

struct go {};
struct hop {};
struct query {};
struct done {};
struct fail_now {};

struct sink {
  void on(done) {}
};

struct answerer {
  int on(query) { return 42; }
};

// After an ask (a suspension), sends `done`: its causation is still this handler's message.
struct asker {
  troupe::ref<answerer> a;
  troupe::ref<sink> s;
  troupe::task<void> on(hop) {
    auto r = a.ask(query{});
    const int v = co_await std::move(r);
    if (v == 42) s.send(done{});
  }
};

struct middle {
  troupe::ref<asker> next;
  void on(hop) { next.send(hop{}); }
};

struct first {
  troupe::ref<middle> next;
  void on(go) { next.send(hop{}); }
  void on(fail_now) { throw std::runtime_error("traced failure"); }
};

std::map<std::uint64_t, std::vector<troupe::trace_event>> by_message(
    const std::vector<troupe::trace_event>& events) {
  std::map<std::uint64_t, std::vector<troupe::trace_event>> r;
  for (const auto& e : events) r[e.message_id].push_back(e);
  return r;
}

}  // namespace

TEST_CASE("the trace hook sees every message with correct causation chains") {
  auto hook = std::make_shared<recorder>();
  troupe::runtime_options o;
  o.workers = 2;
  o.trace = hook;
  troupe::runtime rt(o);
  auto s = rt.spawn<sink>();
  auto a = rt.spawn<answerer>();
  auto k = rt.spawn<asker>(a, s);
  auto m = rt.spawn<middle>(k);
  auto f = rt.spawn<first>(m);
  constexpr int chains = 20;
  for (int i = 0; i < chains; ++i) f.send(go{});
  rt.shutdown();
  REQUIRE_FALSE(rt.metrics().enabled);  // tracing alone does not turn metrics on

  const auto events = hook->copy();
  const auto messages = by_message(events);
  // go, hop (to middle), hop (to asker), query (ask), done: five messages per chain.
  REQUIRE(messages.size() == 5 * chains);
  std::map<std::string, int> kinds;
  for (const auto& [id, evs] : messages) {
    REQUIRE(id != 0);
    REQUIRE(evs.size() == 3);
    // In order of occurrence: send, then start, then end, each in the same message's record.
    int sends = 0, starts = 0, ends = 0;
    for (const auto& e : evs) {
      sends += e.point == troupe::trace_point::send;
      starts += e.point == troupe::trace_point::handle_start;
      ends += e.point == troupe::trace_point::handle_end;
      REQUIRE(e.causation_id == evs.front().causation_id);
      REQUIRE(e.trace == evs.front().trace);
      REQUIRE(static_cast<bool>(e.trace));
      REQUIRE_FALSE(e.failed);
    }
    REQUIRE((sends == 1 && starts == 1 && ends == 1));
    const auto end = std::find_if(evs.begin(), evs.end(), [](const troupe::trace_event& e) {
      return e.point == troupe::trace_point::handle_end;
    });
    REQUIRE(end->queued <= end->started);
    REQUIRE(end->started <= end->time);
    ++kinds[std::string(evs.front().message_type)];
  }
  // Walk each chain back from its done: done <- hop (asker) <- hop (middle) <- go (root).
  int walked = 0;
  for (const auto& [id, evs] : messages) {
    const auto& e = evs.front();
    if (e.message_type.find("done") == std::string_view::npos) continue;
    std::vector<std::string> chain{std::string(e.message_type)};
    std::uint64_t cause = e.causation_id;
    std::uint64_t root = id;
    while (cause != 0) {
      REQUIRE(messages.count(cause) == 1);
      const auto& c = messages.at(cause).front();
      chain.push_back(std::string(c.actor_type));
      // One trace per chain, also after the asker resumed from its co_await.
      REQUIRE(c.trace == e.trace);
      root = cause;
      cause = c.causation_id;
    }
    REQUIRE(e.trace == troupe::root_trace_of(root));  // the trace go started
    INFO(chain.size());
    REQUIRE(chain.size() == 4);
    REQUIRE(chain[1].find("asker") != std::string::npos);
    REQUIRE(chain[2].find("middle") != std::string::npos);
    REQUIRE(chain[3].find("first") != std::string::npos);
    ++walked;
  }
  REQUIRE(walked == chains);
  // The ask was sent by the asker's hop handler.
  for (const auto& [id, evs] : messages) {
    const auto& e = evs.front();
    if (e.message_type.find("query") == std::string_view::npos) continue;
    REQUIRE(messages.at(e.causation_id).front().actor_type.find("asker") != std::string_view::npos);
  }
}

TEST_CASE("a failing handler's end is traced as failed") {
  auto hook = std::make_shared<recorder>();
  troupe::runtime_options o;
  o.workers = 1;
  o.trace = hook;
  o.on_failure = [](const troupe::address&, std::string_view) {};
  troupe::runtime rt(o);
  auto f = rt.spawn<first>(troupe::ref<middle>{});
  f.send(fail_now{});
  rt.shutdown();
  const auto events = hook->copy();
  REQUIRE(std::count_if(events.begin(), events.end(), [](const troupe::trace_event& e) {
            return e.point == troupe::trace_point::handle_end && e.failed;
          }) == 1);
}

TEST_CASE("json_lines_trace writes one span per handled message") {
  std::ostringstream out;
  {
    troupe::runtime_options o;
    o.workers = 2;
    o.metrics = true;  // both on at once
    o.trace = std::make_shared<troupe::json_lines_trace>(out);
    troupe::runtime rt(o);
    auto s = rt.spawn<sink>();
    auto a = rt.spawn<answerer>();
    auto k = rt.spawn<asker>(a, s);
    auto m = rt.spawn<middle>(k);
    auto f = rt.spawn<first>(m);
    for (int i = 0; i < 10; ++i) f.send(go{});
    rt.shutdown();
    REQUIRE(rt.metrics().enabled);
  }
  const std::regex span(
      R"(\{"id":[1-9][0-9]*,"cause":[0-9]+,"actor":"[^"]+#[0-9]+","message":"[^"]+","queued_ns":-?[0-9]+,"start_ns":-?[0-9]+,"end_ns":-?[0-9]+,"ok":(true|false)\})");
  std::istringstream lines(out.str());
  std::string line;
  int n = 0, roots = 0;
  while (std::getline(lines, line)) {
    INFO(line);
    REQUIRE(std::regex_match(line, span));
    roots += line.find("\"cause\":0,") != std::string::npos ? 1 : 0;
    ++n;
  }
  REQUIRE(n == 50);
  REQUIRE(roots == 10);
}

namespace {
struct poke {
  int n;
};
struct crash {};
struct chaotic {
  int on(poke p) { return p.n; }
  void on(crash) { throw std::runtime_error("chaos"); }
};
}  // namespace

TEST_CASE("tracing and metrics stay consistent under failures, restarts, stops and timeouts") {
  auto hook = std::make_shared<recorder>();
  troupe::runtime_options o;
  o.workers = 2;
  o.metrics = true;
  o.trace = hook;
  o.on_failure = [](const troupe::address&, std::string_view) {};
  o.on_dead_letter = nullptr;
  troupe::runtime rt(o);
  auto sup =
      rt.spawn<troupe::supervisor>(troupe::one_for_one{.max_restarts = 1'000'000, .within = 1s});
  std::vector<troupe::ref<chaotic>> supervised, plain;
  for (int i = 0; i < 4; ++i) supervised.push_back(troupe::start_child<chaotic>(sup, {}));
  for (int i = 0; i < 4; ++i) plain.push_back(rt.spawn<chaotic>());
  std::vector<std::thread> threads;
  for (int t = 0; t < 3; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 300; ++i) {
        auto& target = (i + t) % 2 == 0 ? supervised[static_cast<std::size_t>(i % 4)]
                                        : plain[static_cast<std::size_t>(i % 4)];
        switch ((i * 7 + t) % 5) {
          case 0:
            target.send(crash{});
            break;
          case 1:
            try {
              static_cast<void>(target.ask(poke{i}, 1ms).get());
            } catch (const troupe::error&) {
            }
            break;
          default:
            target.send(poke{i});
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  const auto live = rt.metrics();  // a snapshot while some actors restart
  static_cast<void>(troupe::to_json(live));
  rt.shutdown();
  test::require_accounted(rt.counters());

  std::map<std::uint64_t, std::array<int, 3>> points;
  for (const auto& e : hook->copy()) ++points[e.message_id][static_cast<std::size_t>(e.point)];
  for (const auto& [id, n] : points) {
    INFO("message " << id);
    REQUIRE(n[0] == 1);     // sent once
    REQUIRE(n[1] <= 1);     // started at most once (dead-lettered ones never start)
    REQUIRE(n[2] == n[1]);  // every start has its end (no task handlers here)
  }
}
