// troupe-bench: the mailbox choice of DESIGN §3, justified by measurement.
//
// troupe's intrusive MPSC mailbox (troupe::detail::mailbox: one CAS per push onto a LIFO list
// of envelopes, which the consumer takes whole with one exchange and reverses) against
// moodycamel::ConcurrentQueue<void*> used as an MPSC queue (implicit producers, which is what a
// mailbox would need: any thread may send, without a per-(sender, mailbox) token).
//
//   throughput: P producer threads push `items` preallocated envelopes in total (P = 1, 4); the
//               main thread pops until it has them all. Each producer writes a payload word of
//               the envelope before pushing it and the consumer reads it after popping it
//               (what any real message costs), so the intrusive queue's link field does not
//               get its cache line for free. The consumer also checks per-producer FIFO order
//               and the payload sum: a run that loses, duplicates or reorders items fails.
//   backlog:    the same items pushed first (one thread, shuffled addresses, more than the
//               caches hold), then drained: the case of a receiver that fell behind (fanin).
//   memory:     one empty queue — sizeof plus the heap its constructor allocates (counted by a
//               replacement global operator new and, for moodycamel, whose allocations go
//               through its Traits::malloc, by counting traits); and a moodycamel queue after
//               4 sender threads each sent it one item that was then popped.
//
// Neither queue is ever marked idle here (the intrusive mailbox's try_idle is not called), so
// every push of the intrusive mailbox must report push_result::queued.

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <concurrentqueue.h>

#include <troupe/detail/envelope.hpp>
#include <troupe/detail/mailbox.hpp>

#include "bench.hpp"

// ---- heap accounting -------------------------------------------------------------------------
// Replacement global operator new/delete (over malloc/free, as the defaults are). They count
// bytes only while `counting_heap` is set, which happens only around the construction of the
// queues measured below; otherwise the cost is one relaxed load.

namespace {
std::atomic<bool> counting_heap{false};
std::atomic<std::size_t> counted_heap_bytes{0};
}  // namespace

// GCC cannot see that these replacements pair malloc with free, and warns at every inlined
// delete that free() receives a pointer from operator new.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
void* operator new(std::size_t n) {
  if (counting_heap.load(std::memory_order_relaxed)) {
    counted_heap_bytes.fetch_add(n, std::memory_order_relaxed);
  }
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif

namespace troupe_bench {
namespace {

using troupe::detail::envelope;
using troupe::detail::mailbox;

// moodycamel's default traits, with every allocation of the queue counted (live bytes).
struct counting_traits : moodycamel::ConcurrentQueueDefaultTraits {
  static inline std::atomic<std::int64_t> live_bytes{0};
  static constexpr std::size_t header = alignof(std::max_align_t);

  static void* malloc(std::size_t size) {
    auto* raw = static_cast<unsigned char*>(std::malloc(size + header));
    if (raw == nullptr) return nullptr;
    *reinterpret_cast<std::size_t*>(raw) = size;
    live_bytes.fetch_add(static_cast<std::int64_t>(size), std::memory_order_relaxed);
    return raw + header;
  }
  static void free(void* p) {
    if (p == nullptr) return;
    unsigned char* raw = static_cast<unsigned char*>(p) - header;
    live_bytes.fetch_sub(static_cast<std::int64_t>(*reinterpret_cast<std::size_t*>(raw)),
                         std::memory_order_relaxed);
    std::free(raw);
  }
};

// ---- the two queues behind one interface -----------------------------------------------------

struct intrusive_queue {
  mailbox box;
  std::atomic<std::uint64_t> unexpected{0};  // pushes that did not report `queued`

  void push(envelope* e) noexcept {
    if (box.push(e) != mailbox::push_result::queued) {
      unexpected.fetch_add(1, std::memory_order_relaxed);
    }
  }
  envelope* pop() noexcept { return box.pop(); }
  [[nodiscard]] std::string problem() const {
    const std::uint64_t n = unexpected.load();
    return n == 0 ? std::string{}
                  : std::to_string(n) + " pushes did not report push_result::queued";
  }
};

struct moodycamel_queue {
  moodycamel::ConcurrentQueue<void*> queue;
  std::atomic<std::uint64_t> failed{0};  // enqueues that failed (allocation)

  void push(envelope* e) noexcept {
    if (!queue.enqueue(e)) failed.fetch_add(1, std::memory_order_relaxed);
  }
  envelope* pop() noexcept {
    void* p = nullptr;
    return queue.try_dequeue(p) ? static_cast<envelope*>(p) : nullptr;
  }
  [[nodiscard]] std::string problem() const {
    const std::uint64_t n = failed.load();
    return n == 0 ? std::string{} : std::to_string(n) + " enqueues failed";
  }
};

std::size_t mailbox_items(const config& c) {
  return sized(c, 400'000, 4'000'000);
}

enum class mode {
  concurrent,  // producers push while the consumer pops: the queue stays short
  backlog,     // one producer pushes everything first, then the consumer drains it (timed)
};

// P producers push their share of `items` envelopes; the calling thread pops them all and
// returns millions of items per second (concurrent: from the producers' start to the last pop;
// backlog: from the first pop to the last).
//
// The envelopes are preallocated and touched up front, so that the queue is measured, not
// malloc or page faults. In backlog mode they are pushed in a shuffled order (fixed seed), as
// envelopes recycled through an allocator are scattered in memory, and 4,000,000 of them
// (96 MB) do not fit in the caches: what a receiver that fell behind its senders drains.
template <class Queue>
double run_throughput(const config& c, std::size_t producers, mode m, const char* name) {
  const std::size_t items = mailbox_items(c) / producers * producers;
  const std::size_t share = items / producers;
  std::vector<envelope> envelopes(items);
  std::vector<std::uint32_t> order;  // backlog: push order -> envelope
  if (m == mode::backlog) {
    order.resize(items);
    std::iota(order.begin(), order.end(), 0U);
    std::shuffle(order.begin(), order.end(), std::mt19937_64{20240607});
  }
  auto queue = std::make_unique<Queue>();
  std::atomic<std::size_t> ready{0};
  std::atomic<bool> start{m == mode::backlog};
  std::vector<std::thread> threads;
  threads.reserve(producers);
  for (std::size_t p = 0; p < producers; ++p) {
    threads.emplace_back([&, p] {
      ready.fetch_add(1, std::memory_order_acq_rel);
      while (!start.load(std::memory_order_acquire)) troupe::detail::cpu_relax();
      for (std::size_t i = 0; i < share; ++i) {
        const std::size_t index = p * share + i;
        envelope* e = &envelopes[order.empty() ? index : order[index]];
        e->correlation = index;  // the payload: its global push index
        queue->push(e);
      }
    });
  }
  if (m == mode::backlog) {
    for (auto& t : threads) t.join();
    threads.clear();
  }
  while (ready.load(std::memory_order_acquire) != producers) std::this_thread::yield();

  std::vector<std::uint64_t> next_expected(producers);
  for (std::size_t p = 0; p < producers; ++p) next_expected[p] = p * share;
  std::uint64_t sum = 0;
  std::uint64_t out_of_order = 0;
  std::size_t popped = 0;
  unsigned empty_polls = 0;

  const auto t0 = clock::now();
  start.store(true, std::memory_order_release);
  while (popped < items) {
    envelope* e = queue->pop();
    if (e == nullptr) {
      // The producers may be descheduled (P = 4 on a two-core machine): give them the core.
      if (++empty_polls < 64) {
        troupe::detail::cpu_relax();
      } else {
        std::this_thread::yield();
      }
      continue;
    }
    empty_polls = 0;
    const std::uint64_t index = e->correlation;
    sum += index;
    const std::size_t p = static_cast<std::size_t>(index / share);
    if (p >= producers || index != next_expected[p]) {
      ++out_of_order;
    } else {
      ++next_expected[p];
    }
    ++popped;
  }
  const auto t1 = clock::now();
  for (auto& t : threads) t.join();

  const std::string prefix = std::string(name) + ": ";
  const std::string problem = queue->problem();
  expect(problem.empty(), prefix + problem);
  expect(out_of_order == 0,
         prefix + std::to_string(out_of_order) + " items out of per-producer FIFO order");
  const std::uint64_t expected_sum = static_cast<std::uint64_t>(items) * (items - 1) / 2;
  expect(sum == expected_sum, prefix + "payload sum " + std::to_string(sum) + ", expected " +
                                  std::to_string(expected_sum) + " (lost or duplicated items)");
  expect(queue->pop() == nullptr, prefix + "items left after all were popped");
  return static_cast<double>(items) / seconds_between(t0, t1) / 1e6;
}

// Bytes of heap that constructing a T allocates, through operator new and through moodycamel's
// counting traits.
template <class T, class... Args>
std::size_t construct_and_measure(std::unique_ptr<T>& out, Args&&... args) {
  static_assert(alignof(T) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__);
  // The object itself is placed in storage allocated before counting starts.
  void* storage = ::operator new(sizeof(T));
  const std::int64_t traits_before = counting_traits::live_bytes.load();
  counted_heap_bytes.store(0);
  counting_heap.store(true);
  T* object = nullptr;
  try {
    object = ::new (storage) T(std::forward<Args>(args)...);
  } catch (...) {
    counting_heap.store(false);
    ::operator delete(storage);
    throw;
  }
  counting_heap.store(false);
  out.reset(object);
  const std::int64_t traits_bytes = counting_traits::live_bytes.load() - traits_before;
  return counted_heap_bytes.load() + static_cast<std::size_t>(traits_bytes > 0 ? traits_bytes : 0);
}

double intrusive_empty_bytes(const config&) {
  std::unique_ptr<mailbox> box;
  const std::size_t heap = construct_and_measure(box);
  return static_cast<double>(sizeof(mailbox) + heap);
}

using counted_queue = moodycamel::ConcurrentQueue<void*, counting_traits>;

double moodycamel_empty_bytes(const config&) {
  std::unique_ptr<counted_queue> q;
  const std::size_t heap = construct_and_measure(q);
  return static_cast<double>(sizeof(counted_queue) + heap);
}

double moodycamel_cap0_empty_bytes(const config&) {
  std::unique_ptr<counted_queue> q;
  const std::size_t heap = construct_and_measure(q, std::size_t{0});
  return static_cast<double>(sizeof(counted_queue) + heap);
}

// A default moodycamel queue after 4 sender threads each sent it one item, all popped again:
// each implicit producer (sub-queue, block index, block) stays allocated for the queue's life.
double moodycamel_four_senders_bytes(const config&) {
  const std::int64_t before = counting_traits::live_bytes.load();
  auto q = std::make_unique<counted_queue>();
  envelope items[4];
  for (auto& item : items) {
    // One after another: four distinct threads are what matters, not overlap.
    bool ok = false;
    std::thread([&q, &item, &ok] { ok = q->enqueue(&item); }).join();
    expect(ok, "moodycamel: enqueue failed");
  }
  void* p = nullptr;
  int popped = 0;
  while (q->try_dequeue(p)) ++popped;
  expect(popped == 4, "moodycamel: popped " + std::to_string(popped) + " of 4 items");
  const std::int64_t heap = counting_traits::live_bytes.load() - before;
  return static_cast<double>(sizeof(counted_queue)) + static_cast<double>(heap);
}

}  // namespace

void add_mailbox_workloads(std::vector<workload>& out) {
  struct variant {
    const char* name;
    std::size_t producers;
    mode m;
    bool intrusive;
  };
  static constexpr variant variants[] = {
      {"mailbox_intrusive_p1", 1, mode::concurrent, true},
      {"mailbox_moodycamel_p1", 1, mode::concurrent, false},
      {"mailbox_intrusive_p4", 4, mode::concurrent, true},
      {"mailbox_moodycamel_p4", 4, mode::concurrent, false},
      {"mailbox_intrusive_backlog", 1, mode::backlog, true},
      {"mailbox_moodycamel_backlog", 1, mode::backlog, false},
  };
  for (const variant& v : variants) {
    out.push_back({v.name, "mailbox", "M items/s", false, false,
                   [v](const config& c) {
                     return std::to_string(mailbox_items(c)) + " preallocated envelopes, " +
                            (v.m == mode::backlog
                                 ? std::string("pushed (shuffled) by 1 thread, then drained")
                                 : std::to_string(v.producers) + " producer(s), 1 consumer");
                   },
                   [v](const config& c) {
                     return v.intrusive
                                ? run_throughput<intrusive_queue>(c, v.producers, v.m, v.name)
                                : run_throughput<moodycamel_queue>(c, v.producers, v.m, v.name);
                   }});
  }
  auto empty = [](const config&) { return std::string("one empty queue: sizeof + heap"); };
  out.push_back(
      {"mailbox_intrusive_bytes", "mailbox", "bytes", true, false, empty, intrusive_empty_bytes});
  out.push_back(
      {"mailbox_moodycamel_bytes", "mailbox", "bytes", true, false, empty, moodycamel_empty_bytes});
  out.push_back(
      {"mailbox_moodycamel_cap0_bytes", "mailbox", "bytes", true, false,
       [](const config&) { return std::string("one empty queue constructed with capacity 0"); },
       moodycamel_cap0_empty_bytes});
  out.push_back({"mailbox_moodycamel_4senders_bytes", "mailbox", "bytes", true, false,
                 [](const config&) {
                   return std::string("default queue after 4 threads sent 1 item each, drained");
                 },
                 moodycamel_four_senders_bytes});
}

}  // namespace troupe_bench
