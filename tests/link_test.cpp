// Tests of links (include/troupe/link.hpp): failure propagation both ways, trapped exits as
// messages, normal stops, unlink, linking to a stopped actor, links across a supervised
// restart, and the accounting.
#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "support.hpp"

using namespace std::chrono_literals;

namespace {

// What the actors of a test saw, in order.
struct log_book {
  std::mutex mutex;
  std::condition_variable changed;
  std::vector<std::string> lines;

  void add(std::string line) {
    std::lock_guard lock(mutex);
    lines.push_back(std::move(line));
    changed.notify_all();
  }
  // Waits until `line` was logged: fails the test (with what was logged) after a generous 10 s.
  void wait_for(const std::string& line) {
    std::unique_lock lock(mutex);
    const bool seen = changed.wait_for(
        lock, 10s, [&] { return std::find(lines.begin(), lines.end(), line) != lines.end(); });
    if (!seen) {
      std::string out;
      for (const auto& l : lines) out += l + "\n";
      lock.unlock();
      INFO("waited for: " << line << "\nlogged:\n" << out);
      REQUIRE(seen);
    }
  }
  bool has(const std::string& line) {
    std::lock_guard lock(mutex);
    return std::find(lines.begin(), lines.end(), line) != lines.end();
  }
  std::string all() {
    std::lock_guard lock(mutex);
    std::string out;
    for (const auto& l : lines) out += l + "\n";
    return out;
  }
};

struct link_to {
  troupe::address peer;
};
struct unlink_from {
  troupe::address peer;
};
struct watch {
  troupe::address target;
};
struct fail_now {};
struct stop_now {};
struct ping {};

// Links on request, fails or stops on request, answers pings.
class linked {
 public:
  linked(troupe::context& ctx, std::string name, log_book* book)
      : ctx_(ctx), name_(std::move(name)), book_(book) {}
  bool on(link_to l) {
    ctx_.link(l.peer);
    return true;
  }
  bool on(unlink_from u) { return ctx_.unlink(u.peer); }
  void on(fail_now) { throw std::runtime_error(name_ + " broke"); }
  void on(stop_now) { ctx_.stop(); }
  std::string on(ping) const { return name_; }
  // Supervised only (an unsupervised actor's failure goes to runtime_options::on_failure).
  void on_failure(const std::exception_ptr& e) {
    try {
      std::rethrow_exception(e);
    } catch (const troupe::link_failed& f) {
      book_->add(name_ + " failed by link from #" + std::to_string(f.from().id()) + ": " +
                 f.what());
    } catch (...) {
    }
  }

 private:
  troupe::context& ctx_;
  std::string name_;
  log_book* book_;
};

// Traps exits: logs each exit signal.
class trapper {
 public:
  trapper(troupe::context& ctx, log_book* book) : ctx_(ctx), book_(book) {}
  bool on(link_to l) {
    ctx_.link(l.peer);
    return true;
  }
  void on(const troupe::exit_signal& e) {
    book_->add("exit #" + std::to_string(e.from.id()) + " " + std::string(to_string(e.reason)) +
               (e.detail.empty() ? "" : " " + e.detail));
  }
  int on(ping) const { return 1; }

 private:
  troupe::context& ctx_;
  log_book* book_;
};

// Logs the down of what it watches.
class down_log {
 public:
  down_log(troupe::context& ctx, log_book* book) : ctx_(ctx), book_(book) {}
  bool on(watch w) {
    ctx_.monitor(w.target);
    return true;
  }
  void on(const troupe::down& d) {
    book_->add("down #" + std::to_string(d.who.id()) + " " + std::string(to_string(d.reason)));
  }

 private:
  troupe::context& ctx_;
  log_book* book_;
};

std::string down_line(const troupe::address& a, const char* reason) {
  return "down #" + std::to_string(a.id()) + " " + reason;
}

// Logs each failure as "failed #id: what".
troupe::runtime_options quiet(log_book* book = nullptr) {
  troupe::runtime_options o;
  o.workers = 2;
  o.on_failure = [book](const troupe::address& who, std::string_view what) {
    if (book != nullptr)
      book->add("failed #" + std::to_string(who.id()) + ": " + std::string(what));
  };
  return o;
}

}  // namespace

TEST_CASE("a failure propagates through a link, both ways", "[link]") {
  log_book book;
  troupe::runtime rt(quiet(&book));
  auto downs = rt.spawn<down_log>(&book);
  auto a = rt.spawn<linked>(std::string("a"), &book);
  auto b = rt.spawn<linked>(std::string("b"), &book);
  REQUIRE(downs.ask(watch{a}).get());
  REQUIRE(downs.ask(watch{b}).get());
  REQUIRE(a.ask(link_to{b}).get());  // linked from a's side
  SECTION("b fails: a fails too, naming b") {
    b.send(fail_now{});
    book.wait_for(down_line(a, "failed"));
    REQUIRE(book.has(down_line(b, "failed")));
    INFO(book.all());
    REQUIRE(book.has("failed #" + std::to_string(a.id()) + ": linked actor " +
                     std::string(b.type_name()) + "#" + std::to_string(b.id()) +
                     " failed: b broke"));
  }
  SECTION("a fails: b fails too") {
    a.send(fail_now{});
    book.wait_for(down_line(b, "failed"));
    REQUIRE(book.has(down_line(a, "failed")));
  }
  rt.shutdown();
  test::require_accounted(rt.counters());
  // The signal that failed the survivor is dead-lettered like any message whose handler threw.
  REQUIRE(rt.counters().dead_lettered >= 1);
}

TEST_CASE("a normal stop does not take a linked actor down", "[link]") {
  log_book book;
  troupe::runtime rt(quiet());
  auto downs = rt.spawn<down_log>(&book);
  auto a = rt.spawn<linked>(std::string("a"), &book);
  auto b = rt.spawn<linked>(std::string("b"), &book);
  REQUIRE(downs.ask(watch{b}).get());
  REQUIRE(a.ask(link_to{b}).get());
  b.send(stop_now{});
  book.wait_for(down_line(b, "normal"));
  REQUIRE(a.ask(ping{}).get() == "a");  // alive, and unlinked: b's stop undid the link
  REQUIRE_FALSE(a.ask(unlink_from{b}).get());
  rt.shutdown();
  test::require_accounted(rt.counters());
}

TEST_CASE("an actor with an on(exit_signal) handler receives exits as messages", "[link]") {
  log_book book;
  troupe::runtime rt(quiet());
  auto keeper = rt.spawn<trapper>(&book);
  auto a = rt.spawn<linked>(std::string("a"), &book);
  auto b = rt.spawn<linked>(std::string("b"), &book);
  REQUIRE(keeper.ask(link_to{a}).get());
  REQUIRE(keeper.ask(link_to{b}).get());
  REQUIRE(keeper.ask(link_to{b}).get());  // twice: still one link, one signal
  a.send(fail_now{});
  book.wait_for("exit #" + std::to_string(a.id()) + " failed a broke");
  b.send(stop_now{});
  book.wait_for("exit #" + std::to_string(b.id()) + " normal");
  REQUIRE(keeper.ask(ping{}).get() == 1);  // the trapper lives on
  rt.shutdown();
  std::lock_guard lock(book.mutex);
  REQUIRE(book.lines.size() == 2);
  test::require_accounted(rt.counters());
}

TEST_CASE("unlink stops the propagation", "[link]") {
  log_book book;
  troupe::runtime rt(quiet());
  auto downs = rt.spawn<down_log>(&book);
  auto a = rt.spawn<linked>(std::string("a"), &book);
  auto b = rt.spawn<linked>(std::string("b"), &book);
  REQUIRE(downs.ask(watch{b}).get());
  REQUIRE(a.ask(link_to{b}).get());
  REQUIRE(b.ask(unlink_from{a}).get());  // from the other side
  REQUIRE_FALSE(a.ask(unlink_from{b}).get());
  b.send(fail_now{});
  book.wait_for(down_line(b, "failed"));
  REQUIRE(a.ask(ping{}).get() == "a");
  rt.shutdown();
  test::require_accounted(rt.counters());
}

TEST_CASE("linking to an actor that already stopped signals at once", "[link]") {
  log_book book;
  troupe::runtime rt(quiet());
  auto downs = rt.spawn<down_log>(&book);
  auto dead = rt.spawn<linked>(std::string("dead"), &book);
  REQUIRE(downs.ask(watch{dead}).get());
  dead.send(fail_now{});
  book.wait_for(down_line(dead, "failed"));
  auto keeper = rt.spawn<trapper>(&book);
  REQUIRE(keeper.ask(link_to{dead}).get());
  book.wait_for("exit #" + std::to_string(dead.id()) + " failed dead broke");
  auto victim = rt.spawn<linked>(std::string("victim"), &book);
  REQUIRE(downs.ask(watch{victim}).get());
  REQUIRE(victim.ask(link_to{dead}).get());
  book.wait_for(down_line(victim, "failed"));
  rt.shutdown();
  test::require_accounted(rt.counters());
}

TEST_CASE("link misuse is refused", "[link][misuse]") {
  troupe::runtime rt(quiet());
  log_book book;
  class self_linker {
   public:
    explicit self_linker(troupe::context& c) : ctx(c) {}
    std::string on(link_to l) {
      try {
        ctx.link(l.peer);
        return "linked";
      } catch (const troupe::error& e) {
        return e.code() == troupe::errc::invalid_ref ? "invalid_ref" : "other";
      }
    }

   private:
    troupe::context& ctx;
  };
  auto s = rt.spawn<self_linker>();
  REQUIRE(s.ask(link_to{troupe::address{}}).get() == "invalid_ref");
  REQUIRE(s.ask(link_to{s}).get() == "invalid_ref");
}

TEST_CASE("a supervised child's restart is not an exit; its stop for good is",
          "[link][supervisor]") {
  log_book book;
  troupe::runtime rt(quiet());
  auto keeper = rt.spawn<trapper>(&book);
  auto sup = rt.spawn<troupe::supervisor>(troupe::one_for_one{.max_restarts = 10});
  auto child = troupe::start_child<linked>(sup, {.name = "child"}, std::string("child"), &book);
  REQUIRE(keeper.ask(link_to{child}).get());
  child.send(fail_now{});
  REQUIRE(child.ask(ping{}).get() == "child");  // restarted in place, link kept
  REQUIRE(keeper.ask(ping{}).get() == 1);       // no signal was queued before this reply
  REQUIRE(sup.ask(troupe::remove_child{child}).get());
  book.wait_for("exit #" + std::to_string(child.id()) + " normal");
  std::lock_guard lock(book.mutex);
  REQUIRE(book.lines ==
          std::vector<std::string>{"exit #" + std::to_string(child.id()) + " normal"});
}

TEST_CASE("a linked failure fails a supervised child, which is restarted", "[link][supervisor]") {
  log_book book;
  troupe::runtime_options o = quiet();
  std::mutex m;
  std::vector<troupe::supervision_event> events;
  o.on_supervision = [&](const troupe::supervision_event& e) {
    std::lock_guard lock(m);
    events.push_back(e);
  };
  troupe::runtime rt(o);
  auto sup = rt.spawn<troupe::supervisor>(troupe::one_for_one{.max_restarts = 10});
  auto child = troupe::start_child<linked>(sup, {.name = "child"}, std::string("child"), &book);
  auto other = rt.spawn<linked>(std::string("other"), &book);
  REQUIRE(child.ask(link_to{other}).get());
  other.send(fail_now{});
  book.wait_for("child failed by link from #" + std::to_string(other.id()) + ": linked actor " +
                std::string(other.type_name()) + "#" + std::to_string(other.id()) +
                " failed: other broke");
  REQUIRE(child.ask(ping{}).get() == "child");  // restarted
  rt.shutdown();
  std::lock_guard lock(m);
  REQUIRE(std::count_if(events.begin(), events.end(), [](const auto& e) {
            return e.what == troupe::supervision_event::kind::restarted;
          }) == 1);
  test::require_accounted(rt.counters());
}
