// expect: a wire name may not contain '@'
// '@' separates a wire name from its version on the wire: a name containing it must not compile.
#include <string_view>

#include <troupe/codec.hpp>

struct deposit {
  static constexpr std::string_view troupe_wire_name = "bank.deposit@2";
  long cents = 0;
};

int main() {
  return static_cast<int>(troupe::wire_name_of<deposit>().size());
}
