// Support of the NATS tests: the fixture's server URL, a private nats-server a test can stop and
// restart (faults), and waiting for a condition with a bound (never a sleep as synchronisation).
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
