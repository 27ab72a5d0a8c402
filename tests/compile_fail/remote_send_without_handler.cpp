// expect: actor_has_handler_for_message<.*account_api.*withdraw
// A send to a remote actor of a message its interface has no handler for must not compile, and
// the diagnostic must name both the interface and the message type.
#include <troupe/nats/node.hpp>

struct deposit {
  static constexpr std::string_view troupe_wire_name = "bank.deposit";
  long cents;
};
struct withdraw {
  static constexpr std::string_view troupe_wire_name = "bank.withdraw";
  long cents;
};
struct account_api {  // only declares its handlers: the client never compiles the service
  void on(deposit);
};

void use(troupe::nats::node& n) {
  n.remote<account_api>("account").send(withdraw{5});
}

int main() {}
