// A consumer of troupe::nats (installed): a node that finds no server fails with a clear error.
#include <chrono>
#include <cstdio>

#include <troupe/nats/node.hpp>

int main() {
  troupe::runtime rt(troupe::runtime_options{.workers = 1});
  try {
    troupe::nats::node n(rt, {.servers = {"nats://127.0.0.1:1"},
                              .connect_timeout = std::chrono::milliseconds(200)});
  } catch (const troupe::error& e) {
    std::printf("troupe consumer (installed, nats): no server, as expected: %s\n", e.what());
    return 0;
  }
  return 1;
}
