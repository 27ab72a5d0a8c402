// troupe::trace_hook: sees every message sent, started and finished, with its id, the id of the
// message whose handler sent it (causation) and the trace it belongs to; troupe::json_lines_trace
// writes spans.
#pragma once

#include <chrono>
#include <cstdint>
#include <fstream>
#include <memory>
#include <mutex>
#include <ostream>
#include <stdexcept>
#include <string>
#include <string_view>

#include <troupe/detail/json.hpp>
#include <troupe/detail/trace_context.hpp>

namespace troupe {

enum class trace_point : std::uint8_t {
  send,          // being queued in the target's mailbox (a refused send is not traced; one
                 // that finds the target stopped is traced, then dead-lettered)
  handle_start,  // the target's handler is about to run
  handle_end,    // the handler returned, its task completed, or it threw (`failed`)
};

// One observation. The string views live as long as the program (type names).
struct trace_event {
  trace_point point = trace_point::send;
  // The message's id: an ask's correlation id; for other messages a fresh id from the same
  // sequence, given when tracing or metrics are on. Unique within a runtime.
  std::uint64_t message_id = 0;
  // The id of the message whose handler sent this one; 0 for a root message (sent from outside
  // any handler: main, a timer, on_start).
  std::uint64_t causation_id = 0;
  // The causal chain the message belongs to, as a W3C trace-id (filled in only when a trace hook
  // is installed, which is what this record is for): a root message starts a trace of its own
  // (root_trace_of its id); a message sent from a handler joins the handler's trace; a message
  // from another process over NATS joins the trace its `traceparent` header names. A message's
  // span id is its message_id, its parent span the causation_id.
  trace_id trace;
  std::uint64_t actor_id = 0;  // the target
  std::string_view actor_type;
  std::string_view message_type;
  std::chrono::steady_clock::time_point time;  // when this point was reached
  // handle_start and handle_end: when the message was queued; handle_end: when it started.
  std::chrono::steady_clock::time_point queued;
  std::chrono::steady_clock::time_point started;
  bool failed = false;  // handle_end: the handler threw
};

// Installed per runtime (runtime_options::trace). Called on the thread where the point is
// reached (a sender's, a worker's), concurrently from several threads: must be thread-safe and
// must not block for long; on_event is noexcept, so an exception escaping it terminates the
// program. A message it sends to the runtime it observes is traced too (a send from the hook
// inside a handler names that handler's message as its causation): beware of loops.
class trace_hook {
 public:
  virtual ~trace_hook() = default;
  virtual void on_event(const trace_event& event) noexcept = 0;
};

// A ready hook: one JSON object per handled message, on one line, at handle_end:
// {"id":7,"cause":3,"actor":"worker#2","message":"job","queued_ns":..,"start_ns":..,
//  "end_ns":..,"ok":true}. Times are steady_clock nanoseconds since its epoch. Lines are
// written whole under a mutex; the stream is flushed by the destructor.
class json_lines_trace final : public trace_hook {
 public:
  // Writes to `out`, which must outlive the hook.
  explicit json_lines_trace(std::ostream& out) : out_(&out) {}
  // Writes to the file at `path` (truncated). Throws std::runtime_error if it cannot be opened.
  explicit json_lines_trace(const std::string& path)
      : file_(std::make_unique<std::ofstream>(path, std::ios::trunc)), out_(file_.get()) {
    if (!*file_) throw std::runtime_error("json_lines_trace: cannot open " + path);
  }
  json_lines_trace(const json_lines_trace&) = delete;
  json_lines_trace& operator=(const json_lines_trace&) = delete;
  ~json_lines_trace() override {
    std::lock_guard lock(mutex_);
    out_->flush();
  }

  void on_event(const trace_event& e) noexcept override {
    if (e.point != trace_point::handle_end) return;
    try {
      std::string line;
      line.reserve(200);
      line += "{\"id\":";
      line += std::to_string(e.message_id);
      line += ",\"cause\":";
      line += std::to_string(e.causation_id);
      line += ",\"actor\":\"";
      detail::append_json_escaped(line, e.actor_type);
      line += '#';
      line += std::to_string(e.actor_id);
      line += "\",\"message\":\"";
      detail::append_json_escaped(line, e.message_type);
      line += "\",\"queued_ns\":";
      line += std::to_string(ns(e.queued));
      line += ",\"start_ns\":";
      line += std::to_string(ns(e.started));
      line += ",\"end_ns\":";
      line += std::to_string(ns(e.time));
      line += e.failed ? ",\"ok\":false}\n" : ",\"ok\":true}\n";
      std::lock_guard lock(mutex_);
      out_->write(line.data(), static_cast<std::streamsize>(line.size()));
    } catch (...) {  // out of memory or a failing stream: the span is lost, the runtime goes on
    }
  }

 private:
  static long long ns(std::chrono::steady_clock::time_point t) noexcept {
    return static_cast<long long>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count());
  }
  std::unique_ptr<std::ofstream> file_;
  std::ostream* out_;
  std::mutex mutex_;
};

}  // namespace troupe
