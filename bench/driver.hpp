// The driver shared by troupe-bench, troupe-floor and troupe-bench-caf: runs the selected
// workloads `repeats` times each, prints an aligned table (median, min, max) and optionally
// writes a JSON report, so that the three executables take the same flags and write the same
// JSON shape. See docs/performance.md.
//
//   PROGRAM [--quick] [--repeats N] [--size N] [--workers N] [--json FILE] [--list]
//           [workload|group...]
//
// Exit status: 0 if every selected workload ran and verified its counts, 1 if one failed,
// 2 on a usage error.
#pragma once

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <exception>
#include <fstream>
#include <iostream>
#include <optional>
#include <spawn.h>
#include <sstream>
#include <string>
#include <sys/types.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>
#include <vector>

#include "bench.hpp"

extern char** environ;

namespace troupe_bench {
namespace driver {

// The executable's name, for messages (set by run()).
inline std::string program = "troupe-bench";

inline constexpr const char* usage_text =
    "usage: PROGRAM [--quick] [--repeats N] [--size N] [--workers N] [--json FILE] [--list]\n"
    "               [workload|group...]\n"
    "  --quick       smaller sizes and 1 repeat (smoke test: a few seconds)\n"
    "  --repeats N   runs per workload (default 5, or 1 with --quick)\n"
    "  --size N      the main count of every selected workload (see --list) instead of its\n"
    "                default; meant for one workload at a time\n"
    "  --workers N   worker threads (default 0: the runtime's default, hardware concurrency)\n"
    "  --json FILE   also write the results as JSON\n"
    "  --list        list the workloads and exit\n"
    "  workload      a workload name or a group name (actors, mailbox); default: all\n";

struct options {
  config cfg;
  std::optional<std::size_t> repeats;
  std::string json_path;
  bool list = false;
  std::vector<std::string> selection;
  std::string child;  // internal: run this workload once and print its figure
};

// One row of the report: a workload, or one row of a workload with rows.
struct result {
  const workload* w = nullptr;
  std::string name;  // w->name, or the row's name
  std::string unit;  // w->unit, or the row's own
  bool lower_is_better = true;
  std::vector<double> runs;
  std::string error;  // empty if the workload succeeded
  double median = 0, min = 0, max = 0;
};

class usage_error : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

inline std::string usage() {
  std::string u = usage_text;
  u.replace(u.find("PROGRAM"), 7, program);
  return u;
}

inline std::size_t parse_count(const std::string& flag, const char* text) {
  if (text == nullptr) throw usage_error(flag + " needs a value");
  char* end = nullptr;
  errno = 0;
  const unsigned long long v = std::strtoull(text, &end, 10);
  if (errno != 0 || end == text || *end != '\0' || text[0] == '-') {
    throw usage_error(flag + ": not a number: " + text);
  }
  return static_cast<std::size_t>(v);
}

inline options parse(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const char* value = i + 1 < argc ? argv[i + 1] : nullptr;
    if (a == "--quick") {
      o.cfg.quick = true;
    } else if (a == "--repeats") {
      o.repeats = parse_count(a, value);
      if (*o.repeats == 0) throw usage_error("--repeats must be at least 1");
      ++i;
    } else if (a == "--size") {
      o.cfg.size = parse_count(a, value);
      if (o.cfg.size == 0) throw usage_error("--size must be at least 1");
      ++i;
    } else if (a == "--workers") {
      o.cfg.workers = parse_count(a, value);
      ++i;
    } else if (a == "--json") {
      if (value == nullptr) throw usage_error("--json needs a file name");
      o.json_path = value;
      ++i;
    } else if (a == "--list") {
      o.list = true;
    } else if (a == "--child") {  // internal, see run_in_fresh_process
      if (value == nullptr) throw usage_error("--child needs a workload name");
      o.child = value;
      ++i;
    } else if (a == "-h" || a == "--help") {
      std::cout << usage();
      std::exit(0);
    } else if (!a.empty() && a[0] == '-') {
      throw usage_error("unknown option " + a);
    } else {
      o.selection.push_back(a);
    }
  }
  return o;
}

inline double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// The names of the rows `w` reports: its own name, or its rows.
inline std::vector<std::string> row_names(const workload& w) {
  return w.rows.empty() ? std::vector<std::string>{w.name} : w.rows;
}

inline bool selects(const std::string& s, const workload& w) {
  const std::vector<std::string> rows = row_names(w);
  return s == w.name || s == w.group || std::find(rows.begin(), rows.end(), s) != rows.end();
}

// One repetition of `w` in this process: one figure per row.
inline std::vector<double> run_here(const workload& w, const config& cfg) {
  if (w.rows.empty()) return {w.run(cfg)};
  std::vector<double> figures = w.run_rows(cfg);
  expect(figures.size() == w.rows.size(), w.name + ": " + std::to_string(figures.size()) +
                                              " figures for " + std::to_string(w.rows.size()) +
                                              " rows");
  return figures;
}

// Runs one repetition of `w` in a new process (this executable with --child) and reads its
// figures (one per row) from the child's standard output.
inline std::vector<double> run_in_fresh_process(const workload& w, const config& cfg) {
  char self[4096];
  const ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
  expect(len > 0, w.name + ": cannot find this executable (/proc/self/exe)");
  self[len] = '\0';
  const std::string workers = std::to_string(cfg.workers);
  std::vector<std::string> args = {self, "--child", w.name, "--workers", workers};
  if (cfg.quick) args.emplace_back("--quick");
  if (cfg.size != 0) {
    args.emplace_back("--size");
    args.emplace_back(std::to_string(cfg.size));
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  int fds[2];
  expect(pipe(fds) == 0, w.name + ": pipe() failed");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[1], STDOUT_FILENO);
  posix_spawn_file_actions_addclose(&actions, fds[0]);
  posix_spawn_file_actions_addclose(&actions, fds[1]);
  pid_t pid = 0;
  const int spawned = posix_spawn(&pid, self, &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  close(fds[1]);
  if (spawned != 0) {
    close(fds[0]);
    throw failure(w.name + ": posix_spawn failed: " + std::strerror(spawned));
  }
  std::string out;
  char buf[256];
  for (;;) {
    const ssize_t n = read(fds[0], buf, sizeof buf);
    if (n > 0) {
      out.append(buf, static_cast<std::size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      break;
    }
  }
  close(fds[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  expect(WIFEXITED(status) && WEXITSTATUS(status) == 0,
         w.name + ": the child process failed (see its message above)");
  std::vector<double> figures;
  for (const char* p = out.c_str();;) {
    char* end = nullptr;
    const double v = std::strtod(p, &end);
    if (end == p) break;
    figures.push_back(v);
    p = end;
  }
  expect(figures.size() == row_names(w).size(),
         w.name + ": unreadable figures from the child process: '" + out + "'");
  return figures;
}

// One result per row of `w`.
inline std::vector<result> run_workload(const workload& w, const config& cfg, std::size_t repeats) {
  std::vector<result> rows;
  for (const std::string& name : row_names(w)) {
    rows.emplace_back();
    rows.back().w = &w;
    rows.back().name = name;
    const std::size_t k = rows.size() - 1;
    rows.back().unit = k < w.row_units.size() ? w.row_units[k] : w.unit;
    rows.back().lower_is_better =
        k < w.row_lower_is_better.size() ? w.row_lower_is_better[k] : w.lower_is_better;
  }
  try {
    for (std::size_t i = 0; i < repeats; ++i) {
      const std::vector<double> figures =
          w.fresh_process ? run_in_fresh_process(w, cfg) : run_here(w, cfg);
      for (std::size_t k = 0; k < rows.size(); ++k) rows[k].runs.push_back(figures[k]);
    }
  } catch (const std::exception& e) {
    for (result& r : rows) r.error = e.what();
  }
  for (result& r : rows) {
    if (r.runs.empty()) continue;
    r.median = median_of(r.runs);
    r.min = *std::min_element(r.runs.begin(), r.runs.end());
    r.max = *std::max_element(r.runs.begin(), r.runs.end());
  }
  return rows;
}

inline std::string format_figure(double v) {
  char buf[64];
  const double a = v < 0 ? -v : v;
  if (a >= 100000) {
    std::snprintf(buf, sizeof buf, "%.0f", v);
  } else if (a >= 100) {
    std::snprintf(buf, sizeof buf, "%.1f", v);
  } else if (a >= 1) {
    std::snprintf(buf, sizeof buf, "%.2f", v);
  } else {
    std::snprintf(buf, sizeof buf, "%.4f", v);
  }
  return buf;
}

inline constexpr int name_width = 34;
inline constexpr int unit_width = 14;
inline constexpr int figure_width = 14;

inline void print_header() {
  std::printf("%-*s %-*s %*s %*s %*s %5s\n", name_width, "workload", unit_width, "unit",
              figure_width, "median", figure_width, "min", figure_width, "max", "runs");
  std::printf("%s\n", std::string(name_width + unit_width + 3 * figure_width + 5 + 5, '-').c_str());
}

inline void print_row(const result& r) {
  if (!r.error.empty()) {
    std::printf("%-*s %-*s %*s\n", name_width, r.name.c_str(), unit_width, r.unit.c_str(),
                figure_width, "FAILED");
  } else {
    std::printf("%-*s %-*s %*s %*s %*s %5zu\n", name_width, r.name.c_str(), unit_width,
                r.unit.c_str(), figure_width, format_figure(r.median).c_str(), figure_width,
                format_figure(r.min).c_str(), figure_width, format_figure(r.max).c_str(),
                r.runs.size());
  }
  std::fflush(stdout);
}

// ---- JSON ------------------------------------------------------------------------------------

inline std::string json_string(const std::string& s) {
  std::string out = "\"";
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\r':
        out += "\\r";
        break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += ch;
        }
    }
  }
  return out + "\"";
}

inline std::string json_number(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

inline std::string cpu_model() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) {
        std::string m = line.substr(colon + 1);
        m.erase(0, m.find_first_not_of(" \t"));
        return m;
      }
    }
  }
  return "unknown";
}

inline std::string compiler() {
#if defined(__clang__)
  return std::string("clang++ ") + __clang_version__;
#elif defined(__GNUC__)
  return std::string("g++ ") + __VERSION__;
#else
  return "unknown";
#endif
}

// CMake may say which build type it used (-DTROUPE_BENCH_BUILD_TYPE="Release"); otherwise
// describe what the compiler was told.
inline std::string build_type() {
#if defined(TROUPE_BENCH_BUILD_TYPE)
  return TROUPE_BENCH_BUILD_TYPE;
#else
  std::string s;
#if defined(__OPTIMIZE__)
  s = "optimized";
#else
  s = "unoptimized";
#endif
#if defined(NDEBUG)
  s += ", NDEBUG";
#else
  s += ", assertions on";
#endif
  return s;
#endif
}

inline std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

inline bool write_json(const std::string& path, const std::vector<result>& results,
                       const options& o, std::size_t repeats) {
  std::ostringstream j;
  j << "{\n  \"machine\": {\n";
  j << "    \"cpu\": " << json_string(cpu_model()) << ",\n";
  j << "    \"cores\": " << std::thread::hardware_concurrency() << ",\n";
  j << "    \"compiler\": " << json_string(compiler()) << ",\n";
  j << "    \"build_type\": " << json_string(build_type()) << "\n  },\n";
  j << "  \"program\": " << json_string(program) << ",\n";
  j << "  \"settings\": {\"quick\": " << (o.cfg.quick ? "true" : "false")
    << ", \"repeats\": " << repeats << ", \"size\": " << o.cfg.size
    << ", \"workers\": " << o.cfg.workers << ", \"date\": " << json_string(utc_now()) << "},\n";
  j << "  \"workloads\": [";
  for (std::size_t i = 0; i < results.size(); ++i) {
    const result& r = results[i];
    j << (i == 0 ? "\n" : ",\n") << "    {\"name\": " << json_string(r.name)
      << ", \"unit\": " << json_string(r.unit)
      << ", \"lower_is_better\": " << (r.lower_is_better ? "true" : "false")
      << ", \"size\": " << json_string(r.w->size(o.cfg));
    if (r.error.empty()) {
      j << ", \"median\": " << json_number(r.median) << ", \"min\": " << json_number(r.min)
        << ", \"max\": " << json_number(r.max);
    } else {
      j << ", \"error\": " << json_string(r.error);
    }
    j << ", \"runs\": [";
    for (std::size_t k = 0; k < r.runs.size(); ++k) {
      j << (k == 0 ? "" : ", ") << json_number(r.runs[k]);
    }
    j << "]}";
  }
  j << "\n  ]\n}\n";
  std::ofstream out(path);
  out << j.str();
  out.close();
  return static_cast<bool>(out);
}

inline int run_child(const options& o, const std::vector<workload>& all) {
  for (const workload& w : all) {
    if (w.name != o.child) continue;
    try {
      for (const double v : run_here(w, o.cfg)) std::printf("%.17g\n", v);
      return 0;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "%s: %s: %s\n", program.c_str(), w.name.c_str(), e.what());
      return 1;
    }
  }
  std::fprintf(stderr, "%s: no workload named %s\n", program.c_str(), o.child.c_str());
  return 1;
}

// Runs the driver over `all` (the executable's workloads): parses argv, runs, reports.
inline int run(int argc, char** argv, const std::string& program_name,
               const std::vector<workload>& all) {
  program = program_name;
  options o;
  try {
    o = parse(argc, argv);
  } catch (const usage_error& e) {
    std::fprintf(stderr, "%s: %s\n%s", program.c_str(), e.what(), usage().c_str());
    return 2;
  }

  if (!o.child.empty()) return run_child(o, all);

  if (o.list) {
    for (const workload& w : all) {
      for (const std::string& name : row_names(w)) {
        std::printf("%-*s %-8s %-14s %s\n", name_width, name.c_str(), w.group.c_str(),
                    w.unit.c_str(), w.size(o.cfg).c_str());
      }
    }
    return 0;
  }

  std::vector<const workload*> selected;
  for (const workload& w : all) {
    const bool wanted =
        o.selection.empty() || std::any_of(o.selection.begin(), o.selection.end(),
                                           [&w](const std::string& s) { return selects(s, w); });
    if (wanted) selected.push_back(&w);
  }
  for (const std::string& s : o.selection) {
    const bool known =
        std::any_of(all.begin(), all.end(), [&s](const workload& w) { return selects(s, w); });
    if (!known) {
      std::fprintf(stderr, "%s: unknown workload '%s' (see --list)\n%s", program.c_str(), s.c_str(),
                   usage().c_str());
      return 2;
    }
  }

  const std::size_t repeats = o.repeats.value_or(o.cfg.quick ? 1 : 5);
  std::printf("%s: %s, %zu repeat%s, workers=%zu%s\n", program.c_str(), cpu_model().c_str(),
              repeats, repeats == 1 ? "" : "s", o.cfg.workers,
              o.cfg.workers == 0 ? " (the default)" : "");
  print_header();
  std::fflush(stdout);

  std::vector<result> results;
  bool ok = true;
  for (const workload* w : selected) {
    const std::vector<result> rows = run_workload(*w, o.cfg, repeats);
    for (const result& r : rows) print_row(r);
    if (!rows.front().error.empty()) {
      std::fprintf(stderr, "%s: %s failed: %s\n", program.c_str(), w->name.c_str(),
                   rows.front().error.c_str());
      ok = false;
    }
    results.insert(results.end(), rows.begin(), rows.end());
  }

  if (!o.json_path.empty() && !write_json(o.json_path, results, o, repeats)) {
    std::fprintf(stderr, "%s: cannot write %s\n", program.c_str(), o.json_path.c_str());
    ok = false;
  }
  return ok ? 0 : 1;
}

}  // namespace driver
}  // namespace troupe_bench
