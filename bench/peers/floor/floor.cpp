// troupe-floor: the DESIGN §5 handoffs done with bare threads and atomics, no runtime: what this
// machine can do at best for the same exchange, to read troupe's (and CAF's) figures against.
// Same workload names, units, sizes, flags and JSON shape as troupe-bench (driver.hpp).
//
//   pingpong          two threads bounce one atomic counter (each spins until it is its turn,
//                     then stores the next value): ns per round trip, always cross-core.
//                     (Every spin yields the core after 1,024 rounds: on a loaded machine a
//                     descheduled partner then costs a yield, not a whole time slice.)
//   ask               the same with a request slot and a reply slot: the asker stores a value
//                     and a sequence number, the server spins on it, stores value + 1 and the
//                     sequence number in the reply slot, the asker spins on that and sums.
//   fanin             100 producer threads push 100,000 preallocated nodes each onto one
//                     intrusive MPSC list (one exchange per push, as troupe's mailbox); one
//                     consumer thread pops and counts them. msgs/s.
//   broadcast         one publisher thread: for each event, a loop of stores of the event's
//                     address into 100 per-subscriber SPSC rings; one consumer thread drains the
//                     100 rings in turn (as two cores would run 100 subscriber actors).
//                     deliveries/s.
//   spawn             the main thread allocates N 64-byte objects, each carrying its one message,
//                     and hands each through an SPSC ring to a second thread, which handles the
//                     message and frees the object. Seconds.
//   idle_actor_bytes  N heap objects of the least an idle actor needs: a mailbox (head and tail
//                     pointers), a state word and a link into a registry list. RSS growth / N,
//                     in a fresh process.
//   ring              a spin handoff along 503 cache-line-sized slots served by two threads
//                     (slot k by thread k % 2): the token crosses cores on every hop but the
//                     one from slot 502 to slot 0. ns per hop.
//   latency_*         one-way latency at the offered load of troupe-bench's `latency` (one
//                     message every 100 us from the main thread, stamped with its intended send
//                     time) through an SPSC ring to a receiver thread that spins on it.
//
// Spinning threads are what makes these floors: they are not what a runtime can afford when idle.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <latch>
#include <memory>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include "../../bench.hpp"
#include "../../driver.hpp"

namespace troupe_bench {
namespace {

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

constexpr std::size_t line = 64;

// Spins until pred() holds; after many rounds yields the core, so that a thread waiting for one
// that the OS has descheduled (2 cores, more threads) lets it run.
template <class Pred>
void spin_wait(Pred pred) {
  for (std::uint32_t n = 0; !pred(); ++n) {
    if (n < 1024) {
      cpu_relax();
    } else {
      std::this_thread::yield();
    }
  }
}

// Spins until pred(a's value) holds, yielding the core after many rounds (see spin_wait). A
// spin handoff needs both threads on a core at once: on a loaded machine these floors collapse
// (tens of us per round trip), and only a quiet machine shows the real one.
template <class T, class Pred>
T spin_then_wait(std::atomic<T>& a, Pred pred) {
  T v = a.load(std::memory_order_acquire);
  spin_wait([&] { return pred(v = a.load(std::memory_order_acquire)); });
  return v;
}

// A bounded single-producer/single-consumer ring of T (trivially copyable).
template <class T>
class spsc_ring {
 public:
  explicit spsc_ring(std::size_t capacity_pow2) : mask_(capacity_pow2 - 1), slots_(capacity_pow2) {}
  bool try_push(const T& v) {
    const std::uint64_t t = tail_.load(std::memory_order_relaxed);
    if (t - head_cache_ > mask_) {
      head_cache_ = head_.load(std::memory_order_acquire);
      if (t - head_cache_ > mask_) return false;
    }
    slots_[t & mask_] = v;
    tail_.store(t + 1, std::memory_order_release);
    return true;
  }
  void push(const T& v) {
    spin_wait([&] { return try_push(v); });
  }
  bool try_pop(T& out) {
    const std::uint64_t h = head_.load(std::memory_order_relaxed);
    if (h == tail_cache_) {
      tail_cache_ = tail_.load(std::memory_order_acquire);
      if (h == tail_cache_) return false;
    }
    out = slots_[h & mask_];
    head_.store(h + 1, std::memory_order_release);
    return true;
  }

 private:
  const std::uint64_t mask_;
  std::vector<T> slots_;
  alignas(line) std::atomic<std::uint64_t> tail_{0};
  std::uint64_t head_cache_ = 0;  // producer's copy
  alignas(line) std::atomic<std::uint64_t> head_{0};
  std::uint64_t tail_cache_ = 0;  // consumer's copy
};

// ---- pingpong --------------------------------------------------------------------------------

double run_pingpong(const config& c) {
  const std::uint64_t trips = pingpong_size(c);
  alignas(line) std::atomic<std::uint64_t> ball{0};
  std::thread other([&] {
    for (std::uint64_t i = 0; i < trips; ++i) {
      spin_then_wait(ball, [&](std::uint64_t v) { return v == 2 * i + 1; });
      ball.store(2 * i + 2, std::memory_order_release);
    }
  });
  const auto t0 = clock::now();
  for (std::uint64_t i = 0; i < trips; ++i) {
    ball.store(2 * i + 1, std::memory_order_release);
    spin_then_wait(ball, [&](std::uint64_t v) { return v == 2 * i + 2; });
  }
  const auto t1 = clock::now();
  other.join();
  expect(ball.load() == 2 * trips, "pingpong: the counter does not add up");
  return seconds_between(t0, t1) * 1e9 / static_cast<double>(trips);
}

// ---- ask -------------------------------------------------------------------------------------

struct alignas(line) slot {
  std::atomic<std::uint64_t> seq{0};
  std::uint64_t value = 0;
};

double run_ask(const config& c) {
  const std::uint64_t n = ask_size(c);
  slot request;
  slot reply;
  std::thread server([&] {
    for (std::uint64_t i = 1; i <= n; ++i) {
      spin_then_wait(request.seq, [&](std::uint64_t v) { return v == i; });
      reply.value = request.value + 1;
      reply.seq.store(i, std::memory_order_release);
    }
  });
  std::uint64_t sum = 0;
  const auto t0 = clock::now();
  for (std::uint64_t i = 1; i <= n; ++i) {
    request.value = i - 1;
    request.seq.store(i, std::memory_order_release);
    spin_then_wait(reply.seq, [&](std::uint64_t v) { return v == i; });
    sum += reply.value;
  }
  const auto t1 = clock::now();
  server.join();
  expect(sum == n * (n + 1) / 2, "ask: the replies do not add up");
  return seconds_between(t0, t1) * 1e9 / static_cast<double>(n);
}

// ---- fanin -----------------------------------------------------------------------------------

struct mpsc_node {
  std::atomic<mpsc_node*> next{nullptr};
  std::uint64_t value = 0;
};

// Vyukov's intrusive MPSC list: push is one exchange and one store; the consumer follows next.
class mpsc_list {
 public:
  mpsc_list() : head_(&stub_), tail_(&stub_) {}
  void push(mpsc_node* n) {
    n->next.store(nullptr, std::memory_order_relaxed);
    mpsc_node* prev = head_.exchange(n, std::memory_order_acq_rel);
    prev->next.store(n, std::memory_order_release);
  }
  // The next value, or false if the list is (momentarily) empty. Nodes are not reused during a
  // run, so the one-node lag of this list needs no care.
  bool try_pop(std::uint64_t& out) {
    mpsc_node* next = tail_->next.load(std::memory_order_acquire);
    if (next == nullptr) return false;
    tail_ = next;
    out = next->value;
    return true;
  }

 private:
  alignas(line) std::atomic<mpsc_node*> head_;
  alignas(line) mpsc_node* tail_;
  mpsc_node stub_;
};

double run_fanin(const config& c) {
  const std::uint64_t per = fanin_size(c);
  const std::uint64_t total = fanin_senders * per;
  std::vector<std::unique_ptr<mpsc_node[]>> nodes;
  for (std::uint64_t s = 0; s < fanin_senders; ++s)
    nodes.push_back(std::make_unique<mpsc_node[]>(per));
  mpsc_list list;
  std::latch go(1);
  std::vector<std::thread> producers;
  for (std::uint64_t s = 0; s < fanin_senders; ++s) {
    producers.emplace_back([&, s] {
      go.wait();
      mpsc_node* mine = nodes[s].get();
      for (std::uint64_t i = 0; i < per; ++i) {
        mine[i].value = i;
        list.push(&mine[i]);
      }
    });
  }
  std::uint64_t count = 0;
  std::uint64_t sum = 0;
  const auto t0 = clock::now();
  go.count_down();
  while (count < total) {
    std::uint64_t v = 0;
    std::uint32_t idle = 0;
    while (!list.try_pop(v)) {
      if (++idle < 64) {
        cpu_relax();
      } else {
        std::this_thread::yield();  // 100 producers share 2 cores with this consumer
      }
    }
    sum += v;
    ++count;
  }
  const auto t1 = clock::now();
  for (auto& p : producers) p.join();
  expect(sum == fanin_senders * (per * (per - 1) / 2), "fanin: the values do not add up");
  return static_cast<double>(total) / seconds_between(t0, t1);
}

// ---- broadcast -------------------------------------------------------------------------------

struct event {
  std::uint64_t n;
};

double run_broadcast(const config& c) {
  const std::uint64_t events = broadcast_size(c);
  const std::uint64_t deliveries = events * broadcast_subscribers;
  std::vector<event> log(events);
  for (std::uint64_t i = 0; i < events; ++i) log[i].n = i;
  std::vector<std::unique_ptr<spsc_ring<const event*>>> rings;
  for (std::uint64_t s = 0; s < broadcast_subscribers; ++s) {
    rings.push_back(std::make_unique<spsc_ring<const event*>>(1024));
  }
  std::uint64_t sum = 0;
  std::thread consumer([&] {
    std::uint64_t handled = 0;
    std::uint32_t idle = 0;
    while (handled < deliveries) {
      const std::uint64_t before = handled;
      for (auto& r : rings) {
        const event* e = nullptr;
        while (r->try_pop(e)) {
          sum += e->n;
          ++handled;
        }
      }
      // An empty sweep: relax, and after many give the core to the publisher (2 cores, loaded).
      if (handled != before) {
        idle = 0;
      } else if (++idle < 1024) {
        cpu_relax();
      } else {
        std::this_thread::yield();
      }
    }
  });
  const auto t0 = clock::now();
  for (const event& e : log) {
    for (auto& r : rings) r->push(&e);
  }
  consumer.join();
  const auto t1 = clock::now();
  expect(sum == broadcast_subscribers * (events * (events - 1) / 2),
         "broadcast: the deliveries do not add up");
  return static_cast<double>(deliveries) / seconds_between(t0, t1);
}

// ---- spawn -----------------------------------------------------------------------------------

struct alignas(line) bare_actor {
  std::uint64_t message;
  std::uint64_t state;
};

double run_spawn(const config& c) {
  const std::uint64_t n = spawn_size(c);
  spsc_ring<bare_actor*> run_queue(1024);
  std::uint64_t handled = 0;
  const auto t0 = clock::now();
  std::thread worker([&] {
    while (handled < n) {
      bare_actor* a = nullptr;
      spin_wait([&] { return run_queue.try_pop(a); });
      a->state += a->message;
      ++handled;
      delete a;
    }
  });
  for (std::uint64_t i = 0; i < n; ++i) run_queue.push(new bare_actor{1, 0});
  worker.join();
  const auto t1 = clock::now();
  expect(handled == n, "spawn: not every object was handled");
  return seconds_between(t0, t1);
}

// ---- idle_actor_bytes ------------------------------------------------------------------------

struct idle_bare_actor {
  idle_bare_actor* registry_next;
  void* mailbox_head;
  void* mailbox_tail;
  std::uint64_t state;
};

double run_idle_actor_bytes(const config& c) {
  const std::uint64_t n = idle_size(c);
  const std::size_t before = resident_bytes();
  idle_bare_actor* registry = nullptr;
  for (std::uint64_t i = 0; i < n; ++i) {
    registry = new idle_bare_actor{registry, nullptr, nullptr, i};
  }
  const std::size_t after = resident_bytes();
  std::uint64_t count = 0;
  while (registry != nullptr) {
    idle_bare_actor* next = registry->registry_next;
    delete registry;
    registry = next;
    ++count;
  }
  expect(count == n, "idle_actor_bytes: the registry lost objects");
  expect(before != 0 && after >= before, "idle_actor_bytes: cannot read the resident set size");
  return static_cast<double>(after - before) / static_cast<double>(n);
}

// ---- ring ------------------------------------------------------------------------------------

struct alignas(line) ring_slot {
  std::atomic<std::int64_t> left{-1};  // -1: the token is not here
};

double run_ring(const config& c) {
  const std::int64_t hops = static_cast<std::int64_t>(ring_size(c));
  std::vector<ring_slot> slots(ring_actors);
  // Hop h brings the token to slot h % 503 with hops - h left; the owner of that slot passes it
  // on. Each thread walks the hops in order and serves those that land on its slots.
  auto serve = [&](std::uint64_t me) {
    for (std::int64_t h = 0; h <= hops; ++h) {
      const auto s = static_cast<std::uint64_t>(h) % ring_actors;
      if (s % 2 != me) continue;
      ring_slot& here = slots[s];
      spin_then_wait(here.left, [&](std::int64_t v) { return v == hops - h; });
      here.left.store(-1, std::memory_order_relaxed);
      if (h < hops) {
        std::atomic<std::int64_t>& next = slots[(s + 1) % ring_actors].left;
        next.store(hops - h - 1, std::memory_order_release);
      }
    }
  };
  std::thread odd(serve, 1);
  const auto t0 = clock::now();
  slots[0].left.store(hops, std::memory_order_release);
  serve(0);
  odd.join();
  const auto t1 = clock::now();
  return seconds_between(t0, t1) * 1e9 / static_cast<double>(hops);
}

// ---- latency ---------------------------------------------------------------------------------

struct bare_stamp {
  clock::time_point intended;
  std::uint64_t index;
};

std::vector<double> run_latency(const config& c) {
  const std::uint64_t n = latency_message_count(c);
  const std::uint64_t warmup = latency_warmup_count(c);
  const std::uint64_t last = warmup + n - 1;
  std::vector<std::int64_t> samples(n, -1);
  spsc_ring<bare_stamp> ring(4096);
  std::thread receiver([&] {
    for (;;) {
      bare_stamp s{};
      spin_wait([&] { return ring.try_pop(s); });
      const auto now = clock::now();
      if (s.index >= warmup) {
        samples[s.index - warmup] =
            std::chrono::duration_cast<std::chrono::nanoseconds>(now - s.intended).count();
      }
      if (s.index == last) return;
    }
  });
  const latency_sender_scope sender_scope;
  const auto start = clock::now() + std::chrono::milliseconds(1);
  for (std::uint64_t i = 0; i <= last; ++i) {
    const auto intended = start + i * latency_interval;
    pace_until(intended);
    ring.push(bare_stamp{intended, i});
  }
  receiver.join();
  expect(std::none_of(samples.begin(), samples.end(), [](std::int64_t v) { return v < 0; }),
         "latency: a message was not recorded");
  std::sort(samples.begin(), samples.end());
  return {percentile_of_sorted(samples, 500), percentile_of_sorted(samples, 990),
          percentile_of_sorted(samples, 999)};
}

std::vector<workload> floor_workloads() {
  std::vector<workload> all;
  all.push_back({"pingpong", "floor", "ns/round trip", true, false,
                 [](const config& c) {
                   return std::to_string(pingpong_size(c)) +
                          " round trips of one atomic between two spinning threads";
                 },
                 run_pingpong});
  all.push_back({"ask", "floor", "ns/ask", true, false,
                 [](const config& c) {
                   return std::to_string(ask_size(c)) +
                          " request/reply slot exchanges between two spinning threads";
                 },
                 run_ask});
  all.push_back({"fanin", "floor", "msgs/s", false, false,
                 [](const config& c) {
                   return std::to_string(fanin_senders) + " threads x " +
                          std::to_string(fanin_size(c)) +
                          " pushes onto one intrusive MPSC list, one consumer thread";
                 },
                 run_fanin});
  all.push_back({"broadcast", "floor", "deliveries/s", false, false,
                 [](const config& c) {
                   return std::to_string(broadcast_size(c)) + " events stored into " +
                          std::to_string(broadcast_subscribers) +
                          " SPSC rings, one consumer thread";
                 },
                 run_broadcast});
  all.push_back({"spawn", "floor", "s", true, false,
                 [](const config& c) {
                   return std::to_string(spawn_size(c)) +
                          " objects allocated, handed to a second thread, handled, freed";
                 },
                 run_spawn});
  all.push_back({"idle_actor_bytes", "floor", "bytes/actor", true, true,
                 [](const config& c) {
                   return std::to_string(idle_size(c)) +
                          " heap objects (mailbox head and tail, state, registry link), RSS "
                          "growth / " +
                          std::to_string(idle_size(c));
                 },
                 run_idle_actor_bytes});
  all.push_back({"ring", "floor", "ns/hop", true, false,
                 [](const config& c) {
                   return std::to_string(ring_size(c)) + " hops along " +
                          std::to_string(ring_actors) + " slots served by two spinning threads";
                 },
                 run_ring});
  workload latency{"latency", "floor", "ns", true, false, latency_size, nullptr};
  latency.rows = latency_rows;
  latency.run_rows = run_latency;
  all.push_back(std::move(latency));
  return all;
}

}  // namespace
}  // namespace troupe_bench

int main(int argc, char** argv) {
  return troupe_bench::driver::run(argc, argv, "troupe-floor", troupe_bench::floor_workloads());
}
