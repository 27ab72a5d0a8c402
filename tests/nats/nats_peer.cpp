// The peer process of the multi-process NATS tests (multiprocess_test.cpp): a separate program
// with its own runtime and node. Usage:
//
//   nats_peer <url> <prefix> serve <name>          expose a ledger as <name>
//   nats_peer <url> <prefix> work <name>           join queue group "work" on jobs.>, and expose
//                                                  a counter of its jobs as <name>
//   nats_peer <url> <prefix> send <target> <n> <id>  send n ledger entries as sender <id>, then
//                                                  ask the ledger for that sender's report
//
// serve and work print "ready" once subscribed and run until a line "quit" (or EOF) on stdin;
// serve also takes "stop" (asks the ledger to stop, prints "stopped"). Heartbeats every 250 ms.
// Every mode ends with one line: "counters k=v ..." (wire and runtime counters), exit status 0.
#include <atomic>
#include <cstdio>
#include <iostream>
#include <map>
#include <string>

#include <troupe/nats/node.hpp>

#include "peer_messages.hpp"

namespace {

class ledger {
 public:
  void on(peer::entry e) {
    auto& s = senders_[e.sender];
    s.in_order = s.in_order && e.seq == s.last + 1;
    s.last = e.seq;
    ++s.r.count;
    s.r.cents += e.cents;
  }
  peer::report on(peer::audit a) {
    auto& s = senders_[a.sender];
    peer::report r = s.r;
    r.in_order = s.in_order;
    return r;
  }

 private:
  struct state {
    long last = 0;
    bool in_order = true;
    peer::report r;
  };
  std::map<int, state> senders_;
};

class worker {
 public:
  void on(const peer::job&) { ++jobs_; }
  long on(peer::how_many) const { return jobs_; }

 private:
  long jobs_ = 0;
};

void print_counters(troupe::nats::node& n, troupe::runtime& rt) {
  const auto w = n.counters();
  const auto r = rt.counters();
  std::printf(
      "counters sent=%llu received=%llu delivered=%llu dead=%llu rejected=%llu events_out=%llu "
      "events_in=%llu rt_sent=%llu rt_handled=%llu rt_dead=%llu rt_rejected=%llu\n",
      static_cast<unsigned long long>(w.sent), static_cast<unsigned long long>(w.received),
      static_cast<unsigned long long>(w.delivered),
      static_cast<unsigned long long>(w.dead_lettered), static_cast<unsigned long long>(w.rejected),
      static_cast<unsigned long long>(w.events_published),
      static_cast<unsigned long long>(w.events_received), static_cast<unsigned long long>(r.sent),
      static_cast<unsigned long long>(r.handled), static_cast<unsigned long long>(r.dead_lettered),
      static_cast<unsigned long long>(r.rejected));
  std::fflush(stdout);
}

template <class F = void (*)(const std::string&)>
void wait_for_quit(F command = [](const std::string&) {}) {
  std::string line;
  while (std::getline(std::cin, line)) {
    if (line == "quit") break;
    command(line);
  }
}

}  // namespace

int main(int argc, char* argv[]) {
  if (argc < 5) {
    std::fprintf(stderr, "usage: nats_peer <url> <prefix> serve|work|send ...\n");
    return 2;
  }
  const std::string url = argv[1];
  const std::string prefix = argv[2];
  const std::string mode = argv[3];
  troupe::runtime rt({.workers = 2});
  troupe::nats::node n(rt, {.servers = {url},
                            .name = "peer-" + mode,
                            .prefix = prefix,
                            .heartbeat_interval = std::chrono::milliseconds(250)});
  if (mode == "serve") {
    auto l = rt.spawn<ledger>();
    n.expose<peer::entry, peer::audit>(argv[4], l);
    std::printf("ready\n");
    std::fflush(stdout);
    wait_for_quit([&](const std::string& line) {
      if (line != "stop") return;
      l.stop();
      std::printf("stopped\n");
      std::fflush(stdout);
    });
  } else if (mode == "work") {
    auto w = rt.spawn<worker>();
    n.subscribe<peer::job>("jobs.>", w, troupe::group{"work"});
    n.expose<peer::how_many>(argv[4], w);
    std::printf("ready\n");
    std::fflush(stdout);
    wait_for_quit();
  } else if (mode == "send" && argc == 7) {
    auto target = n.remote<peer::ledger_api>(argv[4]);
    const long count = std::stol(argv[5]);
    const int id = std::stoi(argv[6]);
    for (long i = 1; i <= count; ++i) target.send(peer::entry{id, i, 3});
    const peer::report r = target.ask(peer::audit{id}).get();  // after all: FIFO per pair
    std::printf("report count=%ld cents=%ld in_order=%d\n", r.count, r.cents, r.in_order ? 1 : 0);
  } else {
    std::fprintf(stderr, "nats_peer: unknown mode '%s'\n", mode.c_str());
    return 2;
  }
  n.close();
  rt.shutdown();
  print_counters(n, rt);
  return 0;
}
