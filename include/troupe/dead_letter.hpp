// troupe::dead_letter: the record of a message that was not handled, and why.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <troupe/dead_letter_reason.hpp>
#include <troupe/detail/address.hpp>

namespace troupe {

// Passed to runtime_options::on_dead_letter. The message itself is already destroyed.
struct dead_letter {
  address target;                 // the intended receiver
  std::string_view message_type;  // the message's type name (static storage)
  dead_letter_reason reason;
  std::uint64_t correlation_id = 0;  // the ask's correlation id, 0 for a plain send
  std::string detail;                // e.g. the exception text for handler_failed
};

}  // namespace troupe

#include <troupe/detail/core.hpp>
