// Internal: the definition of troupe::address, kept free of the rest of the core so that the
// public headers that hold an address (ref.hpp, dead_letter.hpp) can include it first.
// Users include <troupe/ref.hpp>.
#pragma once

#include <compare>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string_view>
#include <utility>

#include <troupe/detail/fwd.hpp>

namespace troupe {

// An untyped, copyable handle to an actor, for registries, dead letters and comparisons.
// It keeps the actor's bookkeeping alive (not the actor): a handle to a stopped actor stays
// valid and compares equal to other handles of that actor. Copying is thread-safe.
class address {
 public:
  address() noexcept = default;
  address(const address& other) noexcept;
  address(address&& other) noexcept : cell_(std::exchange(other.cell_, nullptr)) {}
  address& operator=(const address& other) noexcept;
  address& operator=(address&& other) noexcept;
  ~address();

  // A process-unique id, never reused; 0 for an empty address.
  [[nodiscard]] std::uint64_t id() const noexcept;
  // The actor's class name, as the compiler spells it; empty for an empty address.
  [[nodiscard]] std::string_view type_name() const noexcept;
  [[nodiscard]] explicit operator bool() const noexcept { return cell_ != nullptr; }

  // Asks the actor to stop after its current handler; queued messages are dead-lettered.
  // Idempotent; a no-op on a stopped actor. Throws error(invalid_ref) on an empty address.
  void stop() const;

  friend bool operator==(const address& a, const address& b) noexcept { return a.cell_ == b.cell_; }
  friend std::strong_ordering operator<=>(const address& a, const address& b) noexcept {
    return a.id() <=> b.id();
  }

 protected:
  friend struct detail::access;
  detail::actor_cell* cell_ = nullptr;
};

}  // namespace troupe

template <>
struct std::hash<troupe::address> {
  std::size_t operator()(const troupe::address& a) const noexcept {
    return std::hash<std::uint64_t>{}(a.id());
  }
};
