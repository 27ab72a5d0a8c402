// http_kv: an HTTP/1.1 key-value service on troupe and Asio. Each connection is an actor, the
// store is sharded across actors by key (examples/http_kv_server.hpp says why).
//
//   example_http_kv                      self-test: start on a loopback port, drive the server
//                                        with real client connections, check every answer, exit
//   example_http_kv --port P [--duration S] [--workers N] [--io-threads N] [--shards N]
//                   [--access send|ask] [--max-connections N] [--idle-timeout-ms N]
//                   [--request-timeout-ms N] [--preload N]
//       serve on 127.0.0.1:P (0: any port) for S seconds (0: until SIGINT/SIGTERM), then print
//       the counters and the service's own latency histogram (readiness -> response written).
//
// Protocol (examples/http_kv_protocol.hpp): GET /kv/<key>, PUT /kv/<key> with a body.
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include <asio/signal_set.hpp>

#include "http_kv_client.hpp"
#include "http_kv_server.hpp"

using namespace std::chrono_literals;

namespace {

int failures = 0;

void check(bool ok, const std::string& what) {
  std::cout << (ok ? "ok: " : "FAILED: ") << what << "\n";
  if (!ok) ++failures;
}

int status_of(const std::optional<http_kv::response>& r) {
  return r ? r->status : 0;
}

void print_counters(const http_kv::server_counters& c) {
  std::cout << "connections: " << c.accepted << " accepted, " << c.refused
            << " refused at the limit, " << c.timed_out << " timed out, " << c.cut_mid_request
            << " cut mid-request\n";
  std::cout << "responses: " << c.requests << " (2xx " << c.status_2xx << ", 4xx " << c.status_4xx
            << ", 5xx " << c.status_5xx << ")\n";
}

void print_accounting(const troupe::runtime_counters& c) {
  const bool holds = c.sent == c.handled + c.dead_lettered + c.rejected;
  std::cout << "accounting: sent = handled + dead letters + rejected "
            << (holds ? "holds" : "BROKEN") << "; dead letters " << c.dead_lettered << ", failures "
            << c.failed << ", open asks " << c.open_asks << "\n";
}

int self_test() {
  http_kv::server_options o;
  o.workers = 2;
  o.max_connections = 16;
  o.idle_timeout = 1000ms;
  o.request_timeout = 500ms;
  o.linger = 200ms;
  http_kv::kv_server server(o);
  const unsigned short port = server.port();
  std::cout << "listening on 127.0.0.1 (self-test)\n";

  {  // the basics, on one keep-alive connection
    http_kv::client c(port);
    check(status_of(c.call("PUT", "/kv/alpha", "one")) == 201, "PUT a new key -> 201");
    check(status_of(c.call("PUT", "/kv/alpha", "uno")) == 204, "PUT it again -> 204");
    auto got = c.call("GET", "/kv/alpha");
    check(got && got->status == 200 && got->body == "uno", "GET it -> 200 with the new value");
    check(status_of(c.call("GET", "/kv/missing")) == 404, "GET a missing key -> 404");
    check(status_of(c.call("GET", "/elsewhere")) == 404, "GET outside /kv/ -> 404");
    check(status_of(c.call("DELETE", "/kv/alpha")) == 405, "unknown method -> 405, kept open");
    check(status_of(c.call("GET", "/kv/alpha")) == 200, "the same connection still serves");
  }
  {  // pipelining: three requests in one write, three answers in order
    http_kv::client c(port);
    c.send(
        "PUT /kv/beta HTTP/1.1\r\nContent-Length: 3\r\n\r\ntwo"
        "GET /kv/beta HTTP/1.1\r\n\r\n"
        "GET /kv/gamma HTTP/1.1\r\n\r\n");
    const auto a = c.read();
    const auto b = c.read();
    const auto d = c.read();
    check(status_of(a) == 201 && status_of(b) == 200 && b->body == "two" && status_of(d) == 404,
          "three pipelined requests -> 201, 200, 404 in order");
  }
  {  // concurrent keep-alive clients, each on its own keys
    constexpr int clients = 8;
    constexpr int rounds = 50;
    std::vector<int> wrong(clients, 0);
    std::vector<std::thread> threads;
    for (int i = 0; i < clients; ++i) {
      threads.emplace_back([&wrong, port, i] {
        http_kv::client c(port);
        for (int k = 0; k < rounds; ++k) {
          const std::string path = "/kv/c" + std::to_string(i) + "-" + std::to_string(k);
          const std::string value = "v" + std::to_string(i * 1000 + k);
          if (status_of(c.call("PUT", path, value)) != 201) ++wrong[i];
          const auto r = c.call("GET", path);
          if (!r || r->status != 200 || r->body != value) ++wrong[i];
        }
      });
    }
    for (auto& t : threads) t.join();
    int bad = 0;
    for (int w : wrong) bad += w;
    check(bad == 0, "8 concurrent clients x 50 PUT+GET round trips, every answer right");
  }
  {  // malformed requests: 400 (or the precise status), then the connection is closed
    const std::pair<std::string, int> cases[] = {
        {"BOGUS\r\n\r\n", 400},
        {"GET nopath HTTP/1.1\r\n\r\n", 400},
        {"GET /kv/a HTTP/1.1\r\nno colon here\r\n\r\n", 400},
        {"GET /kv/a HTTP/1.1\r\nContent-Length: x\r\n\r\n", 400},
        {"GET /kv/a HTTP/2.0\r\n\r\n", 505},
        {"PUT /kv/a HTTP/1.1\r\n\r\n", 411},
        {"PUT /kv/a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 501},
    };
    int good = 0;
    for (const auto& [bytes, want] : cases) {
      http_kv::client c(port);
      c.send(bytes);
      const auto r = c.read();
      if (status_of(r) == want && r->close && c.closed_by_server()) ++good;
    }
    check(good == 7, "7 malformed requests -> 400/505/411/501 with Connection: close, closed");
  }
  {  // over the limits: 431 for the header section, 413 for the body; closed cleanly
    http_kv::client c(port);
    c.send("GET /kv/a HTTP/1.1\r\nX-Padding: " + std::string(9000, 'p') + "\r\n\r\n");
    const auto r = c.read();
    check(status_of(r) == 431 && c.closed_by_server(), "a 9 KB header section -> 431, closed");
    http_kv::client d(port);
    d.send("PUT /kv/a HTTP/1.1\r\nContent-Length: 100000\r\n\r\n" + std::string(100000, 'b'));
    const auto s = d.read();
    check(status_of(s) == 413 && d.closed_by_server(), "a 100 KB body -> 413, closed");
    http_kv::client e(port);
    const std::string big(60000, 'x');
    check(status_of(e.call("PUT", "/kv/big", big)) == 201, "a 60 KB body (under the limit) -> 201");
    const auto g = e.call("GET", "/kv/big");
    check(g && g->body == big, "and it comes back whole");
  }
  {  // a client that disconnects mid-request; the others are not disturbed
    http_kv::client gone(port);
    gone.send("PUT /kv/half HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc");
    gone.close();
    http_kv::client c(port);
    check(status_of(c.call("GET", "/kv/half")) == 404, "a request cut mid-body is not applied");
  }
  {  // slowloris: a request that never finishes gets 408; an idle connection is closed
    http_kv::client slow(port);
    slow.send("GET /kv/alpha HTTP/1.1\r\nX-Slow: ");
    const auto r = slow.read();
    check(status_of(r) == 408 && slow.closed_by_server(), "an unfinished request -> 408, closed");
    http_kv::client idle(port);
    check(idle.closed_by_server(), "an idle keep-alive connection is closed after its timeout");
  }
  {  // the connection limit: 16 open, the 17th is refused with 503
    std::vector<std::unique_ptr<http_kv::client>> held;
    int served = 0;
    for (int i = 0; i < 16; ++i) {
      held.push_back(std::make_unique<http_kv::client>(port));
      if (status_of(held.back()->call("GET", "/kv/alpha")) == 200) ++served;
    }
    http_kv::client extra(port);
    const auto r = extra.read();
    check(served == 16 && status_of(r) == 503 && extra.closed_by_server(),
          "16 connections held (the limit): the 17th gets 503 and is closed");
  }
  std::cout << "keys in the store: " << server.keys() << "\n";

  server.stop();
  print_counters(server.state().counters);
  print_accounting(server.runtime().counters());
  std::cout << (failures == 0 ? "self-test passed" : "SELF-TEST FAILED") << "\n";
  return failures == 0 ? 0 : 1;
}

int serve(http_kv::server_options o, int duration_s, std::size_t preload) {
  http_kv::kv_server server(o);
  server.preload(preload);
  std::cout << "listening on 127.0.0.1:" << server.port() << std::endl;

  asio::io_context signals_io;
  asio::signal_set signals(signals_io, SIGINT, SIGTERM);
  bool signalled = false;
  signals.async_wait([&](const std::error_code& ec, int) { signalled = !ec; });
  if (duration_s > 0) {
    signals_io.run_for(std::chrono::seconds(duration_s));
  } else {
    signals_io.run();
  }
  server.stop();
  std::cout << "stopped" << (signalled ? " by a signal" : " after the duration") << "\n";
  print_counters(server.state().counters);
  http_kv::print_latency(std::cout, server.state().latency.merged());
  print_accounting(server.runtime().counters());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  http_kv::server_options o;
  bool server_mode = false;
  int duration_s = 0;
  std::size_t preload = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has_value = i + 1 < argc;
    auto number = [&] { return std::strtoul(argv[++i], nullptr, 10); };
    if (a == "--port" && has_value) {
      server_mode = true;
      o.port = static_cast<unsigned short>(number());
    } else if (a == "--duration" && has_value) {
      duration_s = static_cast<int>(number());
    } else if (a == "--workers" && has_value) {
      o.workers = number();
    } else if (a == "--io-threads" && has_value) {
      o.io_threads = number();
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
    } else if (a == "--access" && has_value) {
      const std::string v = argv[++i];
      if (v != "send" && v != "ask") {
        std::cerr << "--access: send or ask\n";
        return 2;
      }
      o.access = v == "ask" ? http_kv::store_access::ask : http_kv::store_access::send;
    } else if (a == "--self-test") {
      server_mode = false;
    } else {
      std::cerr << "usage: " << argv[0]
                << " [--self-test] | --port P [--duration S] [--workers N] [--io-threads N]"
                   " [--shards N] [--access send|ask] [--max-connections N]"
                   " [--idle-timeout-ms N] [--request-timeout-ms N] [--preload N]\n";
      return 2;
    }
  }
  return server_mode ? serve(o, duration_s, preload) : self_test();
}
