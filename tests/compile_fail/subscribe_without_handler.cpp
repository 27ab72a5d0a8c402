// expect: actor_has_handler_for_event<.*mailer.*order_placed
// A subscription needs an on(const E&) handler for the event type.
#include <troupe/troupe.hpp>

struct user_registered {};
struct order_placed {};
struct mailer {
  void on(const user_registered&) {}
};

int main() {
  troupe::runtime rt;
  auto sub = rt.subscribe<order_placed>("orders.*", rt.spawn<mailer>());
}
