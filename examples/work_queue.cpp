// work_queue: competing consumers on a troupe::work_queue. Twelve jobs go to three consumers;
// each job is handled by exactly one of them. Job 7 hits a transient error once and is
// redelivered; job 9 is poison, fails on every attempt and is dead-lettered with its reason.
// The consumers are supervised, so a failing job restarts its consumer in place and the pool
// keeps its size. Everything is counted and checked at the end.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <latch>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include <troupe/troupe.hpp>

using namespace std::chrono_literals;

struct job {
  int id;
};

// What the consumers share: a flaky storage and the record of what was done. It outlives the
// consumers' instances, which a restart rebuilds.
struct shop {
  std::mutex mutex;
  std::map<int, int> attempts;            // job id -> attempts seen
  std::map<int, int> done;                // job id -> times completed
  std::map<std::string, int> per_worker;  // consumer -> jobs completed
  std::latch* finished;                   // one count per job: completed or dead-lettered
};

class worker {
 public:
  worker(std::string name, shop* s) : name_(std::move(name)), shop_(s) {}

  void on(const job& j) {
    int attempt = 0;
    {
      std::lock_guard lock(shop_->mutex);
      attempt = ++shop_->attempts[j.id];
    }
    if (j.id == 7 && attempt == 1) throw std::runtime_error("job 7: storage busy, try again");
    if (j.id == 9) throw std::runtime_error("job 9: payload cannot be parsed");
    bool first = false;
    {
      std::lock_guard lock(shop_->mutex);
      first = ++shop_->done[j.id] == 1;
      ++shop_->per_worker[name_];
    }
    // A duplicate completion is reported by the checks below, not by a latch counted past zero.
    if (first) shop_->finished->count_down();
  }

 private:
  std::string name_;
  shop* shop_;
};

int main() {
  constexpr int jobs_total = 12;
  std::latch finished(jobs_total);
  shop s;
  s.finished = &finished;

  std::mutex mutex;
  std::vector<std::string> redelivered;  // failed attempts that went back to the queue
  std::vector<std::string> dead;         // items given up on
  int restarts = 0;
  std::latch restarted(4);  // one restart per failed attempt: job 7 once, job 9 three times

  troupe::runtime_options options;
  options.workers = 2;
  options.on_dead_letter = [&](const troupe::dead_letter& d) {
    std::lock_guard lock(mutex);
    if (d.reason == troupe::dead_letter_reason::retries_exhausted) {
      dead.push_back(std::string(to_string(d.reason)) + ": " + d.detail);
      finished.count_down();
    } else {
      redelivered.push_back(std::string(to_string(d.reason)) + ": " + d.detail);
    }
  };
  options.on_supervision = [&](const troupe::supervision_event& e) {
    std::lock_guard lock(mutex);
    if (e.what == troupe::supervision_event::kind::restarted) {
      if (++restarts <= 4) restarted.count_down();  // an extra restart fails the checks below
    }
  };
  options.on_failure = [](const troupe::address&, std::string_view) {};  // counted above
  troupe::runtime rt(options);

  auto jobs = rt.make_queue<job>({.name = "jobs", .max_attempts = 3});
  auto root = rt.spawn<troupe::supervisor>(troupe::one_for_one{.max_restarts = 10, .within = 10s});
  for (const char* name : {"w1", "w2", "w3"}) {
    jobs.add_consumer(troupe::start_child<worker>(root, {.name = name}, std::string(name), &s));
  }
  std::printf("%d jobs pushed to %zu competing consumers (at most 3 attempts each)\n", jobs_total,
              jobs.consumers());
  for (int id = 1; id <= jobs_total; ++id) jobs.push(job{id});

  finished.wait();
  restarted.wait();
  const std::size_t pool = jobs.consumers();
  rt.shutdown();

  bool ok = true;
  int handled_once = 0;
  for (int id = 1; id <= jobs_total; ++id) {
    const int times = s.done.count(id) ? s.done[id] : 0;
    if (id == 9) {
      ok = ok && times == 0;
    } else {
      ok = ok && times == 1;
      handled_once += times == 1 ? 1 : 0;
    }
  }
  std::printf("handled: %d jobs, each by exactly one consumer, exactly once\n", handled_once);

  std::sort(redelivered.begin(), redelivered.end());
  std::printf("failed attempts, redelivered: %zu\n", redelivered.size());
  for (const auto& r : redelivered) std::printf("  %s\n", r.c_str());
  std::printf("dead-lettered: %zu\n", dead.size());
  for (const auto& d : dead) std::printf("  %s\n", d.c_str());
  std::printf("attempts: job 7 %d, job 9 %d\n", s.attempts[7], s.attempts[9]);
  std::printf("consumer restarts by the supervisor: %d; consumers still in the pool: %zu\n",
              restarts, pool);
  std::printf("work split (varies from run to run):");
  for (const auto& [name, n] : s.per_worker) std::printf(" %s %d", name.c_str(), n);
  std::printf("\n");

  const auto c = rt.counters();
  const bool accounted = c.sent == c.handled + c.dead_lettered + c.rejected;
  std::printf("deliveries: %llu sent = %llu handled + %llu dead-lettered: %s\n",
              static_cast<unsigned long long>(c.sent), static_cast<unsigned long long>(c.handled),
              static_cast<unsigned long long>(c.dead_lettered),
              accounted ? "all accounted for" : "MISMATCH");
  ok = ok && accounted && redelivered.size() == 3 && dead.size() == 1 && restarts == 4 &&
       s.attempts[7] == 2 && s.attempts[9] == 3 && pool == 3 && handled_once == jobs_total - 1;
  std::printf("%s\n", ok ? "all checks passed" : "CHECKS FAILED");
  return ok ? 0 : 1;
}
