// Tests of the internal mailbox (include/troupe/detail/mailbox.hpp): FIFO, the idle/woke
// hand-off that guarantees exactly one scheduling per wake-up, and close().
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

TEST_CASE("claim_if_idle takes an idle mailbox exactly once", "[mailbox]") {
  mailbox box;
  REQUIRE_FALSE(box.claim_if_idle());  // scheduled, not idle
  REQUIRE(box.try_idle());
  REQUIRE(box.claim_if_idle());
  REQUIRE_FALSE(box.claim_if_idle());
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
  REQUIRE_FALSE(box.claim_if_idle());
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
