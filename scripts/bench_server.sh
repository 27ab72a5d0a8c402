#!/usr/bin/env bash
# Server benchmark: the http_kv service on troupe (examples/http_kv.cpp) against the same service
# on plain Asio (bench/http_asio_baseline.cpp), both driven by wrk on 127.0.0.1.
#
# Builds both (Release, build/bench-server), then for each connection count (1, 64, 1024) and
# each repeat starts each server afresh (alternating which goes first), preloads 10,000 keys,
# runs wrk (90% GET, 10% PUT; scripts/lib/http_kv.lua) with --latency, and records:
# requests/s and wrk's latency percentiles; the service's own latency histogram (readiness seen
# -> response written, printed by the server at exit, free of coordinated omission's blind
# spot on the client side); and the server's CPU time per request (utime+stime from
# /proc/<pid>/stat over the wrk run). Medians over the repeats go to a table on the terminal,
# to build/bench-server/results.md, and (unless --no-docs) to docs/performance.md between the
# server-bench markers, with whether the goals hold (troupe >= 0.8x the baseline's requests/s
# and p99 within 1.5x, at 64 and 1,024 connections).
#
#   scripts/bench_server.sh [--duration S] [--repeats N] [--connections "1 64 1024"]
#                           [--troupe-args "..."] [--no-docs] [--quick]
#
#   --duration S      seconds of load per wrk run (default 10)
#   --repeats N       runs per server and connection count (default 3)
#   --troupe-args     extra options for example_http_kv (e.g. "--access ask --io-threads 2")
#   --quick           2 s runs, 1 repeat, no docs (a smoke run)
#
# Needs wrk (Debian package wrk) and python3. Exit status: 0 if every run completed with no
# wrk socket errors and no non-2xx answers, 1 otherwise.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
# shellcheck source=scripts/lib/deps.sh
source scripts/lib/deps.sh

DURATION=10
REPEATS=3
CONNECTIONS="1 64 1024"
TROUPE_ARGS=""
DOCS=1
while [[ $# -gt 0 ]]; do
  case $1 in
    --duration) DURATION=$2; shift ;;
    --repeats) REPEATS=$2; shift ;;
    --connections) CONNECTIONS=$2; shift ;;
    --troupe-args) TROUPE_ARGS=$2; shift ;;
    --no-docs) DOCS=0 ;;
    --quick) DURATION=2; REPEATS=1; DOCS=0 ;;
    -h | --help) sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) troupe_log "unknown option $1"; exit 2 ;;
  esac
  shift
done
[[ $DURATION =~ ^[1-9][0-9]*$ && $REPEATS =~ ^[1-9][0-9]*$ ]] || {
  troupe_log "--duration and --repeats take positive numbers"
  exit 2
}

if ! command -v wrk >/dev/null 2>&1; then
  troupe_log "wrk is missing: the server bench drives both servers with it."
  troupe_log "Install the Debian package: apt-get install wrk (or put wrk on PATH)."
fi
troupe_require cmd:wrk:wrk cmd:python3:python3 cmd:cmake:cmake || exit 1

BUILD=$ROOT/build/bench-server
troupe_log "building Release in $BUILD"
cmake -S "$ROOT" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DTROUPE_BUILD_TESTS=OFF \
  -DTROUPE_BUILD_EXAMPLES=ON -DTROUPE_BUILD_BENCH=ON -DTROUPE_WERROR=OFF \
  $(command -v ccache >/dev/null && echo -DCMAKE_CXX_COMPILER_LAUNCHER=ccache) >/dev/null
cmake --build "$BUILD" --target example_http_kv http-asio-baseline -j "$(nproc)" >/dev/null
TROUPE_BIN=$BUILD/examples/example_http_kv
ASIO_BIN=$BUILD/http-asio-baseline

# 1,024 connections need descriptors on both sides (wrk and the server are children of this
# shell, and inherit the limit).
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [[ $(ulimit -n) != unlimited && $(ulimit -n) -lt 4096 ]]; then
  troupe_log "warning: only $(ulimit -n) descriptors; 1,024 connections may fail"
fi

OUT=$BUILD/runs
rm -rf "$OUT"
mkdir -p "$OUT"
TICKS=$(getconf CLK_TCK)
failed=0

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# A server still running when this script ends (an error, ^C) is stopped with it.
SERVER_PID=
trap '[[ -n $SERVER_PID ]] && kill "$SERVER_PID" 2>/dev/null; true' EXIT

# run_one <server> <connections> <repeat>: one server process, one wrk run.
run_one() {
  local side=$1 conns=$2 rep=$3 tag="$1-c$2-r$3" pid port tries=0 threads
  local -a cmd
  if [[ $side == troupe ]]; then
    # shellcheck disable=SC2206
    cmd=("$TROUPE_BIN" --port 0 --preload 10000 $TROUPE_ARGS)
  else
    cmd=("$ASIO_BIN" --port 0 --preload 10000)
  fi
  : >"$OUT/$tag.server"
  "${cmd[@]}" >"$OUT/$tag.server" 2>&1 &
  pid=$!
  SERVER_PID=$pid
  port=
  while [[ -z $port ]]; do
    port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$OUT/$tag.server" || true)
    [[ -n $port ]] && break
    tries=$((tries + 1))
    if [[ $tries -gt 200 ]] || ! kill -0 "$pid" 2>/dev/null; then
      troupe_log "$tag: the server did not start"; failed=1; kill "$pid" 2>/dev/null; return
    fi
    sleep 0.05
  done
  threads=2
  [[ $conns -lt 2 ]] && threads=1
  local before after
  before=$(cpu_ticks "$pid")
  wrk -t"$threads" -c"$conns" -d"${DURATION}s" --timeout 10s --latency \
    -s "$ROOT/scripts/lib/http_kv.lua" "http://127.0.0.1:$port/" >"$OUT/$tag.wrk" 2>&1 || failed=1
  after=$(cpu_ticks "$pid")
  kill -TERM "$pid"
  wait "$pid" || { troupe_log "$tag: the server exited with an error"; failed=1; }
  SERVER_PID=
  echo "cpu_ticks $((after - before)) $TICKS" >>"$OUT/$tag.wrk"
  troupe_log "$tag: $(grep '^Requests/sec' "$OUT/$tag.wrk" || echo 'no result')"
}

for conns in $CONNECTIONS; do
  for ((rep = 1; rep <= REPEATS; rep++)); do
    if ((rep % 2 == 1)); then order="troupe asio"; else order="asio troupe"; fi
    for side in $order; do run_one "$side" "$conns" "$rep"; done
  done
done

python3 - "$OUT" "$ROOT" "$DOCS" "$DURATION" "$REPEATS" "$TROUPE_ARGS" <<'EOF' || failed=1
import glob, os, re, statistics, subprocess, sys, datetime
out, root, docs, duration, repeats, troupe_args = sys.argv[1:7]

def to_us(s):
    m = re.match(r"([\d.]+)(us|ms|s)$", s)
    v = float(m.group(1))
    return v * {"us": 1, "ms": 1e3, "s": 1e6}[m.group(2)]

runs = {}
bad = 0
for path in sorted(glob.glob(os.path.join(out, "*.wrk"))):
    tag = os.path.basename(path)[:-4]
    side, c, r = re.match(r"(\w+)-c(\d+)-r(\d+)", tag).groups()
    w = open(path).read()
    s = open(path[:-4] + ".server").read()
    rps = re.search(r"Requests/sec:\s+([\d.]+)", w)
    reqs = re.search(r"(\d+) requests in", w)
    if not rps or not reqs:
        print(f"{tag}: no wrk result", file=sys.stderr); bad = 1; continue
    if re.search(r"Socket errors|Non-2xx", w):
        print(f"{tag}: wrk reported errors:\n{w}", file=sys.stderr); bad = 1
    pct = dict((p, to_us(v)) for p, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)$", w, re.M))
    svc = re.search(r"service latency \(us\): count (\d+) p50 ([\d.]+) p90 ([\d.]+) p99 ([\d.]+) "
                    r"p99\.9 ([\d.]+) max ([\d.]+)", s)
    ticks, hz = map(int, re.search(r"cpu_ticks (\d+) (\d+)", w).groups())
    cpu_us = ticks / hz * 1e6 / int(reqs.group(1))
    runs.setdefault((side, int(c)), []).append(dict(
        rps=float(rps.group(1)), p50=pct.get("50"), p90=pct.get("90"), p99=pct.get("99"),
        s50=float(svc.group(2)) if svc else None, s99=float(svc.group(4)) if svc else None,
        s999=float(svc.group(5)) if svc else None, cpu=cpu_us))

def med(side, c, k):
    vals = [x[k] for x in runs.get((side, c), []) if x[k] is not None]
    return statistics.median(vals) if vals else None

def f(v, d=0):
    return "-" if v is None else f"{v:,.{d}f}"

conns = sorted({c for _, c in runs})
lines = []
lines.append("| connections | server | requests/s | wrk p50 (us) | wrk p90 | wrk p99 | service p50 (us) | service p99 | service p99.9 | CPU per request (us) |")
lines.append("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
goals = []
for c in conns:
    for side, name in (("troupe", "troupe"), ("asio", "plain Asio")):
        lines.append(f"| {c:,} | {name} | {f(med(side,c,'rps'))} | {f(med(side,c,'p50'))} | "
                     f"{f(med(side,c,'p90'))} | {f(med(side,c,'p99'))} | {f(med(side,c,'s50'),1)} | "
                     f"{f(med(side,c,'s99'),1)} | {f(med(side,c,'s999'),1)} | {f(med(side,c,'cpu'),2)} |")
    t, a = med("troupe", c, "rps"), med("asio", c, "rps")
    tp, ap = med("troupe", c, "p99"), med("asio", c, "p99")
    if t and a and tp and ap:
        ok = (t / a >= 0.8 and tp / ap <= 1.5) if c >= 64 else None
        goals.append((c, t / a, tp / ap, ok))
summary = []
for c, r, p, ok in goals:
    verdict = "" if ok is None else (" — goal met" if ok else " — goal NOT met")
    summary.append(f"- {c:,} connections: troupe/Asio requests/s {r:.2f}x, wrk p99 {p:.2f}x{verdict}")
cpu = subprocess.run(["sh", "-c", "lscpu | sed -n 's/^Model name: *//p' | head -1"], capture_output=True, text=True).stdout.strip()
load = open("/proc/loadavg").read().split()[0]
head = (f"Run of {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC on {os.cpu_count()} CPUs "
        f"({cpu or 'unknown CPU'}), load average {load} at the end; wrk {duration} s per run, "
        f"{repeats} run(s) per cell (medians), servers alternated"
        + (f"; troupe options: `{troupe_args}`" if troupe_args.strip() else "") + ".")
text = head + "\n\n" + "\n".join(lines) + "\n\n" + "\n".join(summary) + "\n"
print(text)
open(os.path.join(out, "..", "results.md"), "w").write(text)
if docs == "1":
    p = os.path.join(root, "docs", "performance.md")
    doc = open(p).read()
    b, e = "<!-- server-bench:begin -->", "<!-- server-bench:end -->"
    if b in doc and e in doc:
        doc = doc[:doc.index(b) + len(b)] + "\n" + text + doc[doc.index(e):]
        open(p, "w").write(doc)
        print(f"wrote {p}")
    else:
        print(f"{p} has no server-bench markers: table not written there", file=sys.stderr)
sys.exit(bad)
EOF
exit $failed
