// expect: actor_has_replying_handler_for_message<.*account.*deposit
// An ask needs a handler that replies; a void handler does not.
#include <troupe/troupe.hpp>

struct deposit {};
struct account {
  void on(deposit) {}
};

int main() {
  troupe::runtime rt;
  static_cast<void>(rt.spawn<account>().ask(deposit{}).get());
}
