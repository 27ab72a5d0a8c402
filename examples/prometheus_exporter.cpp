// prometheus_exporter: serves a runtime's metrics in the Prometheus text format over HTTP/1.1
// with Asio, on a loopback port chosen by the system, while a few actors exchange messages.
//
//   example_prometheus_exporter                 serve, scrape itself once, print, exit
//   example_prometheus_exporter --serve [--max-requests N] [--seconds S]
//       serve until N requests were answered (0: no limit) or S seconds passed (default 60),
//       e.g. for: curl http://127.0.0.1:<port>/metrics
//   --reports N --report-ms M   first build N reports of M ms each (default 0): a handler
//       whose service time is known, for the histogram test against a real Prometheus
//
// The port is printed on the first line: "listening on http://127.0.0.1:<port>/metrics".
// Latencies are served as Prometheus histograms, so the series of several processes add up:
//   histogram_quantile(0.99, sum by (le) (rate(troupe_service_time_seconds_bucket[1m])))
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <string>
#include <utility>

#include <asio.hpp>

#include <troupe/troupe.hpp>

using namespace std::chrono_literals;
using asio::ip::tcp;

// ---- some traffic to measure: a pricing service asked for quotes, and a ticker topic ---------

struct quote_request {
  int symbol;
};
struct tick {
  int symbol;
  double price;
};

struct pricer {
  double on(quote_request q) { return 100.0 + q.symbol * 0.25; }
};

struct ticker_sink {
  long seen = 0;
  void on(const tick&) { ++seen; }
};

// Asks the pricer for a quote and publishes it, then schedules itself again.
struct trader {
  trader(troupe::context& c, troupe::ref<pricer> p, const std::atomic<bool>* r)
      : ctx(c), prices(std::move(p)), running(r) {}
  troupe::context& ctx;
  troupe::ref<pricer> prices;
  const std::atomic<bool>* running;  // cleared before shutdown: no step is left pending
  struct step {};
  troupe::task<void> on(step) {
    for (int s = 0; s < 10; ++s) {
      auto r = prices.ask(quote_request{s});
      const double p = co_await std::move(r);
      ctx.runtime().publish("ticks.equity", tick{s, p});
    }
    if (running->load()) ctx.send_after(10ms, ctx.self_as<trader>(), step{});
  }
};

// Builds a report in `ms` milliseconds of waiting (a timer, not a blocked worker).
struct build_report {
  int ms;
};
struct report_builder {
  explicit report_builder(troupe::context& c) : ctx(c) {}
  troupe::context& ctx;
  troupe::task<int> on(build_report r) {
    co_await ctx.sleep_for(std::chrono::milliseconds(r.ms));
    co_return r.ms;
  }
};

// ---- the HTTP side: one short connection per request ------------------------------------------

class http_session : public std::enable_shared_from_this<http_session> {
 public:
  http_session(tcp::socket socket, troupe::runtime& rt, std::atomic<int>& served)
      : socket_(std::move(socket)), deadline_(socket_.get_executor()), rt_(rt), served_(served) {}

  void start() {
    // A client that connects and says nothing is cut off: nothing waits forever.
    deadline_.expires_after(5s);
    deadline_.async_wait([self = shared_from_this()](const asio::error_code& ec) {
      if (!ec) self->socket_.close();
    });
    asio::async_read_until(socket_, asio::dynamic_buffer(request_, 16 * 1024), "\r\n\r\n",
                           [self = shared_from_this()](const asio::error_code& ec, std::size_t) {
                             if (!ec) self->respond();
                           });
  }

 private:
  void respond() {
    const bool metrics = request_.rfind("GET /metrics ", 0) == 0;
    std::string body = metrics ? troupe::to_prometheus(rt_.metrics()) : "not found\n";
    response_ = std::string(metrics ? "HTTP/1.1 200 OK\r\n" : "HTTP/1.1 404 Not Found\r\n") +
                (metrics ? "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
                         : "Content-Type: text/plain\r\n") +
                "Content-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n" +
                body;
    asio::async_write(socket_, asio::buffer(response_),
                      [self = shared_from_this()](const asio::error_code&, std::size_t) {
                        asio::error_code ignored;
                        self->socket_.shutdown(tcp::socket::shutdown_both, ignored);
                        self->socket_.close(ignored);
                        self->deadline_.cancel();
                        self->served_.fetch_add(1);
                      });
  }

  tcp::socket socket_;
  asio::steady_timer deadline_;
  troupe::runtime& rt_;
  std::atomic<int>& served_;
  std::string request_;
  std::string response_;
};

void accept_loop(tcp::acceptor& acceptor, troupe::runtime& rt, std::atomic<int>& served) {
  acceptor.async_accept([&](const asio::error_code& ec, tcp::socket socket) {
    if (ec) return;  // the acceptor was closed
    std::make_shared<http_session>(std::move(socket), rt, served)->start();
    accept_loop(acceptor, rt, served);
  });
}

// The self-scrape of the default mode: a plain blocking HTTP/1.1 client with a deadline.
std::string scrape(asio::io_context& io, unsigned short port) {
  std::string reply;
  bool done = false;
  tcp::socket s(io);
  const std::string request =
      "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  s.async_connect({asio::ip::make_address("127.0.0.1"), port}, [&](const asio::error_code& ec) {
    if (ec) {
      done = true;
      return;
    }
    asio::async_write(s, asio::buffer(request), [&](const asio::error_code& wec, std::size_t) {
      if (wec) {
        done = true;
        return;
      }
      asio::async_read(s, asio::dynamic_buffer(reply),
                       [&](const asio::error_code&, std::size_t) { done = true; });
    });
  });
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!done && std::chrono::steady_clock::now() < deadline) io.run_for(50ms);
  return reply;
}

int main(int argc, char** argv) {
  bool serve = false;
  int max_requests = 0;
  int seconds = 60;
  int reports = 0;
  int report_ms = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--serve") {
      serve = true;
    } else if (a == "--max-requests" && i + 1 < argc) {
      max_requests = std::atoi(argv[++i]);
    } else if (a == "--seconds" && i + 1 < argc) {
      seconds = std::atoi(argv[++i]);
    } else if (a == "--reports" && i + 1 < argc) {
      reports = std::atoi(argv[++i]);
    } else if (a == "--report-ms" && i + 1 < argc) {
      report_ms = std::atoi(argv[++i]);
    } else {
      std::cerr << "usage: " << argv[0]
                << " [--serve [--max-requests N] [--seconds S]] [--reports N --report-ms M]\n";
      return 2;
    }
  }

  troupe::runtime_options options;
  options.workers = 2;
  options.metrics = true;
  troupe::runtime rt(options);
  auto p = rt.spawn<pricer>();
  auto sink = rt.spawn<ticker_sink>();
  auto sub = rt.subscribe<tick>("ticks.>", sink);
  std::atomic<bool> running{true};
  auto t = rt.spawn<trader>(p, &running);
  t.send(trader::step{});
  for (int i = 0; i < 1000; ++i) static_cast<void>(p.ask(quote_request{i % 10}).get());
  if (reports > 0) {
    // One at a time: each report's service time is its own wait, whatever the machine's load.
    auto builder = rt.spawn<report_builder>();
    for (int i = 0; i < reports; ++i) static_cast<void>(builder.ask(build_report{report_ms}).get());
  }

  asio::io_context io;
  tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
  const unsigned short port = acceptor.local_endpoint().port();
  std::cout << "listening on http://127.0.0.1:" << port << "/metrics" << std::endl;
  std::atomic<int> served{0};
  accept_loop(acceptor, rt, served);

  if (!serve) {
    const std::string reply = scrape(io, port);
    std::cout << reply.substr(0, reply.find("\r\n")) << '\n';
    const auto body = reply.find("\r\n\r\n");
    std::size_t shown = 0;
    for (std::size_t at = body == std::string::npos ? reply.size() : body + 4;
         at < reply.size() && shown < 400;) {
      const auto end = reply.find('\n', at);
      const std::string line = reply.substr(at, end - at);
      // Every ask round-trip line, buckets included; of the queue waits the sums and counts.
      const bool bucket = line.find("_bucket{") != std::string::npos;
      if ((line.rfind("troupe_queue_wait", 0) == 0 && !bucket) ||
          line.rfind("troupe_ask_round_trip", 0) == 0 || line.rfind("troupe_topic", 0) == 0 ||
          line.rfind("troupe_handled", 0) == 0) {
        std::cout << line << '\n';
        ++shown;
      }
      if (end == std::string::npos) break;
      at = end + 1;
    }
  } else {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
    while (std::chrono::steady_clock::now() < deadline &&
           (max_requests == 0 || served.load() < max_requests)) {
      io.run_for(50ms);
    }
    std::cout << "served " << served.load() << " requests" << std::endl;
  }
  acceptor.close();
  io.run_for(100ms);  // let closing sessions finish
  running.store(false);
  rt.shutdown();
  return 0;
}
