// Internal: build-environment detection and small portable helpers.
#pragma once

#include <cstddef>

#if defined(__SANITIZE_ADDRESS__)
#define TROUPE_DETAIL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TROUPE_DETAIL_ASAN 1
#endif
#endif
#ifndef TROUPE_DETAIL_ASAN
#define TROUPE_DETAIL_ASAN 0
#endif

namespace troupe::detail {

// Separates data written by different threads so that they do not share a cache line.
inline constexpr std::size_t cache_line = 64;

// Tells the core it is spinning, so a hyper-thread sibling gets the pipeline meanwhile.
inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield" ::: "memory");
#endif
}

}  // namespace troupe::detail
