// Internal: the recycling allocator behind envelopes, coroutine frames and actor cells.
#pragma once

#include <cstddef>
#include <mutex>
#include <new>
#include <vector>

#include <troupe/detail/config.hpp>

namespace troupe::detail {

struct pool_free_node {
  pool_free_node* next;
};

// Trivially destructible, so it stays readable while thread_local destructors run: a block
// freed after the thread's cache is gone goes straight back to the central store.
inline thread_local constinit bool block_pool_cache_destroyed = false;

inline constexpr std::size_t pool_class_count = 7;

// A thread's free lists. Trivially destructible and constant-initialised on purpose: a
// thread_local with a destructor is reached through a TLS wrapper call on every access (it must
// register the destructor on first use), which the hot path should not pay. The lists are
// handed back by pool_cache_reaper instead, armed on a thread's first use of the pool.
struct pool_thread_cache {
  pool_free_node* heads[pool_class_count];
  std::size_t counts[pool_class_count];
  bool reaper_armed;
};
inline thread_local constinit pool_thread_cache block_pool_cache{};

struct pool_cache_reaper {
  pool_cache_reaper() noexcept = default;
  pool_cache_reaper(const pool_cache_reaper&) = delete;
  pool_cache_reaper& operator=(const pool_cache_reaper&) = delete;
  inline ~pool_cache_reaper();
};
inline thread_local pool_cache_reaper block_pool_reaper;

// Small blocks (at most 512 bytes, seven size classes) recycle through a free list per thread,
// so the send path allocates without a lock or a call into malloc. A thread whose list grows
// past a limit (a receiver freeing what senders allocated) hands a batch of blocks to a central
// store; a thread whose list is empty takes a batch back, or carves a fresh batch from a slab.
// The mutex is paid once per batch.
//
// Blocks are carved from 64 KiB slabs aligned to 64 bytes, never separate mallocs: no malloc
// header per block (an idle actor's record is its block, nothing more), and a block of 64, 128,
// 192, 256 or 512 bytes starts on a cache line, so a 64-byte envelope never straddles two lines
// or shares one with a neighbour. The 96-byte class fits an empty actor record (96 bytes) and
// small coroutine frames without rounding them up to 128. Slabs are never returned to the
// system: the pool keeps its peak (as malloc's arenas largely do), and freed blocks serve the
// next allocations of their class in any thread.
// Under AddressSanitizer the pool is bypassed so that use-after-free stays detectable.
class block_pool {
 public:
  static constexpr std::size_t class_count = pool_class_count;
  static constexpr std::size_t max_block = 512;
  static constexpr std::size_t batch = 64;
  static constexpr std::size_t local_limit = 4 * batch;
  static constexpr std::size_t slab_bytes = std::size_t{64} << 10;
  static constexpr std::size_t slab_alignment = 64;

  static constexpr std::size_t size_class(std::size_t n) noexcept {
    return n <= 64    ? 0
           : n <= 96  ? 1
           : n <= 128 ? 2
           : n <= 192 ? 3
           : n <= 256 ? 4
           : n <= 384 ? 5
                      : 6;
  }
  static constexpr std::size_t class_bytes(std::size_t c) noexcept {
    constexpr std::size_t bytes[class_count] = {64, 96, 128, 192, 256, 384, 512};
    return bytes[c];
  }
  // Every class keeps the alignment operator new promises.
  static_assert(96 % __STDCPP_DEFAULT_NEW_ALIGNMENT__ == 0 &&
                384 % __STDCPP_DEFAULT_NEW_ALIGNMENT__ == 0);

  static void* allocate(std::size_t n) {
    if (TROUPE_DETAIL_ASAN || n > max_block) return ::operator new(n);
    const std::size_t c = size_class(n);
    if (block_pool_cache_destroyed) [[unlikely]]
      return allocate_uncached(c);
    pool_thread_cache& tc = block_pool_cache;
    if (!tc.reaper_armed) [[unlikely]]
      arm(tc);
    if (tc.heads[c] == nullptr) [[unlikely]]
      refill(tc, c);
    pool_free_node* node = tc.heads[c];
    tc.heads[c] = node->next;
    --tc.counts[c];
    return node;
  }

  static void deallocate(void* p, std::size_t n) noexcept {
    if (TROUPE_DETAIL_ASAN || n > max_block) {
      ::operator delete(p);
      return;
    }
    const std::size_t c = size_class(n);
    auto* node = static_cast<pool_free_node*>(p);
    if (block_pool_cache_destroyed) [[unlikely]] {
      node->next = nullptr;
      give_back(c, node, 1);
      return;
    }
    pool_thread_cache& tc = block_pool_cache;
    if (!tc.reaper_armed) [[unlikely]]
      arm(tc);
    node->next = tc.heads[c];
    tc.heads[c] = node;
    if (++tc.counts[c] > local_limit) [[unlikely]]
      spill(tc, c);
  }

 private:
  friend struct pool_cache_reaper;

  struct free_batch {
    pool_free_node* head;
    std::size_t count;
  };
  struct central_store {
    std::mutex mutex;
    std::vector<free_batch> batches[class_count];
    // The slab being carved, per class: [cursor, end).
    char* cursor[class_count] = {};
    char* end[class_count] = {};
  };

  // Never destroyed: threads may exit (and return blocks) after static destruction began.
  static central_store& central() noexcept {
    static central_store* store = new central_store;
    return *store;
  }

  // First use of the pool on this thread: touching the reaper registers its destructor.
  static void arm(pool_thread_cache& tc) noexcept {
    static_cast<void>(&block_pool_reaper);
    tc.reaper_armed = true;
  }

  // Caller holds the store's mutex: up to `batch` fresh blocks of class c, linked in address
  // order (so that a thread allocating a run of them walks memory forward), from the slab being
  // carved or a new one. Throws std::bad_alloc if there is no memory for a new slab.
  static free_batch carve(central_store& store, std::size_t c) {
    const std::size_t size = class_bytes(c);
    if (static_cast<std::size_t>(store.end[c] - store.cursor[c]) < size) {
      char* slab =
          static_cast<char*>(::operator new (slab_bytes, std::align_val_t{slab_alignment}));
      store.cursor[c] = slab;
      store.end[c] = slab + slab_bytes;
    }
    std::size_t count = static_cast<std::size_t>(store.end[c] - store.cursor[c]) / size;
    if (count > batch) count = batch;
    auto* head = reinterpret_cast<pool_free_node*>(store.cursor[c]);
    pool_free_node* node = head;
    for (std::size_t i = 1; i < count; ++i) {
      auto* next = reinterpret_cast<pool_free_node*>(store.cursor[c] + i * size);
      node->next = next;
      node = next;
    }
    node->next = nullptr;
    store.cursor[c] += count * size;
    return {head, count};
  }

  // A batch from the central store or, when it has none (a sender running ahead of its
  // receivers), freshly carved: the store's mutex is paid once per batch either way.
  [[gnu::noinline]] static void refill(pool_thread_cache& tc, std::size_t c) {
    central_store& store = central();
    std::lock_guard lock(store.mutex);
    free_batch b;
    if (!store.batches[c].empty()) {
      b = store.batches[c].back();
      store.batches[c].pop_back();
    } else {
      b = carve(store, c);
    }
    tc.heads[c] = b.head;
    tc.counts[c] = b.count;
  }

  // A thread whose cache is gone (its thread_local destructors ran): one block at a time,
  // under the mutex. Rare: only destructors that run after the pool's own.
  [[gnu::noinline]] static void* allocate_uncached(std::size_t c) {
    central_store& store = central();
    std::lock_guard lock(store.mutex);
    std::vector<free_batch>& batches = store.batches[c];
    if (batches.empty()) batches.push_back(carve(store, c));
    free_batch& b = batches.back();
    pool_free_node* node = b.head;
    b.head = node->next;
    if (--b.count == 0) batches.pop_back();
    return node;
  }

  // Hands `count` blocks (a null-terminated list) to the central store. If the store cannot
  // grow its index, the blocks join an existing batch instead, so that none is ever lost.
  static void give_back(std::size_t c, pool_free_node* head, std::size_t count) noexcept {
    if (head == nullptr) return;
    central_store& store = central();
    std::lock_guard lock(store.mutex);
    std::vector<free_batch>& batches = store.batches[c];
    try {
      batches.push_back({head, count});
      return;
    } catch (...) {
    }
    if (!batches.empty()) {  // never empty here in practice: push_back of a first entry failed
      pool_free_node* tail = head;
      while (tail->next != nullptr) tail = tail->next;
      tail->next = batches.back().head;
      batches.back().head = head;
      batches.back().count += count;
    }
  }

  [[gnu::noinline]] static void spill(pool_thread_cache& tc, std::size_t c) noexcept {
    // Detach the first `batch` nodes; the rest stay local.
    pool_free_node* first = tc.heads[c];
    pool_free_node* last = first;
    for (std::size_t i = 1; i < batch; ++i) last = last->next;
    tc.heads[c] = last->next;
    tc.counts[c] -= batch;
    last->next = nullptr;
    give_back(c, first, batch);
  }
};

inline pool_cache_reaper::~pool_cache_reaper() {
  block_pool_cache_destroyed = true;
  pool_thread_cache& tc = block_pool_cache;
  for (std::size_t c = 0; c < block_pool::class_count; ++c) {
    block_pool::give_back(c, tc.heads[c], tc.counts[c]);
    tc.heads[c] = nullptr;
    tc.counts[c] = 0;
  }
}

}  // namespace troupe::detail
