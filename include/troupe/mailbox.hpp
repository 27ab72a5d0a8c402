// Mailbox options: an actor's mailbox is unbounded unless its class declares a bound.
//
//   class ingest {
//    public:
//     static constexpr troupe::mailbox_options mailbox{.capacity = 1000,
//                                                      .overflow = troupe::overflow::reject};
//     void on(const sample&);
//   };
//
// Overflow policies, when `capacity` messages are already waiting:
//   reject       the send fails: send() returns false (counted as rejected); an ask completes
//                with error(mailbox_full)
//   drop_newest  the new message is dead-lettered (reason mailbox_full): send() returns false;
//                an ask completes with error(mailbox_full) at once
//   drop_oldest  the new message is queued (send() returns true) and that send dead-letters
//                the oldest waiting one (mailbox_full), so the mailbox holds at most `capacity`
//                messages even while the actor is busy; an ask dropped so completes with
//                error(mailbox_full) at once. Such mailboxes sit behind a lock (a send takes it).
// and, whatever the policy, an actor sender can wait for room instead:
//   co_await target.send_when_ready(message);  // suspends only that handler, never blocks
#pragma once

#include <cstddef>

namespace troupe {

// What a full bounded mailbox does with one more message (see above): refuse it to the
// sender, or dead-letter the newest or the oldest one.
enum class overflow { reject, drop_newest, drop_oldest };

// An actor class's `static constexpr troupe::mailbox_options mailbox{...}`: its mailbox bound
// (0 = unbounded, the default without the member) and the policy when it is reached.
struct mailbox_options {
  std::size_t capacity = 0;  // 0: unbounded
  troupe::overflow overflow = troupe::overflow::reject;
};

namespace detail {

template <class A>
constexpr mailbox_options mailbox_options_of() {
  if constexpr (requires { A::mailbox; }) {
    return A::mailbox;
  } else {
    return {};
  }
}

}  // namespace detail
}  // namespace troupe
