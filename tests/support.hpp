// Test support: collecting dead letters and failures, and the accounting invariant.
#pragma once

#include <cstddef>
#include <mutex>
#include <string>
#include <vector>

#include <catch2/catch.hpp>

#include <troupe/troupe.hpp>

namespace test {

struct recorded_dead_letter {
  std::uint64_t target_id;
  std::string message_type;
  troupe::dead_letter_reason reason;
  std::string detail;
};

// Thread-safe sinks wired into runtime_options.
struct observer {
  std::mutex mutex;
  std::vector<recorded_dead_letter> dead;
  std::vector<std::string> failures;

  troupe::runtime_options options(std::size_t workers = 2) {
    troupe::runtime_options o;
    o.workers = workers;
    o.on_dead_letter = [this](const troupe::dead_letter& d) {
      std::lock_guard lock(mutex);
      dead.push_back({d.target.id(), std::string(d.message_type), d.reason, d.detail});
    };
    o.on_failure = [this](const troupe::address&, std::string_view what) {
      std::lock_guard lock(mutex);
      failures.emplace_back(what);
    };
    return o;
  }

  std::size_t dead_count(troupe::dead_letter_reason reason) {
    std::lock_guard lock(mutex);
    std::size_t n = 0;
    for (const auto& d : dead) n += d.reason == reason ? 1 : 0;
    return n;
  }
};

// Every message is accounted for: handled, dead-lettered or rejected.
inline void require_accounted(const troupe::runtime_counters& c) {
  INFO("sent=" << c.sent << " handled=" << c.handled << " dead=" << c.dead_lettered
               << " rejected=" << c.rejected);
  REQUIRE(c.sent == c.handled + c.dead_lettered + c.rejected);
}

}  // namespace test
