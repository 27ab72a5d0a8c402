// expect: constructible neither
// spawn<A>(args...) must match a constructor of A, with or without the context first.
#include <string>

#include <troupe/troupe.hpp>

struct named {
  explicit named(std::string) {}
  void on(int) {}
};

int main() {
  troupe::runtime rt;
  rt.spawn<named>(3.5, 7);
}
