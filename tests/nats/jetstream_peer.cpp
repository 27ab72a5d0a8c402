// The peer process of the multi-process JetStream tests (jetstream_test.cpp): its own runtime,
// node and JetStream context, killed with SIGKILL by the test. Usage:
//
//   jetstream_peer <url> <prefix> group <topic> <group> <millis>
//       a member of durable group <group> on topic <topic>; each event takes <millis> (a timer)
//   jetstream_peer <url> <prefix> work <queue> <ack_wait_ms> <max_attempts>
//       a consumer of durable queue <queue>; order 0 on its first attempt is held until the
//       process dies; an order below -1000 always throws
//
// Prints "ready" once consuming, "took value=V attempt=A" when a handler starts,
// "handled value=V attempt=A" when it succeeds; on a line "quit" (or EOF) on stdin it stops and
// prints "counters handled=.. dead=.. retried=.. bad=..", exit status 0.
#include <chrono>
#include <cstdio>
#include <iostream>
#include <stdexcept>
#include <string>
#include <thread>

#include <troupe/nats/jetstream.hpp>
#include <troupe/supervisor.hpp>

#include "jetstream_messages.hpp"

namespace {

using durable::order;

void say(const char* what, const troupe::nats::delivery<order>& d) {
  std::printf("%s value=%ld attempt=%llu\n", what, d.value.id,
              static_cast<unsigned long long>(d.attempt));
  std::fflush(stdout);
}

class member {
 public:
  member(troupe::context& ctx, int millis) : ctx_(ctx), millis_(millis) {}
  troupe::task<void> on(const troupe::nats::delivery<order>& d) {
    say("took", d);
    co_await ctx_.sleep_for(std::chrono::milliseconds(millis_));
    say("handled", d);  // `d` stays valid until the task finishes
  }

 private:
  troupe::context& ctx_;
  int millis_;
};

class worker {
 public:
  void on(const troupe::nats::delivery<order>& d) {
    say("took", d);
    if (d.value.id == 0 && d.attempt == 1) {
      std::this_thread::sleep_for(std::chrono::hours(1));  // held until SIGKILL
    }
    if (d.value.id < -1000) throw std::runtime_error("poison");
    say("handled", d);
  }
};

}  // namespace

int main(int argc, char* argv[]) {
  if (argc < 7) {
    std::fprintf(stderr, "usage: jetstream_peer <url> <prefix> group|work ...\n");
    return 2;
  }
  const std::string url = argv[1];
  const std::string prefix = argv[2];
  const std::string mode = argv[3];
  troupe::runtime rt({.workers = 2});
  troupe::nats::node n(rt, {.servers = {url}, .name = "jetstream-peer", .prefix = prefix});
  troupe::nats::consumer_counters totals;
  {
    troupe::nats::jetstream js(n);
    auto sup = rt.spawn<troupe::supervisor>(
        troupe::one_for_one{.max_restarts = 1000, .within = std::chrono::seconds(60)});
    troupe::nats::durable_subscription sub;
    if (mode == "group") {
      auto t = js.retain<order>(argv[4]);
      sub = t.subscribe(troupe::start_child<member>(sup, {.name = "m"}, std::stoi(argv[6])),
                        troupe::group{argv[5]}, troupe::replay::oldest(),
                        {.max_attempts = 3, .ack_wait = std::chrono::milliseconds(2000)});
    } else if (mode == "work") {
      auto q = js.make_queue<order>(
          argv[4], {.consumer = {.max_attempts = std::stoi(argv[6]),
                                 .ack_wait = std::chrono::milliseconds(std::stoi(argv[5])),
                                 .backoff = std::chrono::milliseconds(10)}});
      sub = q.add_consumer(troupe::start_child<worker>(sup, {.name = "w"}));
    } else {
      std::fprintf(stderr, "jetstream_peer: unknown mode '%s'\n", mode.c_str());
      return 2;
    }
    std::printf("ready\n");
    std::fflush(stdout);
    std::string line;
    while (std::getline(std::cin, line)) {
      if (line == "quit") break;
    }
    totals = sub.counters();
    sub.end();
  }
  n.close();
  rt.shutdown();
  std::printf("counters handled=%llu dead=%llu retried=%llu bad=%llu\n",
              static_cast<unsigned long long>(totals.handled),
              static_cast<unsigned long long>(totals.dead_lettered),
              static_cast<unsigned long long>(totals.retried),
              static_cast<unsigned long long>(totals.bad_input));
  return 0;
}
