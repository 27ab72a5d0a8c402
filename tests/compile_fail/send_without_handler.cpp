// expect: actor_has_handler_for_message<.*account.*withdraw
// A send of a message the actor has no handler for must not compile, and the diagnostic must
// name both the actor and the message type.
#include <troupe/troupe.hpp>

struct deposit {};
struct withdraw {};
struct account {
  void on(deposit) {}
};

int main() {
  troupe::runtime rt;
  rt.spawn<account>().send(withdraw{});
}
