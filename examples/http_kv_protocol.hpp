// The HTTP/1.1 side of the http_kv example, shared word for word by the troupe service
// (examples/http_kv_server.hpp), its plain-Asio baseline (bench/http_asio_baseline.cpp) and the
// tests, so that the two servers differ only in how requests reach the store.
//
// Protocol: GET /kv/<key> -> 200 with the value, or 404; PUT /kv/<key> with a body -> 201 (new
// key) or 204 (replaced). Keep-alive by default (HTTP/1.1), pipelining allowed. A malformed
// request gets 400, a header section over the limit 431, a body over the limit 413, chunked
// bodies 501, a PUT without Content-Length 411, another HTTP version 505; after any of those
// the connection is closed (its framing can no longer be trusted). An unknown method gets 405
// and the connection stays open; a path outside /kv/ gets 404.
#pragma once

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <ostream>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <troupe/latency_histogram.hpp>

namespace http_kv {

// Limits on what one request may hold. The defaults are what the servers use.
struct limits {
  std::size_t max_header_bytes = 8 * 1024;  // request line + headers + the blank line
  std::size_t max_body_bytes = 64 * 1024;
  std::size_t max_key_bytes = 256;
};

enum class verb { get, put, other };

// A parsed request; key and body point into the buffer that was parsed.
struct request {
  verb method = verb::other;
  bool kv_path = false;  // the path was /kv/<key>
  std::string_view key;
  std::string_view body;
  bool keep_alive = true;
};

enum class parse_status { incomplete, complete, error };

struct parse_result {
  parse_status status = parse_status::incomplete;
  std::size_t consumed = 0;  // bytes of the complete request
  request req;
  int error_status = 0;  // with parse_status::error: the status to answer
};

namespace detail {

inline bool is_token_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
}
inline bool is_key_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_' || c == '.' || c == '~' || c == ':';
}
inline bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i];
    char y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}
inline std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}
inline parse_result fail(int status) {
  parse_result r;
  r.status = parse_status::error;
  r.error_status = status;
  return r;
}

// The request line "METHOD SP /target SP HTTP/1.x"; 0 when valid, else the status to answer.
inline int parse_request_line(std::string_view line, request& req, bool& http10,
                              const limits& lim) {
  const auto sp1 = line.find(' ');
  if (sp1 == std::string_view::npos || sp1 == 0 || sp1 > 16) return 400;
  const std::string_view method = line.substr(0, sp1);
  for (char c : method) {
    if (!is_token_char(c)) return 400;
  }
  const auto sp2 = line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || sp2 == sp1 + 1) return 400;
  const std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  const std::string_view version = line.substr(sp2 + 1);
  if (version.size() != 8 || version.substr(0, 5) != "HTTP/") return 400;
  if (version == "HTTP/1.1") {
    http10 = false;
  } else if (version == "HTTP/1.0") {
    http10 = true;
  } else if (version[5] >= '0' && version[5] <= '9' && version[6] == '.' && version[7] >= '0' &&
             version[7] <= '9') {
    return 505;
  } else {
    return 400;
  }
  if (target.empty() || target.front() != '/') return 400;
  for (char c : target) {
    if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f) return 400;
  }
  req.method = method == "GET" ? verb::get : method == "PUT" ? verb::put : verb::other;
  constexpr std::string_view prefix = "/kv/";
  if (target.size() > prefix.size() && target.substr(0, prefix.size()) == prefix) {
    const std::string_view key = target.substr(prefix.size());
    if (key.size() > lim.max_key_bytes) return 400;
    req.kv_path = std::all_of(key.begin(), key.end(), is_key_char);
    if (req.kv_path) req.key = key;
  }
  return 0;
}

}  // namespace detail

// Parses the request at the start of `in`. incomplete: wait for more bytes (never when `in` is
// already past a limit); complete: `consumed` bytes form the request; error: answer
// error_status and close. Never reads past `in`; no allocation.
inline parse_result parse(std::string_view in, const limits& lim) {
  // The request line first, as soon as it is there: garbage is refused at once, not after
  // the client has sent a whole header section.
  const auto line_end = in.find("\r\n");
  if (line_end == std::string_view::npos) {
    if (in.size() > lim.max_header_bytes) return detail::fail(431);
    return {};
  }
  if (line_end + 2 > lim.max_header_bytes) return detail::fail(431);
  request req;
  bool http10 = false;
  if (const int s = detail::parse_request_line(in.substr(0, line_end), req, http10, lim)) {
    return detail::fail(s);
  }
  const auto head_end = in.find("\r\n\r\n", line_end);
  if (head_end == std::string_view::npos) {
    if (in.size() > lim.max_header_bytes) return detail::fail(431);
    return {};
  }
  if (head_end + 4 > lim.max_header_bytes) return detail::fail(431);

  req.keep_alive = !http10;
  bool have_length = false;
  std::uint64_t length = 0;
  std::size_t at = line_end + 2;
  while (at < head_end + 2) {
    const auto eol = in.find("\r\n", at);
    const std::string_view line = in.substr(at, eol - at);
    at = eol + 2;
    const auto colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) return detail::fail(400);
    const std::string_view name = line.substr(0, colon);
    for (char c : name) {
      if (!detail::is_token_char(c)) return detail::fail(400);  // also obsolete line folding
    }
    const std::string_view value = detail::trim(line.substr(colon + 1));
    if (detail::iequals(name, "content-length")) {
      std::uint64_t n = 0;
      const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (value.empty() || ec != std::errc{} || end != value.data() + value.size()) {
        return detail::fail(400);
      }
      if (have_length && n != length) return detail::fail(400);
      have_length = true;
      length = n;
    } else if (detail::iequals(name, "transfer-encoding")) {
      return detail::fail(501);
    } else if (detail::iequals(name, "connection")) {
      if (detail::iequals(value, "close")) req.keep_alive = false;
      if (detail::iequals(value, "keep-alive")) req.keep_alive = true;
    }
  }
  if (req.method == verb::put && !have_length) return detail::fail(411);
  if (length > lim.max_body_bytes) return detail::fail(413);
  const std::size_t body_at = head_end + 4;
  if (in.size() - body_at < length) return {};
  req.body = in.substr(body_at, static_cast<std::size_t>(length));
  parse_result r;
  r.status = parse_status::complete;
  r.consumed = body_at + static_cast<std::size_t>(length);
  r.req = req;
  return r;
}

inline const char* reason_phrase(int status) {
  switch (status) {
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 204:
      return "No Content";
    case 400:
      return "Bad Request";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 411:
      return "Length Required";
    case 413:
      return "Content Too Large";
    case 431:
      return "Request Header Fields Too Large";
    case 501:
      return "Not Implemented";
    case 503:
      return "Service Unavailable";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Internal Server Error";
  }
}

// Appends a response to `out`. 204 carries no body (and no Content-Length); every other status
// has Content-Length, so a keep-alive client always knows where the next response starts.
inline void append_response(std::string& out, int status, std::string_view body, bool close) {
  char head[96];
  int n = 0;
  if (status == 204) {
    n = std::snprintf(head, sizeof head, "HTTP/1.1 204 No Content\r\n");
  } else {
    n = std::snprintf(head, sizeof head, "HTTP/1.1 %d %s\r\nContent-Length: %zu\r\n", status,
                      reason_phrase(status), body.size());
  }
  out.append(head, static_cast<std::size_t>(n));
  if (status == 405) out.append("Allow: GET, PUT\r\n");
  if (close) out.append("Connection: close\r\n");
  out.append("\r\n");
  if (status != 204) out.append(body);
}

// The body of an error or status-only response: the reason phrase and a newline.
inline std::string_view status_body(int status) {
  switch (status) {
    case 404:
      return "not found\n";
    case 400:
      return "bad request\n";
    case 405:
      return "method not allowed\n";
    case 408:
      return "request timeout\n";
    case 411:
      return "length required\n";
    case 413:
      return "content too large\n";
    case 431:
      return "header too large\n";
    case 501:
      return "not implemented\n";
    case 503:
      return "too many connections\n";
    case 505:
      return "version not supported\n";
    default:
      return "";
  }
}

// A connection's input: bytes [begin, end) of `data` are unparsed. Grows up to `cap_limit`,
// and gives its memory back after a large request, so an idle connection holds at most
// `resting` bytes.
class input_buffer {
 public:
  explicit input_buffer(std::size_t cap_limit) : cap_limit_(cap_limit) {}

  [[nodiscard]] std::string_view view() const { return {data_.data() + begin_, end_ - begin_}; }
  [[nodiscard]] bool empty() const { return begin_ == end_; }
  [[nodiscard]] std::size_t size() const { return end_ - begin_; }
  [[nodiscard]] std::size_t capacity() const { return data_.size(); }

  // Room to read into (at least 1 byte unless the limit is reached: then empty).
  std::pair<char*, std::size_t> prepare() {
    if (begin_ == end_) begin_ = end_ = 0;
    if (data_.size() - end_ < min_read && begin_ > 0) {
      std::memmove(data_.data(), data_.data() + begin_, end_ - begin_);
      end_ -= begin_;
      begin_ = 0;
    }
    if (data_.size() - end_ < min_read && data_.size() < cap_limit_) {
      data_.resize(std::min(cap_limit_, std::max<std::size_t>(resting, data_.size() * 2)));
    }
    return {data_.data() + end_, data_.size() - end_};
  }
  void commit(std::size_t n) { end_ += n; }
  void consume(std::size_t n) {
    begin_ += n;
    if (begin_ == end_) {
      begin_ = end_ = 0;
      if (data_.size() > resting) {  // a large request passed: give the memory back
        data_.resize(resting);
        data_.shrink_to_fit();
      }
    }
  }

 private:
  static constexpr std::size_t resting = 4096;
  static constexpr std::size_t min_read = 1024;
  std::size_t cap_limit_;
  std::vector<char> data_;
  std::size_t begin_ = 0;
  std::size_t end_ = 0;
};

// The most a connection buffers: one request at its limits, and a read's worth more.
inline std::size_t input_limit(const limits& lim) {
  return lim.max_header_bytes + lim.max_body_bytes + 4096;
}

// Nanoseconds on the steady clock, for deadlines shared through atomics.
inline std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// The bytes of a key's shard: the same spread in both servers.
inline std::size_t shard_of(std::string_view key, std::size_t shards) {
  return std::hash<std::string_view>{}(key) % shards;
}

// The keys and value of --preload N: key-0 .. key-<N-1>, each holding 64 bytes.
inline std::string preload_key(std::size_t i) {
  return "key-" + std::to_string(i);
}
inline std::string preload_value() {
  return std::string(64, 'v');
}

// One line the bench script reads: the service's own latency, readiness seen -> response
// written, per request, in microseconds.
inline void print_latency(std::ostream& out, const troupe::latency_histogram& h) {
  auto us = [&](double p) {
    return std::chrono::duration<double, std::micro>(h.percentile(p)).count();
  };
  char line[256];
  std::snprintf(line, sizeof line,
                "service latency (us): count %llu p50 %.1f p90 %.1f p99 %.1f p99.9 %.1f max %.1f",
                static_cast<unsigned long long>(h.count()), us(50), us(90), us(99), us(99.9),
                std::chrono::duration<double, std::micro>(h.max()).count());
  out << line << "\n";
}

}  // namespace http_kv
