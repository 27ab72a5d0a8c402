// troupe-bench-nats: troupe over NATS against raw nats.c on the same server, in one run.
//
//   throughput  N small messages one way: troupe remote_ref::send to an exposed actor, against
//               natsConnection_Publish to an async subscriber; from the first send to the last
//               message handled (actor) / received (callback)
//   ask         M sequential request-replies: troupe remote_ref::ask(...).get() against
//               natsConnection_Request; p50 and p99 of the round trip
//
// Usage: troupe-bench-nats <nats-url> [N=200000] [M=5000]. Start a server first, e.g.
//   nats-server -a 127.0.0.1 -p 4222 &
// Each side has its own connections (sender and receiver separate), as a two-process system
// would; both run in this one process.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include <troupe/nats/node.hpp>

using clock_type = std::chrono::steady_clock;

namespace {

struct tick {
  static constexpr std::string_view troupe_wire_name = "bench.tick";
  std::int64_t n = 0;
};
struct echo {
  static constexpr std::string_view troupe_wire_name = "bench.echo";
  std::int64_t n = 0;
};

class sink {
 public:
  explicit sink(std::atomic<std::int64_t>* count) : count_(count) {}
  void on(tick) { count_->fetch_add(1, std::memory_order_release); }
  std::int64_t on(echo e) const { return e.n; }

 private:
  std::atomic<std::int64_t>* count_;
};
struct sink_api {
  void on(tick);
  std::int64_t on(echo);
};

void wait_for(const std::atomic<std::int64_t>& count, std::int64_t n) {
  while (count.load(std::memory_order_acquire) < n) std::this_thread::yield();
}

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[static_cast<std::size_t>(p * static_cast<double>(v.size() - 1))];
}

natsConnection* connect(const std::string& url) {
  natsConnection* c = nullptr;
  if (natsConnection_ConnectTo(&c, url.c_str()) != NATS_OK) {
    std::fprintf(stderr, "cannot connect to %s\n", url.c_str());
    std::exit(1);
  }
  return c;
}

void raw_count(natsConnection*, natsSubscription*, natsMsg* m, void* closure) {
  static_cast<std::atomic<std::int64_t>*>(closure)->fetch_add(1, std::memory_order_release);
  natsMsg_Destroy(m);
}
void raw_echo(natsConnection* nc, natsSubscription*, natsMsg* m, void*) {
  natsConnection_Publish(nc, natsMsg_GetReply(m), natsMsg_GetData(m), natsMsg_GetDataLength(m));
  natsMsg_Destroy(m);
}

}  // namespace

int main(int argc, char* argv[]) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: troupe-bench-nats <nats-url> [messages] [asks]\n");
    return 2;
  }
  const std::string url = argv[1];
  const std::int64_t n = argc > 2 ? std::atoll(argv[2]) : 200000;
  const int m = argc > 3 ? std::atoi(argv[3]) : 5000;

  // ---- raw nats.c ----
  double raw_rate = 0;
  std::vector<double> raw_rtt;
  {
    natsConnection* rx = connect(url);
    natsConnection* tx = connect(url);
    std::atomic<std::int64_t> count{0};
    natsSubscription* sub = nullptr;
    natsConnection_Subscribe(&sub, rx, "bench.raw", raw_count, &count);
    natsSubscription_SetPendingLimits(sub, -1, -1);
    natsSubscription* responder = nullptr;
    natsConnection_Subscribe(&responder, rx, "bench.raw.echo", raw_echo, nullptr);
    natsConnection_Flush(rx);
    std::string payload;
    troupe::encode(tick{1}, payload);  // the same bytes troupe sends
    const auto start = clock_type::now();
    for (std::int64_t i = 0; i < n; ++i) {
      natsConnection_Publish(tx, "bench.raw", payload.data(), static_cast<int>(payload.size()));
    }
    natsConnection_Flush(tx);
    wait_for(count, n);
    raw_rate =
        static_cast<double>(n) / std::chrono::duration<double>(clock_type::now() - start).count();
    for (int i = 0; i < m; ++i) {
      natsMsg* reply = nullptr;
      const auto t0 = clock_type::now();
      if (natsConnection_Request(&reply, tx, "bench.raw.echo", payload.data(),
                                 static_cast<int>(payload.size()), 5000) != NATS_OK) {
        std::fprintf(stderr, "raw request failed\n");
        return 1;
      }
      raw_rtt.push_back(std::chrono::duration<double, std::micro>(clock_type::now() - t0).count());
      natsMsg_Destroy(reply);
    }
    natsSubscription_Destroy(sub);
    natsSubscription_Destroy(responder);
    natsConnection_Destroy(tx);
    natsConnection_Destroy(rx);
  }

  // ---- troupe over NATS ----
  double troupe_rate = 0;
  std::vector<double> troupe_rtt;
  {
    std::atomic<std::int64_t> count{0};
    troupe::runtime server_rt({.workers = 1});
    troupe::runtime client_rt({.workers = 1});
    troupe::nats::node server(server_rt,
                              {.servers = {url}, .name = "bench-server", .prefix = "bench"});
    troupe::nats::node client(client_rt,
                              {.servers = {url}, .name = "bench-client", .prefix = "bench"});
    server.expose<tick, echo>("sink", server_rt.spawn<sink>(&count));
    auto target = client.remote<sink_api>("sink");
    const auto start = clock_type::now();
    for (std::int64_t i = 0; i < n; ++i) target.send(tick{1});
    wait_for(count, n);
    troupe_rate =
        static_cast<double>(n) / std::chrono::duration<double>(clock_type::now() - start).count();
    for (int i = 0; i < m; ++i) {
      const auto t0 = clock_type::now();
      if (target.ask(echo{i}).get() != i) return 1;
      troupe_rtt.push_back(
          std::chrono::duration<double, std::micro>(clock_type::now() - t0).count());
    }
    client.close();
    server.close();
  }

  std::printf("%-28s %14s %14s %8s\n", "workload", "raw nats.c", "troupe", "ratio");
  std::printf("%-28s %14.0f %14.0f %8.2f\n", "send throughput (msgs/s)", raw_rate, troupe_rate,
              troupe_rate / raw_rate);
  const double rp50 = percentile(raw_rtt, 0.5);
  const double tp50 = percentile(troupe_rtt, 0.5);
  const double rp99 = percentile(raw_rtt, 0.99);
  const double tp99 = percentile(troupe_rtt, 0.99);
  std::printf("%-28s %14.1f %14.1f %8.2f\n", "ask round trip p50 (us)", rp50, tp50, tp50 / rp50);
  std::printf("%-28s %14.1f %14.1f %8.2f\n", "ask round trip p99 (us)", rp99, tp99, tp99 / rp99);
  std::printf("goals: throughput >= 0.80x raw, ask <= 1.25x raw (%lld messages, %d asks)\n",
              static_cast<long long>(n), m);
  return 0;
}
