// The troupe side of the http_kv example: an HTTP/1.1 key-value service whose connections are
// actors and whose store is a set of shard actors (the key picks the shard), on Asio. The actors
// and why they are shaped so are in http_kv_connection.hpp; this is the listener, the I/O
// threads and the runtime around them.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/write.hpp>

#include <troupe/io.hpp>
#include <troupe/troupe.hpp>

#include "http_kv_connection.hpp"

namespace http_kv {

// ---- the server: listener, I/O threads, runtime ----------------------------------------------

// Owns everything; listening once constructed. stop() (or the destructor) stops accepting,
// closes every connection, waits for their actors, and shuts the runtime down.
class kv_server {
 public:
  explicit kv_server(server_options options)
      : io_(make_io_threads(options.io_threads)),
        acceptor_(io_[0]->context(), tcp::endpoint(asio::ip::address_v4::loopback(), options.port)),
        rt_(troupe::runtime_options{.workers = options.workers}) {
    s_.options = options;
    const std::size_t shards = options.shards != 0 ? options.shards : 2 * rt_.worker_count();
    for (std::size_t i = 0; i < shards; ++i) s_.shards.push_back(rt_.spawn<kv_shard>());
    const auto period = std::min(options.idle_timeout, options.request_timeout) / 4;
    period_ = std::max(period, std::chrono::milliseconds{1});
    asio::post(acceptor_.get_executor(), [this] { accept_next(); });
  }
  kv_server(const kv_server&) = delete;
  kv_server& operator=(const kv_server&) = delete;
  ~kv_server() { stop(); }

  [[nodiscard]] unsigned short port() const { return acceptor_.local_endpoint().port(); }
  [[nodiscard]] server_state& state() { return s_; }
  [[nodiscard]] troupe::runtime& runtime() { return rt_; }

  // Keys in the store (asks every shard). Not after stop().
  std::size_t keys() {
    std::size_t n = 0;
    for (const auto& shard : s_.shards) n += shard.ask(count_keys{}).get();
    return n;
  }

  // Fills the store with preload_key(0..n-1) -> preload_value() (for the bench). Not after stop().
  void preload(std::size_t n) {
    std::vector<troupe::reply<bool>> replies;
    for (std::size_t i = 0; i < n; ++i) {
      std::string key = preload_key(i);
      const auto& shard = s_.shard_for(key);
      replies.push_back(shard.ask(put_value{std::move(key), preload_value()}));
      if (replies.size() == 1024 || i + 1 == n) {
        for (auto& r : replies) static_cast<void>(r.get());
        replies.clear();
      }
    }
  }

  // Graceful: stop accepting, cancel every connection's wait, wait (bounded) for the actors to
  // finish, then shut the runtime down. Idempotent; not from a runtime or I/O thread.
  void stop() {
    if (s_.stopping.exchange(true)) return;
    asio::post(acceptor_.get_executor(), [this] {
      std::error_code ignored;
      acceptor_.close(ignored);
    });
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    std::unique_lock lock(s_.mutex);
    while (s_.live.load() != 0 && std::chrono::steady_clock::now() < give_up) {
      // A connection between its stopping check and its wait misses one cancel: so repeat.
      for (auto& [raw, io] : s_.open) {
        asio::post(io->socket.get_executor(), [io = io] {
          std::error_code ignored;
          if (!io->closed) io->socket.cancel(ignored);
        });
      }
      s_.drained.wait_for(lock, std::chrono::milliseconds(20));
    }
    lock.unlock();
    rt_.shutdown();
    for (auto& io : io_) io->stop();
    std::lock_guard relock(s_.mutex);
    s_.open.clear();  // sockets go while their contexts still exist
  }

 private:
  static std::vector<std::unique_ptr<troupe::io_thread>> make_io_threads(std::size_t n) {
    std::vector<std::unique_ptr<troupe::io_thread>> v;
    for (std::size_t i = 0; i < std::max<std::size_t>(n, 1); ++i) {
      v.push_back(std::make_unique<troupe::io_thread>());
    }
    return v;
  }

  // On io_[0]'s thread: accept onto the next I/O thread's context, round robin.
  void accept_next() {
    asio::io_context& target = io_[next_io_++ % io_.size()]->context();
    acceptor_.async_accept(target, [this, &target](const std::error_code& ec, tcp::socket sock) {
      if (!acceptor_.is_open()) return;
      if (ec) {
        // Out of descriptors, typically: try again shortly rather than spin on the error.
        s_.counters.accept_errors.fetch_add(1, std::memory_order_relaxed);
        auto retry = std::make_shared<asio::steady_timer>(acceptor_.get_executor());
        retry->expires_after(std::chrono::milliseconds(10));
        retry->async_wait([this, retry](const std::error_code&) { accept_next(); });
        return;
      }
      s_.counters.accepted.fetch_add(1, std::memory_order_relaxed);
      admit(std::move(sock), target);
      accept_next();
    });
  }

  void admit(tcp::socket sock, asio::io_context& target) {
    std::error_code ignored;
    sock.set_option(tcp::no_delay(true), ignored);
    if (s_.live.load() >= s_.options.max_connections || s_.stopping.load()) {
      s_.counters.refused.fetch_add(1, std::memory_order_relaxed);
      refuse(std::move(sock));
      return;
    }
    sock.non_blocking(true, ignored);
    auto io = std::make_shared<conn_io>(std::move(sock), target);
    io->deadline_ns.store(now_ns() + ns(s_.options.idle_timeout));
    {
      std::lock_guard lock(s_.mutex);
      s_.open.emplace(io.get(), io);
    }
    asio::post(target, [io, period = period_] { police(io, period); });
    s_.live.fetch_add(1);
    try {
      rt_.spawn<connection>(s_, io);
    } catch (...) {  // the runtime is shutting down
      std::lock_guard lock(s_.mutex);
      if (s_.live.fetch_sub(1) == 1) s_.drained.notify_all();
      close_on_io_thread(s_, io);
    }
  }

  // 503 on a connection over the limit, then a lingering close, all on the I/O thread.
  void refuse(tcp::socket sock) {
    struct refusal {
      explicit refusal(tcp::socket s) : socket(std::move(s)), timer(socket.get_executor()) {}
      tcp::socket socket;
      asio::steady_timer timer;
      std::string out;
      char sink[1024];
    };
    auto r = std::make_shared<refusal>(std::move(sock));
    append_response(r->out, 503, status_body(503), true);
    asio::async_write(r->socket, asio::buffer(r->out), [r, this](std::error_code ec, std::size_t) {
      if (ec) return;
      r->socket.shutdown(tcp::socket::shutdown_send, ec);
      r->timer.expires_after(s_.options.linger);
      r->timer.async_wait([r](std::error_code) {
        std::error_code ignored;
        r->socket.close(ignored);
      });
      drain(r);
    });
  }
  template <class R>
  static void drain(std::shared_ptr<R> r) {
    r->socket.async_read_some(asio::buffer(r->sink), [r](std::error_code ec, std::size_t) {
      if (ec) {
        r->timer.cancel();
        return;
      }
      drain(r);
    });
  }

  static std::int64_t ns(std::chrono::milliseconds d) {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
  }

  server_state s_;  // first: outlives the I/O threads and the actors that use it
  std::vector<std::unique_ptr<troupe::io_thread>> io_;
  tcp::acceptor acceptor_;
  troupe::runtime rt_;  // last: its actors go before the sockets' contexts
  std::chrono::milliseconds period_{};
  std::size_t next_io_ = 0;
};

}  // namespace http_kv
