// troupe::latency_histogram: accuracy against exact percentiles, merge, coordinated-omission
// correction, concurrent recording.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <random>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>

#include <troupe/latency_histogram.hpp>

using troupe::latency_histogram;

namespace {

// The exact p-th percentile of sorted data, by the same rank rule (nearest rank, rounded up).
std::uint64_t exact_percentile(const std::vector<std::uint64_t>& sorted, double p) {
  if (p >= 100) return sorted.back();
  auto rank = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
  rank = std::clamp<std::size_t>(rank, 1, sorted.size());
  return sorted[rank - 1];
}

void require_close(std::uint64_t got, std::uint64_t want) {
  INFO("got " << got << " want " << want);
  const double error = std::abs(static_cast<double>(got) - static_cast<double>(want));
  REQUIRE(error <= 0.01 * static_cast<double>(want) + 0.5);
}

}  // namespace

TEST_CASE("buckets cover 1 ns to over an hour within 1% relative error") {
  // Every bucket's middle is within 1% of each value in it.
  for (std::size_t b = 0; b < latency_histogram::bucket_count; ++b) {
    const auto lo = latency_histogram::lowest_in(b);
    const auto hi = latency_histogram::highest_in(b);
    const auto mid = latency_histogram::representative(b);
    REQUIRE(latency_histogram::bucket_of(lo) == b);
    REQUIRE(latency_histogram::bucket_of(hi) == b);
    REQUIRE(static_cast<double>(mid - lo) <= 0.01 * static_cast<double>(lo) + 0.5);
    REQUIRE(static_cast<double>(hi - mid) <= 0.01 * static_cast<double>(lo) + 0.5);
    if (b + 1 < latency_histogram::bucket_count) {
      REQUIRE(latency_histogram::lowest_in(b + 1) == hi + 1);
    }
  }
  const std::uint64_t hour = 3'600'000'000'000ULL;
  REQUIRE(latency_histogram::highest_trackable > hour);
  latency_histogram h;
  h.record(std::chrono::hours(1));
  h.record(std::chrono::nanoseconds(1));
  REQUIRE(h.max() == std::chrono::hours(1));
  REQUIRE(h.min() == std::chrono::nanoseconds(1));
  require_close(static_cast<std::uint64_t>(h.percentile(99).count()), hour);
  REQUIRE(h.percentile(1).count() == 1);
  REQUIRE(sizeof(latency_histogram) < 24 * 1024);  // constant memory
}

TEST_CASE("percentiles match the exact ones across magnitudes") {
  std::mt19937_64 rng(42);
  for (double scale : {10.0, 1e3, 1e6, 1e9, 1e11}) {
    std::lognormal_distribution<double> dist(std::log(scale), 1.0);
    std::vector<std::uint64_t> data;
    latency_histogram h;
    for (int i = 0; i < 100'000; ++i) {
      const auto v = static_cast<std::uint64_t>(dist(rng)) + 1;
      data.push_back(v);
      h.record(v);
    }
    std::sort(data.begin(), data.end());
    INFO("scale " << scale);
    REQUIRE(h.count() == data.size());
    for (double p : {1.0, 10.0, 50.0, 90.0, 99.0, 99.9, 99.99}) {
      INFO("p" << p);
      require_close(static_cast<std::uint64_t>(h.percentile(p).count()), exact_percentile(data, p));
    }
    REQUIRE(static_cast<std::uint64_t>(h.max().count()) == data.back());
    REQUIRE(static_cast<std::uint64_t>(h.min().count()) == data.front());
    REQUIRE(static_cast<std::uint64_t>(h.percentile(100).count()) == data.back());
    long double sum = 0;
    for (auto v : data) sum += static_cast<long double>(v);
    const double exact_mean = static_cast<double>(sum / static_cast<long double>(data.size()));
    REQUIRE(h.mean().count() == Approx(exact_mean).epsilon(1e-9));
  }
}

TEST_CASE("an empty histogram reports zeros") {
  latency_histogram h;
  REQUIRE(h.empty());
  REQUIRE(h.count() == 0);
  REQUIRE(h.percentile(50).count() == 0);
  REQUIRE(h.max().count() == 0);
  REQUIRE(h.min().count() == 0);
  REQUIRE(h.mean().count() == 0);
  h.record(std::chrono::nanoseconds(-5));  // negative: counted as 0
  REQUIRE(h.max().count() == 0);
  REQUIRE(h.count() == 1);
  h.record(-7);  // a negative plain integer too, not 2^64 - 7
  h.record(std::int64_t{-1});
  REQUIRE(h.max().count() == 0);
  REQUIRE(h.count() == 3);
  h.record(42);
  REQUIRE(h.max().count() == 42);
  h.reset();
  REQUIRE(h.empty());
}

TEST_CASE("merge equals the histogram of the union") {
  std::mt19937_64 rng(7);
  std::uniform_int_distribution<std::uint64_t> small(1, 5'000);
  std::uniform_int_distribution<std::uint64_t> large(1'000'000, 50'000'000'000ULL);
  latency_histogram a, b, all;
  for (int i = 0; i < 20'000; ++i) {
    const auto x = small(rng);
    const auto y = large(rng);
    a.record(x);
    b.record(y);
    all.record(x);
    all.record(y);
  }
  latency_histogram merged = a;
  merged.merge(b);
  REQUIRE(merged.count() == all.count());
  REQUIRE(merged.max() == all.max());
  REQUIRE(merged.min() == all.min());
  REQUIRE(merged.total_ns() == all.total_ns());
  for (std::size_t i = 0; i < latency_histogram::bucket_count; ++i) {
    REQUIRE(merged.bucket_value_count(i) == all.bucket_value_count(i));
  }
  for (double p : {50.0, 90.0, 99.0, 99.9, 99.99})
    REQUIRE(merged.percentile(p) == all.percentile(p));
}

TEST_CASE("coordinated-omission correction fills in the samples a stall hid") {
  using namespace std::chrono_literals;
  // A probe meant to sample every 1 ms: 1000 samples of 100 us, then one stall of 1 s.
  latency_histogram raw, corrected;
  for (int i = 0; i < 1000; ++i) {
    raw.record(100us);
    corrected.record_corrected(100us, 1ms);
  }
  raw.record(1s);
  corrected.record_corrected(1s, 1ms);
  // Uncorrected, the stall is one sample in 1001: p99 stays at 100 us.
  require_close(static_cast<std::uint64_t>(raw.percentile(99).count()), 100'000);
  // Corrected, the 999 samples that should have run during the stall saw 999 ms .. 1 ms.
  REQUIRE(corrected.count() == 1000 + 1 + 999);
  REQUIRE(corrected.max() == 1s);
  REQUIRE(corrected.min() == 100us);
  // Half of all samples were in the stall; the median is the boundary, p75 about 500 ms.
  require_close(static_cast<std::uint64_t>(corrected.percentile(75).count()), 500'000'000);
  require_close(static_cast<std::uint64_t>(corrected.percentile(99).count()), 980'000'000);
  // Same result as recording every missed sample one by one.
  latency_histogram by_hand;
  for (int i = 0; i < 1000; ++i) by_hand.record(100us);
  for (auto v = 1000ms; v >= 1ms; v -= 1ms) by_hand.record(v);
  for (std::size_t i = 0; i < latency_histogram::bucket_count; ++i) {
    REQUIRE(corrected.bucket_value_count(i) == by_hand.bucket_value_count(i));
  }
  REQUIRE(corrected.total_ns() == by_hand.total_ns());
  // A value within the interval, or no interval, adds nothing.
  latency_histogram plain;
  plain.record_corrected(500us, 1ms);
  plain.record_corrected(5ms, 0ns);
  REQUIRE(plain.count() == 2);
}

TEST_CASE("a huge stall at a tiny interval is corrected in bounded time") {
  using namespace std::chrono_literals;
  latency_histogram h;
  h.record_corrected(std::chrono::hours(2), 1ns);  // 7.2e12 missed samples
  REQUIRE(h.count() == 7'200'000'000'000ULL);
  REQUIRE(h.min().count() == 1);
  require_close(static_cast<std::uint64_t>(h.percentile(50).count()), 3'600'000'000'000ULL);
}

TEST_CASE("threads record concurrently and nothing is lost") {
  latency_histogram shared;
  std::vector<latency_histogram> own(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (std::uint64_t i = 1; i <= 20'000; ++i) {
        shared.record(i * (t + 1));
        own[t].record(i * (t + 1));
      }
    });
  }
  // A reader running alongside sees sane values.
  for (int i = 0; i < 100; ++i) {
    const auto p = shared.percentile(50);
    REQUIRE(p <= shared.max());
  }
  for (auto& th : threads) th.join();
  latency_histogram merged;
  for (const auto& h : own) merged.merge(h);
  REQUIRE(shared.count() == 80'000);
  REQUIRE(merged.count() == 80'000);
  REQUIRE(shared.max().count() == 80'000);
  for (std::size_t i = 0; i < latency_histogram::bucket_count; ++i) {
    REQUIRE(shared.bucket_value_count(i) == merged.bucket_value_count(i));
  }
}
