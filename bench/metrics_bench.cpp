// troupe-bench: what runtime metrics cost. pingpong and fanin (as in actor_bench.cpp) with
// runtime_options::metrics off and on, reported side by side: pingpong_metrics_off/_on (ns per
// round trip) and fanin_metrics_off/_on (msgs/s). The _off rows measure the same code path as
// pingpong and fanin; they are here so that one run shows both under the same conditions.

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <troupe/troupe.hpp>

#include "bench.hpp"
#include "runtime_checks.hpp"

namespace troupe_bench {
namespace {

struct mball {
  std::uint64_t left;
};
struct mserve {
  std::uint64_t hops;
};

class mplayer {
 public:
  explicit mplayer(done_signal* done) : done_(done) {}
  void on(troupe::ref<mplayer> peer) { peer_ = std::make_unique<troupe::ref<mplayer>>(peer); }
  void on(mserve s) { peer_->send(mball{s.hops - 1}); }
  void on(mball b) {
    if (b.left == 0) {
      done_->set();
    } else {
      peer_->send(mball{b.left - 1});
    }
  }

 private:
  done_signal* done_;
  std::unique_ptr<troupe::ref<mplayer>> peer_;
};

double run_pingpong(const config& c, bool metrics) {
  const std::uint64_t trips = pingpong_size(c);
  done_signal done;
  troupe::runtime_options o = options_for(c);
  o.metrics = metrics;
  troupe::runtime rt{o};
  auto a = rt.spawn<mplayer>(&done);
  auto b = rt.spawn<mplayer>(&done);
  a.send(b);
  b.send(a);
  const auto t0 = clock::now();
  a.send(mserve{2 * trips});
  expect_done(done.wait_for(run_timeout), "pingpong_metrics");
  const auto t1 = clock::now();
  if (metrics) {
    const auto m = rt.metrics();
    std::uint64_t timed = 0;
    for (const auto& x : m.messages) timed += x.service_time.count();
    expect(timed + 1 >= 2 * trips, "pingpong_metrics: the histograms missed messages");
  }
  rt.shutdown();
  expect_all_handled(rt.counters(), 2 * trips + 3, "pingpong_metrics");
  return seconds_between(t0, t1) * 1e9 / static_cast<double>(trips);
}

struct mitem {
  std::uint64_t value;
};
struct mgo {};

class msink {
 public:
  msink(std::uint64_t expected, done_signal* done) : expected_(expected), done_(done) {}
  void on(mitem i) {
    sum_ += i.value;
    if (++count_ == expected_) done_->set();
  }

 private:
  std::uint64_t expected_;
  done_signal* done_;
  std::uint64_t count_ = 0;
  std::uint64_t sum_ = 0;
};

class msource {
 public:
  msource(troupe::ref<msink> target, std::uint64_t count)
      : target_(std::move(target)), count_(count) {}
  void on(mgo) {
    for (std::uint64_t i = 0; i < count_; ++i) target_.send(mitem{i});
  }

 private:
  troupe::ref<msink> target_;
  std::uint64_t count_;
};

double run_fanin(const config& c, bool metrics) {
  constexpr std::uint64_t senders = fanin_senders;
  const std::uint64_t per = fanin_size(c);
  const std::uint64_t total = senders * per;
  done_signal done;
  troupe::runtime_options o = options_for(c);
  o.metrics = metrics;
  troupe::runtime rt{o};
  auto receiver = rt.spawn<msink>(total, &done);
  std::vector<troupe::ref<msource>> sources;
  for (std::uint64_t i = 0; i < senders; ++i) sources.push_back(rt.spawn<msource>(receiver, per));
  const auto t0 = clock::now();
  for (const auto& s : sources) s.send(mgo{});
  expect_done(done.wait_for(run_timeout), "fanin_metrics");
  const auto t1 = clock::now();
  sources.clear();
  rt.shutdown();
  expect_all_handled(rt.counters(), total + senders, "fanin_metrics");
  return static_cast<double>(total) / seconds_between(t0, t1);
}

std::string describe_pingpong(const config& c) {
  return std::to_string(pingpong_size(c)) + " round trips";
}
std::string describe_fanin(const config& c) {
  return std::to_string(fanin_senders) + " senders x " + std::to_string(fanin_size(c)) +
         " messages";
}

}  // namespace

void add_metrics_workloads(std::vector<workload>& out) {
  out.push_back({"pingpong_metrics_off", "metrics", "ns/round trip", true, false, describe_pingpong,
                 [](const config& c) { return run_pingpong(c, false); }});
  out.push_back({"pingpong_metrics_on", "metrics", "ns/round trip", true, false, describe_pingpong,
                 [](const config& c) { return run_pingpong(c, true); }});
  out.push_back({"fanin_metrics_off", "metrics", "msgs/s", false, false, describe_fanin,
                 [](const config& c) { return run_fanin(c, false); }});
  out.push_back({"fanin_metrics_on", "metrics", "msgs/s", false, false, describe_fanin,
                 [](const config& c) { return run_fanin(c, true); }});
}

}  // namespace troupe_bench
