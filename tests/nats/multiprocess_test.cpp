// Multi-process tests of the NATS bridge: separate processes (tests/nats/nats_peer.cpp), each with
// its own runtime, node and connection, through one real nats-server. FIFO per sender->receiver
// pair, a queue group spanning processes (each job to exactly one worker), and the accounting
// summed over every process: nothing sent is unaccounted for.
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <troupe/nats/node.hpp>

#include "../support.hpp"
#include "nats_support.hpp"
#include "peer_messages.hpp"

using namespace std::chrono_literals;

TEST_CASE("separate processes: FIFO per pair, a queue group, the accounting sum",
          "[nats][multiprocess]") {
  const std::string url = test::server_url();
  const std::string prefix = "mp" + std::to_string(::getpid());
  const std::string peer_binary = TROUPE_NATS_PEER;
  auto peer = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {peer_binary, url, prefix});
    return std::make_unique<test::child>(std::move(args));
  };

  auto ledger = peer({"serve", "ledger"});
  REQUIRE(ledger->read_line() == "ready");
  std::vector<std::unique_ptr<test::child>> workers;
  for (int i = 0; i < 2; ++i) {
    workers.push_back(peer({"work", "worker." + std::to_string(i)}));
    REQUIRE(workers.back()->read_line() == "ready");
  }

  // This process takes part too: a third member of the queue group, and the job publisher.
  test::observer seen;
  troupe::runtime rt(seen.options(2));
  troupe::nats::node node(rt, {.servers = {url}, .name = "test", .prefix = prefix});
  struct local_worker {
    long jobs = 0;
    void on(const peer::job&) { ++jobs; }
    long on(peer::how_many) const { return jobs; }
  };
  auto mine = rt.spawn<local_worker>();
  node.subscribe<peer::job>("jobs.>", mine, troupe::group{"work"});

  // Three senders at once, 1,000 entries each, to the one ledger.
  constexpr int senders = 3;
  constexpr long entries = 1000;
  std::vector<std::unique_ptr<test::child>> sending;
  for (int id = 1; id <= senders; ++id) {
    sending.push_back(peer({"send", "ledger", std::to_string(entries), std::to_string(id)}));
  }
  constexpr long jobs = 300;
  for (long j = 1; j <= jobs; ++j) REQUIRE(node.publish("jobs.batch", peer::job{j}));

  std::vector<std::map<std::string, long long>> totals;
  for (auto& s : sending) {
    const auto report = test::fields(s->read_line_starting("report"));
    CHECK(report.at("count") == entries);  // every entry arrived
    CHECK(report.at("cents") == 3 * entries);
    CHECK(report.at("in_order") == 1);  // in the order sent: FIFO per pair across processes
    totals.push_back(test::fields(s->read_line_starting("counters")));
    CHECK(s->wait() == 0);
  }

  // Every job handled by exactly one of the three members, across processes.
  auto handled_jobs = [&] {
    long n = mine.ask(peer::how_many{}).get();
    for (int i = 0; i < 2; ++i) {
      n += node.remote<peer::worker_api>("worker." + std::to_string(i)).ask(peer::how_many{}).get();
    }
    return n;
  };
  REQUIRE(test::eventually([&] { return handled_jobs() >= jobs; }));
  CHECK(handled_jobs() == jobs);  // and none twice

  ledger->write_line("quit");
  totals.push_back(test::fields(ledger->read_line_starting("counters")));
  CHECK(ledger->wait() == 0);
  for (auto& w : workers) {
    w->write_line("quit");
    totals.push_back(test::fields(w->read_line_starting("counters")));
    CHECK(w->wait() == 0);
  }
  node.close();
  rt.shutdown();
  const auto mine_wire = node.counters();
  const auto mine_rt = rt.counters();
  totals.push_back({{"sent", mine_wire.sent},
                    {"received", mine_wire.received},
                    {"delivered", mine_wire.delivered},
                    {"dead", mine_wire.dead_lettered},
                    {"rejected", mine_wire.rejected},
                    {"events_out", mine_wire.events_published},
                    {"events_in", mine_wire.events_received},
                    {"rt_sent", mine_rt.sent},
                    {"rt_handled", mine_rt.handled},
                    {"rt_dead", mine_rt.dead_lettered},
                    {"rt_rejected", mine_rt.rejected}});

  // The accounting, summed over the seven processes.
  std::map<std::string, long long> sum;
  for (const auto& t : totals) {
    // Each process's own runtime accounts for every message it saw.
    CHECK(t.at("rt_sent") == t.at("rt_handled") + t.at("rt_dead") + t.at("rt_rejected"));
    for (const auto& [k, v] : t) sum[k] += v;
  }
  INFO("sent=" << sum["sent"] << " received=" << sum["received"]
               << " delivered=" << sum["delivered"] << " dead=" << sum["dead"]);
  // Nothing lost on the wire: each point-to-point message and reply received once, each job once.
  CHECK(sum["sent"] + sum["events_in"] == sum["received"]);
  CHECK(sum["received"] == sum["delivered"] + sum["dead"]);  // every arrival handed on or dead
  CHECK(sum["dead"] == 0);
  CHECK(sum["rejected"] == 0);
  CHECK(sum["events_out"] == jobs);
  CHECK(sum["events_in"] == jobs);  // a queue group: one delivery per job, across processes
  // The point-to-point traffic: 3 x (1,000 entries + 1 audit) out, 3 audit replies back, plus the
  // how_many asks and their replies.
  CHECK(sum["sent"] >= senders * (entries + 2));
}
