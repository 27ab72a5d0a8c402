// troupe-bench-caf: the DESIGN §5 workloads written against CAF 0.17's own API (dynamically typed
// event-based actors, atoms, request(...).then, an anonymous local group for broadcast), with the
// driver, flags, workload names, sizes and JSON shape of troupe-bench (driver.hpp).
//
// Settings: CAF's defaults (actor_system_config as constructed, i.e. the work-stealing scheduler
// with max(hardware concurrency, 4) workers and its default throughput per resume), one
// actor_system per run, built before and destroyed after the timed part. --workers N sets
// scheduler.max-threads to N instead.
//
//   pingpong          a ping actor and a pong actor: ping sends (ping, n), pong's handler returns
//                     (pong, n) to the sender, ping sends (ping, n - 1) ... ns per round trip.
//   ask               an asker actor chains N request(server, infinite, req, i).then(...) (the
//                     next request is made in the previous one's continuation), the server's
//                     handler returns i + 1. No timeout (caf::infinite), what CAF's fastest ask
//                     is: with a 5 s timeout, like troupe's default ask_timeout, each request also
//                     arms a timer and the figure goes from ~0.95 to ~2.3 us here. troupe's ask
//                     does arm its timeout. ns per ask, timed inside the asker.
//   fanin             100 sender actors, on a go message, each send 100,000 messages in one
//                     handler to one receiver actor, which counts them. msgs/s.
//   broadcast         100 actors spawned into one anonymous local group (spawn_in_group); the
//                     driver thread anon_sends 100,000 events to the group. deliveries/s.
//   spawn             the driver spawns 1,000,000 actors and anon_sends each one message; each
//                     quits in its handler. Seconds until all are gone (await_all_actors_done).
//   idle_actor_bytes  1,000,000 spawned actors with a behavior and nothing to do, handles kept;
//                     RSS growth / N once every one has run its init; a fresh process per run.
//   ring              503 actors, each told its successor, pass a token 10,000,000 hops.
//   latency_*         the offered load of troupe-bench's `latency`: the driver thread
//                     anon_sends (stamp, intended time, index) every 100 us to one receiver.
#include <algorithm>
#include <caf/all.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "../../bench.hpp"
#include "../../driver.hpp"

namespace troupe_bench {
namespace {

using ping_atom = caf::atom_constant<caf::atom("ping")>;
using pong_atom = caf::atom_constant<caf::atom("pong")>;
using req_atom = caf::atom_constant<caf::atom("req")>;
using go_atom = caf::atom_constant<caf::atom("go")>;
using item_atom = caf::atom_constant<caf::atom("item")>;
using tick_atom = caf::atom_constant<caf::atom("tick")>;
using poke_atom = caf::atom_constant<caf::atom("poke")>;
using link_atom = caf::atom_constant<caf::atom("link")>;
using token_atom = caf::atom_constant<caf::atom("token")>;
using stamp_atom = caf::atom_constant<caf::atom("stamp")>;

// One actor system per run, with CAF's default configuration unless --workers is given.
struct caf_system {
  caf::actor_system_config cfg;
  std::unique_ptr<caf::actor_system> sys;
  explicit caf_system(const config& c) {
    if (c.workers != 0) cfg.set("scheduler.max-threads", c.workers);
    sys = std::make_unique<caf::actor_system>(cfg);
  }
  caf::actor_system* operator->() { return sys.get(); }
};

// Actors that keep each other alive (a ring, a pair of peers) are told to exit after the run.
void stop_all(const std::vector<caf::actor>& actors) {
  for (const caf::actor& a : actors) caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
}

// ---- pingpong --------------------------------------------------------------------------------

caf::behavior pong(caf::event_based_actor*) {
  return {
      [](ping_atom, std::uint64_t n) { return std::make_tuple(pong_atom::value, n); },
  };
}

caf::behavior ping(caf::event_based_actor* self, caf::actor peer, done_signal* done) {
  return {
      [=](go_atom, std::uint64_t trips) { self->send(peer, ping_atom::value, trips - 1); },
      [=](pong_atom, std::uint64_t n) {
        if (n == 0) {
          done->set();
        } else {
          self->send(peer, ping_atom::value, n - 1);
        }
      },
  };
}

double run_pingpong(const config& c) {
  const std::uint64_t trips = pingpong_size(c);
  done_signal done;
  caf_system sys(c);
  auto b = sys->spawn(pong);
  auto a = sys->spawn(ping, b, &done);
  const auto t0 = clock::now();
  caf::anon_send(a, go_atom::value, trips);
  expect(done.wait_for(run_timeout), "pingpong: timed out");
  const auto t1 = clock::now();
  stop_all({a, b});
  return seconds_between(t0, t1) * 1e9 / static_cast<double>(trips);
}

// ---- ask -------------------------------------------------------------------------------------

caf::behavior server(caf::event_based_actor*) {
  return {
      [](req_atom, std::uint64_t v) { return v + 1; },
  };
}

struct asker_state {
  std::uint64_t next = 0;
  std::uint64_t count = 0;
  std::uint64_t sum = 0;
  clock::time_point t0;
};

struct ask_outcome {
  std::uint64_t sum = 0;
  double seconds = 0;
  std::string error;
};

void ask_next(caf::stateful_actor<asker_state>* self, const caf::actor& srv, ask_outcome* out,
              done_signal* done) {
  self->request(srv, caf::infinite, req_atom::value, self->state.next)
      .then(
          [=](std::uint64_t reply) {
            auto& st = self->state;
            st.sum += reply;
            if (++st.next < st.count) {
              ask_next(self, srv, out, done);
            } else {
              out->seconds = seconds_between(st.t0, clock::now());
              out->sum = st.sum;
              done->set();
            }
          },
          [=](caf::error& e) {
            out->error = caf::to_string(e);
            done->set();
          });
}

caf::behavior asker(caf::stateful_actor<asker_state>* self, caf::actor srv, ask_outcome* out,
                    done_signal* done) {
  return {
      [=](go_atom, std::uint64_t count) {
        self->state.count = count;
        self->state.t0 = clock::now();
        ask_next(self, srv, out, done);
      },
  };
}

double run_ask(const config& c) {
  const std::uint64_t n = ask_size(c);
  done_signal done;
  ask_outcome out;
  caf_system sys(c);
  auto s = sys->spawn(server);
  auto a = sys->spawn(asker, s, &out, &done);
  caf::anon_send(a, go_atom::value, n);
  expect(done.wait_for(run_timeout), "ask: timed out");
  expect(out.error.empty(), "ask: a request failed: " + out.error);
  expect(out.sum == n * (n + 1) / 2, "ask: the replies do not add up");
  stop_all({a, s});
  return out.seconds * 1e9 / static_cast<double>(n);
}

// ---- fanin -----------------------------------------------------------------------------------

struct sink_state {
  std::uint64_t count = 0;
  std::uint64_t sum = 0;
};

caf::behavior fanin_sink(caf::stateful_actor<sink_state>* self, std::uint64_t expected,
                         std::uint64_t* sum_out, done_signal* done) {
  return {
      [=](item_atom, std::uint64_t v) {
        self->state.sum += v;
        if (++self->state.count == expected) {
          *sum_out = self->state.sum;
          done->set();
        }
      },
  };
}

caf::behavior fanin_source(caf::event_based_actor* self, caf::actor target, std::uint64_t count) {
  return {
      [=](go_atom) {
        for (std::uint64_t i = 0; i < count; ++i) self->send(target, item_atom::value, i);
      },
  };
}

double run_fanin(const config& c) {
  const std::uint64_t per = fanin_size(c);
  const std::uint64_t total = fanin_senders * per;
  done_signal done;
  std::uint64_t sum = 0;
  caf_system sys(c);
  std::vector<caf::actor> actors;
  auto rx = sys->spawn(fanin_sink, total, &sum, &done);
  actors.push_back(rx);
  for (std::uint64_t i = 0; i < fanin_senders; ++i)
    actors.push_back(sys->spawn(fanin_source, rx, per));
  const auto t0 = clock::now();
  for (std::uint64_t i = 1; i < actors.size(); ++i) caf::anon_send(actors[i], go_atom::value);
  expect(done.wait_for(run_timeout), "fanin: timed out");
  const auto t1 = clock::now();
  expect(sum == fanin_senders * (per * (per - 1) / 2), "fanin: the values do not add up");
  stop_all(actors);
  return static_cast<double>(total) / seconds_between(t0, t1);
}

// ---- broadcast -------------------------------------------------------------------------------

struct broadcast_state {
  std::atomic<std::uint64_t> remaining{0};
  std::atomic<std::uint64_t> sum{0};
  done_signal done;
};

caf::behavior listener(caf::event_based_actor*, broadcast_state* st) {
  return {
      [=](tick_atom, std::uint64_t n) {
        st->sum.fetch_add(n, std::memory_order_relaxed);
        if (st->remaining.fetch_sub(1, std::memory_order_acq_rel) == 1) st->done.set();
      },
  };
}

double run_broadcast(const config& c) {
  const std::uint64_t events = broadcast_size(c);
  broadcast_state st;
  st.remaining = events * broadcast_subscribers;
  caf_system sys(c);
  auto grp = sys->groups().anonymous();
  std::vector<caf::actor> actors;
  for (std::uint64_t i = 0; i < broadcast_subscribers; ++i) {
    actors.push_back(sys->spawn_in_group(grp, listener, &st));
  }
  const auto t0 = clock::now();
  for (std::uint64_t i = 0; i < events; ++i) caf::anon_send(grp, tick_atom::value, i);
  expect(st.done.wait_for(run_timeout), "broadcast: timed out");
  const auto t1 = clock::now();
  expect(st.sum.load() == broadcast_subscribers * (events * (events - 1) / 2),
         "broadcast: the deliveries do not add up");
  stop_all(actors);
  return static_cast<double>(events * broadcast_subscribers) / seconds_between(t0, t1);
}

// ---- spawn -----------------------------------------------------------------------------------

caf::behavior one_shot(caf::event_based_actor* self, countdown* handled) {
  return {
      [=](poke_atom) {
        handled->arrive();
        self->quit();
      },
  };
}

double run_spawn(const config& c) {
  const std::uint64_t n = spawn_size(c);
  countdown handled(n);
  caf_system sys(c);
  const auto t0 = clock::now();
  for (std::uint64_t i = 0; i < n; ++i)
    caf::anon_send(sys->spawn(one_shot, &handled), poke_atom::value);
  expect(handled.wait_for(run_timeout), "spawn: timed out");
  sys->await_all_actors_done();  // every actor has quit and is unregistered
  const auto t1 = clock::now();
  return seconds_between(t0, t1);
}

// ---- idle_actor_bytes ------------------------------------------------------------------------

caf::behavior idle(caf::event_based_actor*, countdown* started) {
  started->arrive();
  return {
      [](poke_atom) {},
  };
}

double run_idle_actor_bytes(const config& c) {
  const std::uint64_t n = idle_size(c);
  countdown started(n);
  caf_system sys(c);
  std::vector<caf::actor> handles(n);  // written now, so that its pages are not counted below
  const std::size_t before = resident_bytes();
  for (std::uint64_t i = 0; i < n; ++i) handles[i] = sys->spawn(idle, &started);
  expect(started.wait_for(run_timeout), "idle_actor_bytes: timed out");
  const std::size_t after = resident_bytes();
  const std::size_t running = sys->registry().running();
  handles.clear();  // unreachable now: CAF terminates them
  expect(running >= n, "idle_actor_bytes: only " + std::to_string(running) + " actors running");
  expect(before != 0 && after >= before, "idle_actor_bytes: cannot read the resident set size");
  return static_cast<double>(after - before) / static_cast<double>(n);
}

// ---- ring ------------------------------------------------------------------------------------

struct node_state {
  caf::actor next;
};

caf::behavior ring_node(caf::stateful_actor<node_state>* self, done_signal* done) {
  return {
      [=](link_atom, caf::actor next) { self->state.next = std::move(next); },
      [=](token_atom, std::uint64_t left) {
        if (left == 0) {
          done->set();
        } else {
          self->send(self->state.next, token_atom::value, left - 1);
        }
      },
  };
}

double run_ring(const config& c) {
  const std::uint64_t hops = ring_size(c);
  done_signal done;
  caf_system sys(c);
  std::vector<caf::actor> nodes;
  for (std::uint64_t i = 0; i < ring_actors; ++i) nodes.push_back(sys->spawn(ring_node, &done));
  for (std::uint64_t i = 0; i < ring_actors; ++i) {
    caf::anon_send(nodes[i], link_atom::value, nodes[(i + 1) % ring_actors]);
  }
  const auto t0 = clock::now();
  caf::anon_send(nodes.front(), token_atom::value, hops);
  expect(done.wait_for(run_timeout), "ring: timed out");
  const auto t1 = clock::now();
  stop_all(nodes);
  return seconds_between(t0, t1) * 1e9 / static_cast<double>(hops);
}

// ---- latency ---------------------------------------------------------------------------------

struct latency_state {
  std::uint64_t warmup = 0;
  std::uint64_t last = 0;
  std::vector<std::int64_t>* samples = nullptr;
  done_signal done;
};

std::int64_t ns_since_epoch(clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}

caf::behavior stamp_receiver(caf::event_based_actor*, latency_state* st) {
  return {
      [=](stamp_atom, std::int64_t intended, std::uint64_t index) {
        const std::int64_t now = ns_since_epoch(clock::now());
        if (index >= st->warmup) (*st->samples)[index - st->warmup] = now - intended;
        if (index == st->last) st->done.set();
      },
  };
}

std::vector<double> run_latency(const config& c) {
  const std::uint64_t n = latency_message_count(c);
  latency_state st;
  st.warmup = latency_warmup_count(c);
  st.last = st.warmup + n - 1;
  std::vector<std::int64_t> samples(n, -1);
  st.samples = &samples;
  caf_system sys(c);
  auto rx = sys->spawn(stamp_receiver, &st);
  const latency_sender_scope sender_scope;
  const auto start = clock::now() + std::chrono::milliseconds(1);
  for (std::uint64_t i = 0; i <= st.last; ++i) {
    const auto intended = start + i * latency_interval;
    pace_until(intended);
    caf::anon_send(rx, stamp_atom::value, ns_since_epoch(intended), i);
  }
  expect(st.done.wait_for(run_timeout), "latency: timed out");
  expect(std::none_of(samples.begin(), samples.end(), [](std::int64_t v) { return v < 0; }),
         "latency: a message was not recorded");
  std::sort(samples.begin(), samples.end());
  return {percentile_of_sorted(samples, 500), percentile_of_sorted(samples, 990),
          percentile_of_sorted(samples, 999)};
}

std::vector<workload> caf_workloads() {
  std::vector<workload> all;
  all.push_back({"pingpong", "caf", "ns/round trip", true, false,
                 [](const config& c) {
                   return std::to_string(pingpong_size(c)) + " round trips between two actors";
                 },
                 run_pingpong});
  all.push_back({"ask", "caf", "ns/ask", true, false,
                 [](const config& c) {
                   return std::to_string(ask_size(c)) +
                          " sequential request(...).then from an actor to another actor";
                 },
                 run_ask});
  all.push_back({"fanin", "caf", "msgs/s", false, false,
                 [](const config& c) {
                   return std::to_string(fanin_senders) + " senders x " +
                          std::to_string(fanin_size(c)) + " messages to one receiver";
                 },
                 run_fanin});
  all.push_back({"broadcast", "caf", "deliveries/s", false, false,
                 [](const config& c) {
                   return std::to_string(broadcast_size(c)) + " events to a local group with " +
                          std::to_string(broadcast_subscribers) + " members";
                 },
                 run_broadcast});
  all.push_back({"spawn", "caf", "s", true, false,
                 [](const config& c) {
                   return std::to_string(spawn_size(c)) +
                          " actors spawned, one message each, each then quits";
                 },
                 run_spawn});
  all.push_back({"idle_actor_bytes", "caf", "bytes/actor", true, true,
                 [](const config& c) {
                   return std::to_string(idle_size(c)) + " idle actors alive, RSS growth / " +
                          std::to_string(idle_size(c));
                 },
                 run_idle_actor_bytes});
  all.push_back({"ring", "caf", "ns/hop", true, false,
                 [](const config& c) {
                   return std::to_string(ring_actors) + " actors pass a token " +
                          std::to_string(ring_size(c)) + " hops";
                 },
                 run_ring});
  workload latency{"latency", "caf", "ns", true, false, latency_size, nullptr};
  latency.rows = latency_rows;
  latency.run_rows = run_latency;
  all.push_back(std::move(latency));
  return all;
}

}  // namespace
}  // namespace troupe_bench

int main(int argc, char** argv) {
  return troupe_bench::driver::run(argc, argv, "troupe-bench-caf", troupe_bench::caf_workloads());
}
