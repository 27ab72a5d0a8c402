// troupe::link_faults and troupe::fault_record: the network faults a simulation injects between
// nodes (named groups of actors), and the record of each one it injected. See simulation.hpp.
#pragma once

#include <chrono>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace troupe {

// Faults of the messages sent from an actor on one node to an actor on another (never within a
// node, never from outside any actor). Probabilities are per message, in [0, 1].
struct link_faults {
  double drop = 0;       // lost: a dead letter with reason dropped ("dropped by simulation")
  double duplicate = 0;  // delivered twice (plain sends of copyable messages only)
  double delay = 0;      // held in flight for a time uniform in [min_delay, max_delay]
  std::chrono::nanoseconds min_delay{0};
  std::chrono::nanoseconds max_delay{0};
  // Delayed messages may overtake earlier ones of the same sender and target. Off: each pair
  // stays FIFO (as over one connection), and delays only shift it in time.
  bool reorder = false;
};

enum class fault_kind { drop, delay, duplicate, crash, partition };

[[nodiscard]] constexpr std::string_view to_string(fault_kind k) noexcept {
  switch (k) {
    case fault_kind::drop:
      return "drop";
    case fault_kind::delay:
      return "delay";
    case fault_kind::duplicate:
      return "duplicate";
    case fault_kind::crash:
      return "crash";
    case fault_kind::partition:
      return "partition";
  }
  return "unknown";
}

// One injected fault. `point` names what it hit — the n-th message from one actor to another
// (requests and replies apart), or the n-th activation of an actor — so that (point, kind) names
// the fault in a replay (simulation_options::replay_faults) even when leaving other faults out
// changes the order of events; `text` describes it for a person.
struct fault_record {
  std::uint64_t point = 0;
  fault_kind kind = fault_kind::drop;
  std::chrono::nanoseconds at{0};  // virtual time since the simulation began
  std::string text;
  // Random faults can be left out of a replay; partition drops follow from the scenario's own
  // partition() calls, and explicit crash() calls are the scenario's too.
  bool random = true;
  std::chrono::nanoseconds delay{0};  // a delay's length (a replay delays by as much)
};

// What a crashed actor's handler throws (simulation::crash, simulation_options::crash).
class simulated_crash : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace troupe
