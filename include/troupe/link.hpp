// Links: ctx.link(other) ties two actors' fates together, both ways, as Erlang's links do.
//
//   class worker {
//    public:
//     explicit worker(troupe::context& ctx) : ctx_(ctx) {}
//     void on(pair_with p) { ctx_.link(p.peer); }  // if either fails, the other fails too
//     ...
//   };
//   class keeper {  // traps exits: hears of a linked actor's stop as a message instead
//    public:
//     void on(const troupe::exit_signal& e) { /* e.from stopped; e.reason, e.detail say why */ }
//     ...
//   };
//
// When a linked actor stops for good (a supervised child restarted in place has not stopped):
//   - an actor with an on(troupe::exit_signal) handler receives a troupe::exit_signal, whatever
//     the reason (normal, failed, shutdown; none once its own mailbox is closed);
//   - any other actor fails if the reason is `failed` (its failure is a troupe::link_failed
//     naming the linked actor), and ignores a normal stop or a shutdown.
// The signal travels through the mailbox like a message (behind what is already queued), and
// is subject to a bounded mailbox's policy like one. Links are undone when either side stops,
// and by ctx.unlink(other).
#pragma once

#include <stdexcept>
#include <string>
#include <utility>

#include <troupe/detail/address.hpp>
#include <troupe/monitor.hpp>

namespace troupe {

// What a trapping actor (one with an on(troupe::exit_signal) handler) receives when an actor
// linked to it stops.
struct exit_signal {
  // The linked actor that stopped.
  address from;
  down_reason reason = down_reason::normal;
  std::string detail;  // the failure's text for down_reason::failed
};

// The failure of a non-trapping actor whose linked actor failed: what() names the linked actor
// and its failure (on_failure, supervision events and on_failure hooks see it).
class link_failed : public std::runtime_error {
 public:
  link_failed(address from, const std::string& what)
      : std::runtime_error(what), from_(std::move(from)) {}
  // The linked actor whose failure this is.
  [[nodiscard]] const address& from() const noexcept { return from_; }

 private:
  address from_;
};

}  // namespace troupe

#include <troupe/detail/core.hpp>
