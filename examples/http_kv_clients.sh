#!/bin/sh
# Test of example_http_kv with real clients: curl (GET, PUT, 404, a malformed request target,
# a body over the limit) and a short wrk run that must report no socket errors and no non-2xx
# answers (not a speed check); then SIGTERM, and the server must report its accounting intact.
# Every wait is bounded.
#
#   http_kv_clients.sh <example_http_kv> <curl> <wrk> <wrk script>
set -u
prog=$1
curl=$2
wrk=$3
script=$4
dir=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null; fi
  rm -rf "$dir"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*"
  echo "--- server output:"; cat "$dir/log" 2>/dev/null
  exit 1
}

timeout 120 "$prog" --port 0 --duration 100 --preload 10000 >"$dir/log" 2>&1 &
pid=$!
port=
tries=0
while [ -z "$port" ]; do
  port=$(sed -n 's/^listening on 127\.0\.0\.1:\([0-9][0-9]*\)$/\1/p' "$dir/log")
  [ -n "$port" ] && break
  tries=$((tries + 1))
  [ "$tries" -gt 300 ] && fail "no port printed within 30 s"
  kill -0 "$pid" 2>/dev/null || fail "the server exited early"
  sleep 0.1
done
url=http://127.0.0.1:$port
echo "server on port $port"

code() { "$curl" --silent --max-time 10 -o "$dir/body" -w '%{http_code}' "$@"; }
[ "$(code -X PUT --data-binary 'hello' "$url/kv/greeting")" = 201 ] || fail "PUT new key: not 201"
[ "$(code -X PUT --data-binary 'hi' "$url/kv/greeting")" = 204 ] || fail "PUT again: not 204"
[ "$(code "$url/kv/greeting")" = 200 ] || fail "GET: not 200"
[ "$(cat "$dir/body")" = hi ] || fail "GET: wrong body $(cat "$dir/body")"
[ "$(code "$url/kv/key-42")" = 200 ] || fail "GET a preloaded key: not 200"
[ "$(code "$url/kv/nobody")" = 404 ] || fail "GET a missing key: not 404"
[ "$(code --request-target 'no-slash' "$url/")" = 400 ] || fail "malformed target: not 400"
head -c 100000 /dev/zero >"$dir/big"
[ "$(code -X PUT --data-binary @"$dir/big" "$url/kv/big")" = 413 ] || fail "100 KB body: not 413"
two=$("$curl" --silent --max-time 10 -o /dev/null -o /dev/null -w '%{http_code}%{num_connects} ' \
  "$url/kv/greeting" "$url/kv/key-1")
[ "$two" = "2001 2000 " ] || fail "two GETs on one kept-alive connection: $two"
echo "curl checks passed"

"$wrk" -t2 -c32 -d2s --timeout 5s -s "$script" "$url/" >"$dir/wrk" 2>&1 || fail "wrk failed: $(cat "$dir/wrk")"
cat "$dir/wrk"
grep -q '^Requests/sec' "$dir/wrk" || fail "wrk printed no result"
if grep -Eq 'Socket errors|Non-2xx' "$dir/wrk"; then fail "wrk saw errors"; fi

kill -TERM "$pid"
wait "$pid"
status=$?
pid=
[ "$status" -eq 0 ] || fail "the server exited with status $status"
cat "$dir/log"
grep -q '^stopped by a signal$' "$dir/log" || fail "the server did not stop on SIGTERM"
grep -q '^accounting: sent = handled + dead letters + rejected holds; dead letters 0, failures 0, open asks 0$' \
  "$dir/log" || fail "accounting"
echo "PASS"
