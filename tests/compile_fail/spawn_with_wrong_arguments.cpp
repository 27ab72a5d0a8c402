// expect: constructible neither
// spawn<A>(args...) must match a constructor of A, with or without the context first.
#include <troupe/troupe.hpp>

#include <string>

struct named {
  explicit named(std::string) {}
  void on(int) {}
};

int main() {
  troupe::runtime rt;
  rt.spawn<named>(3.5, 7);
}
