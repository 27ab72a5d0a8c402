// Tests of troupe::task (include/troupe/task.hpp): results, exceptions and nesting, driven by
// a runtime so that handlers that return tasks are exercised the way users write them.
#include <latch>
#include <memory>
#include <stdexcept>
#include <string>

#include "support.hpp"

using namespace std::chrono_literals;

namespace {

troupe::task<int> depth(int n) {
  if (n == 0) co_return 0;
  co_return 1 + co_await depth(n - 1);
}

troupe::task<std::unique_ptr<int>> boxed(int v) {
  co_return std::make_unique<int>(v);
}

troupe::task<int> thrower() {
  throw std::runtime_error("inner failure");
  co_return 0;  // NOLINT: unreachable; makes this a coroutine
}

struct results {
  int depth = -1;
  int boxed = -1;
  std::string caught;
  int slept_sum = -1;
};

struct run {
  std::latch* done;
};
struct run_sleepy {
  std::latch* done;
};
struct run_failing {};

class nested {
 public:
  nested(troupe::context& ctx, results* out) : ctx_(ctx), out_(out) {}

  troupe::task<void> on(run r) {
    out_->depth = co_await depth(1000);  // symmetric transfer: no stack growth
    auto p = co_await boxed(42);
    out_->boxed = *p;
    try {
      co_await thrower();
    } catch (const std::runtime_error& e) {
      out_->caught = e.what();
    }
    r.done->count_down();
  }

  troupe::task<void> on(run_sleepy r) {
    out_->slept_sum = co_await sleepy(3) + co_await sleepy(4);
    r.done->count_down();
  }

  troupe::task<void> on(run_failing) { co_await thrower(); }

 private:
  troupe::task<int> sleepy(int v) {
    co_await ctx_.sleep_for(1ms);
    co_return v;
  }

  troupe::context& ctx_;
  results* out_;
};

}  // namespace

TEST_CASE("task results, move-only results and exceptions travel through co_await", "[task]") {
  test::observer obs;
  results out;
  troupe::runtime rt(obs.options());
  auto actor = rt.spawn<nested>(&out);
  std::latch a(1);
  std::latch b(1);
  actor.send(run{&a});
  actor.send(run_sleepy{&b});
  a.wait();
  b.wait();
  REQUIRE(out.depth == 1000);
  REQUIRE(out.boxed == 42);
  REQUIRE(out.caught == "inner failure");
  REQUIRE(out.slept_sum == 7);
  rt.shutdown();
  REQUIRE(rt.counters().handled == 2);
  REQUIRE(obs.failures.empty());
  test::require_accounted(rt.counters());
}

TEST_CASE("an exception escaping a task handler fails the actor like a sync one", "[task]") {
  test::observer obs;
  results out;
  troupe::runtime rt(obs.options());
  auto actor = rt.spawn<nested>(&out);
  actor.send(run_failing{});
  rt.shutdown();
  REQUIRE(obs.failures.size() == 1);
  REQUIRE(obs.failures[0] == "inner failure");
  REQUIRE(obs.dead_count(troupe::dead_letter_reason::handler_failed) == 1);
  REQUIRE(rt.counters().failed == 1);
  test::require_accounted(rt.counters());
}

TEST_CASE("a task that is never awaited is destroyed without running", "[task]") {
  bool ran = false;
  {
    auto t = [&]() -> troupe::task<void> {
      ran = true;
      co_return;
    }();
    REQUIRE(t.valid());
  }
  REQUIRE_FALSE(ran);
}
