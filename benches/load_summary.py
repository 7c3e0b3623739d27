#!/usr/bin/env python3
"""Summarises benches/load.sh results (JSON lines from mcp-pep-load) as Markdown tables:
medians over the rounds of each scenario, direct vs proxied, and issue #13's targets.

Usage: benches/load_summary.py RESULTS.jsonl
Standard library only.
"""
import json
import statistics
import sys
from collections import defaultdict

NAMES = {
    "a": "no credentials",
    "b": "JWT Bearer",
    "c": "DPoP token + proof",
    "d": "DPoP + mTLS (SVID binding)",
    "e": "d, new arguments per call",
    "f": "d, tools/list of 50 filtered",
    "g": "d, SSE answer of 100 events",
    "h": "d, MCP 2026-07-28",
    "r": "d, state.backend redis",
}


def load(path):
    runs, idle = [], {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            d = json.loads(line)
            if d.get("kind") == "idle":
                idle[d["proxy"]] = d["rss_kib"]
            else:
                runs.append(d)
    return runs, idle


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def fmt(v, digits=3):
    if v is None:
        return "–"
    return f"{v:.{digits}f}"


def proxy_of(scenario):
    return {"a": "p_none", "b": "p_bearer", "c": "p_dpop", "g": "p_sse", "r": "p_redis"}.get(scenario, "p_mtls")


def summarise(runs, idle):
    by = defaultdict(list)
    for d in runs:
        by[(d["scenario"], d["kind"], d["path"])].append(d)
    scenarios = sorted({d["scenario"] for d in runs}, key=lambda s: "abcdefghr".find(s))
    rows = {}
    for s in scenarios:
        def pct(kind, path, p):
            return med([(d["latency_ms"] or {}).get(p) for d in by[(s, kind, path)]])

        def rps(kind, path):
            return med([d["req_per_s"] for d in by[(s, kind, path)]])

        def cpu(kind):
            return med([(d["process"] or {}).get("cpu_us_per_request") for d in by[(s, kind, "proxied")]])

        def rss(kind):
            vals = [(d["process"] or {}).get("rss_kib_max") for d in by[(s, kind, "proxied")]]
            vals = [v for v in vals if v is not None]
            return max(vals) / 1024 if vals else None

        errors = sum(sum(d["errors"].values()) for k, v in by.items() if k[0] == s for d in v)
        row = {
            "max_direct": rps("max", "direct"),
            "max_proxied": rps("max", "proxied"),
            "cpu_fixed": cpu("fixed"),
            "cpu_max": cpu("max"),
            "rss_idle": idle.get(proxy_of(s), 0) / 1024 if proxy_of(s) in idle else None,
            "rss_fixed": rss("fixed"),
            "rss_max": rss("max"),
            "errors": errors,
            "rounds": len(by[(s, "fixed", "proxied")]),
        }
        for p in ("p50", "p90", "p99", "p99.9"):
            row[f"{p}_direct"] = pct("fixed", "direct", p)
            row[f"{p}_proxied"] = pct("fixed", "proxied", p)
        if by[(s, "max1", "direct")]:
            row["max1_p50_direct"] = pct("max1", "direct", "p50")
            row["max1_p50_proxied"] = pct("max1", "proxied", "p50")
            row["max1_direct"] = rps("max1", "direct")
            row["max1_proxied"] = rps("max1", "proxied")
        rows[s] = row
    return rows


def added(row, p):
    a, b = row.get(f"{p}_proxied"), row.get(f"{p}_direct")
    return None if a is None or b is None else a - b


def tables(rows, rate):
    out = []
    out.append(f"| scenario | max req/s direct | max req/s proxied | × | proxy CPU µs/req ({rate}/s; max) | RSS MiB idle / at {rate}/s / at max | errors |")
    out.append("|---|---|---|---|---|---|---|")
    for s, r in rows.items():
        ratio = r["max_proxied"] / r["max_direct"] if r["max_direct"] and r["max_proxied"] else None
        out.append(
            f"| {s}: {NAMES.get(s, s)} | {fmt(r['max_direct'], 0)} | {fmt(r['max_proxied'], 0)} | {fmt(ratio, 2)} "
            f"| {fmt(r['cpu_fixed'], 0)}; {fmt(r['cpu_max'], 0)} "
            f"| {fmt(r['rss_idle'], 1)} / {fmt(r['rss_fixed'], 1)} / {fmt(r['rss_max'], 1)} | {r['errors']} |"
        )
    out.append("")
    out.append(f"Latency at a fixed {rate} req/s (ms, coordinated-omission corrected; added = proxied − direct):")
    out.append("")
    out.append("| scenario | p50 direct / proxied / added | p90 added | p99 direct / proxied / added | p99.9 direct / proxied / added |")
    out.append("|---|---|---|---|---|")
    for s, r in rows.items():
        out.append(
            f"| {s}: {NAMES.get(s, s)} "
            f"| {fmt(r['p50_direct'])} / {fmt(r['p50_proxied'])} / **{fmt(added(r, 'p50'))}** "
            f"| {fmt(added(r, 'p90'))} "
            f"| {fmt(r['p99_direct'])} / {fmt(r['p99_proxied'])} / **{fmt(added(r, 'p99'))}** "
            f"| {fmt(r['p99.9_direct'])} / {fmt(r['p99.9_proxied'])} / {fmt(added(r, 'p99.9'))} |"
        )
    if "a" in rows and "max1_p50_direct" in rows["a"]:
        a = rows["a"]
        out.append("")
        out.append(
            f"One connection, closed loop (a): direct {fmt(a['max1_direct'], 0)} req/s p50 {fmt(a['max1_p50_direct'])} ms, "
            f"proxied {fmt(a['max1_proxied'], 0)} req/s p50 {fmt(a['max1_p50_proxied'])} ms: added p50 "
            f"**{fmt((a['max1_p50_proxied'] or 0) - (a['max1_p50_direct'] or 0))} ms**."
        )
    return "\n".join(out)


def targets(rows):
    out = ["", "| target (issue #13) | measured | met |", "|---|---|---|"]

    def line(name, value, ok):
        out.append(f"| {name} | {value} | {'yes' if ok else 'no'} |")

    d, e, a = rows.get("d"), rows.get("e"), rows.get("a")
    if d:
        line("(d) added p50 ≤ 0.15 ms at 1 k/s", f"{fmt(added(d, 'p50'))} ms", (added(d, "p50") or 9) <= 0.15)
        line("(d) added p99 ≤ 0.5 ms at 1 k/s", f"{fmt(added(d, 'p99'))} ms", (added(d, "p99") or 9) <= 0.5)
        line("(d) max ≥ 8 k req/s", f"{fmt(d['max_proxied'], 0)} req/s", (d["max_proxied"] or 0) >= 8000)
        line("RSS ≤ 60 MiB at 1 k/s with (d)", f"{fmt(d['rss_fixed'], 1)} MiB", (d["rss_fixed"] or 999) <= 60)
    if e:
        line("(e) max ≥ 6 k req/s", f"{fmt(e['max_proxied'], 0)} req/s", (e["max_proxied"] or 0) >= 6000)
    if a:
        if "max1_p50_direct" in a:
            add1 = (a["max1_p50_proxied"] or 0) - (a["max1_p50_direct"] or 0)
            line("(a) one connection added p50 ≤ 40 µs", f"{add1 * 1000:.0f} µs", add1 <= 0.040)
        ratio = a["max_proxied"] / a["max_direct"] if a["max_direct"] and a["max_proxied"] else 0
        line("(a) 32 connections ≥ 0.5× direct", f"{ratio:.2f}×", ratio >= 0.5)
    idle = [r["rss_idle"] for r in rows.values() if r["rss_idle"] is not None]
    if idle:
        line("RSS ≤ 30 MiB idle", f"{min(idle):.1f}–{max(idle):.1f} MiB", max(idle) <= 30)
    return "\n".join(out)


def main():
    runs, idle = load(sys.argv[1])
    if not runs:
        sys.exit("no runs in " + sys.argv[1])
    rate = next((d["settings"]["rate"] for d in runs if d["settings"].get("rate")), "?")
    rows = summarise(runs, idle)
    rounds = max(r["rounds"] for r in rows.values())
    print(f"\nMedians of {rounds} rounds per scenario ({sys.argv[1]}):\n")
    print(tables(rows, f"{rate:.0f}" if isinstance(rate, float) else rate))
    print(targets(rows))


if __name__ == "__main__":
    main()
