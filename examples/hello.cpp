// hello: the smallest complete troupe program — spawn an actor, send it messages, wait for its
// answer, shut down.
#include <future>
#include <iostream>
#include <string>

#include <troupe/troupe.hpp>

struct greet {
  std::string name;
};
struct report {
  std::promise<int>* greeted;  // how the actor answers a plain thread (asks come later)
};

class greeter {
 public:
  void on(const greet& g) {
    std::cout << "hello, " << g.name << "!\n";
    ++count_;
  }
  void on(report r) { r.greeted->set_value(count_); }

 private:
  int count_ = 0;
};

int main() {
  troupe::runtime rt;
  troupe::ref<greeter> g = rt.spawn<greeter>();
  g.send(greet{"world"});
  g.send(greet{"troupe"});

  std::promise<int> greeted;
  g.send(report{&greeted});
  const int times = greeted.get_future().get();  // waits for the actor's answer
  std::cout << "greeted " << times << " times\n";
  // g.send(42);  // would not compile: greeter has no on(int)

  rt.shutdown();
  const auto c = rt.counters();
  std::cout << "sent " << c.sent << ", handled " << c.handled << ", dead " << c.dead_lettered
            << "\n";
  return 0;
}
