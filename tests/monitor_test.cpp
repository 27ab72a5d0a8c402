// Tests of death watch (include/troupe/monitor.hpp): a down message for every stop reason,
// monitoring a stopped actor, demonitor, misuse, and a supervised child across a restart.
#include <future>
#include <stdexcept>

#include "support.hpp"

using namespace std::chrono_literals;

namespace {

struct work {};
struct fail_now {};
struct quit {};
class worker {
 public:
  explicit worker(troupe::context& ctx) : ctx_(ctx) {}
  void on(work) {}
  void on(fail_now) { throw std::runtime_error("worker broke"); }
  void on(quit) { ctx_.stop(); }

 private:
  troupe::context& ctx_;
};

struct watch {
  troupe::address target;
  std::promise<void>* armed;
};
struct unwatch {
  std::promise<bool>* result;
};
class watcher {
 public:
  watcher(troupe::context& ctx, std::promise<troupe::down>* got) : ctx_(ctx), got_(got) {}
  void on(watch w) {
    handle_ = ctx_.monitor(w.target);
    if (w.armed != nullptr) w.armed->set_value();
  }
  void on(unwatch u) { u.result->set_value(ctx_.demonitor(handle_)); }
  void on(const troupe::down& d) {
    if (!delivered_) got_->set_value(d);
    delivered_ = true;
  }

 private:
  troupe::context& ctx_;
  std::promise<troupe::down>* got_;
  troupe::monitor_handle handle_;
  bool delivered_ = false;
};

struct no_down {
  explicit no_down(troupe::context& ctx) : ctx_(ctx) {}
  troupe::errc on(troupe::address target) {
    try {
      ctx_.monitor(target);
    } catch (const troupe::error& e) {
      return e.code();
    }
    return troupe::errc::timeout;
  }
  troupe::context& ctx_;
};

troupe::down watch_until_down(troupe::runtime& rt, const troupe::address& target, auto&& then) {
  std::promise<troupe::down> got;
  std::promise<void> armed;
  auto w = rt.spawn<watcher>(&got);
  w.send(watch{target, &armed});
  armed.get_future().get();
  then();
  return got.get_future().get();
}

}  // namespace

TEST_CASE("down messages say why: normal stop, failure with its text, shutdown", "[monitor]") {
  troupe::runtime_options o;
  o.workers = 2;
  o.on_failure = [](const troupe::address&, std::string_view) {};
  troupe::runtime rt(o);

  SECTION("normal: stopped through its address") {
    auto target = rt.spawn<worker>();
    auto d = watch_until_down(rt, target, [&] { target.stop(); });
    REQUIRE(d.who == target);
    REQUIRE(d.reason == troupe::down_reason::normal);
  }
  SECTION("normal: stopped itself") {
    auto target = rt.spawn<worker>();
    auto d = watch_until_down(rt, target, [&] { target.send(quit{}); });
    REQUIRE(d.reason == troupe::down_reason::normal);
  }
  SECTION("failure, with the exception's text") {
    auto target = rt.spawn<worker>();
    auto d = watch_until_down(rt, target, [&] { target.send(fail_now{}); });
    REQUIRE(d.reason == troupe::down_reason::failed);
    REQUIRE(d.detail == "worker broke");
  }
}

TEST_CASE("a down for runtime shutdown reaches a watcher on another runtime", "[monitor]") {
  troupe::runtime watchers(troupe::runtime_options{.workers = 1});
  std::promise<troupe::down> got;
  std::promise<void> armed;
  auto w = watchers.spawn<watcher>(&got);
  {
    troupe::runtime doomed(troupe::runtime_options{.workers = 1});
    auto target = doomed.spawn<worker>();
    w.send(watch{target, &armed});
    armed.get_future().get();
  }  // the doomed runtime shuts down
  auto d = got.get_future().get();
  REQUIRE(d.reason == troupe::down_reason::shutdown);
}

TEST_CASE("monitoring an actor that already stopped delivers its down at once", "[monitor]") {
  troupe::runtime_options o;
  o.workers = 2;
  o.on_failure = [](const troupe::address&, std::string_view) {};
  troupe::runtime rt(o);
  auto target = rt.spawn<worker>();
  // Make sure it has stopped: a monitor armed before the failure sees it go down.
  watch_until_down(rt, target, [&] { target.send(fail_now{}); });
  std::promise<troupe::down> late;
  auto w = rt.spawn<watcher>(&late);
  w.send(watch{target, nullptr});
  auto d = late.get_future().get();
  REQUIRE(d.reason == troupe::down_reason::failed);
  REQUIRE(d.detail == "worker broke");
}

TEST_CASE("demonitor cancels the down", "[monitor]") {
  test::observer obs;
  troupe::runtime rt(obs.options());
  auto target = rt.spawn<worker>();
  std::promise<troupe::down> got;
  std::promise<void> armed;
  auto w = rt.spawn<watcher>(&got);
  w.send(watch{target, &armed});
  armed.get_future().get();
  std::promise<bool> cancelled;
  w.send(unwatch{&cancelled});
  REQUIRE(cancelled.get_future().get());
  target.stop();
  rt.shutdown();
  // No down was sent: only the two stops and nothing dead about a down message.
  REQUIRE(got.get_future().wait_for(0s) == std::future_status::timeout);
  test::require_accounted(rt.counters());
}

TEST_CASE("monitor from an actor without an on(down) handler is refused", "[monitor][misuse]") {
  troupe::runtime rt(troupe::runtime_options{.workers = 1});
  auto target = rt.spawn<worker>();
  auto n = rt.spawn<no_down>();
  REQUIRE(n.ask(troupe::address(target)).get() == troupe::errc::no_down_handler);
}

TEST_CASE("a monitor of a supervised child sees no down when it is restarted, one when it stops",
          "[monitor][supervisor]") {
  troupe::runtime_options o;
  o.workers = 2;
  o.on_failure = [](const troupe::address&, std::string_view) {};
  std::promise<void> restarted;
  o.on_supervision = [&restarted](const troupe::supervision_event& e) {
    if (e.what == troupe::supervision_event::kind::restarted) restarted.set_value();
  };
  troupe::runtime rt(o);
  auto sup = rt.spawn<troupe::supervisor>(troupe::one_for_one{});
  auto child = troupe::start_child<worker>(sup, {.name = "w"});
  auto d = watch_until_down(rt, child, [&] {
    child.send(fail_now{});
    restarted.get_future().get();  // restarted in place: the same address lives on
    REQUIRE(sup.ask(troupe::remove_child{child}).get());  // now it stops for good
  });
  // The first (and only) down is the final stop's, without the earlier failure's text.
  REQUIRE(d.who == child);
  REQUIRE(d.reason == troupe::down_reason::normal);
  REQUIRE(d.detail.empty());
}

TEST_CASE(
    "a late monitor of a child that failed, was restarted and then stopped carries no stale "
    "failure text",
    "[monitor][supervisor]") {
  troupe::runtime_options o;
  o.workers = 2;
  o.on_failure = [](const troupe::address&, std::string_view) {};
  std::promise<void> restarted;
  o.on_supervision = [&restarted](const troupe::supervision_event& e) {
    if (e.what == troupe::supervision_event::kind::restarted) restarted.set_value();
  };
  troupe::runtime rt(o);
  auto sup = rt.spawn<troupe::supervisor>(troupe::one_for_one{});
  auto child = troupe::start_child<worker>(sup, {.name = "w"});
  child.send(fail_now{});
  restarted.get_future().get();
  watch_until_down(rt, child, [&] { REQUIRE(sup.ask(troupe::remove_child{child}).get()); });
  // Monitored only now, after the stop: the down comes at once, from the stored exit state.
  std::promise<troupe::down> late;
  auto w = rt.spawn<watcher>(&late);
  w.send(watch{child, nullptr});
  auto d = late.get_future().get();
  REQUIRE(d.reason == troupe::down_reason::normal);
  REQUIRE(d.detail.empty());
}
