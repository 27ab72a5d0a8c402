#!/usr/bin/env python3
"""Merge the JSON reports of troupe-bench, troupe-bench-caf and troupe-floor into one side-by-side
table: to the terminal, to a results JSON, to docs/performance.md (between the bench markers) and
to an SVG plot. Python 3 standard library only.

    bench_report.py --troupe T.json... [--caf C.json...] [--floor F.json...]
                    [--json-out results.json] [--svg bench.svg] [--doc performance.md]
                    [--out-dir DIR] [--check] [--command "how it was run"]

Each side may be given several JSON files (scripts/bench.sh writes one per workload and repeat);
the runs of a workload are pooled and its median, min and max taken over all of them.
--check exits 1 unless every workload a side is expected to have is present and reported with a
finite figure (it says nothing about speed). --out-dir writes results.json, bench.svg and
performance-section.md into DIR (what the smoke test does).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import xml.etree.ElementTree as ET

# The workloads of the side-by-side table, in order: (name, present in CAF and floor).
WORKLOADS = [
    ("pingpong", True),
    ("ask", True),
    ("fanin", True),
    ("broadcast", True),
    ("spawn", True),
    ("idle_actor_bytes", True),
    ("ring", True),
    ("latency_p50", True),
    ("latency_p99", True),
    ("latency_p999", True),
    ("queue", False),
    ("restart", False),
]
SIDES = ("troupe", "caf", "floor")

# DESIGN §5 goals (raised for issue 16), per workload: a list of (kind, value).
#   "caf_le" k:   troupe <= CAF / k (lower is better) -- written "≤ 1/k of CAF"
#   "caf_ratio_le" k: troupe's figure / CAF's <= k (for latencies: "≤ CAF")
#   "floor_le" k: troupe <= k x the floor (lower is better)
#   "floor_ge" k: troupe >= k x the floor (higher is better)
#   "abs_le" v:   troupe's figure <= v (in the workload's unit)
#   "vs_le" (w, k): troupe's figure <= k x troupe's figure of workload w in the same run
GOALS = {
    "pingpong": [("caf_le", 20), ("floor_le", 1)],
    "ask": [("caf_le", 8), ("vs_le", ("pingpong", 2))],
    "fanin": [("floor_ge", 0.3)],
    "broadcast": [("floor_ge", 0.23)],
    "spawn": [("caf_le", 10), ("floor_le", 1.2)],
    "idle_actor_bytes": [("abs_le", 96)],
    "ring": [("caf_le", 20)],
    "latency_p50": [("caf_ratio_le", 1)],
    "latency_p99": [("caf_ratio_le", 1)],
    "latency_p999": [("caf_ratio_le", 1)],
}

# The scale workloads (troupe only; DESIGN §5 "scale"): one dimension grown at a time. "flat":
# the cost per unit at the worst size within SCALE_FLAT of the best; "speedup": the last row is
# the speedup of every hardware thread over one worker, goal >= SCALE_SPEEDUP x the cores.
SCALE = [
    ("subscribers per topic (10 … 10k)", "flat",
     ["scale_broadcast_10", "scale_broadcast_100", "scale_broadcast_1k", "scale_broadcast_10k"]),
    ("wildcard subscriptions (10 … 1M)", "flat",
     ["scale_subscriptions_10", "scale_subscriptions_10k", "scale_subscriptions_1m"]),
    ("idle actors, bytes (1M, 10M)", "flat", ["scale_actors_1m_bytes", "scale_actors_10m_bytes"]),
    ("idle actors, spawn (1M, 10M)", "flat", ["scale_actors_1m_spawn", "scale_actors_10m_spawn"]),
    ("work-queue consumers (1, 4, 64)", "flat", ["scale_queue_1", "scale_queue_4", "scale_queue_64"]),
    ("cores: independent pairs (1 worker, all)", "speedup",
     ["scale_pairs_1w", "scale_pairs_all", "scale_pairs_speedup"]),
]
SCALE_FLAT = 1.5
SCALE_SPEEDUP = 0.9  # 1.8x on 2 cores

BEGIN = "<!-- bench:begin -->"
END = "<!-- bench:end -->"


class ReportError(Exception):
    pass


# ---- reading -------------------------------------------------------------------------------


def load_side(paths: list[str]) -> tuple[dict, dict]:
    """Pools the runs of each workload over `paths`: name -> {unit, lower_is_better, size, runs,
    errors}; also returns the machine/settings of the first file."""
    rows: dict[str, dict] = {}
    meta: dict = {}
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                doc = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise ReportError(f"{path}: cannot read: {e}") from e
        if not meta:
            meta = {"machine": doc.get("machine", {}), "settings": doc.get("settings", {}),
                    "program": doc.get("program", "")}
        for w in doc.get("workloads", []):
            r = rows.setdefault(w["name"], {"unit": w.get("unit", ""),
                                            "lower_is_better": bool(w.get("lower_is_better", True)),
                                            "size": w.get("size", ""), "runs": [], "errors": []})
            r["runs"].extend(float(x) for x in w.get("runs", []))
            if "error" in w:
                r["errors"].append(w["error"])
    return rows, meta


def summary(row: dict | None) -> dict | None:
    if row is None or not row["runs"] or row["errors"]:
        return None
    runs = row["runs"]
    return {"median": statistics.median(runs), "min": min(runs), "max": max(runs),
            "runs": runs, "size": row["size"]}


def advantage(troupe: float, other: float, lower_is_better: bool) -> float | None:
    """How many times better troupe is than `other` (> 1: better)."""
    if troupe <= 0 or other <= 0:
        return None
    return other / troupe if lower_is_better else troupe / other


def build(sides: dict[str, dict]) -> list[dict]:
    out = []
    for name, peers_have_it in WORKLOADS:
        t = sides["troupe"].get(name)
        ref = t or sides["caf"].get(name) or sides["floor"].get(name)
        entry = {
            "name": name,
            "unit": ref["unit"] if ref else "",
            "lower_is_better": ref["lower_is_better"] if ref else True,
            "troupe": summary(t),
            "caf": summary(sides["caf"].get(name)) if peers_have_it else None,
            "floor": summary(sides["floor"].get(name)) if peers_have_it else None,
        }
        for peer in ("caf", "floor"):
            tr, pr = entry["troupe"], entry[peer]
            entry[f"troupe_{peer}_ratio"] = (tr["median"] / pr["median"]
                                             if tr and pr and pr["median"] > 0 else None)
            entry[f"troupe_{peer}_advantage"] = (advantage(tr["median"], pr["median"],
                                                           entry["lower_is_better"])
                                                 if tr and pr else None)
        out.append(entry)
    by_name = {e["name"]: e for e in out}
    for entry in out:  # after all: a goal may compare two workloads of the same run
        entry["goal"], entry["goal_met"] = goal_of(entry, by_name)
    return out


def goal_of(e: dict, by_name: dict[str, dict]) -> tuple[str | None, bool | None]:
    parts, met = [], []
    t = e["troupe"]["median"] if e["troupe"] else None
    for kind, k in GOALS.get(e["name"], []):
        if kind == "caf_le":
            parts.append(f"≤ 1/{k:g} of CAF")
            adv = e["troupe_caf_advantage"]
            met.append(None if adv is None else adv >= k)
        elif kind == "caf_ratio_le":
            parts.append("≤ CAF" if k == 1 else f"≤ {k:g}× CAF")
            r = e["troupe_caf_ratio"]
            met.append(None if r is None else r <= k)
        elif kind == "floor_le":
            parts.append("≤ the floor" if k == 1 else f"≤ {k:g}× floor")
            r = e["troupe_floor_ratio"]
            met.append(None if r is None else r <= k)
        elif kind == "floor_ge":
            parts.append(f"≥ {k:g}× floor")
            r = e["troupe_floor_ratio"]
            met.append(None if r is None else r >= k)
        elif kind == "abs_le":
            parts.append(f"≤ {k:g} {e['unit']}")
            met.append(None if t is None else t <= k)
        elif kind == "vs_le":
            other, factor = k
            parts.append(f"≤ {factor:g}× {other}")
            o = by_name.get(other)
            ot = o["troupe"]["median"] if o and o["troupe"] else None
            met.append(None if t is None or ot is None else t <= factor * ot)
    if not parts:
        return None, None
    status = None if any(m is None for m in met) else all(met)
    return ", ".join(parts), status


def build_scale(troupe: dict, cores: int | None) -> list[dict]:
    """One entry per SCALE dimension present in troupe's runs."""
    out = []
    for title, kind, names in SCALE:
        rows = [(n, troupe.get(n)) for n in names]
        if all(r is None for _, r in rows):
            continue
        figures = [(n, summary(r), (r or {}).get("unit", ""), (r or {}).get("lower_is_better", True))
                   for n, r in rows]
        entry = {"title": title, "kind": kind, "rows": [
            {"name": n, "unit": u, "median": f["median"] if f else None} for n, f, u, _ in figures]}
        if kind == "flat" and all(f for _, f, _, _ in figures):
            costs = [f["median"] if low else (1 / f["median"] if f["median"] > 0 else math.inf)
                     for _, f, _, low in figures]
            spread = max(costs) / min(costs) if min(costs) > 0 else math.inf
            entry["spread"] = spread
            entry["goal"] = f"worst ≤ {SCALE_FLAT}× best"
            entry["goal_met"] = spread <= SCALE_FLAT
        elif kind == "speedup" and figures[-1][1]:
            speedup = figures[-1][1]["median"]
            entry["spread"] = speedup
            if cores:
                want = SCALE_SPEEDUP * cores
                entry["goal"] = f"speedup ≥ {want:g}× ({cores} cores)"
                entry["goal_met"] = speedup >= want
        out.append(entry)
    return out


def row_label(name: str) -> str:
    """The size part of a scale row's name: scale_broadcast_1k -> 1k, scale_actors_10m_bytes ->
    10m, scale_pairs_1w -> 1w."""
    parts = name.split("_")
    return parts[-2] if parts[-1] in ("bytes", "spawn", "speedup") and len(parts) > 3 else parts[-1]


def scale_markdown(scale: list[dict]) -> list[str]:
    if not scale:
        return []
    out = ["Scale (troupe only; each row grows one dimension, the figure is the cost or rate per "
           "unit at each size, medians):", "",
           "| dimension | figures at each size | worst / best (speedup) | goal |",
           "| --- | --- | ---: | --- |"]
    for e in scale:
        figs = "; ".join(f"{row_label(r['name'])}: {fmt(r['median'])} {r['unit']}"
                         for r in e["rows"])
        goal = e.get("goal")
        status = "—" if goal is None else f"{goal}: {'met' if e['goal_met'] else 'NOT met'}"
        spread = e.get("spread")
        out.append(f"| {e['title']} | {figs} | {fmt(spread) if spread is not None else '—'} | "
                   f"{status} |")
    out.append("")
    return out


# ---- machine ---------------------------------------------------------------------------------


def first_line(cmd: list[str]) -> str | None:
    if shutil.which(cmd[0]) is None:
        return None
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.strip().splitlines()[0] if out.strip() else None


def machine(metas: dict[str, dict]) -> dict:
    m: dict = {}
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    m["cpu"] = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    m.setdefault("cpu", platform.processor() or "unknown")
    m["cores"] = os.cpu_count()
    try:
        with open("/proc/meminfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    m["memory_gib"] = round(int(line.split()[1]) / 1024 / 1024, 1)
                    break
    except OSError:
        pass
    m["kernel"] = f"{platform.system()} {platform.release()}"
    try:
        with open("/etc/os-release", encoding="utf-8") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    m["os"] = line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    m["compilers"] = {side: metas[side]["machine"].get("compiler")
                      for side in SIDES if metas.get(side)}
    m["build_types"] = {side: metas[side]["machine"].get("build_type")
                        for side in SIDES if metas.get(side)}
    caf = first_line(["dpkg-query", "-W", "-f=${Version}", "libcaf-dev"])
    if caf:
        m["caf"] = f"libcaf-dev {caf}"
    return m


# ---- formatting ------------------------------------------------------------------------------


def fmt(v: float | None) -> str:
    if v is None:
        return "—"
    a = abs(v)
    if a >= 1e6:
        return f"{v / 1e6:,.2f} M"
    if a >= 1000:
        return f"{v:,.0f}"
    if a >= 100:
        return f"{v:.1f}"
    if a >= 1:
        return f"{v:.2f}"
    return f"{v:.4f}"


def fmt_side(s: dict | None, spread: bool) -> str:
    if s is None:
        return "—"
    if not spread or len(s["runs"]) < 2:
        return fmt(s["median"])
    return f"{fmt(s['median'])} ({fmt(s['min'])}–{fmt(s['max'])})"


def fmt_ratio(e: dict, peer: str) -> str:
    r = e[f"troupe_{peer}_ratio"]
    adv = e[f"troupe_{peer}_advantage"]
    if r is None:
        return "—"
    word = "better" if adv >= 1 else "worse"
    times = adv if adv >= 1 else 1 / adv
    return f"{r:.3g} ({times:.3g}× {word})"


def status_text(e: dict) -> str:
    if e["goal"] is None:
        return ""
    if e["goal_met"] is None:
        return e["goal"]
    return f"{e['goal']}: {'met' if e['goal_met'] else 'NOT met'}"


def terminal_table(entries: list[dict]) -> str:
    head = ["workload", "unit", "troupe", "CAF", "floor", "troupe/CAF", "troupe/floor", "goal"]
    rows = [[e["name"], e["unit"], fmt(e["troupe"] and e["troupe"]["median"]),
             fmt(e["caf"] and e["caf"]["median"]), fmt(e["floor"] and e["floor"]["median"]),
             fmt_ratio(e, "caf"), fmt_ratio(e, "floor"), status_text(e)] for e in entries]
    widths = [max(len(r[i]) for r in [head] + rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(head, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    return "\n".join(lines)


def markdown_section(entries: list[dict], mach: dict, meta: dict, command: str,
                     svg_name: str | None, scale: list[dict] | None = None) -> str:
    date = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    settings = (meta.get("troupe") or {}).get("settings", {})
    out = [BEGIN,
           "<!-- generated by scripts/bench_report.py from scripts/bench.sh: do not edit by hand -->",
           "",
           f"Generated {date} by `{command}`"
           + (" (quick sizes: not comparable with full runs)" if settings.get("quick") else "")
           + ". Each figure is the median over all runs of the workload (min–max in brackets); "
           "troupe, CAF and the floor ran alternately, one run of each per workload in turn. "
           "A ratio is troupe's median over the peer's; in brackets, how many times better "
           "(or worse) troupe is, whichever way the unit goes.",
           "",
           "| machine | |",
           "| --- | --- |"]
    labels = [("cpu", "CPU"), ("cores", "cores"), ("memory_gib", "memory (GiB)"),
              ("os", "OS"), ("kernel", "kernel"), ("caf", "CAF")]
    for key, label in labels:
        if key in mach:
            out.append(f"| {label} | {mach[key]} |")
    for side, comp in mach.get("compilers", {}).items():
        bt = mach.get("build_types", {}).get(side, "")
        out.append(f"| {side} build | {comp}, {bt} |")
    out += ["",
            "| workload | unit | troupe | CAF | floor | troupe/CAF | troupe/floor | goal (DESIGN §5) |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for e in entries:
        out.append("| " + " | ".join([
            e["name"], e["unit"], fmt_side(e["troupe"], True), fmt_side(e["caf"], True),
            fmt_side(e["floor"], True), fmt_ratio(e, "caf"), fmt_ratio(e, "floor"),
            status_text(e) or "—"]) + " |")
    out.append("")
    out += scale_markdown(scale or [])
    sizes, shown = [], set()
    for e in entries:
        name = "latency" if e["name"].startswith("latency_") else e["name"]
        if name in shown:
            continue
        shown.add(name)
        per_side = [(side, e[side]["size"]) for side in SIDES if e[side]]
        if len({size for _, size in per_side}) == 1:
            sizes.append(f"- {name}: {per_side[0][1]}")
        else:
            sizes.append(f"- {name}: " + "; ".join(f"{side}: {size}" for side, size in per_side))
    out.append("<details><summary>What each side ran</summary>")
    out.append("")
    out += sizes
    out.append("")
    out.append("</details>")
    if svg_name:
        out += ["", f"![troupe against CAF and the floor, and the latency percentiles]({svg_name})"]
    out += ["", END]
    return "\n".join(out) + "\n"


def update_doc(path: str, section: str) -> None:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    if BEGIN in text and END in text:
        start = text.index(BEGIN)
        stop = text.index(END) + len(END)
        if text[stop:stop + 1] == "\n":
            stop += 1
        text = text[:start] + section + text[stop:]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


# ---- SVG -------------------------------------------------------------------------------------


def esc(s: str) -> str:
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def svg_plot(entries: list[dict]) -> str:
    """Left: how many times better troupe is than CAF and than the floor, per workload, on a log
    scale (1 = equal, the dashed marks are the DESIGN goals). Right: latency percentiles of each
    side, log scale."""
    colors = {"troupe": "#1f77b4", "caf": "#d62728", "floor": "#7f7f7f"}
    width, height = 1000, 460
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
             f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
             f'<rect width="{width}" height="{height}" fill="white"/>']

    # -- panel 1: advantages
    ratio_rows = [e for e in entries if not e["name"].startswith("latency_")
                  and dict(WORKLOADS)[e["name"]]]
    x0, x1, y0 = 150, 560, 60
    row_h = 30
    lo, hi = -2.0, 3.0  # log10 range: 1/100 .. 1000
    def xpos(v: float) -> float:
        lv = min(max(math.log10(v), lo), hi)
        return x0 + (lv - lo) / (hi - lo) * (x1 - x0)
    parts.append(f'<text x="{x0}" y="25" font-size="14" font-weight="bold">'
                 'How many times better troupe is (log scale; 1 = equal)</text>')
    parts.append(f'<text x="{x0}" y="43" fill="#555">bars: vs CAF (red), vs the bare-thread '
                 'floor (grey); dashed: DESIGN §5 goal vs CAF</text>')
    for k in range(int(lo), int(hi) + 1):
        x = xpos(10.0 ** k)
        parts.append(f'<line x1="{x:.1f}" y1="{y0}" x2="{x:.1f}" '
                     f'y2="{y0 + row_h * len(ratio_rows)}" stroke="{"#000" if k == 0 else "#ddd"}"/>')
        label = f"{10.0 ** k:g}×" if k >= 0 else f"1/{10 ** -k}"
        parts.append(f'<text x="{x:.1f}" y="{y0 + row_h * len(ratio_rows) + 15}" '
                     f'text-anchor="middle" fill="#555">{label}</text>')
    for i, e in enumerate(ratio_rows):
        y = y0 + i * row_h
        parts.append(f'<text x="{x0 - 8}" y="{y + 19}" text-anchor="end">{esc(e["name"])}</text>')
        for j, peer in enumerate(("caf", "floor")):
            adv = e[f"troupe_{peer}_advantage"]
            if adv is None:
                continue
            xa, xb = sorted((xpos(1.0), xpos(adv)))
            yy = y + 5 + j * 11
            parts.append(f'<rect x="{xa:.1f}" y="{yy}" width="{max(xb - xa, 1):.1f}" height="10" '
                         f'fill="{colors[peer]}"/>')
            parts.append(f'<text x="{xpos(adv) + (4 if adv >= 1 else -4):.1f}" y="{yy + 9}" '
                         f'text-anchor="{"start" if adv >= 1 else "end"}" font-size="10">'
                         f'{adv:.3g}</text>')
        caf_goal = next((k for kind, k in GOALS.get(e["name"], []) if kind == "caf_le"), None)
        if caf_goal is not None:
            gx = xpos(caf_goal)
            parts.append(f'<line x1="{gx:.1f}" y1="{y + 2}" x2="{gx:.1f}" y2="{y + 28}" '
                         'stroke="#000" stroke-dasharray="3,2"/>')

    # -- panel 2: latency percentiles
    lat = [e for e in entries if e["name"].startswith("latency_")]
    px0, px1, py0, py1 = 680, 970, 60, 380
    vals = [e[s]["median"] for e in lat for s in SIDES if e[s] and e[s]["median"] > 0]
    parts.append(f'<text x="{px0}" y="25" font-size="14" font-weight="bold">'
                 'One-way latency, ns (log scale)</text>')
    parts.append(f'<text x="{px0}" y="43" fill="#555">10,000 msgs/s offered, from the '
                 'intended send time</text>')
    if vals:
        llo = math.floor(math.log10(min(vals)))
        lhi = math.ceil(math.log10(max(vals)))
        if lhi == llo:
            lhi += 1
        def ypos(v: float) -> float:
            return py1 - (math.log10(v) - llo) / (lhi - llo) * (py1 - py0)
        for k in range(llo, lhi + 1):
            y = ypos(10.0 ** k)
            parts.append(f'<line x1="{px0}" y1="{y:.1f}" x2="{px1}" y2="{y:.1f}" stroke="#ddd"/>')
            parts.append(f'<text x="{px0 - 4}" y="{y + 4:.1f}" text-anchor="end" '
                         f'fill="#555">1e{k}</text>')
        group_w = (px1 - px0) / max(len(lat), 1)
        bar_w = group_w / 4
        for i, e in enumerate(lat):
            gx = px0 + i * group_w
            parts.append(f'<text x="{gx + group_w / 2:.1f}" y="{py1 + 16}" '
                         f'text-anchor="middle">{esc(e["name"].replace("latency_", ""))}</text>')
            for j, side in enumerate(SIDES):
                s = e[side]
                if not s or s["median"] <= 0:
                    continue
                y = ypos(s["median"])
                parts.append(f'<rect x="{gx + bar_w * (j + 0.5):.1f}" y="{y:.1f}" '
                             f'width="{bar_w * 0.9:.1f}" height="{py1 - y:.1f}" '
                             f'fill="{colors[side]}"/>')
        for j, side in enumerate(SIDES):
            ly = py1 + 36 + j * 16
            parts.append(f'<rect x="{px0}" y="{ly - 9}" width="10" height="10" '
                         f'fill="{colors[side]}"/>')
            parts.append(f'<text x="{px0 + 15}" y="{ly}">{side}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


# ---- check -----------------------------------------------------------------------------------


def check(entries: list[dict], have: dict[str, bool]) -> list[str]:
    problems = []
    for e in entries:
        peers_have_it = dict(WORKLOADS)[e["name"]]
        for side in SIDES:
            if not have[side] or (side != "troupe" and not peers_have_it):
                continue
            s = e[side]
            if s is None:
                problems.append(f"{e['name']}: no figure from {side}")
            elif not all(math.isfinite(x) and x >= 0 for x in s["runs"]):
                problems.append(f"{e['name']}: a non-finite or negative figure from {side}")
    return problems


# ---- main ------------------------------------------------------------------------------------


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--troupe", nargs="+", required=True, metavar="JSON")
    p.add_argument("--caf", nargs="*", default=[], metavar="JSON")
    p.add_argument("--floor", nargs="*", default=[], metavar="JSON")
    p.add_argument("--json-out")
    p.add_argument("--svg")
    p.add_argument("--doc", help="markdown file whose bench section is replaced")
    p.add_argument("--out-dir")
    p.add_argument("--check", action="store_true")
    p.add_argument("--command", default="scripts/bench.sh")
    a = p.parse_args(argv)

    try:
        sides, metas = {}, {}
        for side in SIDES:
            paths = getattr(a, side)
            sides[side], metas[side] = load_side(paths) if paths else ({}, {})
    except ReportError as e:
        print(f"bench_report: {e}", file=sys.stderr)
        return 1
    entries = build(sides)
    mach = machine(metas)
    try:
        cores = int(mach.get("cores")) if mach.get("cores") else None
    except (TypeError, ValueError):
        cores = None
    scale = build_scale(sides["troupe"], cores)
    have = {side: bool(getattr(a, side)) for side in SIDES}

    json_out, svg_out, doc_out = a.json_out, a.svg, a.doc
    section_out = None
    if a.out_dir:
        os.makedirs(a.out_dir, exist_ok=True)
        json_out = json_out or os.path.join(a.out_dir, "results.json")
        svg_out = svg_out or os.path.join(a.out_dir, "bench.svg")
        section_out = os.path.join(a.out_dir, "performance-section.md")

    print(terminal_table(entries))
    for e in scale:
        print(f"scale: {e['title']}: "
              + ", ".join(f"{fmt(r['median'])}" for r in e["rows"])
              + (f" -> {e['goal']}: {'met' if e['goal_met'] else 'NOT met'}" if e.get("goal") else ""))
    if not have["caf"]:
        print("(no CAF results: troupe-bench-caf was not built or not run)")

    if json_out:
        os.makedirs(os.path.dirname(os.path.abspath(json_out)), exist_ok=True)
        with open(json_out, "w", encoding="utf-8") as f:
            json.dump({"machine": mach, "workloads": entries, "scale": scale}, f, indent=2)
            f.write("\n")
    svg_text = svg_plot(entries)
    if svg_out:
        with open(svg_out, "w", encoding="utf-8") as f:
            f.write(svg_text)
    svg_name = None
    if svg_out and (doc_out or section_out):
        base = os.path.dirname(os.path.abspath(doc_out or section_out))
        svg_name = os.path.relpath(os.path.abspath(svg_out), base)
    section = markdown_section(entries, mach, metas, a.command, svg_name, scale)
    if doc_out:
        update_doc(doc_out, section)
    if section_out:
        with open(section_out, "w", encoding="utf-8") as f:
            f.write(section)

    if a.check:
        problems = check(entries, have)
        for e in scale:
            for r in e["rows"]:
                if r["median"] is None or not math.isfinite(r["median"]):
                    problems.append(f"{r['name']}: no finite figure from troupe")
        try:
            ET.fromstring(svg_text)
        except ET.ParseError as e:
            problems.append(f"the SVG does not parse: {e}")
        if problems:
            for msg in problems:
                print(f"bench_report: {msg}", file=sys.stderr)
            return 1
        print(f"bench_report: all {len(entries)} workloads present and reported "
              f"({', '.join(s for s in SIDES if have[s])})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
