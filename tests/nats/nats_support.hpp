// Support of the NATS tests: the fixture's server URL, a private nats-server a test can stop and
// restart (faults), and waiting for a condition with a bound (never a sleep as synchronisation).
#pragma once

#include <arpa/inet.h>
#include <chrono>
#include <cstdlib>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <string>
#include <sys/socket.h>
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

}  // namespace test
