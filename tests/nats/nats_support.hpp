// Support of the NATS tests: the fixture's server URL, a private nats-server a test can stop and
// restart (faults), a private three-server cluster (server_cluster), and waiting for a condition
// with a bound (never a sleep as synchronisation).
#pragma once

#include <arpa/inet.h>
#include <chrono>
#include <cstdlib>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <map>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <string>
#include <string_view>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include <catch2/catch.hpp>

extern char** environ;

namespace test {

// The URL of the fixture's server (tests/nats/nats_server.sh).
inline std::string server_url() {
  const char* file = std::getenv("TROUPE_NATS_URL_FILE");
  REQUIRE(file != nullptr);
  std::ifstream in(file);
  std::string url;
  std::getline(in, url);
  REQUIRE(!url.empty());
  return url;
}

// Polls `done` until true or `bound` passes; returns done(). The bound is generous: a test
// fails when it passes, it never waits it out when things work.
template <class F>
bool eventually(F done, std::chrono::milliseconds bound = std::chrono::milliseconds(10000)) {
  const auto until = std::chrono::steady_clock::now() + bound;
  while (!done()) {
    if (std::chrono::steady_clock::now() > until) return done();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

inline int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  socklen_t n = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &n);
  ::close(fd);
  return ntohs(a.sin_port);
}

inline bool port_open(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

// A nats-server of the test's own (127.0.0.1, a free port, JetStream on, a temporary store),
// to stop and start again on the same port.
class private_server {
 public:
  private_server() : port_(free_port()) {
    const char* bin = std::getenv("TROUPE_NATS_SERVER");
    REQUIRE(bin != nullptr);
    binary_ = bin;
    store_ = std::filesystem::temp_directory_path() /
             ("troupe-nats-" + std::to_string(::getpid()) + "-" + std::to_string(port_));
    start();
  }
  private_server(const private_server&) = delete;
  private_server& operator=(const private_server&) = delete;
  ~private_server() {
    stop();
    std::error_code ignored;
    std::filesystem::remove_all(store_, ignored);
  }

  [[nodiscard]] std::string url() const { return "nats://127.0.0.1:" + std::to_string(port_); }

  void start() {
    std::vector<std::string> args{binary_, "-a",  "127.0.0.1",    "-p", std::to_string(port_),
                                  "-js",   "-sd", store_.string()};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
    REQUIRE(posix_spawn(&pid_, binary_.c_str(), &actions, nullptr, argv.data(), environ) == 0);
    posix_spawn_file_actions_destroy(&actions);
    REQUIRE(eventually([this] { return port_open(port_); }));
  }

  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);  // abrupt, as a crash: clients see the connection drop
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
  }

 private:
  std::string binary_;
  std::filesystem::path store_;
  int port_;
  pid_t pid_ = -1;
};

// The body of an HTTP GET on 127.0.0.1:port (a server's monitoring endpoint); empty unless the
// answer is 200. Bounded: two seconds per read.
inline std::string http_get(int port, const std::string& path) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return {};
  timeval limit{2, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  std::string reply;
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
    const std::string request = "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
    if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) ==
        static_cast<ssize_t>(request.size())) {
      char buf[4096];
      for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) reply.append(buf, n);
    }
  }
  ::close(fd);
  if (reply.rfind("HTTP/1.", 0) != 0 || reply.find(" 200 ") == std::string::npos) return {};
  const auto body = reply.find("\r\n\r\n");
  return body == std::string::npos ? std::string() : reply.substr(body + 4);
}

// nats-servers on 127.0.0.1 in one cluster (three by default), each with its client, cluster
// and monitoring port, its own store and server_name, routes to the others, JetStream on -- to
// stop and start one at a time. Destroying it stops them all and removes the stores.
class server_cluster {
 public:
  explicit server_cluster(int size = 3) {
    const char* bin = std::getenv("TROUPE_NATS_SERVER");
    REQUIRE(bin != nullptr);
    binary_ = bin;
    const std::string tag = std::to_string(::getpid()) + "-" + std::to_string(free_port());
    name_ = "troupe-" + tag;
    for (int i = 0; i < size; ++i) {
      member m;
      m.port = free_port();
      m.cluster_port = free_port();
      m.monitor_port = free_port();
      m.name = name_ + "-s" + std::to_string(i + 1);
      m.store = std::filesystem::temp_directory_path() / ("troupe-nats-" + m.name);
      members_.push_back(m);
    }
    for (int i = 0; i < size; ++i) start(i);
  }
  server_cluster(const server_cluster&) = delete;
  server_cluster& operator=(const server_cluster&) = delete;
  ~server_cluster() {
    for (int i = 0; i < size(); ++i) stop(i);
    for (const auto& m : members_) {
      std::error_code ignored;
      std::filesystem::remove_all(m.store, ignored);
    }
  }

  [[nodiscard]] int size() const { return static_cast<int>(members_.size()); }
  [[nodiscard]] std::string url(int i) const {
    return "nats://127.0.0.1:" + std::to_string(members_.at(i).port);
  }
  [[nodiscard]] std::vector<std::string> urls() const {
    std::vector<std::string> out;
    for (int i = 0; i < size(); ++i) out.push_back(url(i));
    return out;
  }
  // The server_name of member i; -1 from index_of for a name not in the cluster.
  [[nodiscard]] const std::string& name(int i) const { return members_.at(i).name; }
  [[nodiscard]] int index_of(const std::string& server_name) const {
    for (int i = 0; i < size(); ++i) {
      if (members_[i].name == server_name) return i;
    }
    return -1;
  }
  [[nodiscard]] bool running(int i) const { return members_.at(i).pid > 0; }

  // Starts member i on its ports and store; returns once it accepts clients.
  void start(int i) {
    member& m = members_.at(i);
    std::string routes;
    for (const auto& other : members_) {
      if (&other == &m) continue;
      routes += (routes.empty() ? "" : ",") + std::string("nats://127.0.0.1:") +
                std::to_string(other.cluster_port);
    }
    std::vector<std::string> args{binary_,
                                  "-a",
                                  "127.0.0.1",
                                  "-p",
                                  std::to_string(m.port),
                                  "-m",
                                  std::to_string(m.monitor_port),
                                  "-js",
                                  "-sd",
                                  m.store.string(),
                                  "--server_name",
                                  m.name,
                                  "--cluster_name",
                                  name_,
                                  "--cluster",
                                  "nats://127.0.0.1:" + std::to_string(m.cluster_port),
                                  "--routes",
                                  routes};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
    REQUIRE(posix_spawn(&m.pid, binary_.c_str(), &actions, nullptr, argv.data(), environ) == 0);
    posix_spawn_file_actions_destroy(&actions);
    REQUIRE(eventually([&m] { return port_open(m.port); }));
  }

  // Stops member i at once (SIGKILL, as a crash) and reaps it.
  void stop(int i) {
    member& m = members_.at(i);
    if (m.pid <= 0) return;
    ::kill(m.pid, SIGKILL);
    ::waitpid(m.pid, nullptr, 0);
    m.pid = -1;
  }

  // The JetStream meta leader member i's monitoring endpoint names; empty if none (yet).
  [[nodiscard]] std::string meta_leader(int i) const {
    const std::string body = http_get(members_.at(i).monitor_port, "/jsz");
    const auto meta = body.find("\"meta_cluster\"");
    if (meta == std::string::npos) return {};
    const auto key = body.find("\"leader\":", meta);
    if (key == std::string::npos) return {};
    const auto open = body.find('"', key + 9);
    const auto close = open == std::string::npos ? open : body.find('"', open + 1);
    if (close == std::string::npos) return {};
    return body.substr(open + 1, close - open - 1);
  }

  // Waits (bounded; JetStream elects its meta leader some seconds after the routes form) until
  // every running member names the same running meta leader; true if they do.
  bool wait_for_meta_leader(std::chrono::milliseconds bound = std::chrono::milliseconds(60000)) {
    return eventually(
        [this] {
          std::string leader;
          for (int i = 0; i < size(); ++i) {
            if (!running(i)) continue;
            const std::string l = meta_leader(i);
            if (l.empty() || (!leader.empty() && l != leader)) return false;
            leader = l;
          }
          const int k = index_of(leader);
          return k >= 0 && running(k);
        },
        bound);
  }

 private:
  struct member {
    int port = 0;
    int cluster_port = 0;
    int monitor_port = 0;
    std::string name;
    std::filesystem::path store;
    pid_t pid = -1;
  };
  std::string binary_;
  std::string name_;
  std::vector<member> members_;
};

// A child process with its stdin and stdout on pipes: the peers of the multi-process tests.
class child {
 public:
  explicit child(std::vector<std::string> args) {
    int in[2];
    int out[2];
    REQUIRE(::pipe(in) == 0);
    REQUIRE(::pipe(out) == 0);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, in[0], 0);
    posix_spawn_file_actions_adddup2(&actions, out[1], 1);
    posix_spawn_file_actions_addclose(&actions, in[1]);
    posix_spawn_file_actions_addclose(&actions, out[0]);
    const int rc = posix_spawn(&pid_, argv[0], &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    ::close(in[0]);
    ::close(out[1]);
    REQUIRE(rc == 0);
    to_ = ::fdopen(in[1], "w");
    from_ = ::fdopen(out[0], "r");
  }
  child(const child&) = delete;
  child& operator=(const child&) = delete;
  ~child() {
    if (to_ != nullptr) std::fclose(to_);
    if (from_ != nullptr) std::fclose(from_);
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }

  // The next line of its output (without the newline); empty at EOF.
  std::string read_line() {
    std::string line;
    for (int c = std::fgetc(from_); c != EOF && c != '\n'; c = std::fgetc(from_)) {
      line.push_back(static_cast<char>(c));
    }
    return line;
  }
  // The next line that starts with `prefix`, skipping others; empty at EOF.
  std::string read_line_starting(std::string_view prefix) {
    for (std::string line = read_line();; line = read_line()) {
      if (line.empty() || line.rfind(prefix, 0) == 0) return line;
    }
  }
  void write_line(const std::string& line) {
    std::fputs((line + "\n").c_str(), to_);
    std::fflush(to_);
  }
  // Kills it at once (SIGKILL: no goodbye on the wire, as a crash) and reaps it.
  void kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  // Waits for it to exit; its exit status (-1 if killed by a signal).
  int wait() {
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

 private:
  pid_t pid_ = -1;
  FILE* to_ = nullptr;
  FILE* from_ = nullptr;
};

// "k=v k=v" fields of a line, as numbers.
inline std::map<std::string, long long> fields(const std::string& line) {
  std::map<std::string, long long> out;
  std::size_t i = 0;
  while (i < line.size()) {
    const std::size_t end = std::min(line.find(' ', i), line.size());
    const std::string token = line.substr(i, end - i);
    if (const auto eq = token.find('='); eq != std::string::npos) {
      out[token.substr(0, eq)] = std::stoll(token.substr(eq + 1));
    }
    i = end + 1;
  }
  return out;
}

}  // namespace test
