// supervision_tree: a two-level tree showing each strategy. The root (one_for_one) supervises a
// flaky payment worker and two sub-supervisors: "pipeline" (one_for_all) of two stages that
// share state and must restart together, and "ingest" (rest_for_one) of a source, a transform
// and a sink, where a failing transform restarts itself and the sink started after it, not the
// source. Failures restart actors in place: the refs stay valid and messages queued behind a
// failure reach the new instance. Every supervision event is printed; at the end the tree is
// stopped in order (newest child first, depth first).
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

// A stage of a pipeline; a flaky one fails on its second ping.
class stage {
 public:
  explicit stage(std::string name, bool flaky = false) : name_(std::move(name)), flaky_(flaky) {}
  void on_start() { std::printf("  %s starts\n", name_.c_str()); }
  void on_stop() { std::printf("  %s stops\n", name_.c_str()); }
  std::string on(ping) {
    if (flaky_ && ++pings_ == 2) throw std::runtime_error(name_ + " lost its place");
    return name_ + " ok";
  }

 private:
  std::string name_;
  bool flaky_;
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
  auto parser =
      troupe::start_child<stage>(pipeline, {.name = "parser"}, std::string("parser"), true);
  auto writer = troupe::start_child<stage>(pipeline, {.name = "writer"}, std::string("writer"));
  auto ingest = troupe::start_child<troupe::supervisor>(
      root, {.name = "ingest"}, troupe::rest_for_one{.max_restarts = 3, .within = 5s});
  auto source = troupe::start_child<stage>(ingest, {.name = "source"}, std::string("source"));
  auto transform =
      troupe::start_child<stage>(ingest, {.name = "transform"}, std::string("transform"), true);
  auto sink = troupe::start_child<stage>(ingest, {.name = "sink"}, std::string("sink"));

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

  // rest_for_one: the transform fails; it and the sink (started after it) restart, the source
  // does not.
  std::printf("%s\n", transform.ask(ping{}).get().c_str());
  try {
    transform.ask(ping{}).get();
  } catch (const troupe::error& e) {
    std::printf("ask failed: %s\n", e.what());
  }
  std::printf("%s, %s, %s\n", source.ask(ping{}).get().c_str(), transform.ask(ping{}).get().c_str(),
              sink.ask(ping{}).get().c_str());

  // Ordered shutdown of the whole tree: newest child first, depth first.
  std::printf("stopping the tree\n");
  root.ask(troupe::stop_tree{}).get();
  rt.shutdown();
  const auto c = rt.counters();
  std::printf("sent %llu = handled %llu + dead %llu + rejected %llu\n",
              static_cast<unsigned long long>(c.sent), static_cast<unsigned long long>(c.handled),
              static_cast<unsigned long long>(c.dead_lettered),
              static_cast<unsigned long long>(c.rejected));
  return c.sent == c.handled + c.dead_lettered + c.rejected ? 0 : 1;
}
