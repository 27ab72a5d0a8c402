// troupe: coroutine actors over lock-free mailboxes. The umbrella header.
#pragma once

#include <troupe/actor.hpp>
#include <troupe/ask.hpp>
#include <troupe/dead_letter.hpp>
#include <troupe/dead_letter_reason.hpp>
#include <troupe/error.hpp>
#include <troupe/handler.hpp>
#include <troupe/io.hpp>
#include <troupe/latency_histogram.hpp>
#include <troupe/link.hpp>
#include <troupe/mailbox.hpp>
#include <troupe/metrics.hpp>
#include <troupe/metrics_export.hpp>
#include <troupe/monitor.hpp>
#include <troupe/queue.hpp>
#include <troupe/ref.hpp>
#include <troupe/runtime.hpp>
#include <troupe/runtime_options.hpp>
#include <troupe/supervisor.hpp>
#include <troupe/task.hpp>
#include <troupe/topic.hpp>
#include <troupe/tracing.hpp>
