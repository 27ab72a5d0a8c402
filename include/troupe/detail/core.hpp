// Internal: the runtime core and the out-of-line definitions of the handle, context, actor-record
// and reply functions that need all of it, one concept per file:
//
//   runtime_core.hpp   the state shared by a runtime, its actors and its threads
//   timer_tasks.hpp    sleep_for, delayed sends, waking a sleeping handler
//   send_path.hpp      send: envelope -> mailbox -> schedule
//   ask_path.hpp       ask: request envelope, reply routing, timeouts, reply slots
//   activation.hpp     an actor record at work: run, dispatch, suspend, wake, stop requests
//   failure_path.hpp   a failed handler: park for the supervisor, restart, stop, watchers
//   handles.hpp        address and context
//   link_path.hpp      links: ctx.link / unlink, exit signals
//
// Included at the end of the public headers that declare those functions; never by users.
#pragma once

#include <troupe/detail/activation.hpp>
#include <troupe/detail/ask_path.hpp>
#include <troupe/detail/failure_path.hpp>
#include <troupe/detail/handles.hpp>
#include <troupe/detail/link_path.hpp>
#include <troupe/detail/runtime_core.hpp>
#include <troupe/detail/send_path.hpp>
#include <troupe/detail/timer_tasks.hpp>
#include <troupe/queue.hpp>
#include <troupe/topic.hpp>
