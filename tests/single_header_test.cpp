// Compiled with only single_include/ on the include path: the generated single header is
// complete on its own.
#include <latch>

#include <catch2/catch.hpp>

#include <troupe/troupe.hpp>

namespace {
struct greet {
  std::latch* done;
};
class greeter {
 public:
  explicit greeter(troupe::context& ctx) : ctx_(ctx) {}
  troupe::task<void> on(greet g) {
    co_await ctx_.sleep_for(std::chrono::milliseconds(1));
    g.done->count_down();
  }

 private:
  troupe::context& ctx_;
};
}  // namespace

TEST_CASE("the single header alone builds a working runtime", "[single_include]") {
  troupe::runtime rt(troupe::runtime_options{.workers = 1});
  std::latch done(1);
  REQUIRE(rt.spawn<greeter>().send(greet{&done}));
  done.wait();
  rt.shutdown();
  REQUIRE(rt.counters().handled == 1);
}
