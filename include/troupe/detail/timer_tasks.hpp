// Timer tasks of the actor-facing API: waking a sleeping handler, delayed sends, sleep_for.
// Internal: included only through detail/core.hpp; never by users.
#pragma once

#include <troupe/detail/runtime_core.hpp>

namespace troupe::detail {

class wake_task final : public timer_task {
 public:
  explicit wake_task(actor_cell* cell) noexcept : cell_(cell) { cell_->retain(); }
  void arm(std::uint64_t generation) noexcept { generation_ = generation; }
  ~wake_task() override { cell_->release(); }
  void fire() noexcept override { cell_->wake(generation_); }

 private:
  actor_cell* cell_;
  std::uint64_t generation_ = 0;
};

class delayed_send_task final : public timer_task {
 public:
  delayed_send_task(actor_cell* target, envelope* e) noexcept : target_(target), envelope_(e) {
    target_->retain();
    target_->core()->add_delayed(1);
  }
  ~delayed_send_task() override {
    if (envelope_ != nullptr) {
      target_->core()->dead_letter_out(target_, envelope_, dead_letter_reason::shutdown,
                                       "the runtime shut down before the delay elapsed");
    }
    target_->core()->add_delayed(-1);
    target_->release();
  }
  void fire() noexcept override {
    target_->core()->post(target_, std::exchange(envelope_, nullptr), false);
  }

 private:
  actor_cell* target_;
  envelope* envelope_;
};

// The awaitable of ctx.sleep_for / sleep_until.
class sleep_awaiter {
 public:
  using troupe_awaitable = void;
  sleep_awaiter(actor_cell* cell, clock::time_point when) noexcept : cell_(cell), when_(when) {}

  [[nodiscard]] bool await_ready() const noexcept { return when_ <= cell_->core()->now(); }
  void await_suspend(std::coroutine_handle<> h) {
    // Allocate before arming: a throw after arming would leave a wake-up nobody delivers.
    auto task = std::make_unique<wake_task>(cell_);
    task->arm(cell_->arm_suspension(h));
    cell_->core()->timers().schedule(when_, std::move(task));
  }
  void await_resume() const noexcept {}

 private:
  actor_cell* cell_;
  clock::time_point when_;
};

}  // namespace troupe::detail
