// The actors of the http_kv example (examples/http_kv_server.hpp runs them): a connection per
// actor, and a store sharded across actors by key, on Asio.
//
// Why this shape (docs/guide.md, "Servers", has the measurements):
// - A connection is an actor: its parser state, buffers and timeouts are the actor's own, so
//   nothing about a connection needs a lock, and a slow or broken client fails only its actor.
// - The store is sharded across actors by key: each shard's map is touched by one handler at a
//   time, with no lock, and shards run in parallel on the workers.
// - Reads are awaited (troupe::async_io over async_read_some: Asio tries the read at once on the
//   worker, and only when nothing has arrived does the I/O thread finish it); writes are
//   non-blocking calls on the worker, awaited only when the socket buffer is full. So only the
//   wake-up crosses from the I/O thread; parsing, the store and the reply run on the worker,
//   where the shard the connection sends to runs next on the same core (the scheduler's `next`
//   slot). (Awaiting async_wait and then reading costs an epoll_ctl per request: Asio re-arms
//   the descriptor for a wait, not for a read.)
// - The store is reached with plain sends by default (the shard replies with a message to the
//   connection), or with ask (store_access::ask): ask is the simpler code, the send does less
//   (no reply state, no timeout timer per request); docs/performance.md measures both.
// - Idle connections and slow requests (slowloris) are cut by a per-connection deadline that a
//   timer on the I/O thread checks periodically; a connection over the limit gets 503.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <system_error>
#include <unordered_map>
#include <utility>
#include <vector>

#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/steady_timer.hpp>
#include <asio/write.hpp>

#include <troupe/io.hpp>
#include <troupe/latency_histogram.hpp>
#include <troupe/troupe.hpp>

#include "http_kv_protocol.hpp"

namespace http_kv {

using asio::ip::tcp;

enum class store_access { send, ask };

struct server_options {
  unsigned short port = 0;                        // 0: the system picks one (see kv_server::port())
  std::size_t workers = 0;                        // troupe workers; 0: hardware concurrency
  std::size_t io_threads = 1;                     // Asio threads that wait on the sockets
  std::size_t shards = 0;                         // store actors; 0: 2 per worker
  std::size_t max_connections = 10000;            // more are answered 503 and closed
  std::chrono::milliseconds idle_timeout{10000};  // a keep-alive connection with no request
  std::chrono::milliseconds request_timeout{5000};  // first byte to last byte of a request
  std::chrono::milliseconds linger{500};  // reading what a client still sends after an error
  store_access access = store_access::send;
  limits lim{};
};

// ---- the store: shard actors --------------------------------------------------------------

class connection;

struct get_value {  // ask: the value, or nothing
  std::string key;
};
struct put_value {  // ask: true if the key is new
  std::string key;
  std::string value;
};
struct count_keys {};
// The send style: the shard answers with a store_reply to `to`, for the request in `slot`.
struct get_for {
  std::string key;
  troupe::ref<connection> to;
  std::uint32_t slot;
};
struct put_for {
  std::string key;
  std::string value;
  troupe::ref<connection> to;
  std::uint32_t slot;
};
struct store_reply {
  std::uint32_t slot;
  int status;
  std::string value;
};

class kv_shard {
 public:
  std::optional<std::string> on(const get_value& m) const {
    auto it = map_.find(m.key);
    if (it == map_.end()) return std::nullopt;
    return it->second;
  }
  bool on(put_value m) {
    return map_.insert_or_assign(std::move(m.key), std::move(m.value)).second;
  }
  std::size_t on(count_keys) const { return map_.size(); }
  inline void on(get_for m) const;
  inline void on(put_for m);

 private:
  std::unordered_map<std::string, std::string> map_;
};

// ---- what the server and its connections share ----------------------------------------------

// Counters a connection adds to once, when it closes (no shared cache line per request).
struct server_counters {
  std::atomic<std::uint64_t> accepted{0};
  std::atomic<std::uint64_t> refused{0};   // over max_connections: 503
  std::atomic<std::uint64_t> requests{0};  // responses written (any status)
  std::atomic<std::uint64_t> status_2xx{0};
  std::atomic<std::uint64_t> status_4xx{0};
  std::atomic<std::uint64_t> status_5xx{0};
  std::atomic<std::uint64_t> timed_out{0};        // closed for idleness or a slow request
  std::atomic<std::uint64_t> cut_mid_request{0};  // the client left with a partial request
  std::atomic<std::uint64_t> accept_errors{0};
};

// The socket of one connection and what the I/O thread needs to police it. The actor reads and
// writes the socket on its worker; the I/O thread only waits on it, and cancels the wait once
// `deadline_ns` has passed (asio's cancel and the reactor's registration take the reactor's
// lock, so this pairing is safe). Closing is posted to the I/O thread.
struct conn_io {
  conn_io(tcp::socket s, asio::io_context& io) : socket(std::move(s)), timer(io) {}
  tcp::socket socket;
  asio::steady_timer timer;                  // I/O thread only
  bool closed = false;                       // I/O thread only
  std::atomic<std::int64_t> deadline_ns{0};  // steady clock; set by the actor before a wait
  std::atomic<std::int64_t> ready_at_ns{0};  // when the last read completed
};

// A latency histogram per thread slot, merged for the report: one histogram shared by every
// worker would bounce its counters between cores on every request.
class spread_histogram {
 public:
  void record(std::int64_t ns) {
    static std::atomic<unsigned> next{0};
    thread_local const unsigned mine = next.fetch_add(1, std::memory_order_relaxed);
    parts_[mine % parts_.size()].record(std::chrono::nanoseconds{ns});
  }
  [[nodiscard]] troupe::latency_histogram merged() const {
    troupe::latency_histogram all;
    for (const auto& p : parts_) all.merge(p);
    return all;
  }

 private:
  std::array<troupe::latency_histogram, 8> parts_;
};

struct server_state {
  server_options options;
  server_counters counters;
  spread_histogram latency;  // request bytes read -> response written, per request
  std::vector<troupe::ref<kv_shard>> shards;
  std::atomic<bool> stopping{false};
  std::atomic<std::size_t> live{0};  // connection actors alive

  std::mutex mutex;  // guards `open` and pairs with `drained`
  std::condition_variable drained;
  std::unordered_map<conn_io*, std::shared_ptr<conn_io>> open;

  [[nodiscard]] const troupe::ref<kv_shard>& shard_for(std::string_view key) const {
    return shards[shard_of(key, shards.size())];
  }
};

// Closes on the socket's I/O thread; forgets the connection. Any thread.
inline void close_on_io_thread(server_state& s, std::shared_ptr<conn_io> io) {
  auto executor = io->socket.get_executor();
  asio::post(executor, [&s, io = std::move(io)] {
    io->closed = true;
    io->timer.cancel();
    std::error_code ignored;
    io->socket.close(ignored);
    std::lock_guard lock(s.mutex);
    s.open.erase(io.get());
  });
}

// The periodic deadline check, on the I/O thread, until the connection is closed.
inline void police(std::shared_ptr<conn_io> io, std::chrono::milliseconds period) {
  io->timer.expires_after(period);
  conn_io& c = *io;
  c.timer.async_wait([io = std::move(io), period](const std::error_code& ec) mutable {
    if (ec || io->closed) return;
    if (now_ns() >= io->deadline_ns.load(std::memory_order_relaxed)) {
      std::error_code ignored;
      io->socket.cancel(ignored);  // wakes the actor's wait with operation_aborted
    }
    police(std::move(io), period);
  });
}

// ---- one actor per connection ------------------------------------------------------------------

struct serve {};

class connection {
 public:
  connection(troupe::context& ctx, server_state& s, std::shared_ptr<conn_io> io)
      : ctx_(ctx), s_(s), io_(std::move(io)), in_(input_limit(s.options.lim)) {}
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  ~connection() {
    s_.counters.requests.fetch_add(requests_, std::memory_order_relaxed);
    s_.counters.status_2xx.fetch_add(by_class_[2], std::memory_order_relaxed);
    s_.counters.status_4xx.fetch_add(by_class_[4], std::memory_order_relaxed);
    s_.counters.status_5xx.fetch_add(by_class_[5], std::memory_order_relaxed);
    close_on_io_thread(s_, std::move(io_));
    std::lock_guard lock(s_.mutex);  // the drain wait re-checks under it
    if (s_.live.fetch_sub(1) == 1) s_.drained.notify_all();
  }

  void on_start() { ctx_.self_as<connection>().send(serve{}); }

  // One round: wait until readable, read, parse every complete request, answer them (the store
  // is reached by send or by ask), write, and go round again with a message to itself, which
  // keeps the actor stoppable between rounds.
  troupe::task<void> on(serve) {
    for (;;) {
      collect();  // requests already buffered (pipelined) are answered before waiting for more
      if (!pending_.empty()) break;
      if (s_.stopping.load(std::memory_order_relaxed)) co_return stop_now();
      const bool partial = !in_.empty();
      const std::int64_t deadline = partial ? request_started_ns_ + ns(s_.options.request_timeout)
                                            : now_ns() + ns(s_.options.idle_timeout);
      if (partial && now_ns() >= deadline) {
        timed_out();
        break;
      }
      auto [at, room] = in_.prepare();
      if (room == 0) {  // cannot happen: the parser refuses a request before it fills this
        answer_and_close(413);
        break;
      }
      auto rd = read_some(at, room, deadline);
      auto [ec, n] = co_await std::move(rd);
      if (ec == asio::error::operation_aborted) {  // the deadline passed, or the server stops
        const bool stopping = s_.stopping.load(std::memory_order_relaxed);
        if (partial && !stopping) {
          timed_out();
          break;
        }
        if (!stopping) s_.counters.timed_out.fetch_add(1, std::memory_order_relaxed);
        co_return stop_now();
      }
      if (ec || n == 0) {  // the client closed (or the connection broke)
        if (partial) s_.counters.cut_mid_request.fetch_add(1, std::memory_order_relaxed);
        co_return stop_now();
      }
      ready_ns_ = io_->ready_at_ns.load(std::memory_order_relaxed);
      if (!partial) request_started_ns_ = ready_ns_;
      in_.commit(n);
    }
    if (s_.options.access == store_access::ask) {
      auto asks = ask_store();
      co_await std::move(asks);
    } else if (outstanding_ > 0) {
      co_return;  // the answers come as store_reply messages; the last one responds
    }
    auto r = respond();
    co_await std::move(r);
  }

  // The send style: a shard's answer to request `slot`; the last one sends the batch.
  troupe::task<void> on(store_reply r) {
    pending_[r.slot].status = r.status;
    pending_[r.slot].value = std::move(r.value);
    if (--outstanding_ == 0) {
      auto w = respond();
      co_await std::move(w);
    }
  }

 private:
  struct pending_request {
    int status = 0;  // 0 until answered
    bool close_after = false;
    verb method = verb::other;
    std::string key;
    std::string value;  // PUT: the body; GET: the value found
  };

  static std::int64_t ns(std::chrono::milliseconds d) {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
  }

  // Awaits readiness of the socket until `deadline` (the I/O thread's timer then cancels it).
  troupe::task<std::tuple<std::error_code>> wait(asio::socket_base::wait_type type,
                                                 std::int64_t deadline) {
    io_->deadline_ns.store(deadline, std::memory_order_relaxed);
    auto w = troupe::async_io<std::error_code>([io = io_, type](auto done) {
      conn_io& c = *io;
      c.socket.async_wait(type, [io, done = std::move(done)](const std::error_code& ec) mutable {
        io->ready_at_ns.store(now_ns(), std::memory_order_relaxed);
        done(ec);
      });
    });
    co_return co_await std::move(w);
  }

  // Reads into [at, at + room) until `deadline` (the I/O thread's timer then cancels it). The
  // read is started here (Asio first tries it at once, without the I/O thread); when there is
  // nothing yet, the I/O thread completes it and only the wake-up crosses threads.
  troupe::task<std::tuple<std::error_code, std::size_t>> read_some(char* at, std::size_t room,
                                                                   std::int64_t deadline) {
    io_->deadline_ns.store(deadline, std::memory_order_relaxed);
    auto r = troupe::async_io<std::error_code, std::size_t>([io = io_, at, room](auto done) {
      conn_io& c = *io;
      c.socket.async_read_some(
          asio::buffer(at, room),
          [io, done = std::move(done)](const std::error_code& ec, std::size_t n) mutable {
            io->ready_at_ns.store(now_ns(), std::memory_order_relaxed);
            done(ec, n);
          });
    });
    co_return co_await std::move(r);
  }

  // Parses the buffered requests into pending_; in the send style, sends their store messages.
  void collect() {
    const bool by_send = s_.options.access == store_access::send;
    while (!closing_) {
      const parse_result p = parse(in_.view(), s_.options.lim);
      if (p.status == parse_status::incomplete) break;
      pending_request& q = pending_.emplace_back();
      if (p.status == parse_status::error) {
        q.status = p.error_status;
        q.close_after = true;
        closing_ = true;
        break;
      }
      const request& rq = p.req;
      q.close_after = !rq.keep_alive;
      closing_ = q.close_after;
      q.method = rq.method;
      if (rq.method == verb::other) {
        q.status = 405;
      } else if (!rq.kv_path) {
        q.status = 404;
      } else {
        q.key.assign(rq.key);
        if (rq.method == verb::put) q.value.assign(rq.body);
        if (by_send) {
          const auto slot = static_cast<std::uint32_t>(pending_.size() - 1);
          const auto& shard = s_.shard_for(q.key);
          ++outstanding_;
          if (rq.method == verb::get) {
            shard.send(get_for{q.key, ctx_.self_as<connection>(), slot});
          } else {
            shard.send(put_for{q.key, std::move(q.value), ctx_.self_as<connection>(), slot});
          }
        }
      }
      in_.consume(p.consumed);
      if (!in_.empty()) request_started_ns_ = ready_ns_;
    }
  }

  // The ask style: one ask per request, in order.
  troupe::task<void> ask_store() {
    for (pending_request& q : pending_) {
      if (q.status != 0) continue;
      const auto& shard = s_.shard_for(q.key);
      if (q.method == verb::get) {
        auto reply = shard.ask(get_value{q.key});
        std::optional<std::string> v = co_await std::move(reply);
        q.status = v ? 200 : 404;
        if (v) q.value = std::move(*v);
      } else {
        auto reply = shard.ask(put_value{q.key, std::move(q.value)});
        const bool created = co_await std::move(reply);
        q.status = created ? 201 : 204;
      }
    }
  }

  // A request started but did not finish in time: 408, then close.
  void timed_out() {
    s_.counters.timed_out.fetch_add(1, std::memory_order_relaxed);
    answer_and_close(408);
  }
  void answer_and_close(int status) {
    pending_request& q = pending_.emplace_back();
    q.status = status;
    q.close_after = true;
    closing_ = true;
  }

  // Formats the answered batch, writes it, records latencies; then goes round again or closes.
  troupe::task<void> respond() {
    out_.clear();
    for (const pending_request& q : pending_) {
      const bool body = q.status == 200;
      append_response(out_, q.status, body ? std::string_view(q.value) : status_body(q.status),
                      q.close_after);
      ++by_class_[static_cast<std::size_t>(q.status / 100) % by_class_.size()];
    }
    const std::size_t answered = pending_.size();
    pending_.clear();
    std::size_t done = 0;
    while (done < out_.size()) {
      std::error_code ec;
      done += io_->socket.write_some(asio::buffer(out_.data() + done, out_.size() - done), ec);
      if (ec == asio::error::would_block || ec == asio::error::try_again) {
        auto w = wait(asio::socket_base::wait_write, now_ns() + ns(s_.options.idle_timeout));
        auto [wec] = co_await std::move(w);
        if (wec) co_return stop_now();
        continue;
      }
      if (ec) co_return stop_now();
    }
    const std::int64_t written = now_ns();
    for (std::size_t i = 0; i < answered; ++i) s_.latency.record(written - ready_ns_);
    requests_ += answered;
    if (out_.capacity() > 64 * 1024) std::string().swap(out_);  // a large value went out
    if (closing_) {
      auto l = linger();
      co_await std::move(l);
      co_return stop_now();
    }
    ctx_.self_as<connection>().send(serve{});
  }

  // After an error answer: stop sending, and read (and drop) what the client still sends for a
  // moment, so that closing does not reset the connection before the client read the answer.
  troupe::task<void> linger() {
    std::error_code ignored;
    io_->socket.shutdown(tcp::socket::shutdown_send, ignored);
    const std::int64_t until = now_ns() + ns(s_.options.linger);
    std::size_t dropped = 0;
    char sink[4096];
    while (dropped < 1024 * 1024) {
      auto w = wait(asio::socket_base::wait_read, until);
      auto [ec] = co_await std::move(w);
      if (ec) break;
      std::error_code rec;
      const std::size_t n = io_->socket.read_some(asio::buffer(sink), rec);
      if (rec == asio::error::would_block || rec == asio::error::try_again) continue;
      if (rec || n == 0) break;
      dropped += n;
    }
  }

  void stop_now() { ctx_.stop(); }

  troupe::context& ctx_;
  server_state& s_;
  std::shared_ptr<conn_io> io_;
  input_buffer in_;
  std::string out_;
  std::vector<pending_request> pending_;
  std::uint32_t outstanding_ = 0;
  bool closing_ = false;
  std::int64_t ready_ns_ = 0;
  std::int64_t request_started_ns_ = 0;
  std::uint64_t requests_ = 0;
  std::array<std::uint64_t, 6> by_class_{};
};

inline void kv_shard::on(get_for m) const {
  auto it = map_.find(m.key);
  if (it == map_.end()) {
    m.to.send(store_reply{m.slot, 404, {}});
  } else {
    m.to.send(store_reply{m.slot, 200, it->second});
  }
}

inline void kv_shard::on(put_for m) {
  const bool created = map_.insert_or_assign(std::move(m.key), std::move(m.value)).second;
  m.to.send(store_reply{m.slot, created ? 201 : 204, {}});
}

}  // namespace http_kv
