// expect: a step takes version N-1 to version N
// An upcaster goes one version up: a step from version 1 straight to version 3 must not compile,
// and the diagnostic must say why.
#include <string_view>

#include <troupe/codec_msgpack.hpp>
#include <troupe/upcast.hpp>

struct deposit_v1 {
  static constexpr std::string_view troupe_wire_name = "bank.deposit";
  long cents = 0;
};
struct deposit {
  static constexpr std::string_view troupe_wire_name = "bank.deposit";
  static constexpr unsigned troupe_wire_version = 3;
  long cents = 0;
};

int main() {
  troupe::upcasters<deposit> up;
  up.add<deposit_v1>([](deposit_v1 d) { return deposit{d.cents}; });
}
