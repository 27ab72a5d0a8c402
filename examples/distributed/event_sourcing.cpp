// event_sourcing: an account whose state is its own durable topic on JetStream. At start the
// actor rebuilds its state by replaying the topic -- from the latest snapshot, when there is one
// -- and then continues live. A process killed mid-run (SIGKILL) and started again comes back
// with the same state: nothing lost, nothing applied twice.
//
// The driver (this program without a role) runs the account as a child process of its own
// binary twice: the first run is killed after some commands; the second rebuilds and finishes
// them. The driver then replays the whole topic itself and compares.
//
// The account is its topic's only writer: it decides a command on its state, stores the event
// (publish_sync: the offset comes back) and applies it. Its own events come back through its
// subscription too; an offset it has applied already is skipped. The command number is the
// event's message id, so a retried publish is stored once.
//
//   example_event_sourcing nats://127.0.0.1:4222    (or @file: the URL is in it)
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <future>
#include <optional>
#include <spawn.h>
#include <stdexcept>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <utility>
#include <vector>

#include <troupe/nats/jetstream.hpp>
#include <troupe/troupe.hpp>

extern char** environ;

using namespace std::chrono_literals;

// ---- events, as stored -----------------------------------------------------------------------

struct entry {  // what happened to the account
  static constexpr std::string_view troupe_wire_name = "ledger.entry";
  long command = 0;  // the command that caused it
  long cents = 0;    // > 0 deposit, < 0 withdrawal
};
struct snapshot {  // the state after the event at `offset`
  static constexpr std::string_view troupe_wire_name = "ledger.snapshot";
  std::uint64_t offset = 0;
  long balance = 0;
  long last_command = 0;
};

constexpr long commands = 60;
// Command k: a deposit, or every 7th a withdrawal that is refused if it would overdraw.
long cents_of(long k) {
  return k % 7 == 0 ? -k * 40 : k * 10;
}

// ---- the account: state = a fold of its topic ----------------------------------------------

struct command {
  long k;
};
struct outcome {
  bool applied = false;
  std::uint64_t offset = 0;  // of the account's newest event
  long balance = 0;
  long last_command = 0;  // the newest command applied
};

class account {
 public:
  account(troupe::nats::durable_topic<entry> ledger, troupe::nats::durable_topic<snapshot> snaps,
          snapshot from, std::uint64_t replay_to, std::promise<void>* rebuilt)
      : ledger_(std::move(ledger)),
        snaps_(std::move(snaps)),
        state_(from),
        target_(replay_to),
        rebuilt_(rebuilt) {
    caught_up();
  }

  // Replayed and live events (its own writes come back here too: skipped by offset).
  void on(const troupe::retained<entry>& e) {
    if (e.offset <= state_.offset) return;
    apply(e.offset, e.event);
    ++replayed_;
    caught_up();
  }

  outcome on(const command& c) {
    if (c.k <= state_.last_command) return now(true);  // applied before
    const entry e{c.k, cents_of(c.k)};
    if (state_.balance + e.cents < 0) return now(false);
    // Blocks this worker for one round trip to the server: the example keeps it simple.
    const std::uint64_t offset = ledger_.publish_sync(e, {.id = "command-" + std::to_string(c.k)});
    if (offset > state_.offset) apply(offset, e);
    if (offset % 10 == 0) snaps_.publish(state_);  // every 10 events: the replay starts there
    return now(true);
  }

  struct replayed_count {};
  long on(replayed_count) const { return replayed_; }

 private:
  outcome now(bool applied) const {
    return {applied, state_.offset, state_.balance, state_.last_command};
  }
  void apply(std::uint64_t offset, const entry& e) {
    state_.offset = offset;
    state_.balance += e.cents;
    state_.last_command = e.command;
  }
  void caught_up() {
    if (rebuilt_ != nullptr && state_.offset >= target_) {
      std::exchange(rebuilt_, nullptr)->set_value();
    }
  }

  troupe::nats::durable_topic<entry> ledger_;
  troupe::nats::durable_topic<snapshot> snaps_;
  snapshot state_;
  std::uint64_t target_;
  std::promise<void>* rebuilt_;
  long replayed_ = 0;
};

// The account process: rebuild, then run the commands after the last one applied.
int run_account(const std::string& url, const std::string& prefix) {
  troupe::runtime rt;
  troupe::nats::node n(rt, {.servers = {url}, .name = "account", .prefix = prefix});
  troupe::nats::jetstream js(n);
  auto ledger = js.retain<entry>("account.7.entries");
  auto snaps = js.retain<snapshot>("account.7.snapshot", {.max_messages = 1});

  const std::optional<troupe::nats::stored_event<snapshot>> snap = snaps.last();
  const snapshot from = snap ? snap->event : snapshot{};
  const std::uint64_t replay_to = ledger.state().last;
  std::promise<void> rebuilt;
  auto acct = rt.spawn<account>(ledger, snaps, from, replay_to, &rebuilt);
  auto sub = ledger.subscribe(acct, troupe::replay::from(from.offset + 1));
  if (rebuilt.get_future().wait_for(30s) != std::future_status::ready) {
    std::printf("not rebuilt within 30 s\n");
    return 1;
  }
  const outcome now = acct.ask(command{0}).get();  // command 0: applied long ago, a no-op
  std::printf(
      "rebuilt from snapshot at offset %llu + %ld replayed events: balance %ld, last command %ld\n",
      static_cast<unsigned long long>(from.offset), acct.ask(account::replayed_count{}).get(),
      now.balance, now.last_command);
  std::fflush(stdout);
  for (long k = now.last_command + 1; k <= commands; ++k) {
    const outcome o = acct.ask(command{k}).get();
    std::printf("command %ld %s offset %llu balance %ld\n", k, o.applied ? "applied" : "refused",
                static_cast<unsigned long long>(o.offset), o.balance);
    std::fflush(stdout);
  }
  sub.end();
  js.flush();
  std::printf("done\n");
  return 0;
}

// ---- the driver --------------------------------------------------------------------------------

// The account as a child process; its output on a pipe.
struct child {
  pid_t pid = -1;
  FILE* out = nullptr;
  child(const char* self, const std::string& url, const std::string& prefix) {
    int p[2];
    if (::pipe(p) != 0) throw std::runtime_error("pipe");
    std::vector<std::string> args{self, "account", url, prefix};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, p[1], 1);
    posix_spawn_file_actions_addclose(&actions, p[0]);
    const int rc = posix_spawn(&pid, self, &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    ::close(p[1]);
    if (rc != 0) throw std::runtime_error("posix_spawn");
    out = ::fdopen(p[0], "r");
  }
  ~child() {
    if (pid > 0) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
    }
    std::fclose(out);
  }
  std::string line() {  // empty at the end
    std::string s;
    for (int c = std::fgetc(out); c != EOF && c != '\n'; c = std::fgetc(out)) s.push_back(char(c));
    return s;
  }
  int wait() {
    int status = 0;
    ::waitpid(pid, &status, 0);
    pid = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }
};

// Sums a replay of the whole topic in the driver: the reference the account must agree with.
struct auditor {
  auditor(std::uint64_t last, std::promise<void>* replayed) : until(last), done(replayed) {}
  std::uint64_t until;
  std::promise<void>* done;
  long balance = 0;
  long entries = 0;
  std::vector<long> commands_seen;
  void on(const troupe::retained<entry>& e) {
    balance += e.event.cents;
    ++entries;
    commands_seen.push_back(e.event.command);
    if (e.offset == until) done->set_value();
  }
  struct totals {};
  std::pair<long, long> on(totals) const { return {balance, entries}; }
  struct each_once {};
  bool on(each_once) const {
    for (std::size_t i = 1; i < commands_seen.size(); ++i) {
      if (commands_seen[i] <= commands_seen[i - 1]) return false;  // in order, none twice
    }
    return true;
  }
};

int drive(const char* self, const std::string& url) {
  const std::string prefix = "es" + std::to_string(::getpid());
  long killed_after = 0;
  {
    child first(self, url, prefix);
    std::printf("run 1: %s\n", first.line().c_str());
    for (std::string l = first.line(); !l.empty(); l = first.line()) {
      if (l.rfind("command 25 ", 0) == 0) {
        killed_after = 25;
        break;
      }
    }
    // Killed mid-run, as a crash: the commands after 25 it may have started are in the log or not.
  }
  std::printf("run 1: killed with SIGKILL after command %ld\n", killed_after);
  std::string last;
  {
    child second(self, url, prefix);
    std::printf("run 2: %s\n", second.line().c_str());
    for (std::string l = second.line(); !l.empty(); l = second.line()) {
      if (l == "done") break;
      last = l;
    }
    if (second.wait() != 0) return 1;
    std::printf("run 2: %s\n", last.c_str());
  }

  troupe::runtime rt;
  troupe::nats::node n(rt, {.servers = {url}, .name = "driver", .prefix = prefix});
  troupe::nats::jetstream js(n);
  auto ledger = js.retain<entry>("account.7.entries");
  const std::uint64_t stored = ledger.state().last;
  std::promise<void> done;
  auto a = rt.spawn<auditor>(stored, &done);
  auto sub = ledger.subscribe(a, troupe::replay::oldest());
  if (done.get_future().wait_for(30s) != std::future_status::ready) return 1;
  const auto [balance, entries] = a.ask(auditor::totals{}).get();
  long expected = 0;
  long accepted = 0;
  for (long k = 1; k <= commands; ++k) {
    if (expected + cents_of(k) >= 0) {
      expected += cents_of(k);
      ++accepted;
    }
  }
  std::printf("fresh replay: %ld entries, balance %ld (expected %ld entries, balance %ld): %s\n",
              entries, balance, accepted, expected,
              entries == accepted && balance == expected ? "matches" : "DIFFERS");
  const bool once = a.ask(auditor::each_once{}).get();
  std::printf("each command applied once, in order: %s\n", once ? "yes" : "NO");
  const bool agrees = last.find("balance " + std::to_string(balance)) != std::string::npos;
  std::printf("the restarted account agrees with the replay: %s\n", agrees ? "yes" : "NO");
  return entries == accepted && balance == expected && once && agrees ? 0 : 1;
}

int main(int argc, char* argv[]) {
  try {
    if (argc == 4 && std::string(argv[1]) == "account") return run_account(argv[2], argv[3]);
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
    std::fprintf(stderr, "event_sourcing: %s\n", e.what());
    return 1;
  }
}
