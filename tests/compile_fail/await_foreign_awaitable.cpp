// expect: co_await only troupe awaitables
// A task may only await what resumes the actor through its scheduler.
#include <coroutine>

#include <troupe/troupe.hpp>

struct tick {};
struct actor {
  troupe::task<void> on(tick) { co_await std::suspend_always{}; }
};

int main() {
  troupe::runtime rt;
  rt.spawn<actor>().send(tick{});
}
