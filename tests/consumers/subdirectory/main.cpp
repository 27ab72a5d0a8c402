// A consumer of troupe (subdirectory): spawn an actor, ask it, print the reply.
#include <iostream>

#include <troupe/troupe.hpp>

struct add {
  int a, b;
};
class adder {
 public:
  int on(add m) const { return m.a + m.b; }
};

int main() {
  troupe::runtime rt(troupe::runtime_options{.workers = 1});
  const int sum = rt.spawn<adder>().ask(add{2, 3}).get();
  std::cout << "troupe consumer (subdirectory): 2 + 3 = " << sum << "\n";
  return sum == 5 ? 0 : 1;
}
