#!/usr/bin/env python3
"""The latency histograms of two exporter processes, added up by a real Prometheus server.

Starts two example_prometheus_exporter processes on loopback -- A builds 40 reports of 1 ms, B 40
of 8 ms -- and a Prometheus server (a temporary config and data directory, scrape interval 1 s)
that scrapes both, then asks Prometheus's HTTP API (/api/v1/query) for

  sum(troupe_service_time_seconds_count{...build_report...})                     == 80
  histogram_quantile(q, sum by (le) (troupe_service_time_seconds_bucket{...}))   q = 0.25, 0.99

and checks each quantile against the one computed here, with Prometheus's interpolation, from
the buckets of both exporters scraped directly: the answer must be the sum of both processes'
buckets, not one's. (The exporters' counts no longer change once they listen, so the raw bucket
sums at an instant are queried, not a rate().) Timer lateness on a loaded machine moves the
values, so the only bounds checked on them are the ones lateness cannot break: no report is
faster than it waits, so p25 >= 1 ms and p99 (among B's reports) >= 5 ms.

Every wait is a bounded poll. Exit status 77 (a skip) when no Prometheus server is installed.

  prometheus_exporter_prometheus.py <example_prometheus_exporter> [<prometheus>]
"""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request

SKIP = 77
REPORTS = 40
SELECTOR = 'troupe_service_time_seconds_bucket{message_type=~".*build_report.*"}'


class Failure(Exception):
    pass


def poll(what, deadline_s, step, interval=0.1):
    """Calls step() until it returns something other than None, for at most deadline_s."""
    deadline = time.monotonic() + deadline_s
    while True:
        result = step()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            raise Failure(f"timed out after {deadline_s} s waiting for {what}")
        time.sleep(interval)


def read_file(path):
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def start_exporter(program, tmp, name, report_ms):
    log = os.path.join(tmp, f"exporter-{name}.log")
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [program, "--serve", "--seconds", "110", "--reports", str(REPORTS),
             "--report-ms", str(report_ms)],
            stdout=out, stderr=subprocess.STDOUT)

    def port():
        m = re.search(r"^listening on http://127\.0\.0\.1:(\d+)/metrics$", read_file(log), re.M)
        if m:
            return int(m.group(1))
        if proc.poll() is not None:
            raise Failure(f"exporter {name} exited early ({proc.returncode}):\n{read_file(log)}")
        return None

    return proc, log, port


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read().decode()


def query(base, expr):
    status, body = http_get(f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    doc = json.loads(body)
    if status != 200 or doc.get("status") != "success":
        raise Failure(f"query {expr!r} failed: {body}")
    return doc["data"]["result"]


def scalar(base, expr):
    """The value of a query with one result (None when it has none yet)."""
    result = query(base, expr)
    if not result:
        return None
    if len(result) != 1:
        raise Failure(f"query {expr!r}: expected one series, got {result}")
    return float(result[0]["value"][1])


BUCKET_LINE = re.compile(
    r'^troupe_service_time_seconds_bucket\{[^}]*message_type="[^"]*build_report[^"]*",'
    r'le="([^"]+)"\} (\d+)$', re.M)


def scrape_buckets(port):
    """{le: cumulative count} of the exporter's build_report service-time histogram."""
    status, body = http_get(f"http://127.0.0.1:{port}/metrics")
    if status != 200:
        raise Failure(f"scraping 127.0.0.1:{port} answered {status}")
    buckets = {le: int(n) for le, n in BUCKET_LINE.findall(body)}
    if "+Inf" not in buckets:
        raise Failure(f"no build_report histogram on 127.0.0.1:{port}:\n{body}")
    return buckets


def histogram_quantile(q, buckets):
    """Prometheus's histogram_quantile over {le: cumulative count}: linear interpolation inside
    the bucket where the rank falls (from 0 in the first bucket); the highest finite bound when
    it falls in +Inf."""
    bounds = sorted((float(le), n) for le, n in buckets.items())
    total = bounds[-1][1]
    rank = q * total
    i = next(k for k, (_, n) in enumerate(bounds) if n >= rank)
    if i == len(bounds) - 1:
        return bounds[-2][0]
    start, below = (bounds[i - 1][0], bounds[i - 1][1]) if i > 0 else (0.0, 0)
    return start + (bounds[i][0] - start) * (rank - below) / (bounds[i][1] - below)


def main():
    if len(sys.argv) < 2:
        print(__doc__)
        return 2
    program = sys.argv[1]
    prometheus = sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] else shutil.which("prometheus")
    if not prometheus or not os.access(prometheus, os.X_OK):
        print("SKIP: no Prometheus server (install the Debian package `prometheus`; "
              "scripts/test.sh does) -- the histogram export was not checked against it")
        return SKIP

    tmp = tempfile.mkdtemp(prefix="troupe-prometheus-")
    procs = []
    prom_log = os.path.join(tmp, "prometheus.log")
    try:
        a, a_log, a_port = start_exporter(program, tmp, "A", 1)
        procs.append(a)
        b, b_log, b_port = start_exporter(program, tmp, "B", 8)
        procs.append(b)
        ports = [poll("exporter A's port", 60, a_port), poll("exporter B's port", 60, b_port)]
        print(f"exporters on ports {ports[0]} (40 x 1 ms) and {ports[1]} (40 x 8 ms)")

        config = os.path.join(tmp, "prometheus.yml")
        with open(config, "w") as f:
            f.write("global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                    "scrape_configs:\n  - job_name: troupe\n    static_configs:\n"
                    f"      - targets: ['127.0.0.1:{ports[0]}', '127.0.0.1:{ports[1]}']\n")
        web_port = free_port()
        base = f"http://127.0.0.1:{web_port}"
        with open(prom_log, "w") as out:
            prom = subprocess.Popen(
                [prometheus, f"--config.file={config}",
                 f"--storage.tsdb.path={os.path.join(tmp, 'data')}",
                 f"--web.listen-address=127.0.0.1:{web_port}", "--log.level=warn"],
                stdout=out, stderr=subprocess.STDOUT)
        procs.append(prom)
        print(f"prometheus ({prometheus}) on {base}")

        def ready():
            if prom.poll() is not None:
                raise Failure(f"prometheus exited ({prom.returncode})")
            try:
                return True if http_get(f"{base}/-/ready", timeout=2)[0] == 200 else None
            except (urllib.error.URLError, ConnectionError, OSError):
                return None

        poll("prometheus to be ready", 60, ready, 0.2)

        count_expr = ('sum(troupe_service_time_seconds_count'
                      '{message_type=~".*build_report.*"})')

        def both_scraped():
            up = scalar(base, 'count(up{job="troupe"} == 1)')
            n = scalar(base, count_expr)
            return n if up == 2 and n == 2 * REPORTS else None

        total = poll("both exporters' 80 reports in Prometheus", 60, both_scraped, 0.25)
        print(f"{count_expr} = {total:g}")

        # The same exporters scraped directly, their buckets added here.
        summed = {}
        for port in ports:
            for le, n in scrape_buckets(port).items():
                summed[le] = summed.get(le, 0) + n
        if summed["+Inf"] != 2 * REPORTS:
            raise Failure(f"the exporters' +Inf buckets add up to {summed['+Inf']}")
        for q in (0.25, 0.99):
            got = scalar(base, f"histogram_quantile({q}, sum by (le) ({SELECTOR}))")
            want = histogram_quantile(q, summed)
            print(f"histogram_quantile({q}) over both: prometheus {got * 1e3:.4f} ms, "
                  f"from the summed scrapes {want * 1e3:.4f} ms")
            if abs(got - want) > 1e-9 * max(1.0, abs(want)):
                raise Failure(f"p{q * 100:g}: prometheus says {got}, the summed buckets {want}")
        # Lateness only adds: every report took at least its wait. p25 of the 80 is at least
        # A's 1 ms, p99 lies among B's 8 ms reports, so at least the 5 ms bound below them.
        p25 = histogram_quantile(0.25, summed)
        p99 = histogram_quantile(0.99, summed)
        if p25 < 0.001:
            raise Failure(f"p25 over both is {p25} s, below the 1 ms every report waits")
        if p99 < 0.005:
            raise Failure(f"p99 over both is {p99} s: B's 8 ms reports are not in it")
        print("PASS")
        return 0
    except Failure as e:
        print(f"FAIL: {e}")
        for name in ("exporter-A.log", "exporter-B.log", "prometheus.log"):
            print(f"--- {name}:\n{read_file(os.path.join(tmp, name))[-4000:]}")
        return 1
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
        for p in procs:
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
