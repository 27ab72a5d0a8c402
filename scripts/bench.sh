#!/usr/bin/env bash
# The side-by-side benchmark: troupe, CAF 0.17 and the bare-thread floor, on this machine, in one
# run. Installs what it needs when run as root (Debian: cmake, a compiler, the troupe
# dependencies, libcaf-dev), builds Release in build/bench, runs the three executables
# alternately (for each workload, each repeat: troupe, CAF, floor), then writes one table to the
# terminal, build/bench/results.json, docs/performance.md (between the bench markers) and
# docs/bench.svg.
#
#   scripts/bench.sh [--quick] [--repeats N] [--no-docs] [workload...]
#
#   --quick      every workload at its small size, 1 repeat; writes build/bench/results.json only
#                (docs are left alone: quick figures are not comparable)
#   --repeats N  runs of each workload per side (default 3)
#   --no-docs    do not touch docs/ (results.json and the terminal only)
#   workload     a subset of: pingpong ask fanin broadcast spawn idle_actor_bytes ring latency
#                queue restart, and the scale workloads (troupe only): scale_broadcast
#                scale_subscriptions scale_actors_1m scale_actors_10m scale_pairs scale_queue
#                (default: all)
#
# Without libcaf-dev (and not root to install it) the CAF column stays empty: never an error.
# A single run is stopped after TROUPE_BENCH_RUN_TIMEOUT seconds (default 180) and counted failed.
# Exit status: 0 if every run succeeded, 1 otherwise.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
# shellcheck source=scripts/lib/deps.sh
source scripts/lib/deps.sh

QUICK=0
REPEATS=3
DOCS=1
declare -a WORKLOADS=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --quick) QUICK=1 ;;
    --repeats)
      [[ $# -ge 2 && $2 =~ ^[1-9][0-9]*$ ]] || { troupe_log "--repeats needs a positive number"; exit 2; }
      REPEATS=$2
      shift
      ;;
    --no-docs) DOCS=0 ;;
    -h | --help)
      sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    -*) troupe_log "unknown option $1"; exit 2 ;;
    *) WORKLOADS+=("$1") ;;
  esac
  shift
done
if [[ $QUICK == 1 ]]; then
  REPEATS=1
  DOCS=0
fi
ALL_WORKLOADS=(pingpong ask fanin broadcast spawn idle_actor_bytes ring latency queue restart
  scale_broadcast scale_subscriptions scale_actors_1m scale_actors_10m scale_pairs scale_queue)
PEER_WORKLOADS=" pingpong ask fanin broadcast spawn idle_actor_bytes ring latency "
[[ ${#WORKLOADS[@]} -eq 0 ]] && WORKLOADS=("${ALL_WORKLOADS[@]}")
for w in "${WORKLOADS[@]}"; do
  [[ " ${ALL_WORKLOADS[*]} " == *" $w "* ]] || { troupe_log "unknown workload '$w' (known: ${ALL_WORKLOADS[*]})"; exit 2; }
done

# ---- dependencies -----------------------------------------------------------------------------
troupe_require cmd:cmake:cmake cmd:python3:python3 cmd:g++:g++ "${TROUPE_LIBRARY_PACKAGES[@]}" || exit 1
if ! troupe_require pkg:libcaf-dev; then
  troupe_log "libcaf-dev is not installed: the CAF column will be empty"
fi

# ---- build ------------------------------------------------------------------------------------
DIR=build/bench
mkdir -p "$DIR"
GENERATOR=$(troupe_cmake_generator)
troupe_check_build_dir "$DIR" "$GENERATOR"
echo "--- configure ($DIR, Release, $GENERATOR)"
cmake -S . -B "$DIR" -G "$GENERATOR" -DCMAKE_BUILD_TYPE=Release -DTROUPE_BUILD_BENCH=ON \
  -DTROUPE_BUILD_TESTS=OFF -DTROUPE_BUILD_EXAMPLES=OFF -DTROUPE_SANITIZER= >"$DIR/configure.log" 2>&1 ||
  { cat "$DIR/configure.log"; exit 1; }
grep -E "troupe: CAF" "$DIR/configure.log" || true
echo "--- build (-j$(troupe_nproc))"
cmake --build "$DIR" --parallel "$(troupe_nproc)"

declare -A EXE=([troupe]="$DIR/troupe-bench" [caf]="$DIR/troupe-bench-caf" [floor]="$DIR/troupe-floor")
SIDES=(troupe caf floor)
if [[ ! -x ${EXE[caf]} ]]; then
  SIDES=(troupe floor)
  troupe_log "troupe-bench-caf was not built (CAF not found): running troupe and the floor only"
fi

# ---- run, alternating -------------------------------------------------------------------------
RUNS=$DIR/runs
RUN_TIMEOUT=${TROUPE_BENCH_RUN_TIMEOUT:-180}
rm -rf "$RUNS"
mkdir -p "$RUNS"
LOG=$RUNS/log.txt
declare -a SIZE_FLAGS=()
[[ $QUICK == 1 ]] && SIZE_FLAGS=(--quick)
failed=0
start=$SECONDS
echo "--- run: ${WORKLOADS[*]}; $REPEATS repeat(s); sides: ${SIDES[*]} (log: $LOG)"
for w in "${WORKLOADS[@]}"; do
  for ((r = 1; r <= REPEATS; r++)); do
    line="$(printf '%-18s %d/%d:' "$w" "$r" "$REPEATS")"
    for side in "${SIDES[@]}"; do
      if [[ $side != troupe && $PEER_WORKLOADS != *" $w "* ]]; then continue; fi
      json="$RUNS/$side-$w-$r.json"
      # A run that takes longer than RUN_TIMEOUT s is stopped and counted as failed (a spin floor
      # on a heavily loaded machine can take minutes).
      if timeout "$RUN_TIMEOUT" "${EXE[$side]}" "${SIZE_FLAGS[@]}" --repeats 1 --json "$json" "$w" >>"$LOG" 2>&1; then
        line+=" $side ok"
      else
        line+=" $side FAILED"
        failed=$((failed + 1))
        rm -f "$json"
      fi
    done
    echo "$line ($((SECONDS - start)) s)"
  done
done

# ---- report -----------------------------------------------------------------------------------
declare -a REPORT=(--json-out "$DIR/results.json")
cmdline="scripts/bench.sh"
[[ $QUICK == 1 ]] && cmdline+=" --quick"
cmdline+=" --repeats $REPEATS"
[[ ${#WORKLOADS[@]} -ne ${#ALL_WORKLOADS[@]} ]] && cmdline+=" ${WORKLOADS[*]}"
REPORT+=(--command "$cmdline")
if [[ $DOCS == 1 ]]; then
  REPORT+=(--svg docs/bench.svg --doc docs/performance.md)
else
  REPORT+=(--svg "$DIR/bench.svg")
fi
shopt -s nullglob
for side in troupe caf floor; do
  files=("$RUNS/$side"-*.json)
  [[ ${#files[@]} -gt 0 ]] && REPORT+=("--$side" "${files[@]}")
done
shopt -u nullglob
echo
python3 scripts/bench_report.py "${REPORT[@]}"
echo
echo "results: $ROOT/$DIR/results.json"
[[ $DOCS == 1 ]] && echo "docs: $ROOT/docs/performance.md, $ROOT/docs/bench.svg"
if [[ $failed -ne 0 ]]; then
  troupe_log "$failed run(s) failed: see $LOG"
  exit 1
fi
