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
// freed after the thread's cache is gone goes straight back to operator delete.
inline thread_local constinit bool block_pool_cache_destroyed = false;

// A thread's free lists. Trivially destructible and constant-initialised on purpose: a
// thread_local with a destructor is reached through a TLS wrapper call on every access (it must
// register the destructor on first use), which the hot path should not pay. The lists are
// freed by pool_cache_reaper instead, armed on a thread's first use of the pool.
struct pool_thread_cache {
  pool_free_node* heads[4];
  std::size_t counts[4];
  bool reaper_armed;
};
inline thread_local constinit pool_thread_cache block_pool_cache{};

struct pool_cache_reaper {
  pool_cache_reaper() noexcept = default;
  pool_cache_reaper(const pool_cache_reaper&) = delete;
  pool_cache_reaper& operator=(const pool_cache_reaper&) = delete;
  ~pool_cache_reaper() {
    block_pool_cache_destroyed = true;
    pool_thread_cache& tc = block_pool_cache;
    for (std::size_t c = 0; c < 4; ++c) {
      while (tc.heads[c] != nullptr) {
        pool_free_node* next = tc.heads[c]->next;
        ::operator delete(tc.heads[c]);
        tc.heads[c] = next;
      }
      tc.counts[c] = 0;
    }
  }
};
inline thread_local pool_cache_reaper block_pool_reaper;

// Small blocks (at most 512 bytes, four size classes) recycle through a free list per thread,
// so the send path allocates without a lock or a call into malloc. A thread whose list grows
// past a limit (a receiver freeing what senders allocated) hands a batch of blocks to a central
// store; a thread whose list is empty takes a batch back. The mutex is paid once per batch.
// Under AddressSanitizer the pool is bypassed so that use-after-free stays detectable.
class block_pool {
 public:
  static constexpr std::size_t class_count = 4;
  static constexpr std::size_t max_block = 512;
  static constexpr std::size_t batch = 64;
  static constexpr std::size_t local_limit = 4 * batch;
  static constexpr std::size_t central_limit = 512;  // batches kept per size class

  static constexpr std::size_t size_class(std::size_t n) noexcept {
    return n <= 64 ? 0 : n <= 128 ? 1 : n <= 256 ? 2 : 3;
  }
  static constexpr std::size_t class_bytes(std::size_t c) noexcept { return std::size_t{64} << c; }

  static void* allocate(std::size_t n) {
    if (TROUPE_DETAIL_ASAN || n > max_block) return ::operator new(n);
    const std::size_t c = size_class(n);
    // Always a whole class-sized block: another thread may recycle it for any size in the class.
    if (block_pool_cache_destroyed) return ::operator new(class_bytes(c));
    pool_thread_cache& tc = block_pool_cache;
    if (!tc.reaper_armed) [[unlikely]]
      arm(tc);
    if (tc.heads[c] == nullptr) refill(tc, c);
    if (pool_free_node* node = tc.heads[c]) {
      tc.heads[c] = node->next;
      --tc.counts[c];
      return node;
    }
    return ::operator new(class_bytes(c));
  }

  static void deallocate(void* p, std::size_t n) noexcept {
    if (TROUPE_DETAIL_ASAN || n > max_block || block_pool_cache_destroyed) {
      ::operator delete(p);
      return;
    }
    const std::size_t c = size_class(n);
    pool_thread_cache& tc = block_pool_cache;
    if (!tc.reaper_armed) [[unlikely]]
      arm(tc);
    auto* node = static_cast<pool_free_node*>(p);
    node->next = tc.heads[c];
    tc.heads[c] = node;
    if (++tc.counts[c] > local_limit) spill(tc, c);
  }

 private:
  struct central_store {
    std::mutex mutex;
    std::vector<pool_free_node*> batches[class_count];
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

  // Takes a batch from the central store or, when it has none (a sender running ahead of its
  // receivers), allocates a batch, so that the store's mutex is paid once per batch either way.
  static void refill(pool_thread_cache& tc, std::size_t c) {
    central_store& store = central();
    {
      std::lock_guard lock(store.mutex);
      if (!store.batches[c].empty()) {
        tc.heads[c] = store.batches[c].back();
        tc.counts[c] = batch;
        store.batches[c].pop_back();
        return;
      }
    }
    for (std::size_t i = 0; i < batch; ++i) {
      auto* node = static_cast<pool_free_node*>(::operator new(class_bytes(c), std::nothrow));
      if (node == nullptr) return;  // allocate() falls back to a throwing operator new
      node->next = tc.heads[c];
      tc.heads[c] = node;
      ++tc.counts[c];
    }
  }

  static void spill(pool_thread_cache& tc, std::size_t c) noexcept {
    // Detach the first `batch` nodes; the rest stay local.
    pool_free_node* first = tc.heads[c];
    pool_free_node* last = first;
    for (std::size_t i = 1; i < batch; ++i) last = last->next;
    tc.heads[c] = last->next;
    tc.counts[c] -= batch;
    last->next = nullptr;
    central_store& store = central();
    {
      std::lock_guard lock(store.mutex);
      if (store.batches[c].size() < central_limit) {
        try {
          store.batches[c].push_back(first);
          return;
        } catch (...) {  // no room for the bookkeeping: give the memory back instead
        }
      }
    }
    while (first != nullptr) {
      pool_free_node* next = first->next;
      ::operator delete(first);
      first = next;
    }
  }
};

}  // namespace troupe::detail
