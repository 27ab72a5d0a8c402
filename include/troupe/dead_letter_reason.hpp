// troupe::dead_letter_reason: why a message was not handled.
#pragma once

#include <string_view>

namespace troupe {

// Why a message was not handled (dead_letter::reason).
enum class dead_letter_reason {
  target_stopped,     // the target had stopped, or stopped with the message still queued
  handler_failed,     // the handler threw; `detail` holds the exception's text
  shutdown,           // the runtime shut down with the message queued or scheduled
  mailbox_full,       // a bounded mailbox dropped it
  expired,            // a reply arrived after its ask completed
  retries_exhausted,  // a work-queue item failed on every allowed attempt
  dropped,            // a simulation (troupe/simulation.hpp) dropped it as a network fault
};

// A short English name of the reason, e.g. "retries exhausted".
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
    case dead_letter_reason::dropped:
      return "dropped by simulation";
  }
  return "unknown";
}

}  // namespace troupe
