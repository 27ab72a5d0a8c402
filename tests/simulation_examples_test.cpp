// The examples' actors, unchanged, under simulation (troupe/simulation.hpp): each example's
// source is compiled here as it is (its main renamed and never called), and its actors are driven
// by a simulated runtime over many seeds, with the example's own checks as assertions.
//
// Not here, on purpose: the examples whose actors do network I/O (http_kv, tcp_server,
// prometheus_exporter: the simulation has no sockets), latency_probe (it measures real time), and
// order_saga (tests/sim_check_test.cpp runs it under faults over 1,000 seeds).
//
// Every header an example includes is included first, so that its own #include lines, read
// inside a namespace below, are skipped by their include guards.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <future>
#include <iostream>
#include <latch>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include <troupe/troupe.hpp>

// NOLINTBEGIN(bugprone-suspicious-include)
#define main example_main
namespace hello_example {
#include "../examples/hello.cpp"
}
namespace bank_example {
#include "../examples/bank.cpp"
}
namespace supervision_example {
#include "../examples/supervision_tree.cpp"
}
namespace work_queue_example {
#include "../examples/work_queue.cpp"
}
namespace keyed_orders_example {
#include "../examples/keyed_orders.cpp"
}
namespace user_registration_example {
#include "../examples/user_registration.cpp"
}
#undef main
// NOLINTEND(bugprone-suspicious-include)

using namespace std::chrono_literals;

namespace {

constexpr std::uint64_t seeds = 20;

// What the runtime's hooks saw in one simulated run.
struct observed {
  std::vector<troupe::dead_letter> dead;
  int restarts = 0;

  troupe::simulation_options options(std::uint64_t seed) {
    troupe::simulation_options o;
    o.seed = seed;
    o.runtime.on_dead_letter = [this](const troupe::dead_letter& d) { dead.push_back(d); };
    o.runtime.on_supervision = [this](const troupe::supervision_event& e) {
      if (e.what == troupe::supervision_event::kind::restarted) ++restarts;
    };
    o.runtime.on_failure = [](const troupe::address&, std::string_view) {};
    return o;
  }
  [[nodiscard]] std::size_t dead_because(troupe::dead_letter_reason r) const {
    return static_cast<std::size_t>(std::count_if(
        dead.begin(), dead.end(), [r](const troupe::dead_letter& d) { return d.reason == r; }));
  }
};

void require_accounted(troupe::runtime& rt) {
  const auto c = rt.counters();
  REQUIRE(c.sent == c.handled + c.dead_lettered + c.rejected);
}

}  // namespace

TEST_CASE("hello's greeter under simulation") {
  using namespace hello_example;
  for (std::uint64_t seed = 1; seed <= 3; ++seed) {
    INFO("seed " << seed);
    troupe::simulation sim({.seed = seed});
    auto g = sim.runtime().spawn<greeter>();
    g.send(greet{"world"});
    g.send(greet{"simulation"});
    std::promise<int> greeted;
    auto answer = greeted.get_future();
    g.send(report{&greeted});
    sim.run();
    REQUIRE(answer.wait_for(0s) == std::future_status::ready);
    REQUIRE(answer.get() == 2);
    sim.runtime().shutdown();
    require_accounted(sim.runtime());
  }
}

TEST_CASE("bank's accounts under simulation: a suspended audit, a delayed send, a failure") {
  using namespace bank_example;
  for (std::uint64_t seed = 1; seed <= seeds; ++seed) {
    INFO("seed " << seed);
    observed seen;
    troupe::simulation sim(seen.options(seed));
    auto& rt = sim.runtime();
    auto alice = rt.spawn<account>("alice");
    auto bob = rt.spawn<account>("bob");
    for (int i = 0; i < 100; ++i) {
      alice.send(deposit{1});
      bob.send(deposit{2});
    }
    // The audit suspends for 20 ms of virtual time; the deposit behind it waits for it.
    std::latch audited(1);
    alice.send(slow_audit{&audited});
    alice.send(deposit{100});
    std::promise<long> during;
    auto balance = during.get_future();
    alice.send(statement{&during});
    sim.run();
    REQUIRE(audited.try_wait());
    REQUIRE(balance.get() == 200);
    REQUIRE(sim.elapsed() >= 20ms);

    REQUIRE(rt.send_after(10ms, alice, interest{}));
    bob.send(withdraw{1'000'000});  // fails: bob stops, the deposit behind it is a dead letter
    bob.send(deposit{5});
    sim.run_for(1s);
    std::promise<long> after;
    auto final_balance = after.get_future();
    alice.send(statement{&after});
    sim.run();
    REQUIRE(final_balance.get() == 202);
    REQUIRE(seen.dead_because(troupe::dead_letter_reason::handler_failed) == 1);
    REQUIRE(seen.dead.size() == 2);
    rt.shutdown();
    require_accounted(rt);
  }
}

TEST_CASE("supervision_tree's strategies under simulation") {
  using namespace supervision_example;
  for (std::uint64_t seed = 1; seed <= seeds; ++seed) {
    INFO("seed " << seed);
    observed seen;
    troupe::simulation sim(seen.options(seed));
    auto& rt = sim.runtime();
    auto root = rt.spawn<troupe::supervisor>(troupe::one_for_one{.max_restarts = 10, .within = 5s});
    auto pay = troupe::start_child<payments>(root, {.name = "payments"});
    auto pipeline = troupe::start_child<troupe::supervisor>(
        root, {.name = "pipeline"}, troupe::one_for_all{.max_restarts = 3, .within = 5s});
    auto parser =
        troupe::start_child<stage>(pipeline, {.name = "parser"}, std::string("parser"), true);
    auto writer = troupe::start_child<stage>(pipeline, {.name = "writer"}, std::string("writer"));
    auto ingest = troupe::start_child<troupe::supervisor>(
        root, {.name = "ingest"}, troupe::rest_for_one{.max_restarts = 3, .within = 5s});
    auto source = troupe::start_child<stage>(ingest, {.name = "source"}, std::string("source"));
    auto transform =
        troupe::start_child<stage>(ingest, {.name = "transform"}, std::string("transform"), true);
    auto sink = troupe::start_child<stage>(ingest, {.name = "sink"}, std::string("sink"));

    for (int cents : {100, 200, 300, 400, 500}) pay.send(charge{cents});
    REQUIRE(pay.ask(settled{}).get() == 900);  // 300 declined; the new instance took the rest
    REQUIRE(parser.ask(ping{}).get() == "parser ok");
    REQUIRE_THROWS_AS(parser.ask(ping{}).get(), troupe::error);
    REQUIRE(parser.ask(ping{}).get() == "parser ok");
    REQUIRE(writer.ask(ping{}).get() == "writer ok");
    REQUIRE(transform.ask(ping{}).get() == "transform ok");
    REQUIRE_THROWS_AS(transform.ask(ping{}).get(), troupe::error);
    REQUIRE(source.ask(ping{}).get() == "source ok");
    REQUIRE(transform.ask(ping{}).get() == "transform ok");
    REQUIRE(sink.ask(ping{}).get() == "sink ok");
    // payments; parser and writer (one_for_all); transform and sink (rest_for_one).
    REQUIRE(seen.restarts == 5);
    root.ask(troupe::stop_tree{}).get();
    rt.shutdown();
    require_accounted(rt);
  }
}

TEST_CASE("work_queue's competing consumers under simulation") {
  using namespace work_queue_example;
  for (std::uint64_t seed = 1; seed <= seeds; ++seed) {
    INFO("seed " << seed);
    observed seen;
    troupe::simulation sim(seen.options(seed));
    auto& rt = sim.runtime();
    std::latch finished(12);  // the worker counts completions down; the dead job stays counted
    shop s;
    s.finished = &finished;
    auto jobs = rt.make_queue<job>({.name = "jobs", .max_attempts = 3});
    auto root =
        rt.spawn<troupe::supervisor>(troupe::one_for_one{.max_restarts = 10, .within = 10s});
    for (const char* name : {"w1", "w2", "w3"}) {
      jobs.add_consumer(troupe::start_child<worker>(root, {.name = name}, std::string(name), &s));
    }
    for (int id = 1; id <= 12; ++id) jobs.push(job{id});
    sim.run();
    for (int id = 1; id <= 12; ++id) {
      INFO("job " << id);
      REQUIRE((s.done.count(id) != 0 ? s.done[id] : 0) == (id == 9 ? 0 : 1));
    }
    REQUIRE(s.attempts[7] == 2);
    REQUIRE(s.attempts[9] == 3);
    REQUIRE(seen.dead_because(troupe::dead_letter_reason::retries_exhausted) == 1);
    REQUIRE(seen.dead.size() == 4);  // and three failed attempts, redelivered
    REQUIRE(seen.restarts == 4);
    REQUIRE(jobs.consumers() == 3);
    rt.shutdown();
    require_accounted(rt);
  }
}

TEST_CASE("keyed_orders' keyed group under simulation: per-order order, one at a time") {
  using namespace keyed_orders_example;
  const std::vector<std::string> steps = {"placed", "paid", "shipped"};
  for (std::uint64_t seed = 1; seed <= seeds; ++seed) {
    INFO("seed " << seed);
    observed seen;
    troupe::simulation sim(seen.options(seed));
    auto& rt = sim.runtime();
    std::latch finished(orders_total * 3);
    ledger l;
    l.finished = &finished;
    for (long id = 1; id <= orders_total; ++id) l.busy[id];
    auto orders = rt.make_keyed_queue<order_event>({.name = "orders", .max_attempts = max_attempts},
                                                   &order_event::order_id);
    auto root =
        rt.spawn<troupe::supervisor>(troupe::one_for_one{.max_restarts = 10, .within = 10s});
    for (const char* name : {"w1", "w2", "w3", "w4"}) {
      orders.add_consumer(troupe::start_child<worker>(root, {.name = name}, &l));
    }
    auto group = orders.subscribe("orders.>");
    for (const auto& step : steps) {
      for (long id = 1; id <= orders_total; ++id)
        rt.publish("orders." + step, order_event{id, step});
    }
    sim.run();
    REQUIRE(l.overlaps.load() == 0);
    for (long id = 1; id <= orders_total; ++id) {
      INFO("order " << id);
      REQUIRE(l.steps[id] == (id == 13 ? std::vector<std::string>{"placed", "shipped"} : steps));
    }
    REQUIRE(l.payment_attempts[7] == 2);
    REQUIRE(l.payment_attempts[13] == max_attempts);
    REQUIRE(seen.dead_because(troupe::dead_letter_reason::retries_exhausted) == 1);
    rt.shutdown();
    require_accounted(rt);
  }
}

TEST_CASE("user_registration's services under simulation: a restart resumes from its offset") {
  using namespace user_registration_example;
  for (std::uint64_t seed = 1; seed <= seeds; ++seed) {
    INFO("seed " << seed);
    observed seen;
    troupe::simulation sim(seen.options(seed));
    auto& rt = sim.runtime();
    hops h;
    mail_outbox outbox;
    auto topic = rt.retain<user_registered>("user.registered", 1'000);
    auto root = rt.spawn<troupe::supervisor>(troupe::one_for_one{.max_restarts = 3, .within = 10s});
    auto registrar = troupe::start_child<registration_service>(root, {.name = "registration"}, &h);
    auto email = troupe::start_child<email_service>(root, {.name = "email"}, &outbox, &h);
    auto analytics = troupe::start_child<analytics_service>(root, {.name = "analytics"}, &h);
    auto cache = troupe::start_child<cache_service>(root, {.name = "cache"}, &h);
    auto analytics_sub = rt.subscribe<user_registered>("user.*", analytics);
    auto cache_sub = rt.subscribe<user_registered>("user.registered", cache);

    std::size_t registered = 0;
    std::size_t refused = 0;
    auto register_one = [&](const std::string& address) {
      const registration r = registrar.ask(register_user{address, "someone", {}}).get();
      (r.ok ? registered : refused) += 1;
    };
    auto user = [](std::size_t i) { return "user" + std::to_string(i) + "@example.org"; };
    for (std::size_t i = 1; i <= 20; ++i) register_one(user(i));
    register_one(user(3));         // already registered
    register_one("not-an-email");  // invalid
    auto crm = troupe::start_child<crm_service>(root, {.name = "crm"}, topic, &h);
    REQUIRE(crm.ask(catch_up{}).get() == 20);
    for (std::size_t i = 21; i <= 40; ++i) register_one(user(i));

    REQUIRE(registered == 40);
    REQUIRE(refused == 2);
    REQUIRE(email.ask(wait_until_seen{40}).get() == 40);
    REQUIRE(analytics.ask(wait_until_seen{40}).get() == 40);
    REQUIRE(cache.ask(wait_until_seen{40}).get() == 40);
    REQUIRE(crm.ask(wait_until_seen{40}).get() == 40);
    REQUIRE(cache.ask(lookup{user(7)}).get() == 7);
    // The SMTP failure at user 7 restarted the email service once; it lost nothing.
    REQUIRE(outbox.smtp_failed_once);
    REQUIRE(outbox.sent == 40);
    REQUIRE(seen.restarts == 1);
    root.ask(troupe::stop_tree{}).get();
    rt.shutdown();
    require_accounted(rt);
  }
}
