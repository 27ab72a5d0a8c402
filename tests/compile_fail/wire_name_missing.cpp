// expect: type_has_a_wire_name<.*unnamed_order
// A type that crosses the wire needs a stable wire name; without one, asking for it must not
// compile, and the diagnostic must name the type.
#include <troupe/codec.hpp>

struct unnamed_order {
  long cents;
};

int main() {
  return static_cast<int>(troupe::wire_name_of<unnamed_order>().size());
}
