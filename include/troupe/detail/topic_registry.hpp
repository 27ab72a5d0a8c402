// Internal: subscriptions to dotted subjects, matched through a trie of tokens.
#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <vector>

#include <troupe/detail/fwd.hpp>
#include <troupe/error.hpp>

namespace troupe::detail {

// Splits a subject ("orders.eu.created") or, with `pattern`, a subscription pattern that may use
// `*` (exactly one token) and `>` (one or more trailing tokens, last only) into its tokens.
// Throws error(invalid_subject) for an empty subject or token, or a misplaced wildcard.
inline std::vector<std::string_view> split_subject(std::string_view subject, bool pattern) {
  auto invalid = [&](const char* why) {
    throw error(errc::invalid_subject, "'" + std::string(subject) + "': " + why);
  };
  if (subject.empty()) invalid("empty subject");
  std::vector<std::string_view> tokens;
  std::size_t start = 0;
  for (;;) {
    const std::size_t dot = subject.find('.', start);
    const std::string_view token =
        subject.substr(start, dot == std::string_view::npos ? std::string_view::npos : dot - start);
    if (token.empty()) invalid("empty token");
    for (char ch : token) {
      if (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r') invalid("whitespace in a token");
    }
    const bool wildcard = token == "*" || token == ">";
    if (!wildcard &&
        (token.find('*') != std::string_view::npos || token.find('>') != std::string_view::npos)) {
      invalid("a wildcard must be a whole token");
    }
    if (wildcard && !pattern) invalid("wildcards are for subscriptions, not for publishing");
    tokens.push_back(token);
    if (dot == std::string_view::npos) break;
    if (token == ">") invalid("'>' must be the last token");
    start = dot + 1;
  }
  return tokens;
}

// The offset of an event that was not published on a retained subject.
inline constexpr std::uint64_t no_offset = std::numeric_limits<std::uint64_t>::max();

// The last `capacity` events published on one retained subject, with their offsets.
//
// `mutex` is what makes replay gap- and duplicate-free: a publish holds it from assigning the
// offset until every live subscriber has the event queued, and a replaying subscriber holds it
// from queueing the retained events until it is registered as live. So each offset reaches a
// replaying subscriber exactly once, in order. Lock order: this mutex, then the registry's.
struct retained_log {
  retained_log(const void* type, std::size_t cap, std::string subj)
      : event_type(type), capacity(cap), subject(std::move(subj)) {}

  // Appends under `mutex` (held by the caller); returns the event's offset.
  std::uint64_t append(std::shared_ptr<const void> event) {
    events.push_back(std::move(event));
    if (events.size() > capacity) {
      events.pop_front();
      ++first;
    }
    return next++;
  }

  const void* const event_type;
  const std::size_t capacity;
  const std::string subject;
  std::mutex mutex;
  std::deque<std::shared_ptr<const void>> events;  // offsets [first, next), guarded by mutex
  std::uint64_t first = 0;                         // guarded by mutex
  std::uint64_t next = 0;                          // guarded by mutex
};

// One subscription. Shared between the trie and the subscription handle, so that a publish
// that matched it can finish delivering after it was removed.
struct subscriber_entry {
  // Queues `event` (offset: its place in a retained log, or no_offset) for `target`.
  using deliver_fn = bool (*)(actor_cell* target, const std::shared_ptr<const void>& event,
                              std::uint64_t offset);

  subscriber_entry(actor_cell* c, const void* type, deliver_fn d, std::string g,
                   std::string p) noexcept
      : cell(c), event_type(type), deliver(d), group(std::move(g)), pattern(std::move(p)) {}
  subscriber_entry(const subscriber_entry&) = delete;
  subscriber_entry& operator=(const subscriber_entry&) = delete;
  inline ~subscriber_entry();

  actor_cell* cell;  // retained
  const void* event_type;
  deliver_fn deliver;
  std::string group;  // empty: every event; otherwise one member of the group per event
  std::string pattern;
  std::atomic<bool> active{true};
};

// Where events of one type published on one subject go: the matching subscriptions, plain ones
// and groups (members of one group together), and the subject's retained log if it keeps this
// type. Immutable once built; cached by the registry and shared by concurrent publishes, so a
// publish copies one pointer instead of one per subscriber.
struct route {
  std::vector<std::shared_ptr<subscriber_entry>> plain;
  std::vector<std::vector<std::shared_ptr<subscriber_entry>>> groups;
  std::shared_ptr<retained_log> log;
  std::uint64_t version = 0;  // the registry's version it was built from
  [[nodiscard]] bool empty() const noexcept { return plain.empty() && groups.empty(); }
};

class topic_registry {
 public:
  using entry_ptr = std::shared_ptr<subscriber_entry>;

  void add(const entry_ptr& entry) {
    const auto tokens = split_subject(entry->pattern, true);
    route_cache stale;  // destroyed after the locks are released (see invalidate)
    std::unique_lock lock(mutex_);
    node* n = &root_;
    for (std::string_view token : tokens) n = n->child(token);
    n->subscribers.push_back(entry);
    ++count_;
    invalidate(stale);
  }

  void remove(const entry_ptr& entry) {
    entry->active.store(false, std::memory_order_release);
    const auto tokens = split_subject(entry->pattern, true);
    route_cache stale;  // destroyed after the locks are released (see invalidate)
    std::unique_lock lock(mutex_);
    node* n = &root_;
    for (std::string_view token : tokens) {
      n = n->find(token);
      if (n == nullptr) return;
    }
    auto& subs = n->subscribers;
    for (auto it = subs.begin(); it != subs.end(); ++it) {
      if (*it == entry) {
        subs.erase(it);
        --count_;
        invalidate(stale);
        return;
      }
    }
  }

  [[nodiscard]] bool empty() const noexcept {
    std::shared_lock lock(mutex_);
    return count_ == 0;
  }

  // Makes `subject` keep its last `capacity` events of type `event_type`; returns its log (the
  // existing one when the same retention was asked for before). Throws error(invalid_subject)
  // for a malformed or wildcard subject, error(retention_conflict) if the subject already keeps
  // another event type or another number of events.
  std::shared_ptr<retained_log> retain(std::string_view subject, const void* event_type,
                                       std::size_t capacity) {
    split_subject(subject, false);
    if (capacity == 0) {
      throw error(errc::retention_conflict,
                  "'" + std::string(subject) + "': a retained topic must keep at least 1 event");
    }
    route_cache stale;  // destroyed after the locks are released (see invalidate)
    std::unique_lock lock(mutex_);
    auto it = logs_.find(subject);
    if (it != logs_.end()) {
      if (it->second->event_type != event_type || it->second->capacity != capacity) {
        throw error(errc::retention_conflict,
                    "'" + std::string(subject) +
                        "' is already retained with another event type or capacity");
      }
      return it->second;
    }
    auto log = std::make_shared<retained_log>(event_type, capacity, std::string(subject));
    logs_.emplace(std::string(subject), log);
    invalidate(stale);
    return log;
  }

  // The log of `subject` if it retains events of `event_type`, else null.
  [[nodiscard]] std::shared_ptr<retained_log> find_log(std::string_view subject,
                                                       const void* event_type) const {
    std::shared_lock lock(mutex_);
    return find_log_locked(subject, event_type);
  }

  // Where an event of `event_type` published on `subject` goes. Served from a cache while no
  // subscription or retention has changed since the route was built (a version check), else
  // built from the trie. Throws error(invalid_subject) for a malformed subject (a cached
  // subject was validated when its route was built).
  [[nodiscard]] std::shared_ptr<const route> route_for(std::string_view subject,
                                                       const void* event_type) {
    {
      std::shared_lock lock(cache_mutex_);
      auto it = cache_.find(subject);
      if (it != cache_.end()) {
        for (const auto& [type, r] : it->second) {
          if (type == event_type && r->version == version_.load(std::memory_order_seq_cst)) {
            return r;
          }
        }
      }
    }
    const auto tokens = split_subject(subject, false);
    auto built = std::make_shared<route>();
    {
      std::shared_lock lock(mutex_);
      built->version = version_.load(std::memory_order_seq_cst);
      std::vector<entry_ptr> matched;
      walk(root_, tokens, 0, event_type, matched);
      for (std::size_t i = 0; i < matched.size(); ++i) {
        entry_ptr& e = matched[i];
        if (!e) continue;  // taken into a group already
        if (e->group.empty()) {
          built->plain.push_back(std::move(e));
          continue;
        }
        std::vector<entry_ptr> members;
        const std::string& g = e->group;
        for (std::size_t k = i + 1; k < matched.size(); ++k) {
          if (matched[k] && matched[k]->group == g) members.push_back(std::move(matched[k]));
        }
        members.insert(members.begin(), std::move(e));
        built->groups.push_back(std::move(members));
      }
      built->log = find_log_locked(subject, event_type);
    }
    std::shared_ptr<const route> result = std::move(built);
    route_cache evicted;  // destroyed after the lock is released (see invalidate)
    {
      std::unique_lock lock(cache_mutex_);
      // A route that went stale while it was built is not cached: invalidate() has already
      // emptied the cache, and must not find this route's subscriptions left behind in it.
      if (result->version != version_.load(std::memory_order_seq_cst)) return result;
      if (cache_.size() >= max_cached_subjects)
        evicted.swap(cache_);  // bounded: subjects may be many
      auto& slots = cache_[std::string(subject)];
      bool replaced = false;
      for (auto& [type, r] : slots) {
        if (type == event_type) {
          if (r->version <= result->version) r = result;
          replaced = true;
        }
      }
      if (!replaced) slots.emplace_back(event_type, result);
    }
    return result;
  }

  // Spreads a group's events over its members.
  std::uint64_t next_turn() noexcept { return turn_.fetch_add(1, std::memory_order_relaxed); }

 private:
  struct node {
    std::map<std::string, std::unique_ptr<node>, std::less<>> children;
    std::unique_ptr<node> one;   // '*'
    std::unique_ptr<node> rest;  // '>'
    std::vector<entry_ptr> subscribers;

    node* child(std::string_view token) {
      std::unique_ptr<node>* slot = nullptr;
      if (token == "*") {
        slot = &one;
      } else if (token == ">") {
        slot = &rest;
      } else {
        auto it = children.find(token);
        if (it == children.end()) it = children.emplace(std::string(token), nullptr).first;
        slot = &it->second;
      }
      if (!*slot) *slot = std::make_unique<node>();
      return slot->get();
    }
    node* find(std::string_view token) const {
      if (token == "*") return one.get();
      if (token == ">") return rest.get();
      auto it = children.find(token);
      return it == children.end() ? nullptr : it->second.get();
    }
  };

  static void collect(const node& n, const void* event_type, std::vector<entry_ptr>& out) {
    for (const auto& e : n.subscribers) {
      if (e->event_type == event_type && e->active.load(std::memory_order_acquire)) {
        out.push_back(e);
      }
    }
  }

  static void walk(const node& n, const std::vector<std::string_view>& tokens, std::size_t i,
                   const void* event_type, std::vector<entry_ptr>& out) {
    if (i == tokens.size()) {
      collect(n, event_type, out);
      return;
    }
    if (n.rest) collect(*n.rest, event_type, out);  // '>' takes all remaining (at least one)
    if (n.one) walk(*n.one, tokens, i + 1, event_type, out);
    auto it = n.children.find(tokens[i]);
    if (it != n.children.end()) walk(*it->second, tokens, i + 1, event_type, out);
  }

  using route_cache =
      std::map<std::string, std::vector<std::pair<const void*, std::shared_ptr<const route>>>,
               std::less<>>;

  // Under mutex_ (exclusive): every cached route is stale now. They are moved out into `stale`
  // rather than kept until overwritten, because a route holds its subscriptions, which hold
  // their actors, which hold the runtime: a stale route left in the cache would keep an
  // unsubscribed actor, and so the runtime, alive. The caller destroys `stale` after releasing
  // the locks: destroying the last reference to an actor runs its destructor, which may
  // unsubscribe and so take these locks again.
  void invalidate(route_cache& stale) {
    version_.fetch_add(1, std::memory_order_seq_cst);
    std::unique_lock lock(cache_mutex_);
    stale.swap(cache_);
  }

  std::shared_ptr<retained_log> find_log_locked(std::string_view subject,
                                                const void* event_type) const {
    auto it = logs_.find(subject);
    if (it == logs_.end() || it->second->event_type != event_type) return nullptr;
    return it->second;
  }

  static constexpr std::size_t max_cached_subjects = 4096;

  mutable std::shared_mutex mutex_;
  node root_;
  std::size_t count_ = 0;
  std::map<std::string, std::shared_ptr<retained_log>, std::less<>> logs_;  // guarded by mutex_
  // Bumped (under mutex_) by every change a route depends on: subscribe, unsubscribe, retain.
  std::atomic<std::uint64_t> version_{0};
  // Routes by subject, then event type; a route is current while its version is version_.
  std::shared_mutex cache_mutex_;
  route_cache cache_;  // guarded by cache_mutex_
  std::atomic<std::uint64_t> turn_{0};
};

}  // namespace troupe::detail
