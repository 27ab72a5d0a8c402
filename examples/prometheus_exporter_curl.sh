#!/bin/sh
# Test of example_prometheus_exporter with a real HTTP client: start the exporter, read its
# port, scrape /metrics with curl, check the lines against the Prometheus text format, ask for
# a missing page (404), and check that the exporter then exits by itself. Every wait is bounded.
#
#   prometheus_exporter_curl.sh <example_prometheus_exporter> <curl>
set -u
prog=$1
curl=$2
dir=$(mktemp -d)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null; fi
  rm -rf "$dir"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*"
  echo "--- exporter output:"; cat "$dir/log" 2>/dev/null
  exit 1
}

timeout 60 "$prog" --serve --max-requests 2 --seconds 45 >"$dir/log" 2>&1 &
pid=$!

port=
tries=0
while [ -z "$port" ]; do
  port=$(sed -n 's|^listening on http://127\.0\.0\.1:\([0-9][0-9]*\)/metrics$|\1|p' "$dir/log")
  [ -n "$port" ] && break
  tries=$((tries + 1))
  [ "$tries" -gt 300 ] && fail "no port printed within 30 s"
  kill -0 "$pid" 2>/dev/null || fail "the exporter exited early"
  sleep 0.1
done
echo "exporter on port $port"

"$curl" --silent --show-error --fail --max-time 10 -D "$dir/headers" \
  "http://127.0.0.1:$port/metrics" >"$dir/body" || fail "curl could not scrape /metrics"
grep -qi '^content-type: text/plain; version=0.0.4' "$dir/headers" || fail "wrong content type"

# Every line: a HELP or TYPE comment, or a sample: name{label="value",...} number.
bad=$(grep -Ev '^# HELP [a-zA-Z_:][a-zA-Z0-9_:]* .+$|^# TYPE [a-zA-Z_:][a-zA-Z0-9_:]* (counter|gauge|summary|histogram|untyped)$|^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*"(,[a-zA-Z_][a-zA-Z0-9_]*="([^"\\]|\\.)*")*\})? [-+]?([0-9]*\.?[0-9]+([eE][-+]?[0-9]+)?|NaN|[-+]Inf)$' "$dir/body")
[ -z "$bad" ] || fail "lines not in the Prometheus text format: $bad"
for want in '^# TYPE troupe_sent_total counter$' \
            '^troupe_handled_total [0-9][0-9]*$' \
            '^# TYPE troupe_queue_wait_seconds histogram$' \
            '^troupe_queue_wait_seconds_bucket{actor_type="[^"]*pricer",message_type="[^"]*quote_request",le="0.001"} [0-9]' \
            '^troupe_queue_wait_seconds_bucket{actor_type="[^"]*pricer",message_type="[^"]*quote_request",le="+Inf"} [0-9]' \
            '^troupe_service_time_seconds_count{' \
            '^troupe_ask_round_trip_seconds_sum{' \
            '^troupe_actor_mailbox_high_water{' \
            '^troupe_topic_deliveries_total{subject="ticks.equity"} [0-9]'; do
  grep -q "$want" "$dir/body" || fail "no line matching: $want"
done
echo "scraped $(wc -l <"$dir/body") lines"

code=$("$curl" --silent --max-time 10 -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/nothing")
[ "$code" = "404" ] || fail "expected 404 for /nothing, got $code"

wait "$pid"
status=$?
pid=
[ "$status" -eq 0 ] || fail "the exporter exited with status $status"
grep -q '^served 2 requests$' "$dir/log" || fail "the exporter did not report 2 requests"
echo "PASS"
