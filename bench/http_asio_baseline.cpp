// http_asio_baseline: the http_kv service (examples/http_kv.cpp) written with plain Asio and no
// actors, as the comparison a server author would make: one io_context per thread (the usual
// fastest Asio layout: a connection lives on one thread, no handler ever crosses threads), the
// store sharded by key with a mutex per shard. Same protocol code (examples/
// http_kv_protocol.hpp), same async_read_some reads and non-blocking writes, same timeouts,
// connection limit and report as the troupe service, so the two differ only in how requests
// reach the store and on which threads the work runs. Built with the bench only.
//
//   http-asio-baseline --port P [--duration S] [--threads N] [--shards N] [--max-connections N]
//                      [--idle-timeout-ms N] [--request-timeout-ms N] [--preload N]
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/post.hpp>
#include <asio/signal_set.hpp>
#include <asio/steady_timer.hpp>
#include <asio/write.hpp>

#include <troupe/latency_histogram.hpp>

#include "../examples/http_kv_protocol.hpp"

namespace {

using asio::ip::tcp;
using namespace std::chrono_literals;

struct options {
  unsigned short port = 0;
  std::size_t threads = 0;
  std::size_t shards = 0;
  std::size_t max_connections = 10000;
  std::chrono::milliseconds idle_timeout{10000};
  std::chrono::milliseconds request_timeout{5000};
  std::chrono::milliseconds linger{500};
  http_kv::limits lim{};
};

std::int64_t ns(std::chrono::milliseconds d) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
}

// The store: shards of a map, each behind its own mutex.
class sharded_store {
 public:
  explicit sharded_store(std::size_t n) : shards_(n) {}
  std::optional<std::string> get(const std::string& key) {
    shard& s = shards_[http_kv::shard_of(key, shards_.size())];
    std::lock_guard lock(s.mutex);
    auto it = s.map.find(key);
    if (it == s.map.end()) return std::nullopt;
    return it->second;
  }
  bool put(std::string key, std::string value) {
    shard& s = shards_[http_kv::shard_of(key, shards_.size())];
    std::lock_guard lock(s.mutex);
    return s.map.insert_or_assign(std::move(key), std::move(value)).second;
  }

 private:
  struct alignas(64) shard {
    std::mutex mutex;
    std::unordered_map<std::string, std::string> map;
  };
  std::vector<shard> shards_;
};

struct counters {
  std::atomic<std::uint64_t> accepted{0}, refused{0}, requests{0}, status_2xx{0}, status_4xx{0},
      status_5xx{0}, timed_out{0}, cut_mid_request{0}, accept_errors{0};
};

class spread_histogram {
 public:
  void record(std::int64_t v) {
    static std::atomic<unsigned> next{0};
    thread_local const unsigned mine = next.fetch_add(1, std::memory_order_relaxed);
    parts_[mine % parts_.size()].record(std::chrono::nanoseconds{v});
  }
  troupe::latency_histogram merged() const {
    troupe::latency_histogram all;
    for (const auto& p : parts_) all.merge(p);
    return all;
  }

 private:
  std::array<troupe::latency_histogram, 8> parts_;
};

struct shared_state {
  options opt;
  sharded_store store;
  counters count;
  spread_histogram latency;
  std::atomic<std::size_t> live{0};
  std::atomic<bool> stopping{false};
  std::chrono::milliseconds period{};
  explicit shared_state(const options& o, std::size_t shards) : opt(o), store(shards) {}
};

// One connection, on one io_context thread for its whole life.
class session : public std::enable_shared_from_this<session> {
 public:
  session(tcp::socket s, shared_state& st)
      : socket_(std::move(s)),
        timer_(socket_.get_executor()),
        st_(st),
        in_(http_kv::input_limit(st.opt.lim)) {}
  ~session() {
    st_.count.requests.fetch_add(requests_, std::memory_order_relaxed);
    st_.count.status_2xx.fetch_add(by_class_[2], std::memory_order_relaxed);
    st_.count.status_4xx.fetch_add(by_class_[4], std::memory_order_relaxed);
    st_.count.status_5xx.fetch_add(by_class_[5], std::memory_order_relaxed);
    st_.live.fetch_sub(1);
  }

  void start() {
    police();
    next_round();
  }
  void cancel() {
    std::error_code ignored;
    socket_.cancel(ignored);
  }

 private:
  struct pending_request {
    int status = 0;
    bool close_after = false;
    std::string value;
  };

  // The same deadline check as the troupe service's, on the same thread here.
  void police() {
    timer_.expires_after(st_.period);
    timer_.async_wait([self = shared_from_this()](const std::error_code& ec) {
      if (ec || self->closed_) return;
      if (http_kv::now_ns() >= self->deadline_ns_ || self->st_.stopping.load()) self->cancel();
      self->police();
    });
  }

  void next_round() {
    collect();
    if (!pending_.empty()) return respond();
    if (st_.stopping.load(std::memory_order_relaxed)) return close();
    const bool partial = !in_.empty();
    deadline_ns_ = partial ? request_started_ns_ + ns(st_.opt.request_timeout)
                           : http_kv::now_ns() + ns(st_.opt.idle_timeout);
    if (partial && http_kv::now_ns() >= deadline_ns_) return timed_out();
    auto [at, room] = in_.prepare();
    socket_.async_read_some(asio::buffer(at, room), [self = shared_from_this(), partial](
                                                        const std::error_code& ec, std::size_t n) {
      self->on_read(ec, n, partial);
    });
  }

  void on_read(const std::error_code& ec, std::size_t n, bool partial) {
    if (ec == asio::error::operation_aborted) {  // the deadline passed, or the server stops
      const bool stopping = st_.stopping.load(std::memory_order_relaxed);
      if (partial && !stopping) return timed_out();
      if (!stopping) st_.count.timed_out.fetch_add(1, std::memory_order_relaxed);
      return close();
    }
    if (ec || n == 0) {
      if (partial) st_.count.cut_mid_request.fetch_add(1, std::memory_order_relaxed);
      return close();
    }
    ready_ns_ = http_kv::now_ns();
    if (!partial) request_started_ns_ = ready_ns_;
    in_.commit(n);
    next_round();
  }

  void collect() {
    while (!closing_) {
      const http_kv::parse_result p = http_kv::parse(in_.view(), st_.opt.lim);
      if (p.status == http_kv::parse_status::incomplete) break;
      pending_request& q = pending_.emplace_back();
      if (p.status == http_kv::parse_status::error) {
        q.status = p.error_status;
        q.close_after = true;
        closing_ = true;
        break;
      }
      const http_kv::request& rq = p.req;
      q.close_after = !rq.keep_alive;
      closing_ = q.close_after;
      if (rq.method == http_kv::verb::other) {
        q.status = 405;
      } else if (!rq.kv_path) {
        q.status = 404;
      } else if (rq.method == http_kv::verb::get) {
        std::optional<std::string> v = st_.store.get(std::string(rq.key));
        q.status = v ? 200 : 404;
        if (v) q.value = std::move(*v);
      } else {
        q.status = st_.store.put(std::string(rq.key), std::string(rq.body)) ? 201 : 204;
      }
      in_.consume(p.consumed);
      if (!in_.empty()) request_started_ns_ = ready_ns_;
    }
  }

  void timed_out() {
    st_.count.timed_out.fetch_add(1, std::memory_order_relaxed);
    pending_request& q = pending_.emplace_back();
    q.status = 408;
    q.close_after = true;
    closing_ = true;
    respond();
  }

  void respond() {
    out_.clear();
    for (const pending_request& q : pending_) {
      http_kv::append_response(
          out_, q.status,
          q.status == 200 ? std::string_view(q.value) : http_kv::status_body(q.status),
          q.close_after);
      ++by_class_[static_cast<std::size_t>(q.status / 100) % by_class_.size()];
    }
    answered_ = pending_.size();
    pending_.clear();
    written_ = 0;
    write_more();
  }

  void write_more() {
    while (written_ < out_.size()) {
      std::error_code ec;
      written_ +=
          socket_.write_some(asio::buffer(out_.data() + written_, out_.size() - written_), ec);
      if (ec == asio::error::would_block || ec == asio::error::try_again) {
        deadline_ns_ = http_kv::now_ns() + ns(st_.opt.idle_timeout);
        socket_.async_wait(tcp::socket::wait_write,
                           [self = shared_from_this()](const std::error_code& wec) {
                             if (wec) return self->close();
                             self->write_more();
                           });
        return;
      }
      if (ec) return close();
    }
    const std::int64_t written = http_kv::now_ns();
    for (std::size_t i = 0; i < answered_; ++i) st_.latency.record(written - ready_ns_);
    requests_ += answered_;
    if (out_.capacity() > 64 * 1024) std::string().swap(out_);
    if (closing_) return linger();
    next_round();
  }

  void linger() {
    std::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_send, ignored);
    deadline_ns_ = http_kv::now_ns() + ns(st_.opt.linger);
    linger_read();
  }
  void linger_read() {
    socket_.async_wait(tcp::socket::wait_read, [self = shared_from_this()](std::error_code ec) {
      if (ec) return self->close();
      char sink[4096];
      std::error_code rec;
      const std::size_t n = self->socket_.read_some(asio::buffer(sink), rec);
      if (rec == asio::error::would_block || rec == asio::error::try_again) {
        return self->linger_read();
      }
      self->dropped_ += n;
      if (rec || n == 0 || self->dropped_ > 1024 * 1024) return self->close();
      self->linger_read();
    });
  }

  void close() {
    closed_ = true;
    timer_.cancel();
    std::error_code ignored;
    socket_.close(ignored);
  }

  tcp::socket socket_;
  asio::steady_timer timer_;
  shared_state& st_;
  http_kv::input_buffer in_;
  std::string out_;
  std::vector<pending_request> pending_;
  std::size_t answered_ = 0;
  std::size_t written_ = 0;
  std::size_t dropped_ = 0;
  bool closing_ = false;
  bool closed_ = false;
  std::int64_t deadline_ns_ = 0;
  std::int64_t ready_ns_ = 0;
  std::int64_t request_started_ns_ = 0;
  std::uint64_t requests_ = 0;
  std::array<std::uint64_t, 6> by_class_{};
};

// 503 and a lingering close for a connection over the limit.
void refuse(tcp::socket sock, shared_state& st) {
  struct refusal {
    explicit refusal(tcp::socket s) : socket(std::move(s)), timer(socket.get_executor()) {}
    tcp::socket socket;
    asio::steady_timer timer;
    std::string out;
    char sink[1024];
  };
  auto r = std::make_shared<refusal>(std::move(sock));
  http_kv::append_response(r->out, 503, http_kv::status_body(503), true);
  struct drain {
    static void more(std::shared_ptr<refusal> r) {
      r->socket.async_read_some(asio::buffer(r->sink), [r](std::error_code ec, std::size_t) {
        if (ec) {
          r->timer.cancel();
          return;
        }
        more(r);
      });
    }
  };
  asio::async_write(r->socket, asio::buffer(r->out), [r, &st](std::error_code ec, std::size_t) {
    if (ec) return;
    r->socket.shutdown(tcp::socket::shutdown_send, ec);
    r->timer.expires_after(st.opt.linger);
    r->timer.async_wait([r](std::error_code) {
      std::error_code ignored;
      r->socket.close(ignored);
    });
    drain::more(r);
  });
}

class server {
 public:
  explicit server(const options& o)
      : threads_(o.threads != 0 ? o.threads : std::max(1U, std::thread::hardware_concurrency())),
        st_(o, o.shards != 0 ? o.shards : 2 * threads_),
        contexts_(threads_),
        acceptor_(contexts_[0].io, tcp::endpoint(asio::ip::address_v4::loopback(), o.port)) {
    st_.period = std::max(std::min(o.idle_timeout, o.request_timeout) / 4, 1ms);
    accept_next();
    for (auto& c : contexts_) {
      c.thread = std::thread([&c] { c.io.run(); });
    }
  }
  ~server() { stop(); }

  unsigned short port() const { return acceptor_.local_endpoint().port(); }
  shared_state& state() { return st_; }

  void stop() {
    if (st_.stopping.exchange(true)) return;
    asio::post(acceptor_.get_executor(), [this] {
      std::error_code ignored;
      acceptor_.close(ignored);
    });
    for (auto& c : contexts_) c.guard.reset();  // sessions cancel themselves at the next tick
    const auto give_up = std::chrono::steady_clock::now() + 10s;
    for (auto& c : contexts_) {
      while (c.thread.joinable() && st_.live.load() != 0 &&
             std::chrono::steady_clock::now() < give_up) {
        std::this_thread::sleep_for(5ms);  // the ticks (idle_timeout / 4) close the rest
      }
    }
    for (auto& c : contexts_) {
      c.io.stop();
      if (c.thread.joinable()) c.thread.join();
    }
  }

 private:
  struct context {
    asio::io_context io{1};
    asio::executor_work_guard<asio::io_context::executor_type> guard{io.get_executor()};
    std::thread thread;
  };

  void accept_next() {
    asio::io_context& target = contexts_[next_++ % contexts_.size()].io;
    acceptor_.async_accept(target, [this, &target](const std::error_code& ec, tcp::socket sock) {
      if (!acceptor_.is_open()) return;
      if (ec) {
        st_.count.accept_errors.fetch_add(1, std::memory_order_relaxed);
        auto retry = std::make_shared<asio::steady_timer>(acceptor_.get_executor());
        retry->expires_after(10ms);
        retry->async_wait([this, retry](const std::error_code&) { accept_next(); });
        return;
      }
      st_.count.accepted.fetch_add(1, std::memory_order_relaxed);
      std::error_code ignored;
      sock.set_option(tcp::no_delay(true), ignored);
      if (st_.live.load() >= st_.opt.max_connections) {
        st_.count.refused.fetch_add(1, std::memory_order_relaxed);
        asio::post(target, [this, s = std::make_shared<tcp::socket>(std::move(sock))]() mutable {
          refuse(std::move(*s), st_);
        });
      } else {
        sock.non_blocking(true, ignored);
        st_.live.fetch_add(1);
        auto s = std::make_shared<session>(std::move(sock), st_);
        asio::post(target, [s] { s->start(); });
      }
      accept_next();
    });
  }

  std::size_t threads_;
  shared_state st_;
  std::vector<context> contexts_;
  tcp::acceptor acceptor_;
  std::size_t next_ = 0;
};

}  // namespace

int main(int argc, char** argv) {
  options o;
  int duration_s = 0;
  std::size_t preload = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has_value = i + 1 < argc;
    auto number = [&] { return std::strtoul(argv[++i], nullptr, 10); };
    if (a == "--port" && has_value) {
      o.port = static_cast<unsigned short>(number());
    } else if (a == "--duration" && has_value) {
      duration_s = static_cast<int>(number());
    } else if (a == "--threads" && has_value) {
      o.threads = number();
    } else if (a == "--shards" && has_value) {
      o.shards = number();
    } else if (a == "--max-connections" && has_value) {
      o.max_connections = number();
    } else if (a == "--idle-timeout-ms" && has_value) {
      o.idle_timeout = std::chrono::milliseconds(number());
    } else if (a == "--request-timeout-ms" && has_value) {
      o.request_timeout = std::chrono::milliseconds(number());
    } else if (a == "--preload" && has_value) {
      preload = number();
    } else {
      std::cerr << "usage: " << argv[0]
                << " --port P [--duration S] [--threads N] [--shards N] [--max-connections N]"
                   " [--idle-timeout-ms N] [--request-timeout-ms N] [--preload N]\n";
      return 2;
    }
  }
  server srv(o);
  for (std::size_t i = 0; i < preload; ++i) {
    srv.state().store.put(http_kv::preload_key(i), http_kv::preload_value());
  }
  std::cout << "listening on 127.0.0.1:" << srv.port() << std::endl;
  asio::io_context signals_io;
  asio::signal_set signals(signals_io, SIGINT, SIGTERM);
  bool signalled = false;
  signals.async_wait([&](const std::error_code& ec, int) { signalled = !ec; });
  if (duration_s > 0) {
    signals_io.run_for(std::chrono::seconds(duration_s));
  } else {
    signals_io.run();
  }
  srv.stop();
  const counters& c = srv.state().count;
  std::cout << "stopped" << (signalled ? " by a signal" : " after the duration") << "\n";
  std::cout << "connections: " << c.accepted << " accepted, " << c.refused
            << " refused at the limit, " << c.timed_out << " timed out, " << c.cut_mid_request
            << " cut mid-request\n";
  std::cout << "responses: " << c.requests << " (2xx " << c.status_2xx << ", 4xx " << c.status_4xx
            << ", 5xx " << c.status_5xx << ")\n";
  http_kv::print_latency(std::cout, srv.state().latency.merged());
  return 0;
}
