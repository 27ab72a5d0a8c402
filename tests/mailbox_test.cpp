// Tests of the internal mailbox (include/troupe/detail/mailbox.hpp): FIFO, the idle/woke
// hand-off that guarantees exactly one scheduling per wake-up, and close().
#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include <troupe/detail/mailbox.hpp>

namespace {

using troupe::detail::envelope;
using troupe::detail::mailbox;

struct numbered : envelope {
  std::uint32_t producer = 0;
  std::uint32_t sequence = 0;
};

}  // namespace

TEST_CASE("a new mailbox is scheduled, goes idle only when empty, and FIFO", "[mailbox]") {
  mailbox box;
  std::vector<numbered> items(3);
  // A new actor starts scheduled (to run on_start): the first push does not wake it.
  REQUIRE(box.push(&items[0]) == mailbox::push_result::queued);
  REQUIRE_FALSE(box.try_idle());  // a message is waiting
  REQUIRE(box.pop() == &items[0]);
  REQUIRE(box.pop() == nullptr);
  REQUIRE(box.try_idle());
  REQUIRE(box.push(&items[1]) == mailbox::push_result::woke);  // the pusher must schedule
  REQUIRE(box.push(&items[2]) == mailbox::push_result::queued);
  REQUIRE(box.pop() == &items[1]);
  REQUIRE(box.pop() == &items[2]);
  REQUIRE(box.pop() == nullptr);
}

TEST_CASE("claim_or_flag claims an idle mailbox once, and keeps a running one from idling",
          "[mailbox]") {
  mailbox box;
  REQUIRE_FALSE(box.claim_or_flag());  // scheduled, not idle: flagged instead
  REQUIRE(box.pop() == nullptr);       // the flag is no message...
  REQUIRE_FALSE(box.try_idle());       // ...but the consumer may not go idle before it looks
  REQUIRE(box.try_idle());             // once only
  REQUIRE(box.claim_or_flag());
  REQUIRE_FALSE(box.claim_or_flag());  // claimed, so running: flagged
  REQUIRE_FALSE(box.claim_or_flag());  // already flagged
  numbered m;
  REQUIRE(box.push(&m) == mailbox::push_result::queued);  // a flagged mailbox queues as usual
  REQUIRE(box.pop() == &m);
  REQUIRE(box.pop() == nullptr);
  REQUIRE(box.try_idle());  // the message took the flag's place, and was looked at
}

TEST_CASE("close returns what was queued, oldest first, and refuses later pushes", "[mailbox]") {
  mailbox box;
  std::vector<numbered> items(5);
  for (std::uint32_t i = 0; i < 5; ++i) {
    items[i].sequence = i;
    REQUIRE(box.push(&items[i]) != mailbox::push_result::closed);
  }
  REQUIRE(box.pop() == &items[0]);  // items 1..4: one in the consumer cache, three in the head
  REQUIRE(box.push(&items[0]) == mailbox::push_result::queued);  // re-queue 0 behind 4
  envelope* rest = box.close();
  std::vector<std::uint32_t> order;
  for (envelope* e = rest; e != nullptr; e = e->next) {
    order.push_back(static_cast<numbered*>(e)->sequence);
  }
  REQUIRE(order == std::vector<std::uint32_t>{1, 2, 3, 4, 0});
  REQUIRE(box.closed());
  numbered late;
  REQUIRE(box.push(&late) == mailbox::push_result::closed);
  REQUIRE_FALSE(box.claim_or_flag());
}

TEST_CASE("concurrent producers: per-producer FIFO and one wake-up per idle period",
          "[mailbox][concurrency]") {
  constexpr std::uint32_t producers = 4;
  constexpr std::uint32_t per_producer = 50'000;
  mailbox box;
  std::vector<std::unique_ptr<numbered[]>> items;
  for (std::uint32_t p = 0; p < producers; ++p) {
    items.emplace_back(new numbered[per_producer]);
    for (std::uint32_t i = 0; i < per_producer; ++i) {
      items[p][i].producer = p;
      items[p][i].sequence = i;
    }
  }
  // The consumer's right to run is a token: it gives it up with try_idle and gets it back from
  // whichever push reports `woke`. Two holders at once, or none with messages waiting, fail.
  std::atomic<int> holders{1};
  std::atomic<std::uint32_t> wakeups{0};
  std::atomic<bool> violation{false};

  std::vector<std::thread> threads;
  for (std::uint32_t p = 0; p < producers; ++p) {
    threads.emplace_back([&, p] {
      for (std::uint32_t i = 0; i < per_producer; ++i) {
        if (box.push(&items[p][i]) == mailbox::push_result::woke) {
          wakeups.fetch_add(1);
          if (holders.fetch_add(1) != 0) violation = true;
          holders.notify_one();
        }
      }
    });
  }
  std::vector<std::uint32_t> next(producers, 0);
  std::uint64_t received = 0;
  std::uint32_t idles = 0;
  while (received < std::uint64_t{producers} * per_producer) {
    if (envelope* e = box.pop()) {
      auto* n = static_cast<numbered*>(e);
      if (n->sequence != next[n->producer]) violation = true;
      next[n->producer] = n->sequence + 1;
      ++received;
      continue;
    }
    // Give the token up first: once try_idle succeeds a producer may take it at once.
    if (holders.fetch_sub(1) != 1) violation = true;
    if (box.try_idle()) {
      ++idles;
      holders.wait(0);                       // until a producer's `woke` hands the token back
    } else if (holders.fetch_add(1) != 0) {  // messages arrived: nobody else can hold it
      violation = true;
    }
  }
  for (auto& t : threads) t.join();
  REQUIRE_FALSE(violation.load());
  REQUIRE(wakeups.load() == idles);
  for (std::uint32_t p = 0; p < producers; ++p) REQUIRE(next[p] == per_producer);
}

// ---- bounded mailboxes and overflow policies (include/troupe/mailbox.hpp) --------------------

#include <latch>

#include "support.hpp"

namespace {

struct hold {
  std::latch* entered;
  std::latch* release;
};
struct value {
  int n;
};
struct query {};

template <troupe::overflow Policy>
class gated {
 public:
  static constexpr troupe::mailbox_options mailbox{.capacity = 8, .overflow = Policy};
  explicit gated(std::vector<int>* seen) : seen_(seen) {}
  void on(hold h) {
    h.entered->count_down();
    h.release->wait();  // keeps the actor busy while the test fills its mailbox
  }
  void on(value v) { seen_->push_back(v.n); }
  int on(query) const { return static_cast<int>(seen_->size()); }

 private:
  std::vector<int>* seen_;
};

// Spawns a gated actor, parks it in a handler, and fills its mailbox with 0..count-1.
template <troupe::overflow Policy>
struct filled {
  test::observer obs;
  std::vector<int> seen;
  std::latch entered{1};
  std::latch release{1};
  troupe::runtime rt{obs.options()};
  troupe::ref<gated<Policy>> actor = rt.template spawn<gated<Policy>>(&seen);
  std::vector<bool> accepted;

  explicit filled(int count) {
    actor.send(hold{&entered, &release});
    entered.wait();
    for (int i = 0; i < count; ++i) accepted.push_back(actor.send(value{i}));
  }
};

}  // namespace

TEST_CASE("reject: a full mailbox refuses sends and fails asks with mailbox_full",
          "[mailbox][flow]") {
  filled<troupe::overflow::reject> f(10);
  REQUIRE(std::count(f.accepted.begin(), f.accepted.end(), true) == 8);
  REQUIRE_FALSE(f.accepted[8]);
  REQUIRE_FALSE(f.accepted[9]);
  try {
    static_cast<void>(f.actor.ask(query{}).get());
    FAIL("the ask was accepted by a full mailbox");
  } catch (const troupe::error& e) {
    REQUIRE(e.code() == troupe::errc::mailbox_full);
  }
  f.release.count_down();
  f.rt.shutdown();
  REQUIRE(f.seen == std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7});
  REQUIRE(f.rt.counters().rejected == 3);
  test::require_accounted(f.rt.counters());
}

TEST_CASE("drop_newest: the new message is dead-lettered", "[mailbox][flow]") {
  filled<troupe::overflow::drop_newest> f(10);
  REQUIRE_FALSE(f.accepted[8]);
  f.release.count_down();
  f.rt.shutdown();
  REQUIRE(f.seen == std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7});
  REQUIRE(f.obs.dead_count(troupe::dead_letter_reason::mailbox_full) == 2);
  test::require_accounted(f.rt.counters());
}

TEST_CASE("drop_oldest: the oldest waiting messages are dead-lettered", "[mailbox][flow]") {
  filled<troupe::overflow::drop_oldest> f(13);
  REQUIRE(std::count(f.accepted.begin(), f.accepted.end(), true) == 13);
  f.release.count_down();
  f.rt.shutdown();
  REQUIRE(f.seen == std::vector<int>{5, 6, 7, 8, 9, 10, 11, 12});  // the newest 8
  REQUIRE(f.obs.dead_count(troupe::dead_letter_reason::mailbox_full) == 5);
  test::require_accounted(f.rt.counters());
}

namespace {

struct burst {
  int count;
  std::latch* done;
};

class bounded_sink {
 public:
  static constexpr troupe::mailbox_options mailbox{.capacity = 100};
  bounded_sink(troupe::context& ctx, std::atomic<int>* next, std::atomic<bool>* broken,
               std::atomic<std::size_t>* deepest)
      : ctx_(ctx), next_(next), broken_(broken), deepest_(deepest) {}
  void on(value v) {
    if (v.n != next_->load()) broken_->store(true);
    next_->store(v.n + 1);
    const std::size_t depth = troupe::detail::cell_of(ctx_).extras()->depth.load();
    if (depth > deepest_->load()) deepest_->store(depth);
  }

 private:
  troupe::context& ctx_;
  std::atomic<int>* next_;
  std::atomic<bool>* broken_;
  std::atomic<std::size_t>* deepest_;
};

class pusher {
 public:
  explicit pusher(troupe::ref<bounded_sink> to) : to_(std::move(to)) {}
  troupe::task<void> on(burst b) {
    for (int i = 0; i < b.count; ++i) co_await to_.send_when_ready(value{i});
    b.done->count_down();
  }

 private:
  troupe::ref<bounded_sink> to_;
};

}  // namespace

TEST_CASE("send_when_ready: a burst through a bounded mailbox loses nothing, stays bounded",
          "[mailbox][flow]") {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  constexpr int messages = 100'000;
#else
  constexpr int messages = 1'000'000;
#endif
  std::atomic<int> next{0};
  std::atomic<bool> broken{false};
  std::atomic<std::size_t> deepest{0};
  std::latch done(1);
  troupe::runtime rt(troupe::runtime_options{.workers = 2});
  auto sink = rt.spawn<bounded_sink>(&next, &broken, &deepest);
  rt.spawn<pusher>(sink).send(burst{messages, &done});
  done.wait();
  rt.shutdown();
  REQUIRE(next.load() == messages);  // every message, in order
  REQUIRE_FALSE(broken.load());
  // Never more than the bound waiting; the count may read one higher while the sender's
  // reservation attempt, which it takes back at once, is in flight.
  REQUIRE(deepest.load() <= 100 + 1);
  const auto c = rt.counters();
  REQUIRE(c.dead_lettered == 0);
  REQUIRE(c.rejected == 0);
  test::require_accounted(c);
}

TEST_CASE("drop_oldest is bounded at the send, while the receiver is busy", "[mailbox][flow]") {
  constexpr int sends = 100'000;
  filled<troupe::overflow::drop_oldest> f(sends);  // the actor is held in a handler meanwhile
  // Every send was admitted (send returns true under drop_oldest)...
  // (CHECK, not REQUIRE, while the actor is held: a failure must still release it.)
  CHECK(std::count(f.accepted.begin(), f.accepted.end(), true) == sends);
  // ...and the oldest were dead-lettered as the sends came, not when the receiver pops: the
  // mailbox never held more than its capacity (8).
  CHECK(f.obs.dead_count(troupe::dead_letter_reason::mailbox_full) == sends - 8);
  CHECK(troupe::detail::access::cell_of(f.actor)->extras()->depth.load() == 8);
  f.release.count_down();
  f.rt.shutdown();
  std::vector<int> newest;
  for (int i = sends - 8; i < sends; ++i) newest.push_back(i);
  REQUIRE(f.seen == newest);
  test::require_accounted(f.rt.counters());
}

namespace {

struct ask_value {
  int n;
};
class gated_asked {
 public:
  static constexpr troupe::mailbox_options mailbox{.capacity = 2,
                                                   .overflow = troupe::overflow::drop_oldest};
  void on(hold h) {
    h.entered->count_down();
    h.release->wait();
  }
  int on(ask_value a) { return a.n; }
};

}  // namespace

TEST_CASE("drop_oldest: an ask dropped as the oldest fails at once with mailbox_full",
          "[mailbox][flow]") {
  test::observer obs;
  troupe::runtime rt(obs.options());
  auto actor = rt.spawn<gated_asked>();
  std::latch entered(1);
  std::latch release(1);
  actor.send(hold{&entered, &release});
  entered.wait();
  auto first = actor.ask(ask_value{1});
  auto second = actor.ask(ask_value{2});
  auto third = actor.ask(ask_value{3});  // full: the first ask is dropped, at this send
  // The third send dropped the first ask, so it has completed, with the actor still held.
  const bool ready = first.ready();
  release.count_down();
  REQUIRE(ready);
  try {
    static_cast<void>(first.get());
    FAIL("the dropped ask completed");
  } catch (const troupe::error& e) {
    REQUIRE(e.code() == troupe::errc::mailbox_full);
  }
  REQUIRE(second.get() == 2);
  REQUIRE(third.get() == 3);
  rt.shutdown();
  test::require_accounted(rt.counters());
}

// ---- stress: many producers, one consumer (issue 16) ------------------------------------------
// Plain threads and actors send numbered messages to one consumer at once, unbounded and under
// each overflow policy: the consumer sees each producer's messages in order (policies may drop,
// never reorder or duplicate), and every message is handled, dead-lettered or rejected.

namespace {

struct numbered_msg {
  std::uint32_t producer;
  std::uint32_t sequence;
};
struct produce {
  std::uint32_t producer;
  std::uint32_t count;
};

constexpr std::uint32_t stress_threads = 4;
constexpr std::uint32_t stress_actors = 4;
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr std::uint32_t stress_per_producer = 3'000;
#else
constexpr std::uint32_t stress_per_producer = 30'000;
#endif

struct stress_log {
  std::vector<std::int64_t> last = std::vector<std::int64_t>(stress_threads + stress_actors, -1);
  std::uint64_t handled = 0;
  std::uint64_t reordered = 0;
  std::size_t deepest = 0;  // only the consumer writes it, one handler at a time
};

template <std::size_t Capacity, troupe::overflow Policy>
class stress_sink {
 public:
  static constexpr troupe::mailbox_options mailbox{.capacity = Capacity, .overflow = Policy};
  stress_sink(troupe::context& ctx, stress_log* log) : ctx_(ctx), log_(log) {}
  void on(numbered_msg m) {
    std::int64_t& last = log_->last[m.producer];
    if (static_cast<std::int64_t>(m.sequence) <= last) ++log_->reordered;
    last = m.sequence;
    ++log_->handled;
    if constexpr (Capacity != 0) {
      const std::size_t depth = troupe::detail::cell_of(ctx_).extras()->depth.load();
      if (depth > log_->deepest) log_->deepest = depth;
    }
  }

 private:
  troupe::context& ctx_;
  stress_log* log_;
};

template <class Sink>
class stress_source {
 public:
  stress_source(troupe::ref<Sink> to, std::latch* done) : to_(std::move(to)), done_(done) {}
  void on(produce p) {
    for (std::uint32_t i = 0; i < p.count; ++i) to_.send(numbered_msg{p.producer, i});
    done_->count_down();
  }

 private:
  troupe::ref<Sink> to_;
  std::latch* done_;
};

template <std::size_t Capacity, troupe::overflow Policy>
stress_log run_stress(troupe::runtime_counters& counters) {
  using sink_type = stress_sink<Capacity, Policy>;
  stress_log log;
  std::latch done(stress_threads + stress_actors);
  troupe::runtime rt(troupe::runtime_options{.workers = 2});
  auto sink = rt.spawn<sink_type>(&log);
  for (std::uint32_t a = 0; a < stress_actors; ++a) {
    rt.spawn<stress_source<sink_type>>(sink, &done)
        .send(produce{stress_threads + a, stress_per_producer});
  }
  std::vector<std::thread> threads;
  for (std::uint32_t t = 0; t < stress_threads; ++t) {
    threads.emplace_back([&, t] {
      for (std::uint32_t i = 0; i < stress_per_producer; ++i) sink.send(numbered_msg{t, i});
      done.count_down();
    });
  }
  for (auto& t : threads) t.join();
  done.wait();
  rt.shutdown();  // drains what is still queued: handled, not dead-lettered
  counters = rt.counters();
  return log;
}

constexpr std::uint64_t stress_total =
    std::uint64_t{stress_threads + stress_actors} * stress_per_producer;

}  // namespace

TEST_CASE("stress: many producers, one consumer, unbounded: in order, nothing lost",
          "[mailbox][concurrency]") {
  troupe::runtime_counters c;
  const stress_log log = run_stress<0, troupe::overflow::reject>(c);
  REQUIRE(log.reordered == 0);
  REQUIRE(log.handled == stress_total);
  for (std::int64_t last : log.last) REQUIRE(last == stress_per_producer - 1);
  REQUIRE(c.sent == stress_total + stress_actors);  // and one `produce` per source actor
  REQUIRE(c.dead_lettered == 0);
  test::require_accounted(c);
}

namespace {

template <troupe::overflow Policy>
void check_bounded_stress() {
  constexpr std::size_t capacity = 16;
  troupe::runtime_counters c;
  const stress_log log = run_stress<capacity, Policy>(c);
  REQUIRE(log.reordered == 0);
  REQUIRE(log.handled > 0);
  REQUIRE(log.handled <= stress_total);
  // The depth read in a handler may include reservations that their senders take back at once.
  REQUIRE(log.deepest <= capacity + stress_threads + stress_actors);
  REQUIRE(c.sent == stress_total + stress_actors);
  REQUIRE(c.handled == log.handled + stress_actors);
  REQUIRE(c.handled + c.dead_lettered + c.rejected == c.sent);
  if (Policy == troupe::overflow::reject) REQUIRE(c.dead_lettered == 0);
  if (Policy != troupe::overflow::reject) REQUIRE(c.rejected == 0);
}

}  // namespace

TEST_CASE("stress: many producers, one bounded consumer: in order, bounded, all accounted for",
          "[mailbox][concurrency][flow]") {
  SECTION("reject") {
    check_bounded_stress<troupe::overflow::reject>();
  }
  SECTION("drop_newest") {
    check_bounded_stress<troupe::overflow::drop_newest>();
  }
  SECTION("drop_oldest") {
    check_bounded_stress<troupe::overflow::drop_oldest>();
  }
}
