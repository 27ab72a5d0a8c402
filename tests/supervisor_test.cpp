// Tests of troupe::supervisor (include/troupe/supervisor.hpp): strategies, restart types,
// intensity and escalation, backoff, refs and mailboxes across restarts, hooks, and a chaos
// run that checks every message is accounted for.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <future>
#include <map>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support.hpp"

using namespace std::chrono_literals;

namespace {

// Records what happens to children, and lets the test wait for a number of events.
struct journal {
  std::mutex mutex;
  std::condition_variable changed;
  std::map<std::string, int> constructions;
  std::vector<std::string> log;
  std::vector<std::chrono::steady_clock::time_point> starts;
  std::vector<troupe::supervision_event> events;
  std::vector<std::string> root_failures;

  void record(const std::string& line) {
    std::lock_guard lock(mutex);
    log.push_back(line);
    changed.notify_all();
  }
  void constructed(const std::string& name) {
    std::lock_guard lock(mutex);
    ++constructions[name];
    starts.push_back(std::chrono::steady_clock::now());
    changed.notify_all();
  }
  int count(troupe::supervision_event::kind k) {
    int n = 0;
    for (const auto& e : events) n += e.what == k ? 1 : 0;
    return n;
  }
  // Waits (no timeout needed: ctest's limit catches a hang) until pred holds.
  template <class Pred>
  void wait_for(Pred pred) {
    std::unique_lock lock(mutex);
    changed.wait(lock, [&] { return pred(); });
  }

  troupe::runtime_options options(std::size_t workers = 2) {
    troupe::runtime_options o;
    o.workers = workers;
    o.on_supervision = [this](const troupe::supervision_event& e) {
      std::lock_guard lock(mutex);
      events.push_back(e);
      changed.notify_all();
    };
    o.on_failure = [this](const troupe::address& who, std::string_view what) {
      std::lock_guard lock(mutex);
      if (who.type_name().find("supervisor") != std::string_view::npos) {
        root_failures.emplace_back(what);
      }
      changed.notify_all();
    };
    return o;
  }
};

struct boom {};
struct quit {};
struct generation {};
struct item {
  int n;
};
struct items {};

class member {
 public:
  member(std::string name, journal* j) : name_(std::move(name)), journal_(j) {
    journal_->constructed(name_);
    std::lock_guard lock(journal_->mutex);
    generation_ = journal_->constructions[name_];
  }
  void on_start() { journal_->record(name_ + ":start"); }
  void on_stop() { journal_->record(name_ + ":stop"); }
  void on_failure(const std::exception_ptr&) { journal_->record(name_ + ":failure"); }
  void on(boom) { throw std::runtime_error(name_ + " exploded"); }
  int on(generation) const { return generation_; }
  void on(item i) {
    if (i.n < 0) throw std::runtime_error("negative item");
    seen_.push_back(i.n);
  }
  std::vector<int> on(items) const { return seen_; }

 private:
  std::string name_;
  journal* journal_;
  int generation_ = 0;
  std::vector<int> seen_;
};

class quitter {
 public:
  quitter(troupe::context& ctx, std::string name, journal* j) : ctx_(ctx), name_(std::move(name)) {
    j->constructed(name_);
  }
  void on(quit) { ctx_.stop(); }
  void on(boom) { throw std::runtime_error("quitter exploded"); }
  int on(generation) const { return 1; }

 private:
  troupe::context& ctx_;
  std::string name_;
};

template <class Strategy>
std::map<std::string, int> fail_in_position(int position) {
  journal j;
  troupe::runtime rt(j.options());
  auto sup = rt.spawn<troupe::supervisor>(Strategy{.max_restarts = 10, .within = 60s});
  std::vector<troupe::ref<member>> kids;
  for (const char* name : {"a", "b", "c"}) {
    kids.push_back(troupe::start_child<member>(sup, {.name = name}, std::string(name), &j));
  }
  const int expected_restarts = std::is_same_v<Strategy, troupe::one_for_one>   ? 1
                                : std::is_same_v<Strategy, troupe::one_for_all> ? 3
                                                                                : 3 - position;
  kids[static_cast<std::size_t>(position)].send(boom{});
  j.wait_for([&] {
    int n = 0;
    for (const auto& e : j.events) n += e.what == troupe::supervision_event::kind::restarted;
    return n == expected_restarts;
  });
  std::map<std::string, int> generations;
  for (std::size_t i = 0; i < kids.size(); ++i) {
    generations[std::string(1, static_cast<char>('a' + i))] = kids[i].ask(generation{}).get();
  }
  return generations;
}

}  // namespace

TEST_CASE("one_for_one restarts only the failed child", "[supervisor][strategy]") {
  REQUIRE(fail_in_position<troupe::one_for_one>(0) ==
          std::map<std::string, int>{{"a", 2}, {"b", 1}, {"c", 1}});
  REQUIRE(fail_in_position<troupe::one_for_one>(1) ==
          std::map<std::string, int>{{"a", 1}, {"b", 2}, {"c", 1}});
  REQUIRE(fail_in_position<troupe::one_for_one>(2) ==
          std::map<std::string, int>{{"a", 1}, {"b", 1}, {"c", 2}});
}

TEST_CASE("one_for_all restarts every child", "[supervisor][strategy]") {
  for (int p = 0; p < 3; ++p) {
    REQUIRE(fail_in_position<troupe::one_for_all>(p) ==
            std::map<std::string, int>{{"a", 2}, {"b", 2}, {"c", 2}});
  }
}

TEST_CASE("rest_for_one restarts the failed child and those started after it",
          "[supervisor][strategy]") {
  REQUIRE(fail_in_position<troupe::rest_for_one>(0) ==
          std::map<std::string, int>{{"a", 2}, {"b", 2}, {"c", 2}});
  REQUIRE(fail_in_position<troupe::rest_for_one>(1) ==
          std::map<std::string, int>{{"a", 1}, {"b", 2}, {"c", 2}});
  REQUIRE(fail_in_position<troupe::rest_for_one>(2) ==
          std::map<std::string, int>{{"a", 1}, {"b", 1}, {"c", 2}});
}

TEST_CASE("restart types decide after a normal stop and after a failure",
          "[supervisor][restart_type]") {
  journal j;
  troupe::runtime_options o = j.options();
  o.on_failure = [](const troupe::address&, std::string_view) {};
  troupe::runtime rt(o);
  auto sup = rt.spawn<troupe::supervisor>(troupe::one_for_one{.max_restarts = 10, .within = 60s});
  using troupe::restart_type;
  auto constructions = [&j](const std::string& name) {
    std::lock_guard lock(j.mutex);
    return j.constructions[name];
  };
  auto stopped_for_good = [](const troupe::ref<quitter>& q) {
    try {
      static_cast<void>(q.ask(generation{}).get());
      return false;
    } catch (const troupe::error& e) {
      return e.code() == troupe::errc::actor_stopped;
    }
  };

  SECTION("permanent: restarted after a normal stop and after a failure") {
    auto q = troupe::start_child<quitter>(sup, {.name = "p", .restart = restart_type::permanent},
                                          std::string("p"), &j);
    q.send(quit{});
    j.wait_for([&] { return j.constructions["p"] == 2; });
    q.send(boom{});
    j.wait_for([&] { return j.constructions["p"] == 3; });
    REQUIRE(q.ask(generation{}).get() == 1);
  }
  SECTION("transient: stopped for good after a normal stop, restarted after a failure") {
    auto q = troupe::start_child<quitter>(sup, {.name = "t", .restart = restart_type::transient},
                                          std::string("t"), &j);
    q.send(boom{});
    j.wait_for([&] { return j.constructions["t"] == 2; });
    q.send(quit{});
    j.wait_for([&] { return j.count(troupe::supervision_event::kind::stopped) == 1; });
    REQUIRE(stopped_for_good(q));
    REQUIRE(constructions("t") == 2);
  }
  SECTION("temporary: never restarted") {
    auto q = troupe::start_child<quitter>(sup, {.name = "x", .restart = restart_type::temporary},
                                          std::string("x"), &j);
    q.send(boom{});
    j.wait_for([&] { return j.count(troupe::supervision_event::kind::stopped) == 1; });
    REQUIRE(stopped_for_good(q));
    REQUIRE(constructions("x") == 1);
  }
}

TEST_CASE("refs stay valid and the mailbox survives a restart, in order", "[supervisor][mailbox]") {
  journal j;
  troupe::runtime_options o = j.options(1);
  o.on_failure = [](const troupe::address&, std::string_view) {};
  test::observer obs;
  o.on_dead_letter = [&obs](const troupe::dead_letter& d) {
    std::lock_guard lock(obs.mutex);
    obs.dead.push_back({d.target.id(), std::string(d.message_type), d.reason, d.detail});
  };
  troupe::runtime rt(o);
  auto sup = rt.spawn<troupe::supervisor>(troupe::one_for_one{});
  auto m = troupe::start_child<member>(sup, {.name = "m"}, std::string("m"), &j);
  for (int i = 0; i < 100; ++i) m.send(item{i == 50 ? -1 : i});
  // The new instance got everything after the failing item, in order.
  j.wait_for([&] { return j.constructions["m"] == 2; });
  const std::vector<int> after = m.ask(items{}).get();
  std::vector<int> expected;
  for (int i = 51; i < 100; ++i) expected.push_back(i);
  // Items 0..49 went to the first instance; the first instance is gone with its state.
  REQUIRE(after == expected);
  REQUIRE(obs.dead_count(troupe::dead_letter_reason::handler_failed) == 1);
  rt.shutdown();
  test::require_accounted(rt.counters());
}

namespace {
struct explode_on_ask {};
class asked {
 public:
  asked(std::string name, journal* j) { j->constructed(name); }
  int on(explode_on_ask) { throw std::runtime_error("no answer"); }
  int on(generation) const { return 0; }
};
}  // namespace

TEST_CASE("a supervised child's failing ask completes with handler_failed", "[supervisor][ask]") {
  journal j;
  troupe::runtime_options o = j.options();
  o.on_failure = [](const troupe::address&, std::string_view) {};
  troupe::runtime rt(o);
  auto sup = rt.spawn<troupe::supervisor>(troupe::one_for_one{});
  auto a = troupe::start_child<asked>(sup, {.name = "a"}, std::string("a"), &j);
  try {
    static_cast<void>(a.ask(explode_on_ask{}).get());
    FAIL("no error");
  } catch (const troupe::error& e) {
    REQUIRE(e.code() == troupe::errc::handler_failed);
    REQUIRE(std::string(e.what()).find("no answer") != std::string::npos);
  }
  j.wait_for([&] { return j.constructions["a"] == 2; });
  REQUIRE(a.ask(generation{}).get() == 0);  // the same ref reaches the new instance
}

TEST_CASE("hooks run in order across a restart", "[supervisor][hooks]") {
  journal j;
  troupe::runtime_options o = j.options(1);
  o.on_failure = [](const troupe::address&, std::string_view) {};
  troupe::runtime rt(o);
  auto sup = rt.spawn<troupe::supervisor>(troupe::one_for_one{});
  auto m = troupe::start_child<member>(sup, {.name = "h"}, std::string("h"), &j);
  m.send(boom{});
  j.wait_for([&] { return j.constructions["h"] == 2; });
  REQUIRE(m.ask(generation{}).get() == 2);
  std::lock_guard lock(j.mutex);
  REQUIRE(j.log == std::vector<std::string>{"h:start", "h:failure", "h:stop", "h:start"});
}

TEST_CASE("restart intensity exceeded escalates through two levels", "[supervisor][intensity]") {
  journal j;
  troupe::runtime rt(j.options());
  auto root = rt.spawn<troupe::supervisor>(troupe::one_for_one{.max_restarts = 0, .within = 60s});
  auto mid = troupe::start_child<troupe::supervisor>(
      root, {.name = "mid"}, troupe::one_for_one{.max_restarts = 1, .within = 60s});
  auto m = troupe::start_child<member>(mid, {.name = "leaf"}, std::string("leaf"), &j);
  m.send(boom{});  // restart 1: allowed
  j.wait_for([&] { return j.constructions["leaf"] == 2; });
  m.send(boom{});  // restart 2: mid gives up and fails; root (max 0) gives up and fails
  j.wait_for([&] {
    return !j.root_failures.empty() && j.count(troupe::supervision_event::kind::gave_up) == 2;
  });
  std::lock_guard lock(j.mutex);
  bool root_reported = false;
  for (const auto& f : j.root_failures) {
    root_reported = root_reported || f.find("restart intensity exceeded") != std::string::npos;
  }
  REQUIRE(root_reported);
}

TEST_CASE("backoff delays grow, are capped, and are never early", "[supervisor][backoff]") {
  journal j;
  troupe::runtime_options o = j.options();
  o.on_failure = [](const troupe::address&, std::string_view) {};
  troupe::runtime rt(o);
  auto sup = rt.spawn<troupe::supervisor>(troupe::one_for_one{
      .max_restarts = 100,
      .within = 60s,
      .backoff = {.min = 10ms, .max = 40ms, .factor = 2.0, .jitter = 0.0, .reset_after = 60s}});
  auto m = troupe::start_child<member>(sup, {.name = "b"}, std::string("b"), &j);
  for (int i = 1; i <= 4; ++i) {
    m.send(boom{});
    j.wait_for([&] { return j.constructions["b"] == i + 1; });
  }
  std::lock_guard lock(j.mutex);
  const std::vector<std::chrono::milliseconds> minimum{10ms, 20ms, 40ms, 40ms};
  for (std::size_t i = 0; i < minimum.size(); ++i) {
    REQUIRE(j.starts[i + 1] - j.starts[i] >= minimum[i]);
  }
}

TEST_CASE("backoff resets after a quiet period", "[supervisor][backoff]") {
  journal j;
  troupe::runtime_options o = j.options();
  o.on_failure = [](const troupe::address&, std::string_view) {};
  troupe::runtime rt(o);
  // reset_after 0: every failure counts as the first after a quiet period, so the delay stays
  // at min instead of growing a thousandfold.
  auto sup = rt.spawn<troupe::supervisor>(troupe::one_for_one{
      .max_restarts = 100,
      .within = 60s,
      .backoff = {.min = 10ms, .max = 60s, .factor = 1000.0, .jitter = 0.0, .reset_after = 0ms}});
  auto m = troupe::start_child<member>(sup, {.name = "r"}, std::string("r"), &j);
  for (int i = 1; i <= 3; ++i) {
    m.send(boom{});
    j.wait_for([&] { return j.constructions["r"] == i + 1; });
  }
  std::lock_guard lock(j.mutex);
  for (std::size_t i = 1; i < j.starts.size(); ++i) {
    REQUIRE(j.starts[i] - j.starts[i - 1] >= 10ms);
    // Growth would have meant 10 s, then 60 s: a generous bound that load cannot reach.
    REQUIRE(j.starts[i] - j.starts[i - 1] < 5s);
  }
}

TEST_CASE("chaos: random failures under load, every message accounted for", "[supervisor][chaos]") {
  constexpr int children = 8;
  constexpr int threads = 4;
  constexpr int per_thread = 5'000;
  journal j;
  troupe::runtime_options o = j.options();
  o.on_failure = [](const troupe::address&, std::string_view) {};
  o.on_supervision = nullptr;
  troupe::runtime rt(o);
  auto sup =
      rt.spawn<troupe::supervisor>(troupe::one_for_one{.max_restarts = 1'000'000, .within = 1s});
  std::vector<troupe::ref<member>> kids;
  for (int i = 0; i < children; ++i) {
    kids.push_back(
        troupe::start_child<member>(sup, {.name = std::to_string(i)}, std::to_string(i), &j));
  }
  std::vector<std::thread> senders;
  for (int t = 0; t < threads; ++t) {
    senders.emplace_back([&, t] {
      std::minstd_rand rng(static_cast<unsigned>(t) + 7);
      for (int i = 0; i < per_thread; ++i) {
        const bool fail = rng() % 50 == 0;
        kids[rng() % children].send(item{fail ? -1 : i});
      }
    });
  }
  for (auto& s : senders) s.join();
  rt.shutdown();
  auto c = rt.counters();
  test::require_accounted(c);
  REQUIRE(c.handled + c.dead_lettered >= static_cast<std::uint64_t>(threads * per_thread));
  REQUIRE(rt.live_actors() == 0);
}

TEST_CASE("children can be added and removed at run time", "[supervisor]") {
  journal j;
  troupe::runtime rt(j.options());
  auto sup = rt.spawn<troupe::supervisor>(troupe::one_for_one{});
  auto a = troupe::start_child<member>(sup, {.name = "a"}, std::string("a"), &j);
  auto b = troupe::start_child<member>(sup, {.name = "b"}, std::string("b"), &j);
  REQUIRE(sup.ask(troupe::which_children{}).get() ==
          std::vector<troupe::address>{troupe::address(a), troupe::address(b)});
  REQUIRE(sup.ask(troupe::remove_child{a}).get());
  REQUIRE_FALSE(sup.ask(troupe::remove_child{a}).get());
  REQUIRE(sup.ask(troupe::which_children{}).get() == std::vector<troupe::address>{b});
  // The removed child stopped for good: it is not restarted.
  try {
    static_cast<void>(a.ask(generation{}).get());
    FAIL("a removed child answered");
  } catch (const troupe::error& e) {
    REQUIRE(e.code() == troupe::errc::actor_stopped);
  }
  std::lock_guard lock(j.mutex);
  REQUIRE(j.constructions["a"] == 1);
}

namespace {
struct nap_forever {};
class sleepy {
 public:
  sleepy(troupe::context& ctx, std::string name, journal* j)
      : ctx_(ctx), name_(std::move(name)), j_(j) {}
  troupe::task<void> on(nap_forever) {
    j_->record(name_ + ":napping");
    co_await ctx_.sleep_for(1h);
  }
  void on_stop() { j_->record(name_ + ":stop"); }

 private:
  troupe::context& ctx_;
  std::string name_;
  journal* j_;
};
}  // namespace

TEST_CASE("stop_tree stops children newest first, depth first, each within its timeout",
          "[supervisor][shutdown]") {
  journal j;
  troupe::runtime rt(j.options());
  auto root = rt.spawn<troupe::supervisor>(troupe::one_for_one{});
  troupe::start_child<member>(root, {.name = "a"}, std::string("a"), &j);
  auto mid = troupe::start_child<troupe::supervisor>(root, {.name = "mid"}, troupe::one_for_all{});
  troupe::start_child<member>(mid, {.name = "b"}, std::string("b"), &j);
  troupe::start_child<member>(mid, {.name = "c"}, std::string("c"), &j);
  auto d = troupe::start_child<sleepy>(root, {.name = "d", .shutdown_timeout = 20ms},
                                       std::string("d"), &j);
  d.send(nap_forever{});
  j.wait_for([&] {
    for (const auto& line : j.log) {
      if (line == "d:napping") return true;
    }
    return false;
  });
  const auto start = std::chrono::steady_clock::now();
  REQUIRE(root.ask(troupe::stop_tree{}).get() == 1);  // d had to be forced
  REQUIRE(std::chrono::steady_clock::now() - start >= 20ms);
  std::vector<std::string> stops;
  {
    std::lock_guard lock(j.mutex);
    for (const auto& line : j.log) {
      if (line.size() > 5 && line.substr(line.size() - 5) == ":stop") stops.push_back(line);
    }
  }
  REQUIRE(stops == std::vector<std::string>{"d:stop", "c:stop", "b:stop", "a:stop"});
  rt.shutdown();
  REQUIRE(rt.counters().stopped == 6);  // the tree, the root included
}

namespace {
struct event_sink {
  std::promise<troupe::supervision_event>* got;
  bool first = true;
  void on(const troupe::supervision_event& e) {
    if (first && e.what == troupe::supervision_event::kind::restarted) {
      got->set_value(e);
      first = false;
    }
  }
};
}  // namespace

TEST_CASE("supervision events are published on the system topic", "[supervisor][topic]") {
  journal j;
  troupe::runtime_options o = j.options();
  o.on_failure = [](const troupe::address&, std::string_view) {};
  troupe::runtime rt(o);
  std::promise<troupe::supervision_event> got;
  auto sub = rt.subscribe<troupe::supervision_event>(troupe::supervision_subject,
                                                     rt.spawn<event_sink>(&got));
  auto sup = rt.spawn<troupe::supervisor>(troupe::one_for_one{});
  auto m = troupe::start_child<member>(sup, {.name = "watched"}, std::string("watched"), &j);
  m.send(boom{});
  const auto e = got.get_future().get();
  REQUIRE(e.name == "watched");
  REQUIRE(e.child == m);
  REQUIRE(e.reason == "watched exploded");
}

namespace {
struct build_child {
  troupe::ref<troupe::supervisor> sup;
  journal* j;
};
struct builder {
  troupe::task<int> on(build_child b) {
    // The task is made first, outside the co_await: g++ 12 destroys temporaries of a co_await
    // operand twice (a g++ coroutine bug), so none with a destructor belong there.
    auto starting =
        troupe::start_child_async<member>(b.sup, {.name = "async"}, std::string("async"), b.j);
    auto child = co_await std::move(starting);
    co_return co_await child.ask(generation{});
  }
};
}  // namespace

TEST_CASE("actors start children with start_child_async", "[supervisor]") {
  journal j;
  troupe::runtime rt(j.options());
  auto sup = rt.spawn<troupe::supervisor>(troupe::one_for_one{});
  REQUIRE(rt.spawn<builder>().ask(build_child{sup, &j}).get() == 1);
  REQUIRE(sup.ask(troupe::which_children{}).get().size() == 1);
}

// ---- issue 12, item 7: a child whose constructor throws ----

namespace {
class fragile {
 public:
  explicit fragile(int n) : n_(n) {
    if (n < 0) throw std::invalid_argument("fragile: negative n");
  }
  int on(generation) const { return n_; }

 private:
  int n_;
};

struct build_fragile {
  troupe::ref<troupe::supervisor> sup;
  int n;
};
struct fragile_builder {
  troupe::task<std::string> on(build_fragile b) {
    auto starting = troupe::start_child_async<fragile>(b.sup, {.name = "f"}, b.n);
    try {
      auto child = co_await std::move(starting);
      co_return "started " + std::to_string(co_await child.ask(generation{}));
    } catch (const std::invalid_argument& e) {
      co_return std::string("invalid_argument: ") + e.what();
    }
  }
};
}  // namespace

TEST_CASE(
    "a child whose constructor throws: the caller gets that exception, the supervisor lives on",
    "[supervisor][start]") {
  journal j;
  troupe::runtime rt(j.options());
  auto sup = rt.spawn<troupe::supervisor>(troupe::one_for_all{});
  auto a = troupe::start_child<member>(sup, {.name = "a"}, std::string("a"), &j);
  try {
    troupe::start_child<fragile>(sup, {.name = "bad"}, -1);
    FAIL("start_child of a throwing constructor returned");
  } catch (const std::invalid_argument& e) {
    REQUIRE(std::string(e.what()) == "fragile: negative n");
  }
  // The supervisor neither failed nor touched its other child; the failed start is reported.
  REQUIRE(sup.ask(troupe::which_children{}).get() == std::vector<troupe::address>{a});
  REQUIRE(a.ask(generation{}).get() == 1);
  {
    std::lock_guard lock(j.mutex);
    REQUIRE(j.root_failures.empty());
    REQUIRE(j.constructions["a"] == 1);
    REQUIRE(j.count(troupe::supervision_event::kind::start_failed) == 1);
    const auto it = std::find_if(j.events.begin(), j.events.end(), [](const auto& e) {
      return e.what == troupe::supervision_event::kind::start_failed;
    });
    REQUIRE(it->name == "bad");
    REQUIRE(it->reason == "fragile: negative n");
    REQUIRE(it->child == troupe::address{});
  }
  // It still starts children, from a thread and from an actor.
  REQUIRE(troupe::start_child<fragile>(sup, {.name = "good"}, 7).ask(generation{}).get() == 7);
  auto builder = rt.spawn<fragile_builder>();
  REQUIRE(builder.ask(build_fragile{sup, -2}).get() == "invalid_argument: fragile: negative n");
  REQUIRE(builder.ask(build_fragile{sup, 3}).get() == "started 3");
  REQUIRE(sup.ask(troupe::which_children{}).get().size() == 3);
  rt.shutdown();
  test::require_accounted(rt.counters());
}

// ---- issue 12, item 8: the blocking start_child from a handler ----

namespace {
struct try_blocking_start {
  troupe::ref<troupe::supervisor> sup;
  journal* j;
};
struct blocking_starter {
  std::string on(try_blocking_start t) {
    try {
      troupe::start_child<member>(t.sup, {.name = "x"}, std::string("x"), t.j);
      return "started";
    } catch (const troupe::error& e) {
      return e.code() == troupe::errc::would_block ? "would_block" : "other error";
    }
  }
};
}  // namespace

TEST_CASE("the blocking start_child from a handler refuses before sending anything",
          "[supervisor][start][misuse]") {
  journal j;
  troupe::runtime rt(j.options());
  auto sup = rt.spawn<troupe::supervisor>(troupe::one_for_one{});
  REQUIRE(rt.spawn<blocking_starter>().ask(try_blocking_start{sup, &j}).get() == "would_block");
  // Had the request been sent, it would be queued before this ask (it was sent before the
  // reply that this thread waited for): the supervisor would list the child.
  REQUIRE(sup.ask(troupe::which_children{}).get().empty());
  std::lock_guard lock(j.mutex);
  REQUIRE(j.constructions["x"] == 0);
  REQUIRE(j.count(troupe::supervision_event::kind::started) == 0);
}

// ---- issue 12, item 18: a final stop that races with a child parking for its supervisor ----

namespace {
struct watch_target {
  troupe::address target;
};
// Records the down of everything it watches.
class down_recorder {
 public:
  down_recorder(troupe::context& ctx, journal* j) : ctx_(ctx), j_(j) {}
  bool on(watch_target w) {
    ctx_.monitor(w.target);
    return true;
  }
  void on(const troupe::down& d) {
    j_->record("down " + std::to_string(d.who.id()) + " " + std::string(to_string(d.reason)));
  }

 private:
  troupe::context& ctx_;
  journal* j_;
};

// Fails, and in on_failure (after it was decided that it will park, before it parks) waits
// until the test has stopped its supervisor: the lost-wake window of issue 12 item 18, made
// certain. (The supervisor is stopped from the test's thread: a stop from this worker would
// queue the supervisor behind this blocked handler.)
struct fail_and_wait {};
class parks_late {
 public:
  explicit parks_late(journal* j) : j_(j) {}
  void on(fail_and_wait) { throw std::runtime_error("parks_late failed"); }
  void on_failure(const std::exception_ptr&) {
    j_->record("failing");
    // Bounded, so that a broken test fails instead of hanging.
    std::unique_lock lock(j_->mutex);
    j_->changed.wait_for(lock, 5s, [&] {
      return std::find(j_->log.begin(), j_->log.end(), "go on") != j_->log.end();
    });
  }

 private:
  journal* j_;
};

bool logged(journal& j, const std::string& line) {
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  std::unique_lock lock(j.mutex);
  return j.changed.wait_until(
      lock, deadline, [&] { return std::find(j.log.begin(), j.log.end(), line) != j.log.end(); });
}

// Stops its supervisor and fails at once: the race left to the scheduler.
struct stop_supervisor_and_fail {};
class races_supervisor {
 public:
  explicit races_supervisor(troupe::address sup) : sup_(std::move(sup)) {}
  void on(stop_supervisor_and_fail) {
    sup_.stop();
    throw std::runtime_error("races_supervisor failed");
  }

 private:
  troupe::address sup_;
};

troupe::runtime_options quiet_options(journal& j, std::size_t workers) {
  troupe::runtime_options o = j.options(workers);
  o.on_failure = [](const troupe::address&, std::string_view) {};
  o.on_supervision = nullptr;
  o.shutdown_timeout = 20s;
  return o;
}
}  // namespace

TEST_CASE("a final stop that races with a failing child parking is not lost",
          "[supervisor][shutdown][race]") {
  // Shutdown waits (up to its 20 s timeout) for a child still parked for its supervisor; a lost
  // final stop leaves one there. Every actor here has stopped before shutdown, so it must return
  // well inside the timeout (generous slack: 5 s).
  journal j;
  troupe::runtime rt(quiet_options(j, 3));
  SECTION("made certain: the supervisor stops after the child's failure, before it parks") {
    auto recorder = rt.spawn<down_recorder>(&j);
    auto sup = rt.spawn<troupe::supervisor>(troupe::one_for_one{.max_restarts = 100});
    REQUIRE(recorder.ask(watch_target{sup}).get());
    auto child = troupe::start_child<parks_late>(sup, {.name = "late"}, &j);
    REQUIRE(recorder.ask(watch_target{child}).get());
    child.send(fail_and_wait{});
    REQUIRE(logged(j, "failing"));
    sup.stop();  // its on_stop asks the child to stop for good: the child is not parked yet
    REQUIRE(logged(j, "down " + std::to_string(sup.id()) + " normal"));
    j.record("go on");
    // The child stops for good (its supervisor stopped it), long before shutdown.
    REQUIRE(logged(j, "down " + std::to_string(child.id()) + " normal"));
  }
  SECTION("left to chance: many supervisors stopping while their children fail") {
    std::vector<troupe::ref<races_supervisor>> children;
    for (int s = 0; s < 60; ++s) {
      auto sup = rt.spawn<troupe::supervisor>(troupe::one_for_one{.max_restarts = 100});
      for (int c = 0; c < 3; ++c) {
        children.push_back(troupe::start_child<races_supervisor>(
            sup, {.name = "c" + std::to_string(c)}, troupe::address(sup)));
      }
    }
    for (auto& c : children) c.send(stop_supervisor_and_fail{});
  }
  const auto start = std::chrono::steady_clock::now();
  rt.shutdown();
  REQUIRE(std::chrono::steady_clock::now() - start < 5s);
  test::require_accounted(rt.counters());
}

// ---- issue 12, item 9b: dynamic children of one kind (simple_one_for_one) ----

namespace {
struct build_dynamic {
  troupe::ref<troupe::supervisor> sup;
  journal* j;
};
struct dynamic_builder {
  troupe::task<int> on(build_dynamic b) {
    auto starting = troupe::start_child_async<member>(b.sup, std::string("async"), b.j);
    auto child = co_await std::move(starting);
    co_return co_await child.ask(generation{});
  }
};

std::string refusal(const std::function<void()>& f) {
  try {
    f();
    return "accepted";
  } catch (const troupe::error& e) {
    return std::string(to_string(e.code()));
  }
}
}  // namespace

TEST_CASE("simple_one_for_one starts children of one kind on demand, restarts each alone",
          "[supervisor][simple]") {
  journal j;
  troupe::runtime rt(j.options());
  auto sup = rt.spawn<troupe::supervisor>(troupe::simple_one_for_one<member>{
      .max_restarts = 10,
      .within = 60s,
      .child = {.name = "m", .restart = troupe::restart_type::transient}});
  std::vector<troupe::ref<member>> kids;
  std::vector<troupe::address> addresses;
  for (int i = 0; i < 5; ++i) {
    kids.push_back(troupe::start_child<member>(sup, "k" + std::to_string(i), &j));
    addresses.emplace_back(kids.back());
  }
  REQUIRE(sup.ask(troupe::which_children{}).get() == addresses);
  // A failure restarts that child alone (transient: restarted after a failure).
  kids[2].send(boom{});
  j.wait_for([&] { return j.count(troupe::supervision_event::kind::restarted) == 1; });
  for (std::size_t i = 0; i < kids.size(); ++i) {
    REQUIRE(kids[i].ask(generation{}).get() == (i == 2 ? 2 : 1));
  }
  // A normal stop ends a transient child for good: it leaves the supervisor.
  kids[4].stop();
  j.wait_for([&] { return j.count(troupe::supervision_event::kind::stopped) == 1; });
  addresses.pop_back();
  REQUIRE(sup.ask(troupe::which_children{}).get() == addresses);
  // From an actor, without blocking.
  REQUIRE(rt.spawn<dynamic_builder>().ask(build_dynamic{sup, &j}).get() == 1);
  // Only children of its one class; nothing is started by a refused request.
  REQUIRE(refusal([&] { troupe::start_child<quitter>(sup, std::string("q"), &j); }) ==
          "bad actor type");
  auto plain = rt.spawn<troupe::supervisor>(troupe::one_for_one{});
  REQUIRE(refusal([&] { troupe::start_child<member>(plain, std::string("p"), &j); }) ==
          "bad actor type");
  REQUIRE(sup.ask(troupe::which_children{}).get().size() == 5);
  REQUIRE(plain.ask(troupe::which_children{}).get().empty());
  {
    std::lock_guard lock(j.mutex);
    REQUIRE(j.constructions["q"] == 0);
    REQUIRE(j.constructions["p"] == 0);
    for (const auto& e : j.events) {
      if (e.what == troupe::supervision_event::kind::started && e.supervisor == sup) {
        REQUIRE(e.name == "m");  // every child has the spec's options
      }
    }
    j.log.clear();
  }
  // Stopped newest first.
  REQUIRE(sup.ask(troupe::stop_tree{}).get() == 0);
  std::lock_guard lock(j.mutex);
  REQUIRE(j.log ==
          std::vector<std::string>{"async:stop", "k3:stop", "k2:stop", "k1:stop", "k0:stop"});
}
