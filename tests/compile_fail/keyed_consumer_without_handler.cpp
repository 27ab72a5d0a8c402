// expect: actor_has_handler_for_keyed_item<.*mailer.*order_placed
// A keyed queue's consumer needs an on(const T&) handler for the items.
#include <troupe/troupe.hpp>

struct user_registered {};
struct order_placed {
  long id;
};
struct mailer {
  void on(const user_registered&) {}
};

int main() {
  troupe::runtime rt;
  auto q = rt.make_keyed_queue<order_placed>({.name = "orders"}, &order_placed::id);
  q.add_consumer(rt.spawn<mailer>());
}
