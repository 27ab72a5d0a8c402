// troupe-bench-jetstream: troupe's durable topics against raw nats.c JetStream on the same
// server, in one run.
//
//   publish     N small events, asynchronous publish with acks: durable_topic::publish then
//               jetstream::flush, against js_PublishAsync then js_PublishAsyncComplete; from the
//               first publish to the last ack (file storage, one stream each)
//   latency     M events one at a time, publish -> handled: a replaying subscriber actor
//               (ordered consumer) against a js_Subscribe ordered callback; p50 and p99
//
// Usage: troupe-bench-jetstream <nats-url> [N=50000] [M=2000]. The server needs JetStream:
//   nats-server -a 127.0.0.1 -p 4222 -js -sd /tmp/js-bench &
// Streams are made fresh (named by the process id) and deleted after.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

#include <troupe/nats/jetstream.hpp>

using clock_type = std::chrono::steady_clock;

namespace {

struct tick {
  static constexpr std::string_view troupe_wire_name = "bench.tick";
  std::int64_t n = 0;
};

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(clock_type::now().time_since_epoch())
      .count();
}

class timer_sink {
 public:
  timer_sink(std::vector<double>* out, std::atomic<std::int64_t>* count)
      : out_(out), count_(count) {}
  void on(const tick& t) {
    out_->push_back(static_cast<double>(now_ns() - t.n) / 1000.0);
    count_->fetch_add(1, std::memory_order_release);
  }

 private:
  std::vector<double>* out_;
  std::atomic<std::int64_t>* count_;
};

struct raw_latency {
  std::vector<double> samples;
  std::atomic<std::int64_t> count{0};
};

void raw_on_msg(natsConnection*, natsSubscription*, natsMsg* m, void* closure) {
  auto* r = static_cast<raw_latency*>(closure);
  auto d = troupe::decode<tick>(
      std::string_view(natsMsg_GetData(m), static_cast<std::size_t>(natsMsg_GetDataLength(m))));
  if (d) r->samples.push_back(static_cast<double>(now_ns() - d.value().n) / 1000.0);
  r->count.fetch_add(1, std::memory_order_release);
  natsMsg_Destroy(m);
}

void wait_for(const std::atomic<std::int64_t>& count, std::int64_t n) {
  while (count.load(std::memory_order_acquire) < n) std::this_thread::yield();
}

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v.empty() ? 0 : v[static_cast<std::size_t>(p * static_cast<double>(v.size() - 1))];
}

void fail(const char* what) {
  std::fprintf(stderr, "troupe-bench-jetstream: %s\n", what);
  std::exit(1);
}

}  // namespace

int main(int argc, char* argv[]) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: troupe-bench-jetstream <nats-url> [events] [latency-events]\n");
    return 2;
  }
  const std::string url = argv[1];
  const std::int64_t n = argc > 2 ? std::atoll(argv[2]) : 50000;
  const std::int64_t m = argc > 3 ? std::atoll(argv[3]) : 2000;
  const std::string tag = std::to_string(::getpid());

  // ---- raw nats.c JetStream ----
  double raw_rate = 0;
  raw_latency raw;
  {
    natsConnection* c = nullptr;
    if (natsConnection_ConnectTo(&c, url.c_str()) != NATS_OK) fail("cannot connect");
    jsCtx* js = nullptr;
    jsOptions jo;
    jsOptions_Init(&jo);
    jo.PublishAsync.MaxPending = 4096;
    if (natsConnection_JetStream(&js, c, &jo) != NATS_OK) fail("no JetStream context");
    const std::string stream = "rawbench" + tag;
    const std::string subject = "rawbench" + tag + ".tick";
    const char* subjects[] = {subject.c_str()};
    jsStreamConfig cfg;
    jsStreamConfig_Init(&cfg);
    cfg.Name = stream.c_str();
    cfg.Subjects = subjects;
    cfg.SubjectsLen = 1;
    if (js_AddStream(nullptr, js, &cfg, nullptr, nullptr) != NATS_OK) fail("raw stream");
    std::string payload;
    troupe::encode(tick{1}, payload);  // the same bytes troupe stores
    const auto start = clock_type::now();
    for (std::int64_t i = 0; i < n; ++i) {
      if (js_PublishAsync(js, subject.c_str(), payload.data(), static_cast<int>(payload.size()),
                          nullptr) != NATS_OK) {
        fail("raw publish");
      }
    }
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MaxWait = 60000;
    if (js_PublishAsyncComplete(js, &po) != NATS_OK) fail("raw acks");
    raw_rate =
        static_cast<double>(n) / std::chrono::duration<double>(clock_type::now() - start).count();

    raw.samples.reserve(static_cast<std::size_t>(m));
    jsSubOptions so;
    jsSubOptions_Init(&so);
    so.Ordered = true;
    so.Stream = stream.c_str();
    so.Config.DeliverPolicy = js_DeliverNew;
    natsSubscription* sub = nullptr;
    if (js_Subscribe(&sub, js, subject.c_str(), raw_on_msg, &raw, nullptr, &so, nullptr) !=
        NATS_OK) {
      fail("raw subscribe");
    }
    for (std::int64_t i = 0; i < m; ++i) {
      std::string bytes;
      troupe::encode(tick{now_ns()}, bytes);
      js_PublishAsync(js, subject.c_str(), bytes.data(), static_cast<int>(bytes.size()), nullptr);
      wait_for(raw.count, i + 1);
    }
    natsSubscription_Unsubscribe(sub);
    natsSubscription_Destroy(sub);
    js_DeleteStream(js, stream.c_str(), nullptr, nullptr);
    jsCtx_Destroy(js);
    natsConnection_Destroy(c);
  }

  // ---- troupe durable topic ----
  double troupe_rate = 0;
  std::vector<double> troupe_lat;
  troupe_lat.reserve(static_cast<std::size_t>(m));
  {
    troupe::runtime rt({.workers = 1});
    troupe::nats::node node(rt, {.servers = {url}, .name = "bench", .prefix = "tb" + tag});
    troupe::nats::jetstream js(node);
    auto t = js.retain<tick>("tick");
    const auto start = clock_type::now();
    for (std::int64_t i = 0; i < n; ++i) {
      if (!t.publish(tick{1})) fail("troupe publish");
    }
    if (!js.flush(std::chrono::milliseconds(60000))) fail("troupe acks");
    troupe_rate =
        static_cast<double>(n) / std::chrono::duration<double>(clock_type::now() - start).count();
    if (js.counters().acknowledged != static_cast<std::uint64_t>(n)) fail("troupe: acks missing");

    std::atomic<std::int64_t> count{0};
    auto sub = t.subscribe(rt.spawn<timer_sink>(&troupe_lat, &count),
                           troupe::replay::from(static_cast<std::uint64_t>(n) + 1));
    for (std::int64_t i = 0; i < m; ++i) {
      t.publish(tick{now_ns()});
      wait_for(count, i + 1);
    }
    sub.end();
    jsCtx* raw_js = nullptr;
    if (natsConnection_JetStream(&raw_js, node.native_handle(), nullptr) == NATS_OK) {
      js_DeleteStream(raw_js, t.stream().c_str(), nullptr, nullptr);
      js_DeleteStream(raw_js, js.dead_letter_stream().c_str(), nullptr, nullptr);
      jsCtx_Destroy(raw_js);
    }
    js.close();
    node.close();
  }

  std::printf("%-34s %14s %14s %8s\n", "workload", "raw nats.c", "troupe", "ratio");
  std::printf("%-34s %14.0f %14.0f %8.2f\n", "durable publish, async+acks (/s)", raw_rate,
              troupe_rate, troupe_rate / raw_rate);
  const double rp50 = percentile(raw.samples, 0.5);
  const double tp50 = percentile(troupe_lat, 0.5);
  const double rp99 = percentile(raw.samples, 0.99);
  const double tp99 = percentile(troupe_lat, 0.99);
  std::printf("%-34s %14.1f %14.1f %8.2f\n", "publish -> handled p50 (us)", rp50, tp50,
              tp50 / rp50);
  std::printf("%-34s %14.1f %14.1f %8.2f\n", "publish -> handled p99 (us)", rp99, tp99,
              tp99 / rp99);
  std::printf("goal: publish >= 0.80x raw (%lld events, %lld latency samples)\n",
              static_cast<long long>(n), static_cast<long long>(m));
  return 0;
}
