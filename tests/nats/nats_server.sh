#!/usr/bin/env bash
# Starts or stops the nats-server of the NATS tests (a CTest fixture; see CMakeLists.txt here).
#
#   nats_server.sh start <nats-server> <state-dir>   127.0.0.1, a free port, JetStream on with a
#                                                    store under <state-dir>; returns once the
#                                                    server answers on its monitoring port
#   nats_server.sh stop <state-dir>                  stops it and removes the store
#
# The client URL is written to <state-dir>/url, the server's pid to <state-dir>/pid.
set -euo pipefail

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

case ${1:-} in
  start)
    server=$2
    dir=$3
    mkdir -p "$dir"
    if [[ -f $dir/pid ]] && kill -0 "$(cat "$dir/pid")" 2>/dev/null; then
      kill "$(cat "$dir/pid")" || true
    fi
    rm -rf "$dir/store" "$dir/url" "$dir/pid"
    # A port could be taken between choosing and binding it: try a few.
    for attempt in 1 2 3 4 5; do
      port=$(free_port)
      monitor=$(free_port)
      "$server" -a 127.0.0.1 -p "$port" -m "$monitor" -js -sd "$dir/store" >"$dir/server.log" 2>&1 &
      pid=$!
      echo "$pid" >"$dir/pid"
      # Ready when the monitoring endpoint says so (polled, bounded: 10 s).
      for _ in $(seq 1 200); do
        if ! kill -0 "$pid" 2>/dev/null; then break; fi
        if python3 - "$monitor" <<'PY' 2>/dev/null; then
import sys, urllib.request
with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/healthz", timeout=1) as r:
    sys.exit(0 if r.status == 200 else 1)
PY
          echo "nats://127.0.0.1:$port" >"$dir/url"
          echo "nats-server pid $pid on nats://127.0.0.1:$port (attempt $attempt)"
          exit 0
        fi
        sleep 0.05
      done
      kill "$pid" 2>/dev/null || true
      wait "$pid" 2>/dev/null || true
      echo "nats-server did not become ready on port $port (attempt $attempt):" >&2
      tail -n 5 "$dir/server.log" >&2 || true
    done
    exit 1
    ;;
  stop)
    dir=$2
    if [[ -f $dir/pid ]]; then
      pid=$(cat "$dir/pid")
      if kill "$pid" 2>/dev/null; then
        for _ in $(seq 1 200); do
          kill -0 "$pid" 2>/dev/null || break
          sleep 0.05
        done
        kill -9 "$pid" 2>/dev/null || true
      fi
    fi
    rm -rf "$dir/store" "$dir/url" "$dir/pid"
    ;;
  *)
    echo "usage: $0 start <nats-server> <state-dir> | stop <state-dir>" >&2
    exit 2
    ;;
esac
