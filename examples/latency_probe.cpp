// latency_probe: offers load at a fixed rate through a chain of actors and reports the latency
// distribution of the whole chain: a percentile table, a text bar chart, and an SVG plot.
//
//   example_latency_probe [--hops N] [--threads T] [--rate R] [--duration S] [--svg FILE]
//
//   --hops N      actors in the chain (default 4)
//   --threads T   runtime worker threads (default 2)
//   --rate R      messages offered per second (default 5000)
//   --duration S  seconds of offered load (default 2)
//   --svg FILE    where to write the plot (default latency_probe.svg)
//
// Latency is measured from each message's *intended* send time (start + i / rate), not from when
// the sender actually got to send it: a sender that falls behind would otherwise hide the very
// delays it causes (coordinated omission).
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <troupe/troupe.hpp>

#if defined(__linux__)
#include <sys/prctl.h>
#endif

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

struct probe {
  steady::time_point intended;
};

struct results {
  troupe::latency_histogram latency;  // lock-free: written by whichever worker ends the chain
  std::atomic<std::uint64_t> arrived{0};
};

// One link of the chain: forwards each probe to the next link, or records it at the end.
class hop {
 public:
  hop(std::unique_ptr<troupe::ref<hop>> next, results* out) : next_(std::move(next)), out_(out) {}
  void on(probe p) {
    if (next_) {
      next_->send(p);
    } else {
      out_->latency.record(
          std::chrono::duration_cast<std::chrono::nanoseconds>(steady::now() - p.intended));
      out_->arrived.fetch_add(1, std::memory_order_release);
    }
  }

 private:
  std::unique_ptr<troupe::ref<hop>> next_;
  results* out_;
};

std::string fmt(std::uint64_t ns) {
  char b[32];
  if (ns < 10'000) {
    std::snprintf(b, sizeof b, "%llu ns", static_cast<unsigned long long>(ns));
  } else if (ns < 10'000'000) {
    std::snprintf(b, sizeof b, "%.1f us", static_cast<double>(ns) / 1e3);
  } else {
    std::snprintf(b, sizeof b, "%.1f ms", static_cast<double>(ns) / 1e6);
  }
  return b;
}

// Display bins: equal widths on a log scale between the smallest and the largest value.
struct bin {
  double lo, hi;  // ns
  std::uint64_t count = 0;
};

std::vector<bin> log_bins(const troupe::latency_histogram& h, int n) {
  const double lo = std::max(1.0, static_cast<double>(h.min().count()));
  const double hi = std::max(lo * 1.01, static_cast<double>(h.max().count()) + 1);
  const double step = std::pow(hi / lo, 1.0 / n);
  std::vector<bin> bins;
  for (int i = 0; i < n; ++i) bins.push_back({lo * std::pow(step, i), lo * std::pow(step, i + 1)});
  for (std::size_t b = 0; b < troupe::latency_histogram::bucket_count; ++b) {
    const std::uint64_t c = h.bucket_value_count(b);
    if (c == 0) continue;
    const double v = static_cast<double>(troupe::latency_histogram::representative(b));
    int i = static_cast<int>(std::log(std::max(v, lo) / lo) / std::log(step));
    bins[static_cast<std::size_t>(std::clamp(i, 0, n - 1))].count += c;
  }
  return bins;
}

void write_svg(const std::string& path, const std::vector<bin>& bins,
               const troupe::latency_histogram& h, const std::string& title) {
  const int width = 800, height = 400, left = 70, bottom = 60, top = 40, right = 20;
  const int plot_w = width - left - right, plot_h = height - top - bottom;
  std::uint64_t peak = 1;
  for (const auto& b : bins) peak = std::max(peak, b.count);
  std::ofstream svg(path);
  svg << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height
      << "\" font-family=\"sans-serif\" font-size=\"12\">\n"
      << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      << "<text x=\"" << width / 2 << "\" y=\"22\" text-anchor=\"middle\" font-size=\"15\">"
      << title << "</text>\n";
  const double bar_w = static_cast<double>(plot_w) / static_cast<double>(bins.size());
  for (std::size_t i = 0; i < bins.size(); ++i) {
    const double bh = static_cast<double>(plot_h) * static_cast<double>(bins[i].count) /
                      static_cast<double>(peak);
    svg << "<rect x=\"" << left + bar_w * static_cast<double>(i) + 1 << "\" y=\""
        << top + plot_h - bh << "\" width=\"" << bar_w - 2 << "\" height=\"" << bh
        << "\" fill=\"#4a78b5\"><title>" << fmt(static_cast<std::uint64_t>(bins[i].lo)) << " - "
        << fmt(static_cast<std::uint64_t>(bins[i].hi)) << ": " << bins[i].count
        << "</title></rect>\n";
    if (i % 4 == 0) {
      svg << "<text x=\"" << left + bar_w * static_cast<double>(i) << "\" y=\"" << top + plot_h + 18
          << "\">" << fmt(static_cast<std::uint64_t>(bins[i].lo)) << "</text>\n";
    }
  }
  svg << "<line x1=\"" << left << "\" y1=\"" << top + plot_h << "\" x2=\"" << left + plot_w
      << "\" y2=\"" << top + plot_h << "\" stroke=\"black\"/>\n"
      << "<line x1=\"" << left << "\" y1=\"" << top << "\" x2=\"" << left << "\" y2=\""
      << top + plot_h << "\" stroke=\"black\"/>\n"
      << "<text x=\"" << left - 8 << "\" y=\"" << top + 10 << "\" text-anchor=\"end\">" << peak
      << "</text>\n<text x=\"" << left - 8 << "\" y=\"" << top + plot_h
      << "\" text-anchor=\"end\">0</text>\n"
      << "<text x=\"" << left + plot_w / 2 << "\" y=\"" << height - 15
      << "\" text-anchor=\"middle\">latency (log scale)</text>\n";
  // Percentile markers.
  const double lo = bins.front().lo, hi = bins.back().hi;
  for (double p : {50.0, 99.0, 99.9}) {
    const double v = static_cast<double>(h.percentile(p).count());
    if (v < lo || v > hi) continue;
    const double x = left + plot_w * std::log(v / lo) / std::log(hi / lo);
    svg << "<line x1=\"" << x << "\" y1=\"" << top << "\" x2=\"" << x << "\" y2=\"" << top + plot_h
        << "\" stroke=\"#c0392b\" stroke-dasharray=\"4 3\"/>\n";
    // Labels near the right edge go on the left of their line, so that they are not cut off.
    const bool flip = x > left + plot_w - 50;
    svg << "<text x=\"" << (flip ? x - 3 : x + 3) << "\" y=\"" << top + 12 << "\" text-anchor=\""
        << (flip ? "end" : "start") << "\" fill=\"#c0392b\">p" << p << "</text>\n";
  }
  svg << "</svg>\n";
}

int main(int argc, char** argv) {
  int hops = 4, threads = 2;
  double rate = 5000, duration = 2;
  std::string svg_path = "latency_probe.svg";
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::cerr << a << " needs a value\n";
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--hops") {
      hops = std::atoi(value());
    } else if (a == "--threads") {
      threads = std::atoi(value());
    } else if (a == "--rate") {
      rate = std::atof(value());
    } else if (a == "--duration") {
      duration = std::atof(value());
    } else if (a == "--svg") {
      svg_path = value();
    } else {
      std::cerr << "usage: " << argv[0]
                << " [--hops N] [--threads T] [--rate R] [--duration S] [--svg FILE]\n";
      return 2;
    }
  }
  if (hops < 1 || threads < 1 || !(rate > 0) || !(duration > 0)) {
    std::cerr << "hops, threads, rate and duration must be positive\n";
    return 2;
  }

  troupe::runtime_options options;
  options.workers = static_cast<std::size_t>(threads);
  options.metrics = true;  // the runtime's own view: queue wait and service time per hop
  troupe::runtime rt(options);
  results out;
  std::unique_ptr<troupe::ref<hop>> next;
  for (int i = 0; i < hops; ++i) {
    auto h = rt.spawn<hop>(std::move(next), &out);
    next = std::make_unique<troupe::ref<hop>>(h);
  }
  const troupe::ref<hop> head = *next;

  const auto total = static_cast<std::uint64_t>(rate * duration);
  const auto interval = std::chrono::duration<double, std::nano>(1e9 / rate);
  std::printf("offering %.0f msgs/s for %.1f s through %d hops on %d threads (%llu messages)\n",
              rate, duration, hops, threads, static_cast<unsigned long long>(total));
  // How late the sender itself was (sleep_until overshoots by the OS timer slack and scheduling):
  // part of every latency below, as it would be for a real client on this machine.
  troupe::latency_histogram sender_lag;
#if defined(__linux__)
  // Linux lets a sleeping thread wake up to 50 us late by default (timer slack): ask for 1 ns.
  prctl(PR_SET_TIMERSLACK, 1UL, 0UL, 0UL, 0UL);
#endif
  const auto start = steady::now() + 10ms;
  for (std::uint64_t i = 0; i < total; ++i) {
    const auto intended =
        start + std::chrono::duration_cast<steady::duration>(interval * static_cast<double>(i));
    std::this_thread::sleep_until(intended);  // pacing the load, not synchronising
    sender_lag.record(
        std::chrono::duration_cast<std::chrono::nanoseconds>(steady::now() - intended));
    head.send(probe{intended});
  }
  const auto give_up = steady::now() + 30s;
  while (out.arrived.load(std::memory_order_acquire) < total && steady::now() < give_up) {
    std::this_thread::sleep_for(1ms);
  }
  const auto metrics = rt.metrics();
  rt.shutdown();
  const auto& h = out.latency;
  if (h.count() != total) {
    std::printf("only %llu of %llu probes arrived\n", static_cast<unsigned long long>(h.count()),
                static_cast<unsigned long long>(total));
    return 1;
  }

  std::printf("\nend-to-end latency over %d hops (%llu messages)\n", hops,
              static_cast<unsigned long long>(h.count()));
  std::printf("  %-8s %12s\n", "mean", fmt(static_cast<std::uint64_t>(h.mean().count())).c_str());
  for (double p : {50.0, 90.0, 99.0, 99.9, 99.99}) {
    char label[16];
    std::snprintf(label, sizeof label, "p%g", p);
    std::printf("  %-8s %12s\n", label,
                fmt(static_cast<std::uint64_t>(h.percentile(p).count())).c_str());
  }
  std::printf("  %-8s %12s\n", "max", fmt(static_cast<std::uint64_t>(h.max().count())).c_str());
  std::printf("of which the sender's own lateness: %s\n", troupe::summarize(sender_lag).c_str());

  const auto bins = log_bins(h, 24);
  std::uint64_t peak = 1;
  for (const auto& b : bins) peak = std::max(peak, b.count);
  std::printf("\nhistogram (log-scale bins; # = share of the fullest bin)\n");
  for (const auto& b : bins) {
    const int len = static_cast<int>(
        std::lround(50.0 * static_cast<double>(b.count) / static_cast<double>(peak)));
    std::printf("  %10s .. %-10s %8llu |%s\n", fmt(static_cast<std::uint64_t>(b.lo)).c_str(),
                fmt(static_cast<std::uint64_t>(b.hi)).c_str(),
                static_cast<unsigned long long>(b.count), std::string(len, '#').c_str());
  }

  std::printf("\nper hop, from the runtime's metrics\n");
  for (const auto& m : metrics.messages) {
    std::printf("  queue wait   %s\n  service time %s\n", troupe::summarize(m.queue_wait).c_str(),
                troupe::summarize(m.service_time).c_str());
  }

  char title[160];
  std::snprintf(title, sizeof title,
                "troupe latency_probe: %d hops, %d threads, %.0f msgs/s, p99 %s", hops, threads,
                rate, fmt(static_cast<std::uint64_t>(h.percentile(99).count())).c_str());
  write_svg(svg_path, bins, h, title);
  std::printf("\nwrote %s\n", svg_path.c_str());
  return 0;
}
