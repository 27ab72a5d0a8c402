// troupe::latency_histogram: a lock-free, constant-memory latency histogram with log-linear
// buckets (in the manner of HdrHistogram), usable on its own by user code.
#pragma once

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <chrono>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>

namespace troupe {

// Records durations in nanoseconds. Buckets are exact below 128 ns; above, each power of two is
// split into 64 equal buckets, so a value read back (the middle of its bucket) is within 1/128
// (0.78%) of the recorded one, up to 2^44 ns (4.9 hours); larger values count in the last bucket
// (min, max and mean stay exact). Memory is constant (about 20 KB), whatever is recorded.
//
// Thread safety: every member function may be called from any number of threads at once.
// record() is lock-free (relaxed atomic adds, no allocation). A reader that runs while writers
// record sees each value either counted or not yet, so percentiles, count and mean may briefly
// disagree by the values in flight; they are exact once the writers are quiet. reset() racing
// with record() may keep or drop the racing values.
class latency_histogram {
 public:
  // Values below this are counted exactly, one bucket per nanosecond.
  static constexpr std::uint64_t exact_below = 128;
  // Buckets per power of two above exact_below.
  static constexpr unsigned sub_buckets = 64;
  // The largest value with its own bucket (2^44 - 1 ns, about 4.9 hours).
  static constexpr std::uint64_t highest_trackable = (std::uint64_t{1} << 44) - 1;
  static constexpr std::size_t bucket_count =
      exact_below + (44 - 7) * static_cast<std::size_t>(sub_buckets);

  latency_histogram() noexcept { reset(); }
  // Copies are snapshots of `other` (see the thread-safety note above).
  latency_histogram(const latency_histogram& other) noexcept {
    reset();
    merge(other);
  }
  latency_histogram& operator=(const latency_histogram& other) noexcept {
    if (this != &other) {
      reset();
      merge(other);
    }
    return *this;
  }

  // Records one value. Lock-free, never throws; negative durations count as 0.
  void record(std::chrono::nanoseconds value) noexcept {
    record(value.count() < 0 ? std::uint64_t{0} : static_cast<std::uint64_t>(value.count()));
  }
  void record(std::uint64_t ns) noexcept { record_n(ns, 1); }
  // A signed count of nanoseconds (say, the difference of two timestamps): negative counts as 0,
  // as for durations, rather than turning into 2^64 - n.
  template <std::signed_integral Int>
  void record(Int ns) noexcept {
    record_n(ns < 0 ? std::uint64_t{0} : static_cast<std::uint64_t>(ns), 1);
  }

  // Records `n` occurrences of the same value at once.
  void record_n(std::uint64_t ns, std::uint64_t n) noexcept {
    if (n == 0) return;
    // Bounds first: a reader that already counts this value in a bucket then also sees it in
    // min/max, so percentile() stays clamped within [min(), max()] while writers record.
    raise(max_, ns);
    lower(min_, ns);
    buckets_[bucket_of(ns)].fetch_add(n, std::memory_order_release);
    count_.fetch_add(n, std::memory_order_relaxed);
    sum_.fetch_add(saturating_mul(ns, n), std::memory_order_relaxed);
  }

  // Records `value` measured by a loop that meant to take one sample every `expected_interval`
  // (coordinated-omission correction): a value longer than the interval stalled the samples
  // that should have been taken meanwhile, so value - interval, value - 2*interval, ... down to
  // the interval are recorded too, as the missed samples would have seen them. Cost: at most
  // one bucket update per bucket the stall spans, not per missed sample. A zero or negative
  // interval records `value` alone.
  void record_corrected(std::chrono::nanoseconds value,
                        std::chrono::nanoseconds expected_interval) noexcept {
    const std::uint64_t v =
        value.count() < 0 ? std::uint64_t{0} : static_cast<std::uint64_t>(value.count());
    record(v);
    if (expected_interval.count() <= 0) return;
    const auto interval = static_cast<std::uint64_t>(expected_interval.count());
    if (v < 2 * interval) return;
    // The missed samples form the sequence v - k*interval >= interval; walk it bucket by bucket.
    std::uint64_t next = v - interval;
    std::uint64_t added = 0;
    std::uint64_t added_sum = 0;
    std::uint64_t last = next;
    for (;;) {
      const std::size_t b = bucket_of(next);
      const std::uint64_t floor = std::max(lowest_in(b), interval);
      const std::uint64_t k = (next - floor) / interval + 1;  // missed samples in this bucket
      buckets_[b].fetch_add(k, std::memory_order_relaxed);
      added += k;
      // Their sum, k*next - interval*k*(k-1)/2, saturated rather than wrapped.
      const long double s = static_cast<long double>(k) * static_cast<long double>(next) -
                            static_cast<long double>(interval) * static_cast<long double>(k) *
                                static_cast<long double>(k - 1) / 2;
      added_sum = saturating_add(added_sum, to_u64(s));
      last = next - (k - 1) * interval;
      if (last < 2 * interval) break;  // the next one would fall below the interval
      next = last - interval;
    }
    count_.fetch_add(added, std::memory_order_relaxed);
    sum_.fetch_add(added_sum, std::memory_order_relaxed);
    lower(min_, last);
  }

  // Adds every value recorded in `other` (which may be recording meanwhile). merge of the
  // histograms of two sets of values equals the histogram of their union.
  void merge(const latency_histogram& other) noexcept {
    std::uint64_t total = 0;
    for (std::size_t i = 0; i < bucket_count; ++i) {
      // acquire: other's min/max, read below, then cover every value counted here.
      const std::uint64_t n = other.buckets_[i].load(std::memory_order_acquire);
      if (n != 0) {
        buckets_[i].fetch_add(n, std::memory_order_relaxed);
        total += n;
      }
    }
    if (total == 0) return;
    count_.fetch_add(total, std::memory_order_relaxed);
    sum_.fetch_add(other.sum_.load(std::memory_order_relaxed), std::memory_order_relaxed);
    raise(max_, other.max_.load(std::memory_order_relaxed));
    lower(min_, other.min_.load(std::memory_order_relaxed));
  }

  // Forgets every value.
  void reset() noexcept {
    for (auto& b : buckets_) b.store(0, std::memory_order_relaxed);
    count_.store(0, std::memory_order_relaxed);
    sum_.store(0, std::memory_order_relaxed);
    max_.store(0, std::memory_order_relaxed);
    min_.store(std::numeric_limits<std::uint64_t>::max(), std::memory_order_relaxed);
  }

  // Values recorded.
  [[nodiscard]] std::uint64_t count() const noexcept {
    return count_.load(std::memory_order_relaxed);
  }
  [[nodiscard]] bool empty() const noexcept { return count() == 0; }

  // The value below or at which `p` percent of the recorded values lie (p in [0, 100], clamped),
  // within the bucket precision and never outside [min(), max()]; 0 when empty. percentile(100)
  // is max() exactly.
  [[nodiscard]] std::chrono::nanoseconds percentile(double p) const noexcept {
    std::uint64_t total = 0;
    for (const auto& b : buckets_) total += b.load(std::memory_order_relaxed);
    if (total == 0) return std::chrono::nanoseconds{0};
    if (!(p > 0)) p = 0;  // also NaN
    if (p >= 100) return max();
    auto rank = static_cast<std::uint64_t>(std::ceil(p / 100.0 * static_cast<double>(total)));
    rank = std::clamp<std::uint64_t>(rank, 1, total);
    std::uint64_t seen = 0;
    std::size_t i = 0;
    for (; i < bucket_count; ++i) {
      seen += buckets_[i].load(std::memory_order_acquire);  // pairs with record_n's release
      if (seen >= rank) break;
    }
    if (i == bucket_count) i = bucket_count - 1;
    const std::uint64_t lo = min_.load(std::memory_order_relaxed);
    const std::uint64_t hi = max_.load(std::memory_order_relaxed);
    std::uint64_t v = representative(i);
    if (hi >= lo) v = std::clamp(v, lo, hi);
    return std::chrono::nanoseconds{static_cast<std::int64_t>(v)};
  }

  // The largest and smallest recorded values, exactly; 0 when empty.
  [[nodiscard]] std::chrono::nanoseconds max() const noexcept {
    return std::chrono::nanoseconds{
        static_cast<std::int64_t>(max_.load(std::memory_order_relaxed))};
  }
  [[nodiscard]] std::chrono::nanoseconds min() const noexcept {
    const std::uint64_t m = min_.load(std::memory_order_relaxed);
    return std::chrono::nanoseconds{
        m == std::numeric_limits<std::uint64_t>::max() ? 0 : static_cast<std::int64_t>(m)};
  }
  // The arithmetic mean of the recorded values (exact while their total stays below 2^64 ns,
  // 584 years); 0 when empty.
  [[nodiscard]] std::chrono::duration<double, std::nano> mean() const noexcept {
    const std::uint64_t n = count();
    if (n == 0) return std::chrono::duration<double, std::nano>{0};
    return std::chrono::duration<double, std::nano>{
        static_cast<double>(sum_.load(std::memory_order_relaxed)) / static_cast<double>(n)};
  }
  // The sum of the recorded values, in nanoseconds (modulo 2^64).
  [[nodiscard]] std::uint64_t total_ns() const noexcept {
    return sum_.load(std::memory_order_relaxed);
  }

  // The bucket a value falls in, and the range of values of a bucket: for export and plots.
  [[nodiscard]] static constexpr std::size_t bucket_of(std::uint64_t ns) noexcept {
    if (ns < exact_below) return static_cast<std::size_t>(ns);
    if (ns > highest_trackable) ns = highest_trackable;
    const unsigned e = static_cast<unsigned>(std::bit_width(ns)) - 1;  // 7..43
    const unsigned shift = e - 6;
    const auto sub = static_cast<std::size_t>((ns >> shift) - sub_buckets);
    return exact_below + (e - 7) * static_cast<std::size_t>(sub_buckets) + sub;
  }
  [[nodiscard]] static constexpr std::uint64_t lowest_in(std::size_t bucket) noexcept {
    if (bucket < exact_below) return bucket;
    const std::size_t k = bucket - exact_below;
    const unsigned e = static_cast<unsigned>(k / sub_buckets) + 7;
    const std::uint64_t sub = k % sub_buckets;
    return (sub_buckets + sub) << (e - 6);
  }
  [[nodiscard]] static constexpr std::uint64_t highest_in(std::size_t bucket) noexcept {
    if (bucket < exact_below) return bucket;
    const std::size_t k = bucket - exact_below;
    const unsigned e = static_cast<unsigned>(k / sub_buckets) + 7;
    return lowest_in(bucket) + (std::uint64_t{1} << (e - 6)) - 1;
  }
  // The value reported for a bucket: its middle.
  [[nodiscard]] static constexpr std::uint64_t representative(std::size_t bucket) noexcept {
    return lowest_in(bucket) + (highest_in(bucket) - lowest_in(bucket)) / 2;
  }
  // Values counted in one bucket (a recent value while writers record).
  [[nodiscard]] std::uint64_t bucket_value_count(std::size_t bucket) const noexcept {
    return bucket < bucket_count ? buckets_[bucket].load(std::memory_order_relaxed) : 0;
  }

 private:
  static void raise(std::atomic<std::uint64_t>& target, std::uint64_t v) noexcept {
    std::uint64_t cur = target.load(std::memory_order_relaxed);
    while (v > cur && !target.compare_exchange_weak(cur, v, std::memory_order_relaxed)) {
    }
  }
  static void lower(std::atomic<std::uint64_t>& target, std::uint64_t v) noexcept {
    std::uint64_t cur = target.load(std::memory_order_relaxed);
    while (v < cur && !target.compare_exchange_weak(cur, v, std::memory_order_relaxed)) {
    }
  }
  static std::uint64_t saturating_add(std::uint64_t a, std::uint64_t b) noexcept {
    return a > std::numeric_limits<std::uint64_t>::max() - b
               ? std::numeric_limits<std::uint64_t>::max()
               : a + b;
  }
  static std::uint64_t saturating_mul(std::uint64_t a, std::uint64_t n) noexcept {
    if (n == 1) return a;
    return a > std::numeric_limits<std::uint64_t>::max() / n
               ? std::numeric_limits<std::uint64_t>::max()
               : a * n;
  }
  static std::uint64_t to_u64(long double v) noexcept {
    if (!(v > 0)) return 0;
    if (v >= 18446744073709551615.0L) return std::numeric_limits<std::uint64_t>::max();
    return static_cast<std::uint64_t>(v);
  }

  std::array<std::atomic<std::uint64_t>, bucket_count> buckets_;
  std::atomic<std::uint64_t> count_;
  std::atomic<std::uint64_t> sum_;
  std::atomic<std::uint64_t> max_;
  std::atomic<std::uint64_t> min_;
};

}  // namespace troupe
