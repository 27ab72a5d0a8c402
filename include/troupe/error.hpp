// troupe::error: the exception type of runtime misuse and failed operations.
#pragma once

#include <exception>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace troupe {

// Why an operation failed. Stable values: tests and callers switch on them.
enum class errc {
  runtime_stopped = 1,   // the runtime is shutting down or has shut down
  actor_stopped,         // the target actor has stopped
  invalid_ref,           // an empty ref or address was used
  bad_actor_type,        // a typed view of an actor was asked for with the wrong type
  shutdown_from_worker,  // shutdown() was called from one of the runtime's own threads
  handler_failed,        // a handler threw
  timeout,               // the operation did not complete in time
  mailbox_full,          // a bounded mailbox rejected the message
  broken_promise,        // a reply promise was dropped without a value
  would_block,           // a blocking wait was attempted on one of the runtime's own threads
  no_down_handler,       // monitor() from an actor that has no on(troupe::down) handler
  invalid_subject,       // a malformed topic subject or subscription pattern
  not_retained,          // a replay or offset handler on a subject that keeps no events
  invalid_offset,        // a replay from an offset outside the retained window
  retention_conflict,    // a subject retained twice with another event type or capacity
  // Across processes (troupe/nats/):
  no_responders,   // nobody serves the remote name asked
  disconnected,    // the connection to the broker dropped (or was closed) before the reply came
  too_large,       // the encoded message exceeds what the broker or the receiver accepts
  decode_failed,   // bytes from the wire could not be decoded (the reason says why)
  invalid_argument,      // an argument outside its documented range (a non-positive ask timeout)
  deadlock,              // an ask that could never complete: its target awaits the asker (a cycle)
};

// A short English name of the code, as it appears in error::what().
[[nodiscard]] constexpr std::string_view to_string(errc code) noexcept {
  switch (code) {
    case errc::runtime_stopped:
      return "runtime stopped";
    case errc::actor_stopped:
      return "actor stopped";
    case errc::invalid_ref:
      return "invalid ref";
    case errc::bad_actor_type:
      return "bad actor type";
    case errc::shutdown_from_worker:
      return "shutdown from a runtime thread";
    case errc::handler_failed:
      return "handler failed";
    case errc::timeout:
      return "timeout";
    case errc::mailbox_full:
      return "mailbox full";
    case errc::broken_promise:
      return "broken promise";
    case errc::would_block:
      return "would block";
    case errc::invalid_subject:
      return "invalid subject";
    case errc::no_down_handler:
      return "no down handler";
    case errc::not_retained:
      return "not retained";
    case errc::invalid_offset:
      return "invalid offset";
    case errc::retention_conflict:
      return "retention conflict";
    case errc::no_responders:
      return "no responders";
    case errc::disconnected:
      return "disconnected";
    case errc::too_large:
      return "too large";
    case errc::decode_failed:
      return "decode failed";
    case errc::invalid_argument:
      return "invalid argument";
    case errc::deadlock:
      return "deadlock";
  }
  return "unknown error";
}

// Thrown by troupe for misuse (spawn after shutdown, an empty ref) and failed operations, such
// as an ask that timed out. When an ask's handler threw, code() is handler_failed, what() holds
// the handler's text and cause() the original exception, which rethrow_cause() rethrows with
// its own type.
class error : public std::runtime_error {
 public:
  // what() becomes "troupe: <code name>: <what>"; `cause` is kept for cause().
  error(errc code, const std::string& what, std::exception_ptr cause = {})
      : std::runtime_error("troupe: " + std::string(to_string(code)) + ": " + what),
        code_(code),
        cause_(std::move(cause)) {}
  // Why it failed; switch on this rather than on the text.
  [[nodiscard]] errc code() const noexcept { return code_; }
  // The handler's own exception for handler_failed (null otherwise).
  [[nodiscard]] const std::exception_ptr& cause() const noexcept { return cause_; }
  [[noreturn]] void rethrow_cause() const {
    if (cause_) std::rethrow_exception(cause_);
    throw *this;
  }

 private:
  errc code_;
  std::exception_ptr cause_;
};

}  // namespace troupe
