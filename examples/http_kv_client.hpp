// A small blocking HTTP/1.1 client for the http_kv example's self-test and its tests: raw bytes
// out, responses parsed back, every read bounded by a receive timeout (a server that stops
// answering fails the check instead of hanging it).
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <sys/socket.h>
#include <sys/time.h>
#include <system_error>

#include <asio/connect.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/write.hpp>

namespace http_kv {

struct response {
  int status = 0;
  std::string body;
  bool close = false;  // the server said Connection: close
};

class client {
 public:
  explicit client(unsigned short port,
                  std::chrono::milliseconds timeout = std::chrono::milliseconds(10000))
      : socket_(shared_context()) {
    socket_.connect(asio::ip::tcp::endpoint(asio::ip::address_v4::loopback(), port));
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(timeout.count() / 1000);
    tv.tv_usec = static_cast<suseconds_t>((timeout.count() % 1000) * 1000);
    ::setsockopt(socket_.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  }

  // Sends raw bytes; false if the connection is gone.
  bool send(std::string_view bytes) {
    std::error_code ec;
    asio::write(socket_, asio::buffer(bytes.data(), bytes.size()), ec);
    return !ec;
  }

  // The next response, or nothing if the connection ended (or timed out) first.
  std::optional<response> read() {
    for (;;) {
      const auto head_end = in_.find("\r\n\r\n");
      if (head_end != std::string::npos) {
        response r;
        const std::string head = in_.substr(0, head_end + 2);
        if (head.rfind("HTTP/1.1 ", 0) != 0 || head.size() < 12) return std::nullopt;
        r.status = std::stoi(head.substr(9, 3));
        std::size_t length = 0;
        for (std::size_t at = head.find("\r\n") + 2; at < head.size();) {
          const auto eol = head.find("\r\n", at);
          const std::string line = head.substr(at, eol - at);
          at = eol + 2;
          if (line.rfind("Content-Length: ", 0) == 0) length = std::stoul(line.substr(16));
          if (line == "Connection: close") r.close = true;
        }
        if (in_.size() >= head_end + 4 + length) {
          r.body = in_.substr(head_end + 4, length);
          in_.erase(0, head_end + 4 + length);
          return r;
        }
      }
      if (!fill()) return std::nullopt;
    }
  }

  // A request and its response.
  std::optional<response> call(std::string_view method, std::string_view path,
                               std::string_view body = {}) {
    std::string req(method);
    req.append(" ").append(path).append(" HTTP/1.1\r\nHost: 127.0.0.1\r\n");
    if (method == "PUT") req.append("Content-Length: ").append(std::to_string(body.size()));
    if (method == "PUT") req.append("\r\n");
    req.append("\r\n").append(body);
    if (!send(req)) return std::nullopt;
    return read();
  }

  // True once the server has closed the connection (end of stream or reset) with nothing more
  // to read; false if bytes arrive or the receive timeout passes first.
  bool closed_by_server() {
    if (!in_.empty()) return false;
    char b[256];
    std::error_code ec;
    const std::size_t n = socket_.read_some(asio::buffer(b), ec);
    if (ec == asio::error::eof || ec == asio::error::connection_reset) return true;
    in_.append(b, n);
    return false;
  }

  void close() {
    std::error_code ignored;
    socket_.close(ignored);
  }

 private:
  bool fill() {
    char b[16384];
    std::error_code ec;
    const std::size_t n = socket_.read_some(asio::buffer(b), ec);
    if (ec || n == 0) return false;
    in_.append(b, n);
    return true;
  }

  // Blocking sockets never run their context: one shared context, not three descriptors (epoll,
  // eventfd, timerfd) per client.
  static asio::io_context& shared_context() {
    static asio::io_context io;
    return io;
  }

  asio::ip::tcp::socket socket_;
  std::string in_;
};

}  // namespace http_kv
