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
#include <troupe/detail/subject.hpp>
#include <troupe/error.hpp>

namespace troupe::detail {

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

// What a subscription that feeds something other than an actor hands its events to (a keyed
// queue's topic feed, troupe/keyed.hpp). take() runs on the publishing thread; it may throw,
// and the publish then throws.
struct event_sink {
  virtual ~event_sink() = default;
  // Takes `event` (of the subscription's event type); false if it was not accepted.
  virtual bool take(const std::shared_ptr<const void>& event, std::uint64_t offset) = 0;
};

// One subscription. Shared between the trie and the subscription handle, so that a publish
// that matched it can finish delivering after it was removed.
struct subscriber_entry {
  // Queues `event` (offset: its place in a retained log, or no_offset; subject: the one it was
  // published on) for the entry's actor (or hands it to its sink).
  using deliver_fn = bool (*)(const subscriber_entry& entry,
                              const std::shared_ptr<const void>& event, std::uint64_t offset,
                              std::string_view subject);

  subscriber_entry(actor_cell* c, const void* type, deliver_fn d, std::string g,
                   std::string p) noexcept
      : cell(c), event_type(type), deliver(d), group(std::move(g)), pattern(std::move(p)) {}
  // A subscription feeding `s` (never in a group).
  subscriber_entry(runtime_core* c, std::shared_ptr<event_sink> s, const void* type, deliver_fn d,
                   std::string p) noexcept
      : cell(nullptr),
        sink_core(c),
        sink(std::move(s)),
        event_type(type),
        deliver(d),
        pattern(std::move(p)) {}
  subscriber_entry(const subscriber_entry&) = delete;
  subscriber_entry& operator=(const subscriber_entry&) = delete;
  inline ~subscriber_entry();

  actor_cell* cell;                   // retained; null for a sink's subscription
  runtime_core* sink_core = nullptr;  // a sink's subscription: the runtime it is registered in
  std::shared_ptr<event_sink> sink;   // a sink's subscription: what takes the events
  const void* event_type;
  deliver_fn deliver;
  std::string group;  // empty: every event; otherwise one member of the group per event
  std::string pattern;
  std::atomic<bool> active{true};
  // Its index in its trie node's subscriber list (so unsubscribing takes no scan); `unplaced`
  // while not registered. Guarded by the registry's mutex.
  static constexpr std::size_t unplaced = std::numeric_limits<std::size_t>::max();
  std::size_t slot = unplaced;
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

// The subscriptions of one runtime, in a trie of tokens, and a cache of routes by subject.
//
// Every walk over a trie (matching, invalidating, tearing down) is iterative: a subject's depth
// costs heap, not stack. Unsubscribing removes the entry by its slot (swap with the last, so
// the order of one node's subscribers is not kept: nothing promises it) and frees the nodes it
// leaves empty, so memory returns to where it was.
class topic_registry {
 public:
  using entry_ptr = std::shared_ptr<subscriber_entry>;

  topic_registry() = default;
  // `limits`: what split_subject enforces (subject_limits::unlimited() in tests of deep tries).
  explicit topic_registry(subject_limits limits) noexcept : limits_(limits) {}
  topic_registry(const topic_registry&) = delete;
  topic_registry& operator=(const topic_registry&) = delete;

  // Registers `entry` under its pattern. Throws error(invalid_subject) for a malformed pattern.
  void add(const entry_ptr& entry) {
    const auto tokens = split_subject(entry->pattern, true, limits_);
    stale_routes stale;  // destroyed after the locks are released (see invalidate)
    std::unique_lock lock(mutex_);
    node* n = &root_;
    for (std::string_view token : tokens) n = child(*n, token);
    entry->slot = n->subscribers.size();
    n->subscribers.push_back(entry);
    ++count_;
    invalidate(tokens, stale);
  }

  // Unregisters `entry` (a no-op if it is not registered): O(tokens), whatever the number of
  // subscribers on its pattern, and frees the trie nodes it leaves unused.
  void remove(const entry_ptr& entry) {
    entry->active.store(false, std::memory_order_release);
    const auto tokens = split_subject(entry->pattern, true, limits_);
    std::vector<node*> path;  // path[i]: the node of tokens[0, i)
    path.reserve(tokens.size() + 1);
    stale_routes stale;  // destroyed after the locks are released (see invalidate)
    std::unique_lock lock(mutex_);
    path.push_back(&root_);
    for (std::string_view token : tokens) {
      node* next = find(*path.back(), token);
      if (next == nullptr) return;
      path.push_back(next);
    }
    auto& subs = path.back()->subscribers;
    const std::size_t slot = entry->slot;
    if (slot >= subs.size() || subs[slot] != entry) return;
    if (slot + 1 != subs.size()) {
      subs[slot] = std::move(subs.back());
      subs[slot]->slot = slot;
    }
    subs.pop_back();  // the caller still holds `entry`: it is not destroyed under the lock
    entry->slot = subscriber_entry::unplaced;
    --count_;
    prune(path, tokens);
    invalidate(tokens, stale);
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
    const auto tokens = split_subject(subject, false, limits_);
    if (capacity == 0) {
      throw error(errc::retention_conflict,
                  quote_subject(subject) + ": a retained topic must keep at least 1 event");
    }
    stale_routes stale;  // destroyed after the locks are released (see invalidate)
    std::unique_lock lock(mutex_);
    auto it = logs_.find(subject);
    if (it != logs_.end()) {
      if (it->second->event_type != event_type || it->second->capacity != capacity) {
        throw error(
            errc::retention_conflict,
            quote_subject(subject) + " is already retained with another event type or capacity");
      }
      return it->second;
    }
    auto log = std::make_shared<retained_log>(event_type, capacity, std::string(subject));
    logs_.emplace(std::string(subject), log);
    invalidate(tokens, stale);
    return log;
  }

  // The log of `subject` if it retains events of `event_type`, else null.
  [[nodiscard]] std::shared_ptr<retained_log> find_log(std::string_view subject,
                                                       const void* event_type) const {
    std::shared_lock lock(mutex_);
    return find_log_locked(subject, event_type);
  }

  // Where an event of `event_type` published on `subject` goes. Served from the cache, which
  // holds only current routes (a change drops the routes it affects), else built from the trie
  // and cached. Throws error(invalid_subject) for a malformed subject (a cached subject was
  // validated when its route was built).
  [[nodiscard]] std::shared_ptr<const route> route_for(std::string_view subject,
                                                       const void* event_type) {
    {
      std::shared_lock lock(cache_mutex_);
      if (const cache_node* c = find_cached(subject)) {
        for (const auto& [type, r] : c->routes) {
          if (type == event_type) return r;
        }
      }
    }
    const auto tokens = split_subject(subject, false, limits_);
    auto built = std::make_shared<route>();
    {
      std::shared_lock lock(mutex_);
      built->version = version_.load(std::memory_order_seq_cst);
      std::vector<entry_ptr> matched;
      match(tokens, event_type, matched);
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
    cache_node evicted;  // destroyed after the lock is released (see invalidate)
    {
      std::unique_lock lock(cache_mutex_);
      // A route that went stale while it was built is not cached: the change that made it
      // stale has already dropped what it affects, and must not find this route left behind.
      if (result->version != version_.load(std::memory_order_seq_cst)) return result;
      if (cached_subjects_ >= max_cached_subjects) {  // bounded: subjects may be many
        cache_root_.take_all(evicted);
        cached_subjects_ = 0;
      }
      cache_node* c = &cache_root_;
      for (std::string_view token : tokens) {
        auto it = c->children.find(token);
        if (it == c->children.end()) {
          it = c->children.emplace(std::string(token), std::make_unique<cache_node>()).first;
          it->second->parent = c;
          it->second->key = it->first;
        }
        c = it->second.get();
      }
      if (c->routes.empty()) ++cached_subjects_;
      bool replaced = false;
      for (auto& [type, r] : c->routes) {
        if (type == event_type) {
          r = result;  // both current: the newer is as good
          replaced = true;
        }
      }
      if (!replaced) c->routes.emplace_back(event_type, result);
    }
    return result;
  }

  // Spreads a group's events over its members.
  std::uint64_t next_turn() noexcept { return turn_.fetch_add(1, std::memory_order_relaxed); }

  // For tests: trie nodes below the root (subscriptions), and subjects with cached routes.
  [[nodiscard]] std::size_t node_count() const {
    std::shared_lock lock(mutex_);
    return nodes_;
  }
  [[nodiscard]] std::size_t cached_subjects() const {
    std::shared_lock lock(cache_mutex_);
    return cached_subjects_;
  }

 private:
  struct node {
    std::map<std::string, std::unique_ptr<node>, std::less<>> children;
    std::unique_ptr<node> one;   // '*'
    std::unique_ptr<node> rest;  // '>'
    std::vector<entry_ptr> subscribers;

    node() = default;
    node(const node&) = delete;
    node& operator=(const node&) = delete;
    ~node() { dismantle_below(*this); }
    [[nodiscard]] bool unused() const noexcept {
      return subscribers.empty() && children.empty() && !one && !rest;
    }
    void take_children(std::vector<std::unique_ptr<node>>& out) {
      for (auto& [token, c] : children) out.push_back(std::move(c));
      children.clear();
      if (one) out.push_back(std::move(one));
      if (rest) out.push_back(std::move(rest));
    }
  };

  // A node of the route cache: one per token of a cached subject; `routes` by event type.
  struct cache_node {
    std::map<std::string, std::unique_ptr<cache_node>, std::less<>> children;
    cache_node* parent = nullptr;
    std::string_view key;  // its key in parent->children (a map key: stable)
    std::vector<std::pair<const void*, std::shared_ptr<const route>>> routes;

    cache_node() = default;
    cache_node(const cache_node&) = delete;
    cache_node& operator=(const cache_node&) = delete;
    ~cache_node() { dismantle_below(*this); }
    void take_children(std::vector<std::unique_ptr<cache_node>>& out) {
      for (auto& [token, c] : children) out.push_back(std::move(c));
      children.clear();
    }
    // Moves everything below this node into `to` (whose destructor frees it).
    void take_all(cache_node& to) noexcept {
      to.children.swap(children);
      to.routes.swap(routes);
    }
  };

  // Routes dropped from the cache; destroyed once the locks are released.
  using stale_routes = std::vector<std::shared_ptr<const route>>;

  // Under mutex_ (exclusive).
  node* child(node& n, std::string_view token) {
    if (node* existing = find(n, token)) return existing;
    auto made = std::make_unique<node>();
    node* result = made.get();
    if (token == "*") {
      n.one = std::move(made);
    } else if (token == ">") {
      n.rest = std::move(made);
    } else {
      n.children.emplace(std::string(token), std::move(made));
    }
    ++nodes_;
    return result;
  }
  static node* find(const node& n, std::string_view token) {
    if (token == "*") return n.one.get();
    if (token == ">") return n.rest.get();
    auto it = n.children.find(token);
    return it == n.children.end() ? nullptr : it->second.get();
  }

  // Under mutex_ (exclusive): frees the nodes of `path` (see remove) that are left unused, from
  // the deepest up.
  void prune(const std::vector<node*>& path, const std::vector<std::string_view>& tokens) {
    for (std::size_t i = tokens.size(); i > 0; --i) {
      if (!path[i]->unused()) return;
      node& parent = *path[i - 1];
      const std::string_view token = tokens[i - 1];
      if (token == "*") {
        parent.one.reset();
      } else if (token == ">") {
        parent.rest.reset();
      } else {
        parent.children.erase(parent.children.find(token));
      }
      --nodes_;
    }
  }

  static void collect(const node& n, const void* event_type, std::vector<entry_ptr>& out) {
    for (const auto& e : n.subscribers) {
      if (e->event_type == event_type && e->active.load(std::memory_order_acquire)) {
        out.push_back(e);
      }
    }
  }

  // Under mutex_ (shared): the subscriptions whose pattern matches the subject `tokens`, depth
  // first: at each level '>' first, then the '*' branch, then the literal one.
  void match(const std::vector<std::string_view>& tokens, const void* event_type,
             std::vector<entry_ptr>& out) const {
    struct frame {
      const node* n;
      std::size_t i;  // tokens matched so far
    };
    std::vector<frame> pending{{&root_, 0}};
    while (!pending.empty()) {
      const frame f = pending.back();
      pending.pop_back();
      if (f.i == tokens.size()) {
        collect(*f.n, event_type, out);
        continue;
      }
      if (f.n->rest) collect(*f.n->rest, event_type, out);  // '>': all remaining (at least one)
      auto it = f.n->children.find(tokens[f.i]);
      if (it != f.n->children.end()) pending.push_back({it->second.get(), f.i + 1});
      if (f.n->one) pending.push_back({f.n->one.get(), f.i + 1});  // popped first
    }
  }

  // Under cache_mutex_: the cache node of `subject`, or null.
  const cache_node* find_cached(std::string_view subject) const {
    const cache_node* c = &cache_root_;
    std::size_t start = 0;
    for (;;) {
      const std::size_t dot = subject.find('.', start);
      auto it = c->children.find(subject.substr(
          start, dot == std::string_view::npos ? std::string_view::npos : dot - start));
      if (it == c->children.end()) return nullptr;
      c = it->second.get();
      if (dot == std::string_view::npos) return c;
      start = dot + 1;
    }
  }

  // Under mutex_ (exclusive): the subscription or retention of `pattern` (a subject, for a
  // retention) changed, so every cached route of a subject it matches is stale: those, and
  // only those, are moved out into `stale` and their cache nodes freed. Stale routes are not
  // left to be overwritten because a route holds its subscriptions, which hold their actors,
  // which hold the runtime: one left in the cache would keep an unsubscribed actor, and so the
  // runtime, alive. The caller destroys `stale` after releasing the locks: destroying the last
  // reference to an actor runs its destructor, which may unsubscribe and so take them again.
  void invalidate(const std::vector<std::string_view>& pattern, stale_routes& stale) {
    std::unique_lock lock(cache_mutex_);
    version_.fetch_add(1, std::memory_order_seq_cst);
    if (cached_subjects_ == 0) return;
    // Every cache node visited, parents before their children (each is reached once: the
    // path to a node is unique and its depth is the pattern index it is reached with).
    std::vector<cache_node*> visited;
    struct frame {
      cache_node* c;
      std::size_t i;
    };
    std::vector<frame> pending{{&cache_root_, 0}};
    auto drop = [&](cache_node& c) {
      if (c.routes.empty()) return;
      for (auto& slot : c.routes) stale.push_back(std::move(slot.second));
      c.routes.clear();
      --cached_subjects_;
    };
    while (!pending.empty()) {
      const frame f = pending.back();
      pending.pop_back();
      visited.push_back(f.c);
      if (f.i == pattern.size()) {
        drop(*f.c);
        continue;
      }
      const std::string_view token = pattern[f.i];
      if (token == ">") {  // every cached subject below, at any depth
        std::vector<cache_node*> below;
        for (auto& [t, c] : f.c->children) below.push_back(c.get());
        while (!below.empty()) {
          cache_node* c = below.back();
          below.pop_back();
          visited.push_back(c);
          drop(*c);
          for (auto& [t, grandchild] : c->children) below.push_back(grandchild.get());
        }
      } else if (token == "*") {
        for (auto& [t, c] : f.c->children) pending.push_back({c.get(), f.i + 1});
      } else if (auto it = f.c->children.find(token); it != f.c->children.end()) {
        pending.push_back({it->second.get(), f.i + 1});
      }
    }
    // Children before parents: a node left with no routes and no children goes.
    for (auto it = visited.rbegin(); it != visited.rend(); ++it) {
      cache_node* c = *it;
      if (c == &cache_root_ || !c->routes.empty() || !c->children.empty()) continue;
      auto& siblings = c->parent->children;
      siblings.erase(siblings.find(c->key));
    }
  }

  std::shared_ptr<retained_log> find_log_locked(std::string_view subject,
                                                const void* event_type) const {
    auto it = logs_.find(subject);
    if (it == logs_.end() || it->second->event_type != event_type) return nullptr;
    return it->second;
  }

  static constexpr std::size_t max_cached_subjects = 4096;

  const subject_limits limits_{};
  mutable std::shared_mutex mutex_;
  node root_;              // guarded by mutex_
  std::size_t nodes_ = 0;  // below root_; guarded by mutex_
  std::size_t count_ = 0;  // subscriptions; guarded by mutex_
  std::map<std::string, std::shared_ptr<retained_log>, std::less<>> logs_;  // guarded by mutex_
  // Bumped by every change a route depends on (subscribe, unsubscribe, retain), under mutex_
  // and cache_mutex_: a route built before a change is not cached after it.
  std::atomic<std::uint64_t> version_{0};
  // Current routes, by subject (a trie of its tokens, so that a change finds the subjects its
  // pattern matches without a scan), then event type.
  mutable std::shared_mutex cache_mutex_;
  cache_node cache_root_;            // guarded by cache_mutex_
  std::size_t cached_subjects_ = 0;  // guarded by cache_mutex_
  std::atomic<std::uint64_t> turn_{0};
};

}  // namespace troupe::detail
