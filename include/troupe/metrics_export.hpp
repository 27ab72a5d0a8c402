// Export of a metrics_snapshot: an aligned text table, JSON, and the Prometheus text exposition
// format (version 0.0.4).
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include <troupe/detail/json.hpp>
#include <troupe/latency_histogram.hpp>
#include <troupe/metrics.hpp>

namespace troupe {

namespace detail {

inline std::string format_ns(std::uint64_t ns) {
  char buf[32];
  if (ns < 10'000) {
    std::snprintf(buf, sizeof buf, "%llu ns", static_cast<unsigned long long>(ns));
  } else if (ns < 10'000'000) {
    std::snprintf(buf, sizeof buf, "%.1f us", static_cast<double>(ns) / 1e3);
  } else if (ns < 10'000'000'000ULL) {
    std::snprintf(buf, sizeof buf, "%.1f ms", static_cast<double>(ns) / 1e6);
  } else {
    std::snprintf(buf, sizeof buf, "%.1f s", static_cast<double>(ns) / 1e9);
  }
  return buf;
}

inline std::uint64_t ns_of(std::chrono::nanoseconds d) noexcept {
  return d.count() < 0 ? 0 : static_cast<std::uint64_t>(d.count());
}

// Rows of cells, printed with each column padded to its widest cell (left-aligned first column,
// the others right-aligned).
inline void append_table(std::string& out, const std::vector<std::vector<std::string>>& rows) {
  if (rows.empty()) return;
  std::vector<std::size_t> width(rows.front().size(), 0);
  for (const auto& r : rows) {
    for (std::size_t i = 0; i < r.size() && i < width.size(); ++i) {
      width[i] = std::max(width[i], r[i].size());
    }
  }
  for (const auto& r : rows) {
    std::string line;
    for (std::size_t i = 0; i < r.size() && i < width.size(); ++i) {
      const std::string pad(width[i] - r[i].size(), ' ');
      if (i != 0) line += "  ";
      line += i == 0 ? r[i] + pad : pad + r[i];
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    out += line;
    out += '\n';
  }
}

// A Prometheus label value: backslash, double quote and newline escaped.
inline void append_label(std::string& out, std::string_view name, std::string_view value) {
  out += name;
  out += "=\"";
  for (char c : value) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '"') {
      out += "\\\"";
    } else if (c == '\n') {
      out += "\\n";
    } else {
      out += c;
    }
  }
  out += '"';
}

}  // namespace detail

// The upper bounds, in nanoseconds, of the Prometheus histogram buckets latencies are exported
// in: 1, 2.5 and 5 per decade from 100 ns to 10 s (then +Inf). Fixed, so the series of every
// process line up and `sum by (le)` adds them.
inline constexpr std::uint64_t prometheus_bucket_bounds_ns[] = {
    100,         250,           500,           1'000,         2'500,
    5'000,       10'000,        25'000,        50'000,        100'000,
    250'000,     500'000,       1'000'000,     2'500'000,     5'000'000,
    10'000'000,  25'000'000,    50'000'000,    100'000'000,   250'000'000,
    500'000'000, 1'000'000'000, 2'500'000'000, 5'000'000'000, 10'000'000'000};

namespace detail {

inline std::string prometheus_number(double v) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

// One latency_histogram as a Prometheus histogram in seconds: cumulative `name_bucket{...,le}`
// lines for prometheus_bucket_bounds_ns and +Inf, then `name_sum` and `name_count`. A bound B
// counts the log-linear buckets whose highest value is <= B: every value counted there is <= B,
// and the values <= B left out lie in the one bucket that straddles B (within 1/64 below B).
// `labels` is the inside of the braces (may be empty).
inline void append_prometheus_histogram(std::string& out, std::string_view name,
                                        std::string_view labels, const latency_histogram& h) {
  // One pass over the buckets, in order, against the ascending bounds.
  std::uint64_t cumulative = 0;
  std::size_t b = 0;
  const std::string prefix =
      std::string(name) + "_bucket{" + std::string(labels) + (labels.empty() ? "le=\"" : ",le=\"");
  for (const std::uint64_t bound : prometheus_bucket_bounds_ns) {
    for (; b < latency_histogram::bucket_count && latency_histogram::highest_in(b) <= bound; ++b) {
      cumulative += h.bucket_value_count(b);
    }
    out += prefix + prometheus_number(static_cast<double>(bound) / 1e9) + "\"} " +
           std::to_string(cumulative) + '\n';
  }
  for (; b < latency_histogram::bucket_count; ++b) cumulative += h.bucket_value_count(b);
  // _count is the +Inf bucket (the sum of the buckets read here, not count(), which a writer
  // may have moved on meanwhile): a scrape is always self-consistent.
  out += prefix + "+Inf\"} " + std::to_string(cumulative) + '\n';
  const std::string braces = labels.empty() ? std::string() : "{" + std::string(labels) + "}";
  out += std::string(name) + "_sum" + braces + ' ' +
         prometheus_number(static_cast<double>(h.total_ns()) / 1e9) + '\n';
  out += std::string(name) + "_count" + braces + ' ' + std::to_string(cumulative) + '\n';
}

}  // namespace detail

// A one-line summary of a histogram: count, mean, p50, p90, p99, p99.9, p99.99, max.
inline std::string summarize(const latency_histogram& h) {
  std::string s = "n=" + std::to_string(h.count());
  s += " mean=" + detail::format_ns(static_cast<std::uint64_t>(h.mean().count()));
  s += " p50=" + detail::format_ns(detail::ns_of(h.percentile(50)));
  s += " p90=" + detail::format_ns(detail::ns_of(h.percentile(90)));
  s += " p99=" + detail::format_ns(detail::ns_of(h.percentile(99)));
  s += " p99.9=" + detail::format_ns(detail::ns_of(h.percentile(99.9)));
  s += " p99.99=" + detail::format_ns(detail::ns_of(h.percentile(99.99)));
  s += " max=" + detail::format_ns(detail::ns_of(h.max()));
  return s;
}

// The snapshot as aligned text tables, for people: counters, actors, latencies, topics.
inline std::string to_text(const metrics_snapshot& m) {
  std::string out;
  const runtime_counters& c = m.counters;
  out += "counters: sent=" + std::to_string(c.sent) + " handled=" + std::to_string(c.handled) +
         " dead_lettered=" + std::to_string(c.dead_lettered) +
         " rejected=" + std::to_string(c.rejected) + " spawned=" + std::to_string(c.spawned) +
         " stopped=" + std::to_string(c.stopped) + " failed=" + std::to_string(c.failed) +
         " open_asks=" + std::to_string(c.open_asks) + " published=" + std::to_string(c.published) +
         "\n";
  if (!m.enabled) {
    out += "(metrics are off: runtime_options::metrics)\n";
    return out;
  }
  out += "\nactors\n";
  std::vector<std::vector<std::string>> rows{
      {"actor", "handled", "failed", "restarts", "dead", "depth", "high_water"}};
  for (const auto& a : m.actors) {
    rows.push_back({a.name, std::to_string(a.handled), std::to_string(a.failed),
                    std::to_string(a.restarts), std::to_string(a.dead_letters),
                    std::to_string(a.mailbox_depth), std::to_string(a.mailbox_high_water)});
  }
  detail::append_table(out, rows);
  out += "\nlatencies\n";
  rows = {{"actor type", "message", "what", "count", "mean", "p50", "p90", "p99", "p99.9", "p99.99",
           "max"}};
  for (const auto& msg : m.messages) {
    const std::pair<const char*, const latency_histogram*> kinds[] = {
        {"queue_wait", &msg.queue_wait},
        {"service", &msg.service_time},
        {"ask_rtt", &msg.ask_round_trip}};
    for (const auto& [what, h] : kinds) {
      if (h->empty()) continue;
      rows.push_back({msg.actor_type, msg.message_type, what, std::to_string(h->count()),
                      detail::format_ns(static_cast<std::uint64_t>(h->mean().count())),
                      detail::format_ns(detail::ns_of(h->percentile(50))),
                      detail::format_ns(detail::ns_of(h->percentile(90))),
                      detail::format_ns(detail::ns_of(h->percentile(99))),
                      detail::format_ns(detail::ns_of(h->percentile(99.9))),
                      detail::format_ns(detail::ns_of(h->percentile(99.99))),
                      detail::format_ns(detail::ns_of(h->max()))});
    }
  }
  detail::append_table(out, rows);
  if (!m.topics.empty()) {
    out += "\ntopics\n";
    rows = {{"subject", "published", "deliveries"}};
    for (const auto& t : m.topics) {
      rows.push_back({t.subject, std::to_string(t.published), std::to_string(t.deliveries)});
    }
    detail::append_table(out, rows);
  }
  return out;
}

namespace detail {
inline void append_json_histogram(std::string& out, const latency_histogram& h) {
  out += "{\"count\":" + std::to_string(h.count());
  out += ",\"mean_ns\":" + std::to_string(static_cast<std::uint64_t>(h.mean().count()));
  out += ",\"min_ns\":" + std::to_string(ns_of(h.min()));
  out += ",\"p50_ns\":" + std::to_string(ns_of(h.percentile(50)));
  out += ",\"p90_ns\":" + std::to_string(ns_of(h.percentile(90)));
  out += ",\"p99_ns\":" + std::to_string(ns_of(h.percentile(99)));
  out += ",\"p999_ns\":" + std::to_string(ns_of(h.percentile(99.9)));
  out += ",\"p9999_ns\":" + std::to_string(ns_of(h.percentile(99.99)));
  out += ",\"max_ns\":" + std::to_string(ns_of(h.max())) + "}";
}
}  // namespace detail

// The snapshot as one JSON object: {"enabled","counters":{..},"actors":[..],"messages":[..],
// "topics":[..]}; latencies as {"count","mean_ns","min_ns","p50_ns",..,"max_ns"}.
inline std::string to_json(const metrics_snapshot& m) {
  std::string out = "{\"enabled\":";
  out += m.enabled ? "true" : "false";
  const runtime_counters& c = m.counters;
  out += ",\"counters\":{\"sent\":" + std::to_string(c.sent) +
         ",\"handled\":" + std::to_string(c.handled) +
         ",\"dead_lettered\":" + std::to_string(c.dead_lettered) +
         ",\"rejected\":" + std::to_string(c.rejected) +
         ",\"spawned\":" + std::to_string(c.spawned) + ",\"stopped\":" + std::to_string(c.stopped) +
         ",\"failed\":" + std::to_string(c.failed) +
         ",\"open_asks\":" + std::to_string(c.open_asks) +
         ",\"published\":" + std::to_string(c.published) +
         ",\"unrouted\":" + std::to_string(c.unrouted) + "}";
  out += ",\"actors\":[";
  for (std::size_t i = 0; i < m.actors.size(); ++i) {
    const auto& a = m.actors[i];
    if (i != 0) out += ',';
    out += "{\"id\":" + std::to_string(a.id) + ",\"type\":";
    detail::append_json_string(out, a.type);
    out += ",\"name\":";
    detail::append_json_string(out, a.name);
    out += ",\"handled\":" + std::to_string(a.handled) + ",\"failed\":" + std::to_string(a.failed) +
           ",\"restarts\":" + std::to_string(a.restarts) +
           ",\"dead_letters\":" + std::to_string(a.dead_letters) +
           ",\"mailbox_depth\":" + std::to_string(a.mailbox_depth) +
           ",\"mailbox_high_water\":" + std::to_string(a.mailbox_high_water) + "}";
  }
  out += "],\"messages\":[";
  for (std::size_t i = 0; i < m.messages.size(); ++i) {
    const auto& msg = m.messages[i];
    if (i != 0) out += ',';
    out += "{\"actor_type\":";
    detail::append_json_string(out, msg.actor_type);
    out += ",\"message_type\":";
    detail::append_json_string(out, msg.message_type);
    out += ",\"failed\":" + std::to_string(msg.failed) + ",\"queue_wait\":";
    detail::append_json_histogram(out, msg.queue_wait);
    out += ",\"service_time\":";
    detail::append_json_histogram(out, msg.service_time);
    out += ",\"ask_round_trip\":";
    detail::append_json_histogram(out, msg.ask_round_trip);
    out += '}';
  }
  out += "],\"topics\":[";
  for (std::size_t i = 0; i < m.topics.size(); ++i) {
    if (i != 0) out += ',';
    out += "{\"subject\":";
    detail::append_json_string(out, m.topics[i].subject);
    out += ",\"published\":" + std::to_string(m.topics[i].published) +
           ",\"deliveries\":" + std::to_string(m.topics[i].deliveries) + "}";
  }
  out += "]}";
  return out;
}

// The snapshot in the Prometheus text exposition format: counters and gauges with HELP and
// TYPE lines, latencies as histograms in seconds (_bucket{le} for prometheus_bucket_bounds_ns
// and +Inf, _sum, _count), which add up across processes (histogram_quantile of a sum by le).
inline std::string to_prometheus(const metrics_snapshot& m) {
  std::string out;
  auto family = [&out](const char* name, const char* type, const char* help) {
    out += "# HELP ";
    out += name;
    out += ' ';
    out += help;
    out += "\n# TYPE ";
    out += name;
    out += ' ';
    out += type;
    out += '\n';
  };
  const runtime_counters& c = m.counters;
  const std::pair<const char*, std::uint64_t> totals[] = {
      {"sent", c.sent},         {"handled", c.handled},     {"dead_lettered", c.dead_lettered},
      {"rejected", c.rejected}, {"spawned", c.spawned},     {"stopped", c.stopped},
      {"failed", c.failed},     {"published", c.published}, {"unrouted", c.unrouted}};
  for (const auto& [name, value] : totals) {
    const std::string metric = std::string("troupe_") + name + "_total";
    family(metric.c_str(), "counter", "Runtime-wide message and actor counter.");
    out += metric + ' ' + std::to_string(value) + '\n';
  }
  family("troupe_open_asks", "gauge", "Asks whose reply state is alive.");
  out += "troupe_open_asks " + std::to_string(c.open_asks) + '\n';
  if (!m.enabled) return out;

  auto actor_labels = [](const actor_metrics& a) {
    std::string l = "{";
    detail::append_label(l, "actor_type", a.type);
    l += ',';
    detail::append_label(l, "actor", a.name);
    l += '}';
    return l;
  };
  const std::pair<const char*, const char*> actor_counters[] = {
      {"troupe_actor_handled_total", "Messages handled by the actor."},
      {"troupe_actor_failed_total", "Failures of the actor."},
      {"troupe_actor_restarts_total", "Restarts of the actor by its supervisor."},
      {"troupe_actor_dead_letters_total", "Messages to the actor that were dead-lettered."},
      {"troupe_actor_mailbox_depth", "Messages queued in the actor's mailbox."},
      {"troupe_actor_mailbox_high_water", "Most messages ever queued in the actor's mailbox."}};
  for (std::size_t k = 0; k < std::size(actor_counters); ++k) {
    family(actor_counters[k].first, k < 4 ? "counter" : "gauge", actor_counters[k].second);
    for (const auto& a : m.actors) {
      const std::uint64_t v = k == 0   ? a.handled
                              : k == 1 ? a.failed
                              : k == 2 ? a.restarts
                              : k == 3 ? a.dead_letters
                              : k == 4 ? a.mailbox_depth
                                       : a.mailbox_high_water;
      out += actor_counters[k].first + actor_labels(a) + ' ' + std::to_string(v) + '\n';
    }
  }
  const char* const latency_names[] = {"troupe_queue_wait_seconds", "troupe_service_time_seconds",
                                       "troupe_ask_round_trip_seconds"};
  const char* const latency_help[] = {
      "Time from enqueue to handler start, per actor type and message type.",
      "Time from handler start to handler end, per actor type and message type.",
      "Time from ask to reply, per target actor type and request type."};
  for (std::size_t k = 0; k < 3; ++k) {
    family(latency_names[k], "histogram", latency_help[k]);
    for (const auto& msg : m.messages) {
      const latency_histogram& h = k == 0   ? msg.queue_wait
                                   : k == 1 ? msg.service_time
                                            : msg.ask_round_trip;
      if (h.empty()) continue;
      std::string labels;
      detail::append_label(labels, "actor_type", msg.actor_type);
      labels += ',';
      detail::append_label(labels, "message_type", msg.message_type);
      detail::append_prometheus_histogram(out, latency_names[k], labels, h);
    }
  }
  family("troupe_topic_deliveries_total", "counter",
         "Deliveries of events published on a subject.");
  for (const auto& t : m.topics) {
    std::string l = "{";
    detail::append_label(l, "subject", t.subject);
    out += "troupe_topic_deliveries_total" + l + "} " + std::to_string(t.deliveries) + '\n';
  }
  family("troupe_topic_published_total", "counter", "Events published on a subject.");
  for (const auto& t : m.topics) {
    std::string l = "{";
    detail::append_label(l, "subject", t.subject);
    out += "troupe_topic_published_total" + l + "} " + std::to_string(t.published) + '\n';
  }
  return out;
}

}  // namespace troupe
