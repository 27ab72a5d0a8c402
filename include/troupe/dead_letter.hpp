// troupe::dead_letter: the record of a message that was not handled, and why.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <troupe/detail/address.hpp>

namespace troupe {

enum class dead_letter_reason {
  target_stopped,     // the target had stopped, or stopped with the message still queued
  handler_failed,     // the handler threw; `detail` holds the exception's text
  shutdown,           // the runtime shut down with the message queued or scheduled
  mailbox_full,       // a bounded mailbox dropped it
  expired,            // a reply arrived after its ask completed
  retries_exhausted,  // a work-queue item failed on every allowed attempt
};

[[nodiscard]] constexpr std::string_view to_string(dead_letter_reason r) noexcept {
  switch (r) {
    case dead_letter_reason::target_stopped:
      return "target stopped";
    case dead_letter_reason::handler_failed:
      return "handler failed";
    case dead_letter_reason::shutdown:
      return "shutdown";
    case dead_letter_reason::mailbox_full:
      return "mailbox full";
    case dead_letter_reason::expired:
      return "expired";
    case dead_letter_reason::retries_exhausted:
      return "retries exhausted";
  }
  return "unknown";
}

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
