// Robustness of the http_kv example service (examples/http_kv_server.hpp) under real sockets:
// thousands of concurrent connections, a connection limit, slow and idle clients (slowloris),
// garbage, clients that leave mid-request — every connection served or refused with a status,
// memory bounded, and the runtime's accounting intact at shutdown. Not a speed test.
#include <cstdio>
#include <fstream>
#include <memory>
#include <random>
#include <string>
#include <sys/resource.h>
#include <vector>

#include <catch2/catch.hpp>

#include "../examples/http_kv_client.hpp"
#include "../examples/http_kv_server.hpp"

using namespace std::chrono_literals;

namespace {

#if defined(__SANITIZE_THREAD__) || defined(__SANITIZE_ADDRESS__)
constexpr bool sanitized = true;
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer) || __has_feature(address_sanitizer)
constexpr bool sanitized = true;
#else
constexpr bool sanitized = false;
#endif
#else
constexpr bool sanitized = false;
#endif

// Raises the soft descriptor limit to at least `wanted` (up to the hard limit); the limit now.
rlim_t raise_descriptor_limit(rlim_t wanted) {
  rlimit r{};
  if (::getrlimit(RLIMIT_NOFILE, &r) != 0) return 0;
  if (r.rlim_cur < wanted) {
    r.rlim_cur = r.rlim_max == RLIM_INFINITY ? wanted : std::min(wanted, r.rlim_max);
    ::setrlimit(RLIMIT_NOFILE, &r);
    ::getrlimit(RLIMIT_NOFILE, &r);
  }
  return r.rlim_cur;
}

std::size_t resident_bytes() {
  std::ifstream statm("/proc/self/statm");
  std::size_t pages = 0;
  std::size_t resident = 0;
  statm >> pages >> resident;
  return resident * 4096;
}

int status_of(const std::optional<http_kv::response>& r) {
  return r ? r->status : 0;
}

void check_accounting(http_kv::kv_server& server) {
  server.stop();
  const troupe::runtime_counters c = server.runtime().counters();
  CHECK(c.sent == c.handled + c.dead_lettered + c.rejected);
  CHECK(c.failed == 0);
  CHECK(c.open_asks == 0);
  CHECK(server.runtime().live_actors() == 0);
  CHECK(server.state().live.load() == 0);
}

}  // namespace

TEST_CASE("thousands of concurrent connections are each served", "[http_kv]") {
  const std::size_t n = sanitized ? 1000 : 5000;
  // Client and server ends are both in this process.
  const rlim_t limit = raise_descriptor_limit(2 * n + 256);
  if (limit < 2 * n + 256) {
    WARN("skipped: the descriptor limit is " << limit << " and cannot be raised to " << 2 * n + 256
                                             << " (raise ulimit -Hn)");
    return;
  }
  http_kv::server_options o;
  o.workers = 2;
  o.max_connections = n;
  o.idle_timeout = 60s;  // nobody times out while the test holds them
  http_kv::kv_server server(o);
  {
    http_kv::client c(server.port());
    REQUIRE(status_of(c.call("PUT", "/kv/shared", "value")) == 201);
  }
  const std::size_t rss_before = resident_bytes();
  std::vector<std::unique_ptr<http_kv::client>> clients;
  clients.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    clients.push_back(std::make_unique<http_kv::client>(server.port()));
  }
  // Every connection open at once, then a request on each: all are answered.
  for (auto& c : clients) c->send("GET /kv/shared HTTP/1.1\r\n\r\n");
  std::size_t served = 0;
  for (auto& c : clients) {
    const auto r = c->read();
    if (r && r->status == 200 && r->body == "value") ++served;
  }
  CHECK(served == n);
  CHECK(server.state().live.load() == n);
  // Memory: what n idle keep-alive connections cost, far below one request buffer each.
  const std::size_t per_connection =
      (resident_bytes() - std::min(rss_before, resident_bytes())) / n;
  INFO("resident bytes per open connection (client and server ends): " << per_connection);
  CHECK(per_connection < (sanitized ? 64 * 1024 : 16 * 1024));

  // One more is over the limit: refused with 503, not left hanging.
  http_kv::client extra(server.port());
  const auto refused = extra.read();
  CHECK(status_of(refused) == 503);
  CHECK(extra.closed_by_server());
  clients.clear();
  check_accounting(server);
  CHECK(server.state().counters.refused.load() == 1);
  CHECK(server.state().counters.requests.load() == n + 1);
}

TEST_CASE("slow and idle clients do not hold up the others", "[http_kv]") {
  const int idle = sanitized ? 50 : 200;
  const int slow = sanitized ? 20 : 50;
  http_kv::server_options o;
  o.workers = 2;
  o.idle_timeout = 1500ms;
  o.request_timeout = 1000ms;
  o.linger = 100ms;
  http_kv::kv_server server(o);
  const unsigned short port = server.port();

  std::vector<std::unique_ptr<http_kv::client>> idlers;
  std::vector<std::unique_ptr<http_kv::client>> slowpokes;
  for (int i = 0; i < idle; ++i) idlers.push_back(std::make_unique<http_kv::client>(port));
  for (int i = 0; i < slow; ++i) {
    slowpokes.push_back(std::make_unique<http_kv::client>(port));
    slowpokes.back()->send("PUT /kv/slow HTTP/1.1\r\nContent-Length: 100\r\n\r\npartial");
  }
  // Meanwhile a keep-alive client is served normally, every answer right.
  int right = 0;
  {
    http_kv::client c(port);
    for (int i = 0; i < 100; ++i) {
      const std::string path = "/kv/k" + std::to_string(i);
      if (status_of(c.call("PUT", path, std::to_string(i))) == 201) ++right;
      const auto r = c.call("GET", path);
      if (r && r->status == 200 && r->body == std::to_string(i)) ++right;
    }
  }
  CHECK(right == 200);
  // The unfinished requests get 408 and are closed; the idle connections are closed.
  int timed_out = 0;
  for (auto& s : slowpokes) {
    const auto r = s->read();
    if (status_of(r) == 408 && r->close && s->closed_by_server()) ++timed_out;
  }
  CHECK(timed_out == slow);
  int closed = 0;
  for (auto& c : idlers) closed += c->closed_by_server() ? 1 : 0;
  CHECK(closed == idle);
  {
    http_kv::client c(port);
    CHECK(status_of(c.call("GET", "/kv/slow")) == 404);  // no partial PUT was applied
  }
  check_accounting(server);
  CHECK(server.state().counters.timed_out.load() == static_cast<std::uint64_t>(idle + slow));
}

TEST_CASE("garbage and clients leaving mid-request are contained", "[http_kv]") {
  http_kv::server_options o;
  o.workers = 2;
  o.request_timeout = 500ms;
  o.linger = 100ms;
  http_kv::kv_server server(o);
  const unsigned short port = server.port();
  const int n = sanitized ? 40 : 100;

  // Leaving mid-request, at every point of a PUT: nothing is applied, nothing is answered.
  const std::string put = "PUT /kv/cut HTTP/1.1\r\nContent-Length: 20\r\n\r\n01234567890123456789";
  for (int i = 0; i < n; ++i) {
    http_kv::client c(port);
    c.send(std::string_view(put).substr(0, 1 + static_cast<std::size_t>(i) % (put.size() - 1)));
    c.close();
  }
  // Garbage: each connection gets an error status (or 408 for what never ends) and is closed.
  // All at once, so the timeouts run concurrently.
  std::mt19937 random(18);
  std::vector<std::unique_ptr<http_kv::client>> junkies;
  for (int i = 0; i < n; ++i) {
    junkies.push_back(std::make_unique<http_kv::client>(port));
    std::string junk(1 + random() % 300, '\0');
    for (char& ch : junk) ch = static_cast<char>(random() % 256);
    if (i % 2 == 0) junk += "\r\n\r\n";
    junkies.back()->send(junk);
  }
  int answered = 0;
  for (auto& c : junkies) {
    const auto r = c->read();
    if (r && r->status >= 400 && r->close && c->closed_by_server()) ++answered;
  }
  CHECK(answered == n);
  http_kv::client c(port);
  CHECK(status_of(c.call("GET", "/kv/cut")) == 404);
  CHECK(status_of(c.call("PUT", "/kv/cut", "whole")) == 201);
  c.close();
  check_accounting(server);
  CHECK(server.state().counters.cut_mid_request.load() == static_cast<std::uint64_t>(n));
}
