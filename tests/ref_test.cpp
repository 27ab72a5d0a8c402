// Tests of troupe::ref and troupe::address (include/troupe/ref.hpp): FIFO per sender with
// concurrent senders, identity, stop through a handle, sends to stopped actors, empty handles.
#include <atomic>
#include <latch>
#include <thread>
#include <unordered_set>
#include <vector>

#include "support.hpp"

namespace {

struct item {
  std::uint32_t sender;
  std::uint32_t sequence;
};
struct done {};

class sink {
 public:
  sink(std::uint32_t senders, std::atomic<bool>* violation, std::latch* finished)
      : next_(senders, 0), violation_(violation), finished_(finished) {}
  void on(item i) {
    if (i.sequence != next_[i.sender]) violation_->store(true);
    next_[i.sender] = i.sequence + 1;
  }
  void on(done) { finished_->count_down(); }

 private:
  std::vector<std::uint32_t> next_;
  std::atomic<bool>* violation_;
  std::latch* finished_;
};

// An actor that sends a numbered stream to a sink when told to.
struct start {};
class streamer {
 public:
  streamer(troupe::ref<sink> target, std::uint32_t id, std::uint32_t count)
      : target_(std::move(target)), id_(id), count_(count) {}
  void on(start) {
    for (std::uint32_t i = 0; i < count_; ++i) target_.send(item{id_, i});
    target_.send(done{});
  }

 private:
  troupe::ref<sink> target_;
  std::uint32_t id_;
  std::uint32_t count_;
};

struct noop {};
struct quiet_actor {
  void on(noop) {}
};

}  // namespace

TEST_CASE("messages from one sender arrive in order, with several concurrent senders",
          "[ref][ordering]") {
  constexpr std::uint32_t thread_senders = 4;
  constexpr std::uint32_t actor_senders = 4;
  constexpr std::uint32_t per_sender = 25'000;
  std::atomic<bool> violation{false};
  std::latch finished(thread_senders + actor_senders);
  troupe::runtime rt(troupe::runtime_options{.workers = 2});
  auto target = rt.spawn<sink>(thread_senders + actor_senders, &violation, &finished);

  std::vector<troupe::ref<streamer>> streamers;
  for (std::uint32_t a = 0; a < actor_senders; ++a) {
    streamers.push_back(rt.spawn<streamer>(target, thread_senders + a, per_sender));
  }
  std::vector<std::thread> threads;
  for (std::uint32_t t = 0; t < thread_senders; ++t) {
    threads.emplace_back([&, t] {
      for (std::uint32_t i = 0; i < per_sender; ++i) target.send(item{t, i});
      target.send(done{});
    });
  }
  for (auto& s : streamers) s.send(start{});
  for (auto& t : threads) t.join();
  finished.wait();
  REQUIRE_FALSE(violation.load());
  rt.shutdown();
  auto c = rt.counters();
  REQUIRE(c.handled == c.sent);
  REQUIRE(c.handled ==
          (thread_senders + actor_senders) * (per_sender + 1) + actor_senders);  // + start
}

TEST_CASE("addresses identify actors: ids, equality, hashing, type names", "[ref]") {
  troupe::runtime rt(troupe::runtime_options{.workers = 1});
  auto a = rt.spawn<quiet_actor>();
  auto b = rt.spawn<quiet_actor>();
  troupe::address untyped = a;
  troupe::ref<quiet_actor> copy = a;
  REQUIRE(untyped == a);
  REQUIRE(copy == a);
  REQUIRE_FALSE(a == b);
  REQUIRE(a.id() != 0);
  REQUIRE(a.id() != b.id());
  REQUIRE((a < b) != (b < a));
  std::unordered_set<troupe::address> set{a, b, untyped, copy};
  REQUIRE(set.size() == 2);
  REQUIRE(a.type_name().find("quiet_actor") != std::string_view::npos);

  troupe::address empty;
  REQUIRE_FALSE(empty);
  REQUIRE(empty.id() == 0);
  REQUIRE(empty.type_name().empty());
}

TEST_CASE("empty handles report misuse with invalid_ref", "[ref][misuse]") {
  troupe::ref<quiet_actor> empty;
  try {
    empty.send(noop{});
    FAIL("send through an empty ref did not throw");
  } catch (const troupe::error& e) {
    REQUIRE(e.code() == troupe::errc::invalid_ref);
  }
  REQUIRE_THROWS_AS(troupe::address{}.stop(), troupe::error);
}

TEST_CASE("stop through a handle: later sends are dead-lettered and counted", "[ref][stop]") {
  test::observer obs;
  troupe::runtime rt(obs.options());
  auto a = rt.spawn<quiet_actor>();
  a.stop();
  a.stop();       // idempotent
  rt.shutdown();  // the stop has certainly taken effect now
  REQUIRE(rt.counters().stopped == 1);

  troupe::runtime other(obs.options(1));
  auto b = other.spawn<quiet_actor>();
  REQUIRE(b.send(noop{}));
  b.stop();
  // Sends after the stop are either handled (the stop had not landed yet) or dead-lettered:
  // shutdown makes the outcome final and the counters must agree with the dead letters.
  int queued = 0;
  for (int i = 0; i < 1000; ++i) queued += b.send(noop{}) ? 1 : 0;
  other.shutdown();
  auto c = other.counters();
  test::require_accounted(c);
  REQUIRE(c.sent == 1001);
  REQUIRE(obs.dead_count(troupe::dead_letter_reason::target_stopped) == c.dead_lettered);
  REQUIRE(c.dead_lettered >= static_cast<std::uint64_t>(1000 - queued));
}

TEST_CASE("a ref that outlives its runtime is safe: sends are rejected", "[ref][lifetime]") {
  troupe::ref<quiet_actor> survivor;
  {
    troupe::runtime rt(troupe::runtime_options{.workers = 1});
    survivor = rt.spawn<quiet_actor>();
  }
  REQUIRE(survivor);
  REQUIRE_FALSE(survivor.send(noop{}));
  survivor.stop();  // a no-op on a stopped actor
}
