// expect: actor_has_handler_for_message<.*account.*withdraw
// Delayed sends are checked like sends.
#include <chrono>

#include <troupe/troupe.hpp>

struct deposit {};
struct withdraw {};
struct account {
  void on(deposit) {}
};

int main() {
  troupe::runtime rt;
  rt.send_after(std::chrono::milliseconds(1), rt.spawn<account>(), withdraw{});
}
