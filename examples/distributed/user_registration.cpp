// user_registration, distributed: the flagship's services as separate processes over one
// nats-server -- registration (with its cache), email, analytics, and a CRM added halfway.
//
// The driver (this program without a role) starts each service as a child process of its own
// binary, registers users through a remote ask, waits until every consumer saw every event
// (remote asks again), then stops the services and prints the same report as the in-process
// run: what each service saw, the dead letters and the accounting summed over the processes
// (runtime counters, and what crossed the wire), and latency per hop across processes.
//
// What differs from one process: delivery is at most once (no JetStream), so the CRM added later
// sees live events only (replaying the past needs a JetStream stream); email runs as a NATS
// queue group (add email processes and each event still goes to one of them).
//
//   example_user_registration_distributed nats://127.0.0.1:4222    (or @file: the URL is in it)
//   (scripts/demo.sh --distributed starts a nats-server and runs it)
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <spawn.h>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

#include <troupe/nats/node.hpp>
#include <troupe/troupe.hpp>

extern char** environ;

using namespace std::chrono_literals;

// ---- what the processes share: messages with wire names -----------------------------------------

std::int64_t now_ns() {  // CLOCK_MONOTONIC: one clock for every process of this machine
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

struct register_user {
  static constexpr std::string_view troupe_wire_name = "demo.register_user";
  std::string email;
  std::string name;
  std::int64_t sent_ns = 0;
};
struct registration {
  static constexpr std::string_view troupe_wire_name = "demo.registration";
  bool ok = false;
  std::uint64_t user_id = 0;
  std::string refused_because;
};
struct user_registered {
  static constexpr std::string_view troupe_wire_name = "demo.user_registered";
  std::uint64_t user_id = 0;
  std::string email;
  std::string name;
  std::int64_t published_ns = 0;
};
struct lookup {
  static constexpr std::string_view troupe_wire_name = "demo.lookup";
  std::string email;
};
struct wait_until_seen {
  static constexpr std::string_view troupe_wire_name = "demo.wait_until_seen";
  std::uint64_t count = 0;
};
struct domain_counts {
  static constexpr std::string_view troupe_wire_name = "demo.domain_counts";
};
struct domains {
  static constexpr std::string_view troupe_wire_name = "demo.domains";
  std::map<std::string, std::uint64_t> by_domain;
};

// The interfaces the driver compiles against (declarations only).
struct registration_api {
  registration on(const register_user&);
};
struct cache_api {
  std::uint64_t on(const lookup&);
  std::uint64_t on(wait_until_seen);
};
struct consumer_api {
  std::uint64_t on(wait_until_seen);
};
struct analytics_api {
  std::uint64_t on(wait_until_seen);
  domains on(domain_counts);
};

// ---- the services (each in its own process) -----------------------------------------------------

// Replies to wait_until_seen once `seen` reaches the count asked for (a deferred reply).
class completion {
 public:
  void waiting(std::uint64_t count, troupe::promise<std::uint64_t> reply, std::uint64_t seen) {
    waiters_.push_back({count, std::move(reply)});
    seen_now(seen);
  }
  void seen_now(std::uint64_t seen) {
    for (auto it = waiters_.begin(); it != waiters_.end();) {
      if (seen >= it->count) {
        it->reply.set_value(seen);
        it = waiters_.erase(it);
      } else {
        ++it;
      }
    }
  }

 private:
  struct waiter {
    std::uint64_t count;
    troupe::promise<std::uint64_t> reply;
  };
  std::vector<waiter> waiters_;
};

void record_since(troupe::latency_histogram& h, std::int64_t since_ns) {
  h.record(std::chrono::nanoseconds(std::max<std::int64_t>(0, now_ns() - since_ns)));
}

class registration_service {
 public:
  registration_service(troupe::nats::node* n, troupe::latency_histogram* request)
      : node_(n), request_(request) {}
  registration on(const register_user& r) {
    record_since(*request_, r.sent_ns);
    if (r.email.find('@') == std::string::npos) return {false, 0, "not an email address"};
    if (by_email_.contains(r.email)) return {false, 0, "already registered"};
    const std::uint64_t id = ++last_id_;
    by_email_[r.email] = id;
    // To this process's subscribers (the cache) and to every other process's.
    node_->publish("user.registered", user_registered{id, r.email, r.name, now_ns()});
    return {true, id, {}};
  }

 private:
  troupe::nats::node* node_;
  troupe::latency_histogram* request_;
  std::map<std::string, std::uint64_t> by_email_;
  std::uint64_t last_id_ = 0;
};

// Any consumer of user.registered: counts, records the hop, remembers per-domain counts.
class consumer {
 public:
  explicit consumer(troupe::latency_histogram* hop) : hop_(hop) {}
  void on(const user_registered& e) {
    record_since(*hop_, e.published_ns);
    users_[e.email] = e.user_id;
    ++by_domain_.by_domain[e.email.substr(e.email.find('@') + 1)];
    done_.seen_now(users_.size());
  }
  void on(wait_until_seen w, troupe::promise<std::uint64_t> reply) {
    done_.waiting(w.count, std::move(reply), users_.size());
  }
  std::uint64_t on(const lookup& l) const {
    auto it = users_.find(l.email);
    return it == users_.end() ? 0 : it->second;
  }
  domains on(domain_counts) const { return by_domain_; }

 private:
  troupe::latency_histogram* hop_;
  std::map<std::string, std::uint64_t> users_;
  domains by_domain_;
  completion done_;
};

// A service process: its runtime and node, its actors, and at "quit" on stdin its report on
// stdout ("hop ..." lines and one "counters ..." line), read by the driver.
int serve(const std::string& url, const std::string& prefix, const std::string& role) {
  troupe::runtime_options options;
  std::uint64_t dead = 0;
  options.on_dead_letter = [&dead](const troupe::dead_letter& d) {
    ++dead;
    std::fprintf(stderr, "%s: dead letter [%s: %s]\n", "service",
                 std::string(to_string(d.reason)).c_str(), d.detail.c_str());
  };
  troupe::runtime rt(options);
  troupe::nats::node node(rt, {.servers = {url}, .name = role, .prefix = prefix});
  std::map<std::string, troupe::latency_histogram> hops;
  std::vector<troupe::subscription> local;
  if (role == "registration") {
    auto reg = rt.spawn<registration_service>(&node, &hops["caller -> registration"]);
    node.expose<register_user>("registration", reg);
    auto cache = rt.spawn<consumer>(&hops["user.registered -> cache"]);  // same process
    local.push_back(rt.subscribe<user_registered>("user.registered", cache));
    node.expose<lookup, wait_until_seen>("cache", cache);
  } else if (role == "email") {
    auto email = rt.spawn<consumer>(&hops["user.registered -> email"]);
    node.subscribe<user_registered>("user.registered", email, troupe::group{"email"});
    node.expose<wait_until_seen>("email", email);
  } else if (role == "analytics" || role == "crm") {
    auto a =
        rt.spawn<consumer>(&hops["user.registered -> " + role + (role == "crm" ? " (live)" : "")]);
    node.bridge<user_registered>("user.*");  // remote events into this runtime's topics
    local.push_back(rt.subscribe<user_registered>("user.*", a));
    node.expose<wait_until_seen, domain_counts>(role, a);
  } else {
    std::fprintf(stderr, "unknown role '%s'\n", role.c_str());
    return 2;
  }
  std::printf("ready\n");
  std::fflush(stdout);
  std::string line;
  while (std::getline(std::cin, line) && line != "quit") {
  }
  node.close();
  local.clear();
  rt.shutdown();
  for (const auto& [name, h] : hops) {
    std::printf("hop %s|%llu|%lld|%lld|%lld|%lld\n", name.c_str(),
                static_cast<unsigned long long>(h.count()),
                static_cast<long long>(h.percentile(50).count()),
                static_cast<long long>(h.percentile(90).count()),
                static_cast<long long>(h.percentile(99).count()),
                static_cast<long long>(h.max().count()));
  }
  const auto c = rt.counters();
  const auto w = node.counters();
  std::printf("counters %llu %llu %llu %llu %llu %llu %llu\n",
              static_cast<unsigned long long>(c.sent), static_cast<unsigned long long>(c.handled),
              static_cast<unsigned long long>(c.dead_lettered),
              static_cast<unsigned long long>(c.rejected),
              static_cast<unsigned long long>(w.sent + w.events_published),
              static_cast<unsigned long long>(w.received),
              static_cast<unsigned long long>(w.dead_lettered + w.slow_consumer_drops));
  std::fflush(stdout);
  return 0;
}

// ---- the driver ---------------------------------------------------------------------------------

// A service process, its stdin and stdout on pipes.
class service_process {
 public:
  service_process(const char* self, const std::string& url, const std::string& prefix,
                  const std::string& role)
      : role_(role) {
    int in[2];
    int out[2];
    if (::pipe(in) != 0 || ::pipe(out) != 0) throw std::runtime_error("pipe");
    std::vector<std::string> args{self, url, prefix, role};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in[0], 0);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    posix_spawn_file_actions_addclose(&actions, in[1]);
    posix_spawn_file_actions_addclose(&actions, out[0]);
    const int rc = posix_spawn(&pid_, self, &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    ::close(in[0]);
    ::close(out[1]);
    to_ = ::fdopen(in[1], "w");
    from_ = ::fdopen(out[0], "r");
    if (rc != 0) throw std::runtime_error("cannot start the " + role + " process");
    if (read_line() != "ready") throw std::runtime_error("the " + role + " process did not start");
  }
  service_process(const service_process&) = delete;
  service_process& operator=(const service_process&) = delete;
  ~service_process() {
    if (to_ != nullptr) std::fclose(to_);
    if (from_ != nullptr) std::fclose(from_);
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  std::string read_line() {
    std::string line;
    for (int c = std::fgetc(from_); c != EOF && c != '\n'; c = std::fgetc(from_)) {
      line.push_back(static_cast<char>(c));
    }
    return line;
  }
  // Asks it to stop; returns its report lines; true if it exited with status 0.
  bool quit(std::vector<std::string>& report) {
    std::fputs("quit\n", to_);
    std::fflush(to_);
    for (std::string line = read_line(); !line.empty(); line = read_line()) report.push_back(line);
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
  }
  [[nodiscard]] const std::string& role() const noexcept { return role_; }

 private:
  std::string role_;
  pid_t pid_ = -1;
  FILE* to_ = nullptr;
  FILE* from_ = nullptr;
};

std::string fmt_ns(long long v) {
  char buf[32];
  if (v < 1000) {
    std::snprintf(buf, sizeof buf, "%lld ns", v);
  } else if (v < 1000000) {
    std::snprintf(buf, sizeof buf, "%.1f us", static_cast<double>(v) / 1e3);
  } else {
    std::snprintf(buf, sizeof buf, "%.2f ms", static_cast<double>(v) / 1e6);
  }
  return buf;
}

int drive(const char* self, const std::string& url) {
  constexpr std::uint64_t phase_users = 100;  // before and after the CRM joins
  const std::string prefix = "demo" + std::to_string(::getpid());
  std::printf("troupe user_registration, distributed: one process per service over NATS (%s)\n",
              url.c_str());
  std::vector<std::unique_ptr<service_process>> services;
  for (const char* role : {"registration", "email", "analytics"}) {
    services.push_back(std::make_unique<service_process>(self, url, prefix, role));
  }

  troupe::runtime rt;
  troupe::nats::node node(rt, {.servers = {url}, .name = "driver", .prefix = prefix});
  auto registrar = node.remote<registration_api>("registration");
  troupe::latency_histogram round_trip;
  std::uint64_t registered = 0;
  std::uint64_t refused = 0;
  auto register_one = [&](const std::string& email, const std::string& name) {
    const std::int64_t t0 = now_ns();
    const registration r = registrar.ask(register_user{email, name, t0}).get();
    record_since(round_trip, t0);
    (r.ok ? registered : refused) += 1;
  };
  auto user = [](std::uint64_t i) {
    static const char* const domain[] = {"example.org", "example.com", "troupe.dev"};
    return "user" + std::to_string(i) + "@" + domain[i % 3];
  };

  for (std::uint64_t i = 1; i <= phase_users; ++i)
    register_one(user(i), "User " + std::to_string(i));
  register_one(user(3), "User 3 again");   // refused: already registered
  register_one("not-an-email", "Nobody");  // refused: invalid
  // The CRM joins while the system runs; the producer does not change.
  services.push_back(std::make_unique<service_process>(self, url, prefix, "crm"));
  for (std::uint64_t i = phase_users + 1; i <= 2 * phase_users; ++i) {
    register_one(user(i), "User " + std::to_string(i));
  }

  const std::uint64_t n = registered;
  const std::uint64_t emailed = node.remote<consumer_api>("email").ask(wait_until_seen{n}).get();
  auto analytics = node.remote<analytics_api>("analytics");
  const std::uint64_t counted = analytics.ask(wait_until_seen{n}).get();
  auto cache = node.remote<cache_api>("cache");
  const std::uint64_t cached = cache.ask(wait_until_seen{n}).get();
  const std::uint64_t contacts =
      node.remote<consumer_api>("crm").ask(wait_until_seen{phase_users}).get();
  const domains by_domain = analytics.ask(domain_counts{}).get();
  const std::uint64_t id42 = cache.ask(lookup{user(42)}).get();

  std::printf("registration: %llu users registered, %llu refused (duplicate or invalid)\n",
              static_cast<unsigned long long>(registered),
              static_cast<unsigned long long>(refused));
  std::printf("email: %llu welcome emails (a queue group: each event to one email process)\n",
              static_cast<unsigned long long>(emailed));
  std::printf("analytics: %llu sign-ups;", static_cast<unsigned long long>(counted));
  for (const auto& [domain, count] : by_domain.by_domain) {
    std::printf(" %s %llu", domain.c_str(), static_cast<unsigned long long>(count));
  }
  std::printf("\ncache: %llu users; lookup %s -> user %llu\n",
              static_cast<unsigned long long>(cached), user(42).c_str(),
              static_cast<unsigned long long>(id42));
  std::printf("crm (added later): %llu contacts, live only (replaying the past needs JetStream)\n",
              static_cast<unsigned long long>(contacts));

  node.close();
  rt.shutdown();
  // Every process's accounting, and the wire's, summed.
  unsigned long long sent = 0, handled = 0, dead = 0, rejected = 0, out = 0, in = 0, lost = 0;
  std::map<std::string, std::vector<long long>> hop_rows;
  bool clean = true;
  for (auto& s : services) {
    std::vector<std::string> report;
    clean = s->quit(report) && clean;
    for (const std::string& line : report) {
      unsigned long long v[7] = {};
      if (std::sscanf(line.c_str(), "counters %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1],
                      &v[2], &v[3], &v[4], &v[5], &v[6]) == 7) {
        sent += v[0], handled += v[1], dead += v[2], rejected += v[3];
        out += v[4], in += v[5], lost += v[6];
      } else if (line.rfind("hop ", 0) == 0) {
        const std::string rest = line.substr(4);
        const auto bar = rest.find('|');
        std::vector<long long> nums;
        for (std::size_t i = bar; i != std::string::npos; i = rest.find('|', i + 1)) {
          nums.push_back(std::stoll(rest.substr(i + 1)));
        }
        hop_rows[rest.substr(0, bar)] = nums;
      }
    }
  }
  const auto c = rt.counters();
  const auto w = node.counters();
  sent += c.sent, handled += c.handled, dead += c.dead_lettered, rejected += c.rejected;
  out += w.sent + w.events_published, in += w.received, lost += w.dead_lettered;
  std::printf("dead letters: %llu\n", dead);
  const bool balanced = sent == handled + dead + rejected;
  std::printf(
      "accounting (%zu processes): sent %llu = handled %llu + dead-lettered %llu + "
      "rejected %llu: %s\n",
      services.size() + 1, sent, handled, dead, rejected, balanced ? "balanced" : "NOT BALANCED");
  // A published event reaches every process that bridges or subscribes to it, so more arrive
  // than left; each arrival was delivered or dead-lettered.
  std::printf("wire: %llu messages out, %llu in, %llu dead-lettered or dropped on arrival\n", out,
              in, lost);

  std::printf("latency per hop, across processes (this run, this machine):\n");
  std::printf("  %-34s %6s %10s %10s %10s %10s\n", "hop", "count", "p50", "p90", "p99", "max");
  auto print = [](const std::string& name, long long count, long long p50, long long p90,
                  long long p99, long long max) {
    std::printf("  %-34s %6lld %10s %10s %10s %10s\n", name.c_str(), count, fmt_ns(p50).c_str(),
                fmt_ns(p90).c_str(), fmt_ns(p99).c_str(), fmt_ns(max).c_str());
  };
  for (const char* hop : {"caller -> registration"}) {
    if (auto it = hop_rows.find(hop); it != hop_rows.end() && it->second.size() == 5) {
      print(hop, it->second[0], it->second[1], it->second[2], it->second[3], it->second[4]);
    }
  }
  print("ask round trip (caller)", static_cast<long long>(round_trip.count()),
        round_trip.percentile(50).count(), round_trip.percentile(90).count(),
        round_trip.percentile(99).count(), round_trip.max().count());
  for (const auto& [hop, v] : hop_rows) {
    if (hop != "caller -> registration" && v.size() == 5) print(hop, v[0], v[1], v[2], v[3], v[4]);
  }

  const bool ok = clean && emailed == n && counted == n && cached == n && contacts == phase_users &&
                  id42 == 42 && dead == 0 && balanced;
  return ok ? 0 : 1;
}

int main(int argc, char* argv[]) {
  try {
    if (argc == 4) return serve(argv[1], argv[2], argv[3]);
    if (argc == 2 && argv[1][0] == '@') {  // @file: the URL is the file's first line (the tests)
      std::ifstream in(argv[1] + 1);
      std::string url;
      std::getline(in, url);
      return drive(argv[0], url);
    }
    if (argc == 2) return drive(argv[0], argv[1]);
    std::fprintf(stderr, "usage: %s nats://host:port\n", argv[0]);
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "user_registration (distributed): %s\n", e.what());
    return 1;
  }
}
