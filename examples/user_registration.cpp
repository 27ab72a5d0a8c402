// user_registration: an in-process analogue of an event-driven microservice system.
//
// A registration service answers its callers (request-reply) and publishes user.registered.
// Email, analytics and cache services consume the event on their own; the producer knows none
// of them. Halfway through, a CRM service is added — without touching the producer — and
// catches up on the earlier registrations by replaying the retained topic. The email service
// hits an SMTP timeout once: its supervisor restarts it, and it resumes from the offset it had
// committed, so no event is lost and no email is sent twice. At the end: what each service saw,
// the dead letters, the runtime's accounting, and latency percentiles for every hop.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <troupe/troupe.hpp>

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

// ---- messages and events ------------------------------------------------------------------------

struct register_user {  // a request: the reply is a registration
  std::string email;
  std::string name;
  clock_type::time_point sent_at;
};
struct registration {
  bool ok = false;
  std::uint64_t user_id = 0;
  std::string refused_because;
};

struct user_registered {  // the event, on the retained subject "user.registered"
  std::uint64_t user_id;
  std::string email;
  std::string name;
  clock_type::time_point published_at;
};

struct lookup {  // asks the cache
  std::string email;
};
struct wait_until_seen {  // asks a consumer to reply once it has handled `count` users
  std::size_t count;
};
struct catch_up {};       // tells the CRM service to subscribe, replaying from the oldest event
struct domain_counts {};  // asks analytics for sign-ups per email domain

// ---- latency per hop ----------------------------------------------------------------------------

// One histogram per hop; latency_histogram records lock-free from any thread.
struct hops {
  troupe::latency_histogram request;       // caller -> registration handler starts
  troupe::latency_histogram round_trip;    // caller's ask -> reply in the caller's hands
  troupe::latency_histogram to_email;      // publish -> email handler starts
  troupe::latency_histogram to_analytics;  // publish -> analytics handler starts
  troupe::latency_histogram to_cache;      // publish -> cache handler starts
  troupe::latency_histogram to_crm;        // publish -> CRM handler starts (live events only)
};

void record_since(troupe::latency_histogram& h, clock_type::time_point since) {
  h.record(std::chrono::duration_cast<std::chrono::nanoseconds>(clock_type::now() - since));
}

// A consumer that replies to wait_until_seen once it has seen enough users (a deferred reply).
class completion {
 public:
  void waiting(std::size_t count, troupe::promise<std::size_t> reply, std::size_t seen) {
    waiters_.push_back({count, std::move(reply)});
    seen_now(seen);
  }
  void seen_now(std::size_t seen) {
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
    std::size_t count;
    troupe::promise<std::size_t> reply;
  };
  std::vector<waiter> waiters_;
};

// ---- the producer -------------------------------------------------------------------------------

class registration_service {
 public:
  registration_service(troupe::context& ctx, hops* h) : ctx_(ctx), hops_(h) {}

  registration on(const register_user& r) {
    record_since(hops_->request, r.sent_at);
    if (r.email.find('@') == std::string::npos) return {false, 0, "not an email address"};
    if (by_email_.contains(r.email)) return {false, 0, "already registered"};
    const std::uint64_t id = ++last_id_;
    by_email_[r.email] = id;
    ctx_.publish("user.registered", user_registered{id, r.email, r.name, clock_type::now()});
    return {true, id, {}};
  }

 private:
  troupe::context& ctx_;
  hops* hops_;
  std::map<std::string, std::uint64_t> by_email_;
  std::uint64_t last_id_ = 0;
};

// ---- the consumers ------------------------------------------------------------------------------

// What the email service keeps across restarts: its committed offset (like a consumer group's
// offset in a broker), and what it did.
struct mail_outbox {
  std::uint64_t next_offset = 0;  // the first event not yet emailed
  std::size_t sent = 0;
  std::size_t duplicates_skipped = 0;
  bool smtp_failed_once = false;
  std::optional<std::uint64_t> failed_offset;
};

// Subscribes itself, from its committed offset, each time it starts — so after a restart it
// replays what the failed instance never finished. Events that the old subscription had already
// queued arrive too: they are recognised by offset and skipped (idempotent).
class email_service {
 public:
  email_service(troupe::context& ctx, mail_outbox* outbox, hops* h)
      : ctx_(ctx), outbox_(outbox), hops_(h) {}

  void on_start() {
    subscription_ =
        ctx_.runtime().subscribe<user_registered>("user.registered", ctx_.self_as<email_service>(),
                                                  troupe::replay::from(outbox_->next_offset));
  }

  void on(const troupe::retained<user_registered>& r) {
    // Exactly the next offset, or a copy: events the failed instance's subscription had queued
    // arrive before this instance's replay, which brings every offset from the commit again.
    if (r.offset != outbox_->next_offset) {
      ++outbox_->duplicates_skipped;
      return;
    }
    if (r.event.user_id == 7 && !outbox_->smtp_failed_once) {
      outbox_->smtp_failed_once = true;
      outbox_->failed_offset = r.offset;
      throw std::runtime_error("SMTP timeout sending to " + r.event.email);
    }
    record_since(hops_->to_email, r.event.published_at);
    ++outbox_->sent;                      // "sends" the welcome email
    outbox_->next_offset = r.offset + 1;  // commit
    done_.seen_now(outbox_->sent);
  }

  void on(wait_until_seen w, troupe::promise<std::size_t> reply) {
    done_.waiting(w.count, std::move(reply), outbox_->sent);
  }

 private:
  troupe::context& ctx_;
  mail_outbox* outbox_;
  hops* hops_;
  troupe::subscription subscription_;
  completion done_;
};

class analytics_service {
 public:
  explicit analytics_service(hops* h) : hops_(h) {}
  void on(const user_registered& e) {
    record_since(hops_->to_analytics, e.published_at);
    ++signups_;
    const auto at = e.email.find('@');
    ++by_domain_[e.email.substr(at + 1)];
    done_.seen_now(signups_);
  }
  void on(wait_until_seen w, troupe::promise<std::size_t> reply) {
    done_.waiting(w.count, std::move(reply), signups_);
  }
  std::map<std::string, std::size_t> on(domain_counts) const { return by_domain_; }

 private:
  hops* hops_;
  std::size_t signups_ = 0;
  std::map<std::string, std::size_t> by_domain_;
  completion done_;
};

class cache_service {
 public:
  explicit cache_service(hops* h) : hops_(h) {}
  void on(const user_registered& e) {
    record_since(hops_->to_cache, e.published_at);
    users_[e.email] = e.user_id;
    done_.seen_now(users_.size());
  }
  std::uint64_t on(const lookup& l) const {
    auto it = users_.find(l.email);
    return it == users_.end() ? 0 : it->second;
  }
  void on(wait_until_seen w, troupe::promise<std::size_t> reply) {
    done_.waiting(w.count, std::move(reply), users_.size());
  }

 private:
  hops* hops_;
  std::map<std::string, std::uint64_t> users_;
  completion done_;
};

// Added while the system runs: subscribes on request, replaying everything retained.
class crm_service {
 public:
  crm_service(troupe::context& ctx, troupe::retained_topic<user_registered> topic, hops* h)
      : ctx_(ctx), topic_(std::move(topic)), hops_(h) {}

  // Replies with the number of events that were replayed rather than received live.
  std::uint64_t on(catch_up) {
    subscription_ = ctx_.runtime().subscribe<user_registered>(
        topic_.subject(), ctx_.self_as<crm_service>(), troupe::replay::oldest());
    live_from_ = topic_.window().next;  // the producer is idle now (its callers wait for us)
    return live_from_;
  }
  void on(const troupe::retained<user_registered>& r) {
    if (r.offset >= live_from_) record_since(hops_->to_crm, r.event.published_at);
    ++contacts_;
    done_.seen_now(contacts_);
  }
  void on(wait_until_seen w, troupe::promise<std::size_t> reply) {
    done_.waiting(w.count, std::move(reply), contacts_);
  }

 private:
  troupe::context& ctx_;
  troupe::retained_topic<user_registered> topic_;
  hops* hops_;
  troupe::subscription subscription_;
  std::uint64_t live_from_ = 0;
  std::size_t contacts_ = 0;
  completion done_;
};

// ---- the run ------------------------------------------------------------------------------------

std::string fmt_ns(std::chrono::nanoseconds ns) {
  char buf[32];
  const auto v = static_cast<double>(ns.count());
  if (v < 1e3) {
    std::snprintf(buf, sizeof buf, "%.0f ns", v);
  } else if (v < 1e6) {
    std::snprintf(buf, sizeof buf, "%.1f us", v / 1e3);
  } else {
    std::snprintf(buf, sizeof buf, "%.2f ms", v / 1e6);
  }
  return buf;
}

void print_hop(const char* name, const troupe::latency_histogram& h) {
  std::printf("  %-34s %6llu %10s %10s %10s %10s\n", name,
              static_cast<unsigned long long>(h.count()), fmt_ns(h.percentile(50)).c_str(),
              fmt_ns(h.percentile(90)).c_str(), fmt_ns(h.percentile(99)).c_str(),
              fmt_ns(h.max()).c_str());
}

int main() {
  constexpr std::size_t phase_users = 100;  // before and after the CRM joins

  std::mutex log_mutex;
  std::vector<troupe::dead_letter> dead;
  std::size_t restarts = 0;
  troupe::runtime_options options;
  options.on_dead_letter = [&](const troupe::dead_letter& d) {
    std::lock_guard lock(log_mutex);
    dead.push_back(d);
  };
  options.on_failure = [](const troupe::address&, std::string_view) {};  // the supervisor acts
  options.on_supervision = [&](const troupe::supervision_event& e) {
    std::lock_guard lock(log_mutex);
    if (e.what == troupe::supervision_event::kind::restarted) ++restarts;
  };
  troupe::runtime rt(options);

  hops h;
  mail_outbox outbox;
  // The producer's subject keeps its last 10,000 events, so late consumers can catch up.
  auto topic = rt.retain<user_registered>("user.registered", 10'000);

  auto root = rt.spawn<troupe::supervisor>(troupe::one_for_one{.max_restarts = 3, .within = 10s});
  auto registrar = troupe::start_child<registration_service>(root, {.name = "registration"}, &h);
  auto email = troupe::start_child<email_service>(root, {.name = "email"}, &outbox, &h);
  auto analytics = troupe::start_child<analytics_service>(root, {.name = "analytics"}, &h);
  auto cache = troupe::start_child<cache_service>(root, {.name = "cache"}, &h);
  auto analytics_sub = rt.subscribe<user_registered>("user.*", analytics);  // any user event
  auto cache_sub = rt.subscribe<user_registered>("user.registered", cache);

  std::size_t registered = 0;
  std::size_t refused = 0;
  auto register_one = [&](const std::string& email, const std::string& name) {
    const auto t0 = clock_type::now();
    const registration r = registrar.ask(register_user{email, name, t0}).get();
    record_since(h.round_trip, t0);
    (r.ok ? registered : refused) += 1;
  };
  auto user = [](std::size_t i) {
    static const char* const domains[] = {"example.org", "example.com", "troupe.dev"};
    return "user" + std::to_string(i) + "@" + domains[i % 3];
  };

  std::printf("troupe user_registration: services as actors, events on a retained topic\n");
  for (std::size_t i = 1; i <= phase_users; ++i) register_one(user(i), "User " + std::to_string(i));
  register_one(user(3), "User 3 again");   // refused: already registered
  register_one("not-an-email", "Nobody");  // refused: invalid

  // A new consumer joins; the producer does not change.
  auto crm = troupe::start_child<crm_service>(root, {.name = "crm"}, topic, &h);
  const std::uint64_t replayed = crm.ask(catch_up{}).get();

  for (std::size_t i = phase_users + 1; i <= 2 * phase_users; ++i) {
    register_one(user(i), "User " + std::to_string(i));
  }

  const std::size_t n = registered;
  const std::size_t emailed = email.ask(wait_until_seen{n}).get();
  const std::size_t counted = analytics.ask(wait_until_seen{n}).get();
  const std::size_t cached = cache.ask(wait_until_seen{n}).get();
  const std::size_t contacts = crm.ask(wait_until_seen{n}).get();
  const auto domains = analytics.ask(domain_counts{}).get();
  const std::uint64_t ada_id = cache.ask(lookup{user(42)}).get();

  std::printf("registration: %zu users registered, %zu refused (duplicate or invalid)\n",
              registered, refused);
  std::printf("user.registered: offsets [%llu, %llu) retained\n",
              static_cast<unsigned long long>(topic.window().first),
              static_cast<unsigned long long>(topic.window().next));
  std::printf(
      "email: %zu welcome emails; failed once at offset %llu (SMTP timeout), restarted "
      "%zu time(s) by its supervisor, resumed from its committed offset: %zu lost, %zu "
      "duplicate(s) skipped\n",
      emailed, static_cast<unsigned long long>(outbox.failed_offset.value_or(0)), restarts,
      n - outbox.sent, outbox.duplicates_skipped);
  std::printf("analytics: %zu sign-ups;", counted);
  for (const auto& [domain, count] : domains) std::printf(" %s %zu", domain.c_str(), count);
  std::printf("\n");
  std::printf("cache: %zu users; lookup %s -> user %llu\n", cached, user(42).c_str(),
              static_cast<unsigned long long>(ada_id));
  std::printf("crm (added later): %zu contacts, %llu caught up by replay, %llu live\n", contacts,
              static_cast<unsigned long long>(replayed),
              static_cast<unsigned long long>(contacts - replayed));

  root.ask(troupe::stop_tree{}).get();
  rt.shutdown();
  const auto c = rt.counters();
  std::printf("dead letters: %zu", dead.size());
  for (const auto& d : dead) {
    std::printf(" [%s: %s]", std::string(to_string(d.reason)).c_str(), d.detail.c_str());
  }
  std::printf("\naccounting: sent %llu = handled %llu + dead-lettered %llu + rejected %llu: %s\n",
              static_cast<unsigned long long>(c.sent), static_cast<unsigned long long>(c.handled),
              static_cast<unsigned long long>(c.dead_lettered),
              static_cast<unsigned long long>(c.rejected),
              c.sent == c.handled + c.dead_lettered + c.rejected ? "balanced" : "NOT BALANCED");

  std::printf("latency per hop (this run, this machine):\n");
  std::printf("  %-34s %6s %10s %10s %10s %10s\n", "hop", "count", "p50", "p90", "p99", "max");
  print_hop("caller -> registration", h.request);
  print_hop("ask round trip (caller)", h.round_trip);
  print_hop("user.registered -> email", h.to_email);
  print_hop("user.registered -> analytics", h.to_analytics);
  print_hop("user.registered -> cache", h.to_cache);
  print_hop("user.registered -> crm (live)", h.to_crm);

  const bool ok = emailed == n && counted == n && cached == n && contacts == n &&
                  outbox.sent == n && restarts == 1 && ada_id == 42 &&
                  c.sent == c.handled + c.dead_lettered + c.rejected;
  return ok ? 0 : 1;
}
