// bank: the flagship of the foundation — accounts as actors, a coroutine handler that suspends
// on a timer without blocking a thread, delayed sends, a failing actor whose messages become
// dead letters, and the runtime's accounting proving that every message is accounted for.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <future>
#include <latch>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <troupe/troupe.hpp>

using namespace std::chrono_literals;

struct deposit {
  long cents;
};
struct withdraw {
  long cents;
};
struct statement {
  std::promise<long>* balance;
};
struct slow_audit {
  std::latch* done;
};
struct interest {};

class account {
 public:
  account(troupe::context& ctx, std::string owner) : ctx_(ctx), owner_(std::move(owner)) {}

  void on(deposit d) { cents_ += d.cents; }
  void on(withdraw w) {
    if (w.cents > cents_) throw std::runtime_error(owner_ + ": insufficient funds");
    cents_ -= w.cents;
  }
  void on(statement s) { s.balance->set_value(cents_); }
  void on(interest) { cents_ += cents_ / 100; }

  // Suspends for 20 ms; the worker thread is free meanwhile, and no other message of this
  // account runs until the audit finishes (handlers never interleave).
  troupe::task<void> on(slow_audit a) {
    const long before = cents_;
    co_await ctx_.sleep_for(20ms);
    std::printf("audit of %s: %ld.%02ld before and after the pause (%s)\n", owner_.c_str(),
                before / 100, before % 100, before == cents_ ? "consistent" : "INTERLEAVED");
    a.done->count_down();
  }

  void on_stop() { std::printf("account %s closed\n", owner_.c_str()); }

 private:
  troupe::context& ctx_;
  std::string owner_;
  long cents_ = 0;
};

long balance_of(const troupe::ref<account>& acc) {
  std::promise<long> p;
  acc.send(statement{&p});
  return p.get_future().get();
}

int main() {
  std::mutex print;
  std::vector<std::string> dead;
  troupe::runtime_options options;
  options.on_dead_letter = [&](const troupe::dead_letter& d) {
    std::lock_guard lock(print);
    dead.push_back(std::string(d.message_type) + " (" + std::string(troupe::to_string(d.reason)) +
                   (d.detail.empty() ? "" : ": " + d.detail) + ")");
  };
  options.on_failure = [&](const troupe::address& who, std::string_view what) {
    std::lock_guard lock(print);
    std::printf("failure hook: actor #%llu failed: %.*s\n",
                static_cast<unsigned long long>(who.id()), static_cast<int>(what.size()),
                what.data());
  };
  troupe::runtime rt(options);
  std::printf("runtime with %zu worker threads\n", rt.worker_count());

  auto alice = rt.spawn<account>("alice");
  auto bob = rt.spawn<account>("bob");

  // Four threads deposit concurrently; each account sees each thread's deposits in order.
  std::vector<std::thread> tellers;
  for (int t = 0; t < 4; ++t) {
    tellers.emplace_back([&] {
      for (int i = 0; i < 25'000; ++i) {
        alice.send(deposit{1});
        bob.send(deposit{2});
      }
    });
  }
  for (auto& t : tellers) t.join();
  std::printf("alice holds %ld.%02ld, bob holds %ld.%02ld\n", balance_of(alice) / 100,
              balance_of(alice) % 100, balance_of(bob) / 100, balance_of(bob) % 100);

  // A suspended handler keeps the actor busy: the deposit waits for the audit to finish.
  std::latch audited(1);
  alice.send(slow_audit{&audited});
  alice.send(deposit{100});
  audited.wait();

  // Interest is credited 10 ms from now, through the timer thread and alice's mailbox.
  rt.send_after(10ms, alice, interest{});

  // Bob overdraws: the handler throws, bob fails, and what was queued for him becomes dead
  // letters with the reason (bob is not supervised, so it simply stops; see
  // examples/supervision_tree.cpp for restarts).
  bob.send(withdraw{1'000'000});
  bob.send(deposit{5});

  rt.shutdown();  // graceful: lets the interest arrive, then stops everything
  const auto c = rt.counters();
  std::printf("dead letters:\n");
  for (const auto& d : dead) std::printf("  %s\n", d.c_str());
  std::printf("sent %llu = handled %llu + dead-lettered %llu + rejected %llu: %s\n",
              static_cast<unsigned long long>(c.sent), static_cast<unsigned long long>(c.handled),
              static_cast<unsigned long long>(c.dead_lettered),
              static_cast<unsigned long long>(c.rejected),
              c.sent == c.handled + c.dead_lettered + c.rejected ? "every message accounted for"
                                                                 : "MISMATCH");
  return c.sent == c.handled + c.dead_lettered + c.rejected ? 0 : 1;
}
