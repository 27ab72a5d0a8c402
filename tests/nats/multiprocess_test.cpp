// Multi-process tests of the NATS bridge: separate processes (tests/nats/nats_peer.cpp), each with
// its own runtime, node and connection, through one real nats-server. FIFO per sender->receiver
// pair, a queue group spanning processes (each job to exactly one worker), and the accounting
// summed over every process: nothing sent is unaccounted for.
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
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

namespace {

// Death watch from this process: monitors remote actors on command, keeps every down it gets.
struct watch_remote {
  troupe::nats::remote_ref<peer::ledger_api> target;
};
struct forget_remote {
  std::uint64_t monitor_id = 0;
};
struct downs_seen {
  std::mutex mutex;
  std::vector<std::pair<troupe::down, std::chrono::steady_clock::time_point>> downs;
  std::size_t count() {
    std::lock_guard lock(mutex);
    return downs.size();
  }
  troupe::down at(std::size_t i) {
    std::lock_guard lock(mutex);
    return downs.at(i).first;
  }
};
class remote_watcher {
 public:
  remote_watcher(troupe::context& ctx, downs_seen& seen) : ctx_(ctx), seen_(seen) {}
  std::uint64_t on(const watch_remote& w) { return w.target.monitor(ctx_).id; }
  bool on(const forget_remote& f) {
    return target_for_forget_.demonitor(troupe::monitor_handle{{}, f.monitor_id});
  }
  void on(const troupe::down& d) {
    std::lock_guard lock(seen_.mutex);
    seen_.downs.emplace_back(d, std::chrono::steady_clock::now());
  }
  void on(troupe::nats::remote_ref<peer::ledger_api> r) { target_for_forget_ = std::move(r); }

 private:
  troupe::context& ctx_;
  downs_seen& seen_;
  troupe::nats::remote_ref<peer::ledger_api> target_for_forget_;
};

}  // namespace

TEST_CASE("death watch across processes: stopped, unreachable, nobody there",
          "[nats][multiprocess][monitor]") {
  const std::string url = test::server_url();
  const std::string prefix = "dw" + std::to_string(::getpid());
  const std::string peer_binary = TROUPE_NATS_PEER;
  auto peer = [&](std::vector<std::string> args) {
    args.insert(args.begin(), {peer_binary, url, prefix});
    return std::make_unique<test::child>(std::move(args));
  };
  auto doomed = peer({"serve", "ledger.doomed"});  // will be killed
  REQUIRE(doomed->read_line() == "ready");
  auto quitter = peer({"serve", "ledger.quitter"});  // its ledger will stop
  REQUIRE(quitter->read_line() == "ready");

  test::observer observed;
  troupe::runtime rt(observed.options(2));
  // The peers beat every 250 ms: a silent one is unreachable after 4 x 250 ms.
  troupe::nats::node node(rt, {.servers = {url},
                               .name = "watcher",
                               .prefix = prefix,
                               .heartbeat_interval = 250ms,
                               .heartbeat_misses = 4});
  constexpr auto bound = 4 * 250ms + 250ms;  // misses x their interval + our check interval
  downs_seen seen;
  auto watcher = rt.spawn<remote_watcher>(std::ref(seen));
  auto remote = [&](const char* name) { return node.remote<peer::ledger_api>(name); };

  // A name nobody exposes: down(unreachable) at once (no responders), saying so.
  const auto nobody = watcher.ask(watch_remote{remote("ledger.nobody")}).get();
  REQUIRE(test::eventually([&] { return seen.count() == 1; }));
  CHECK(seen.at(0).monitor_id == nobody);
  CHECK(seen.at(0).reason == troupe::down_reason::unreachable);
  CHECK(seen.at(0).detail.find("no process exposes 'ledger.nobody'") != std::string::npos);
  CHECK(!seen.at(0).who);

  // The quitter's ledger stops: its node says so -> down(normal), for the monitor still set only.
  const auto quit_kept = watcher.ask(watch_remote{remote("ledger.quitter")}).get();
  const auto quit_dropped = watcher.ask(watch_remote{remote("ledger.quitter")}).get();
  const auto doomed_id = watcher.ask(watch_remote{remote("ledger.doomed")}).get();
  watcher.send(remote("ledger.quitter"));
  CHECK(watcher.ask(forget_remote{quit_dropped}).get());
  CHECK(!watcher.ask(forget_remote{quit_dropped}).get());  // once only
  quitter->write_line("stop");
  REQUIRE(quitter->read_line() == "stopped");
  REQUIRE(test::eventually([&] { return seen.count() == 2; }));
  CHECK(seen.at(1).monitor_id == quit_kept);
  CHECK(seen.at(1).reason == troupe::down_reason::normal);
  CHECK(seen.at(1).detail.find("'ledger.quitter'") != std::string::npos);
  // A monitor set after the stop: down(normal) at once, from the answer.
  const auto late = watcher.ask(watch_remote{remote("ledger.quitter")}).get();
  REQUIRE(test::eventually([&] { return seen.count() == 3; }));
  CHECK(seen.at(2).monitor_id == late);
  CHECK(seen.at(2).reason == troupe::down_reason::normal);

  // The doomed process is killed: no notice, its heartbeats stop -> down(unreachable) within the
  // bound (generous slack for a loaded machine; it never waits it out when things work).
  const auto killed_at = std::chrono::steady_clock::now();
  doomed->kill();
  REQUIRE(test::eventually([&] { return seen.count() == 4; }, bound + 10s));
  {
    std::lock_guard lock(seen.mutex);
    const auto& [d, when] = seen.downs.at(3);
    CHECK(d.monitor_id == doomed_id);
    CHECK(d.reason == troupe::down_reason::unreachable);
    // Its heartbeats stopped; or, on a slow machine, its answer to the watch request had not come
    // yet when it died, and the request went unanswered as long: unreachable too, within the bound.
    INFO(d.detail);
    CHECK((d.detail.find("missed heartbeats") != std::string::npos ||
           d.detail.find("no answer to the watch request") != std::string::npos));
    CHECK(when - killed_at < bound + 5s);
  }

  quitter->write_line("quit");
  CHECK(quitter->wait() == 0);
  node.close();
  rt.shutdown();
  CHECK(seen.count() == 4);  // nothing more: the dropped monitor never fired
  const auto c = rt.counters();
  CHECK(c.sent == c.handled + c.dead_lettered + c.rejected);
}
