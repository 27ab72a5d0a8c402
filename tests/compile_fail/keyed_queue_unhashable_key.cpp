// expect: the key must be copyable, equality-comparable and hashable
// A keyed queue's key must be hashable with std::hash (and copyable, equality-comparable).
#include <troupe/troupe.hpp>

struct region {
  int code;
};
struct order_placed {
  region where;
};

int main() {
  troupe::runtime rt;
  auto q = rt.make_keyed_queue<order_placed>({.name = "orders"}, &order_placed::where);
}
