// supervision_tree: a two-level tree. The root (one_for_one) supervises a flaky payment
// worker and a sub-supervisor (one_for_all) of two workers that share state and must restart
// together. Failures restart actors in place: the refs stay valid and messages queued behind a
// failure reach the new instance. Every supervision event is printed.
#include <chrono>
#include <cstdio>
#include <mutex>
#include <stdexcept>
#include <string>

#include <troupe/troupe.hpp>

using namespace std::chrono_literals;

struct charge {
  int cents;
};
struct settled {};
struct ping {};

// Declines every third charge by throwing: the supervisor restarts it, the charge is
// dead-lettered (and an ask of it would get the error).
class payments {
 public:
  void on(charge c) {
    if (++seen_ % 3 == 0) throw std::runtime_error("card declined: " + std::to_string(c.cents));
    total_ += c.cents;
  }
  int on(settled) const { return total_; }  // since the last restart

 private:
  int seen_ = 0;
  int total_ = 0;
};

class stage {
 public:
  explicit stage(std::string name) : name_(std::move(name)) {}
  void on_start() { std::printf("  %s starts\n", name_.c_str()); }
  std::string on(ping) {
    if (name_ == "parser" && ++pings_ == 2) throw std::runtime_error("parser lost its place");
    return name_ + " ok";
  }

 private:
  std::string name_;
  int pings_ = 0;
};

int main() {
  std::mutex print;
  troupe::runtime_options options;
  options.on_supervision = [&](const troupe::supervision_event& e) {
    static constexpr const char* kinds[] = {"started", "failed", "restarted", "stopped", "gave up"};
    std::lock_guard lock(print);
    std::printf("event: %s %s%s%s\n", e.name.c_str(), kinds[static_cast<int>(e.what)],
                e.reason.empty() ? "" : ": ", e.reason.c_str());
  };
  options.on_failure = [](const troupe::address&, std::string_view) {};  // events say it all
  troupe::runtime rt(options);

  auto root = rt.spawn<troupe::supervisor>(troupe::one_for_one{.max_restarts = 10, .within = 5s});
  auto pay = troupe::start_child<payments>(root, {.name = "payments"});
  auto pipeline = troupe::start_child<troupe::supervisor>(
      root, {.name = "pipeline"}, troupe::one_for_all{.max_restarts = 3, .within = 5s});
  auto parser = troupe::start_child<stage>(pipeline, {.name = "parser"}, std::string("parser"));
  auto writer = troupe::start_child<stage>(pipeline, {.name = "writer"}, std::string("writer"));

  for (int cents : {100, 200, 300, 400, 500}) pay.send(charge{cents});
  // 300 was declined; the restarted instance took 400 and 500, through the same ref.
  std::printf("settled since restart: %d\n", pay.ask(settled{}).get());

  std::printf("%s\n", parser.ask(ping{}).get().c_str());
  try {
    parser.ask(ping{}).get();
  } catch (const troupe::error& e) {
    std::printf("ask failed: %s\n", e.what());
  }
  // one_for_all: the writer restarted with the parser; both answer again.
  std::printf("%s, %s\n", parser.ask(ping{}).get().c_str(), writer.ask(ping{}).get().c_str());

  rt.shutdown();
  const auto c = rt.counters();
  std::printf("sent %llu = handled %llu + dead %llu + rejected %llu\n",
              static_cast<unsigned long long>(c.sent), static_cast<unsigned long long>(c.handled),
              static_cast<unsigned long long>(c.dead_lettered),
              static_cast<unsigned long long>(c.rejected));
  return c.sent == c.handled + c.dead_lettered + c.rejected ? 0 : 1;
}
