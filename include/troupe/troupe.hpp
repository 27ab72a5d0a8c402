// troupe: coroutine actors over lock-free mailboxes. The umbrella header.
// Not included here, each on purpose: <troupe/codec_msgpack.hpp> (needs msgpack-cxx) and
// <troupe/nats/node.hpp> (needs nats.c, target troupe::nats).
#pragma once

#include <troupe/actor.hpp>
#include <troupe/ask.hpp>
#include <troupe/codec.hpp>
#include <troupe/dead_letter.hpp>
#include <troupe/dead_letter_reason.hpp>
#include <troupe/error.hpp>
#include <troupe/handler.hpp>
#include <troupe/io.hpp>
#include <troupe/keyed.hpp>
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
#include <troupe/sim_check.hpp>
#include <troupe/simulation.hpp>
#include <troupe/simulation_faults.hpp>
#include <troupe/supervisor.hpp>
#include <troupe/task.hpp>
#include <troupe/topic.hpp>
#include <troupe/tracing.hpp>
#include <troupe/upcast.hpp>
