// Internal: death watch across processes -- a local actor monitors an actor that another process
// exposes (remote_ref::monitor). Included by troupe/nats/detail/link.hpp.
//
// The protocol, every subject under the node's prefix:
//   <prefix>.node.hb.<token>  each node beats every heartbeat_interval (headers: its token and
//                             its interval), whether or not anyone watches it
//   <prefix>.watch.<name>     a watch request, answered by one process exposing <name> (a queue
//                             group): its node token, its interval, and "alive" or how the actor
//                             stopped
//   <prefix>.down.<name>      the notice a node publishes when an actor it exposes stops
// A monitor ends in down(normal|failed|shutdown) on a notice or an answer that the actor stopped,
// and in down(unreachable) when its node's heartbeats stop for heartbeat_misses x that node's
// interval, when nobody exposes the name (no responders), or when the request goes unanswered
// for as long. Control traffic is not counted in wire_counters (they account for user messages).
//
// Threads: the nats.c callbacks (answers, notices, heartbeats) and the timer task only update the
// table and post down messages to the watchers' mailboxes; no actor code runs on them.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <nats/nats.h>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include <troupe/monitor.hpp>
#include <troupe/runtime.hpp>

namespace troupe::nats::detail {

inline constexpr const char* h_node = "troupe-node";     // the answering / beating node's token
inline constexpr const char* h_beat = "troupe-beat-ms";  // its heartbeat interval
inline constexpr const char* h_down = "troupe-down";     // "alive", or to_string(down_reason)

inline bool parse_down_reason(std::string_view s, down_reason& out) noexcept {
  for (down_reason r : {down_reason::normal, down_reason::failed, down_reason::shutdown,
                        down_reason::unreachable}) {
    if (s == to_string(r)) {
      out = r;
      return true;
    }
  }
  return false;
}

// Publishes a control message (not counted in wire_counters); headers as (key, value) pairs.
inline natsStatus publish_control(
    natsConnection* conn, const std::string& subject, const char* reply, std::string_view payload,
    std::initializer_list<std::pair<const char*, const std::string*>> headers) noexcept {
  natsMsg* m = nullptr;
  natsStatus s =
      natsMsg_Create(&m, subject.c_str(), reply, payload.data(), static_cast<int>(payload.size()));
  if (s != NATS_OK) return s;
  for (const auto& [k, v] : headers) {
    if (s == NATS_OK) s = natsMsgHeader_Set(m, k, v->c_str());
  }
  if (s == NATS_OK) s = natsConnection_PublishMsg(conn, m);
  natsMsg_Destroy(m);
  return s;
}

// The watcher side: this node's monitors of remote actors, and the heartbeats it hears.
class watch_table {
 public:
  using clock = troupe::detail::clock;

  watch_table(troupe::detail::runtime_core* core, std::string prefix, std::string token,
              std::string inbox, std::chrono::milliseconds interval, unsigned misses)
      : core_(core),
        prefix_(std::move(prefix)),
        token_(std::move(token)),
        inbox_(std::move(inbox)),
        interval_(interval),
        misses_(misses == 0 ? 1 : misses),
        interval_text_(std::to_string(interval.count())),
        beat_subject_(prefix_ + ".node.hb." + token_) {}
  watch_table(const watch_table&) = delete;
  watch_table& operator=(const watch_table&) = delete;
  ~watch_table() { close("the node was destroyed"); }

  void attach(natsConnection* conn) noexcept {
    std::lock_guard lock(mutex_);
    conn_ = conn;
  }
  // Also run at every tick, outside the lock (the node's periodic chores); set before arming.
  std::function<void()> on_tick;

  [[nodiscard]] troupe::detail::runtime_core* core() const noexcept { return core_; }
  [[nodiscard]] const std::string& token() const noexcept { return token_; }
  [[nodiscard]] const std::string& interval_text() const noexcept { return interval_text_; }
  [[nodiscard]] std::chrono::milliseconds interval() const noexcept { return interval_; }

  // Registers a monitor of the actor exposed as `name` by `watcher` (retained until its down or
  // unwatch) and sends the watch request; returns the monitor's id. Any thread.
  std::uint64_t watch(troupe::detail::actor_cell* watcher, const std::string& name) {
    const std::uint64_t id = core_->next_monitor_id();
    watcher->retain();
    natsConnection* conn = nullptr;
    {
      std::lock_guard lock(mutex_);
      if (!closed_) {
        monitors_.emplace(id, monitor{watcher, name, {}, {}, core_->now(), {}});
        conn = conn_;
      }
    }
    if (conn == nullptr) {
      fire(watcher, id, down_reason::unreachable, "the node is closed");
      return id;
    }
    const std::string reply = inbox_ + ".w" + std::to_string(id);
    const natsStatus s =
        publish_control(conn, prefix_ + ".watch." + name, reply.c_str(), {}, {{h_node, &token_}});
    if (s != NATS_OK) {
      if (troupe::detail::actor_cell* w = take(id)) {
        fire(w, id, down_reason::unreachable,
             std::string("the watch request could not be sent: ") + natsStatus_GetText(s));
      }
    }
    return id;
  }

  // Cancels a monitor; false if its down was already sent (or it never existed). Any thread.
  bool unwatch(std::uint64_t id) noexcept {
    troupe::detail::actor_cell* w = take(id);
    if (w == nullptr) return false;
    w->release();
    return true;
  }

  // nats.c thread: the answer to watch request `id` (or the server's "no responders").
  void answered(std::uint64_t id, natsMsg* m) noexcept {
    if (natsMsg_IsNoResponders(m)) {
      std::string name;
      if (troupe::detail::actor_cell* w = take(id, &name)) {
        fire(w, id, down_reason::unreachable, "no process exposes '" + name + "'");
      }
      return;
    }
    const std::string node(header_of(m, h_node));
    const std::string_view state = header_of(m, h_down);
    down_reason reason = down_reason::normal;
    if (state != "alive") {
      std::string name;
      if (troupe::detail::actor_cell* w = take(id, &name)) {
        if (!parse_down_reason(state, reason)) reason = down_reason::failed;
        fire(w, id, reason, describe(name, node, reason, payload_of(m)));
      }
      return;
    }
    std::uint64_t beat_ms = 0;
    for (char c : header_of(m, h_beat)) {
      beat_ms = (c >= '0' && c <= '9' && beat_ms < 1'000'000'000) ? beat_ms * 10 + (c - '0') : 0;
    }
    if (beat_ms == 0) beat_ms = static_cast<std::uint64_t>(interval_.count());
    troupe::detail::actor_cell* early_watcher = nullptr;
    std::string early_detail;
    {
      std::lock_guard lock(mutex_);
      auto it = monitors_.find(id);
      if (it == monitors_.end() || node.empty()) return;  // cancelled, or not ours to judge
      monitor& mo = it->second;
      mo.node = node;
      mo.bound =
          std::chrono::duration_cast<clock::duration>(std::chrono::milliseconds(beat_ms) * misses_);
      const auto now = core_->now();
      auto [seen, fresh] = seen_.try_emplace(node, now);
      if (!fresh && seen->second < now) seen->second = now;  // the answer is a sign of life too
      for (const auto& [from, r, text] : mo.early) {
        if (from == node) {  // it stopped while the answer was on its way
          reason = r;
          early_detail = describe(mo.name, node, r, text);
          early_watcher = mo.watcher;
          monitors_.erase(it);
          break;
        }
      }
    }
    if (early_watcher != nullptr) fire(early_watcher, id, reason, early_detail);
  }

  // nats.c thread: a notice that an actor exposed on <prefix>.down.<name> stopped.
  void noticed(natsMsg* m) noexcept {
    const char* subject = natsMsg_GetSubject(m);
    const std::string_view s = subject != nullptr ? subject : "";
    const std::size_t skip = prefix_.size() + 6;  // "<prefix>.down."
    if (s.size() <= skip) return;
    const std::string_view name = s.substr(skip);
    const std::string_view node = header_of(m, h_node);
    down_reason reason = down_reason::normal;
    if (!parse_down_reason(header_of(m, h_down), reason)) reason = down_reason::failed;
    const std::string_view text = payload_of(m);
    std::vector<std::pair<troupe::detail::actor_cell*, std::uint64_t>> due;
    try {
      std::lock_guard lock(mutex_);
      for (auto it = monitors_.begin(); it != monitors_.end();) {
        monitor& mo = it->second;
        if (mo.name != name) {
          ++it;
        } else if (mo.node.empty()) {  // not answered yet: remember, the answer decides
          mo.early.emplace_back(std::string(node), reason, std::string(text));
          ++it;
        } else if (mo.node == node) {
          due.emplace_back(mo.watcher, it->first);
          it = monitors_.erase(it);
        } else {
          ++it;
        }
      }
    } catch (...) {  // out of memory: the monitors fall back on the heartbeats
    }
    for (auto [w, id] : due) {
      fire(w, id, reason, describe(std::string(name), std::string(node), reason, text));
    }
  }

  // nats.c thread: a node's heartbeat.
  void heard(natsMsg* m) noexcept {
    const std::string_view node = header_of(m, h_node);
    std::lock_guard lock(mutex_);
    if (seen_.empty()) return;
    if (auto it = seen_.find(std::string(node)); it != seen_.end()) it->second = core_->now();
  }

  // Timer thread, every interval: beats, and ends the monitors whose node fell silent. False
  // once closed (the task then stops re-arming).
  bool tick() noexcept {
    std::vector<std::tuple<troupe::detail::actor_cell*, std::uint64_t, std::string>> due;
    {
      std::lock_guard lock(mutex_);
      if (closed_) return false;
      // Under the lock: close() cannot pull the connection away meanwhile.
      publish_control(conn_, beat_subject_, nullptr, {},
                      {{h_node, &token_}, {h_beat, &interval_text_}});
      const auto now = core_->now();
      const auto ask_bound =
          std::chrono::duration_cast<clock::duration>(interval_ * misses_ + interval_);
      try {
        for (auto it = monitors_.begin(); it != monitors_.end();) {
          monitor& mo = it->second;
          std::string why;
          if (mo.node.empty()) {
            if (now - mo.since > ask_bound) {
              why = "no answer to the watch request of '" + mo.name + "' within " +
                    std::to_string(ms(now - mo.since)) + " ms";
            }
          } else if (auto s = seen_.find(mo.node); s != seen_.end() && now - s->second > mo.bound) {
            why = "'" + mo.name + "': its node " + mo.node + " missed heartbeats for " +
                  std::to_string(ms(now - s->second)) + " ms (bound " +
                  std::to_string(ms(mo.bound)) + " ms)";
          }
          if (why.empty()) {
            ++it;
          } else {
            due.emplace_back(mo.watcher, it->first, std::move(why));
            it = monitors_.erase(it);
          }
        }
        if (!due.empty()) forget_unwatched_locked();
      } catch (...) {  // out of memory: try again at the next tick
      }
    }
    for (auto& [w, id, why] : due) fire(w, id, down_reason::unreachable, why);
    if (on_tick) on_tick();
    return true;
  }

  // Ends every monitor with down(unreachable, why) and stops beating. Idempotent.
  void close(const std::string& why) noexcept {
    std::unordered_map<std::uint64_t, monitor> taken;
    {
      std::lock_guard lock(mutex_);
      closed_ = true;
      conn_ = nullptr;
      taken.swap(monitors_);
      seen_.clear();
    }
    for (auto& [id, mo] : taken) fire(mo.watcher, id, down_reason::unreachable, why);
  }

  // Monitors not yet ended (tests, metrics).
  [[nodiscard]] std::size_t size() noexcept {
    std::lock_guard lock(mutex_);
    return monitors_.size();
  }

 private:
  struct monitor {
    troupe::detail::actor_cell* watcher;  // retained
    std::string name;                     // the exposed name
    std::string node;                     // the answering node's token; empty until answered
    clock::duration bound{};              // its heartbeat interval x misses
    clock::time_point since;              // when the request went out
    // Notices for `name` heard before the answer: (node, reason, detail).
    std::vector<std::tuple<std::string, down_reason, std::string>> early;
  };

  static std::string_view header_of(natsMsg* m, const char* key) noexcept {
    const char* v = nullptr;
    if (natsMsgHeader_Get(m, key, &v) != NATS_OK || v == nullptr) return {};
    return v;
  }
  static std::string_view payload_of(natsMsg* m) noexcept {
    const char* d = natsMsg_GetData(m);
    const int n = natsMsg_GetDataLength(m);
    return d != nullptr && n > 0 ? std::string_view(d, static_cast<std::size_t>(n))
                                 : std::string_view{};
  }
  static long long ms(clock::duration d) noexcept {
    return std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
  }
  static std::string describe(const std::string& name, const std::string& node, down_reason r,
                              std::string_view text) {
    std::string s = "'" + name + "' on node " + node + ": " +
                    (r == down_reason::unreachable ? std::string("unreachable")
                                                   : "stopped (" + std::string(to_string(r)) + ")");
    if (!text.empty()) s += ": " + std::string(text);
    return s;
  }

  troupe::detail::actor_cell* take(std::uint64_t id, std::string* name = nullptr) noexcept {
    std::lock_guard lock(mutex_);
    auto it = monitors_.find(id);
    if (it == monitors_.end()) return nullptr;
    troupe::detail::actor_cell* w = it->second.watcher;
    if (name != nullptr) name->swap(it->second.name);
    monitors_.erase(it);
    return w;
  }
  // Drops the heartbeat records no monitor needs any more.
  void forget_unwatched_locked() {
    for (auto it = seen_.begin(); it != seen_.end();) {
      bool used = false;
      for (const auto& [id, mo] : monitors_) used = used || mo.node == it->first;
      it = used ? std::next(it) : seen_.erase(it);
    }
  }

  // Posts the down message (counted as sent, like a local one) and drops the watcher's
  // reference. A watcher that stopped meanwhile makes it a dead letter, as locally.
  void fire(troupe::detail::actor_cell* watcher, std::uint64_t id, down_reason reason,
            std::string detail) noexcept {
    try {
      down message{address{}, reason, std::move(detail), id};
      if (troupe::detail::envelope* e = watcher->ops()->make_down(std::move(message))) {
        core_->post(watcher, e, true);
      }
    } catch (...) {
      core_->record_dead_letter(watcher, troupe::detail::type_name<down>(),
                                dead_letter_reason::target_stopped, 0,
                                "could not allocate the down message");
    }
    watcher->release();
  }

  troupe::detail::runtime_core* core_;
  const std::string prefix_;
  const std::string token_;
  const std::string inbox_;
  const std::chrono::milliseconds interval_;
  const unsigned misses_;
  const std::string interval_text_;
  const std::string beat_subject_;

  std::mutex mutex_;
  natsConnection* conn_ = nullptr;  // null once closed
  bool closed_ = false;
  std::unordered_map<std::uint64_t, monitor> monitors_;
  std::unordered_map<std::string, clock::time_point> seen_;  // node token -> last sign of life
};

// The timer task that beats and checks, every interval, while the table lives and is open.
class watch_tick final : public troupe::detail::timer_task {
 public:
  explicit watch_tick(std::weak_ptr<watch_table> table) noexcept : table_(std::move(table)) {}
  static void arm(troupe::detail::runtime_core* core, std::weak_ptr<watch_table> table,
                  std::chrono::milliseconds after) {
    core->timers().schedule(
        core->now() + std::chrono::duration_cast<troupe::detail::clock::duration>(after),
        std::make_unique<watch_tick>(std::move(table)));
  }
  void fire() noexcept override {
    std::shared_ptr<watch_table> t = table_.lock();
    if (!t || !t->tick()) return;
    try {
      arm(t->core(), table_, t->interval());
    } catch (...) {  // out of memory: no more beats; watchers of this node will see it silent
    }
  }

 private:
  std::weak_ptr<watch_table> table_;
};

}  // namespace troupe::nats::detail
