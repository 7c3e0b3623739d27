#!/usr/bin/env python3
"""Draws benches/load.sh results (mcp-pep-load JSON lines) as SVG, with no dependency
beyond Python's standard library (so it runs anywhere the bench runs, offline, and its
output does not change with a plotting library's version):

  OUT_DIR/load-latency.svg     latency by percentile at the fixed rate, direct vs proxied,
                               one panel per scenario (HdrHistogram's 1/(1-q) axis)
  OUT_DIR/load-throughput.svg  maximum req/s direct vs proxied per scenario

Each point is the median over the rounds. Usage: benches/plot.py RESULTS.jsonl [OUT_DIR]
(default docs/).
"""
import json
import math
import statistics
import sys
from collections import defaultdict
from pathlib import Path

NAMES = {
    "a": "a: no credentials",
    "b": "b: JWT Bearer",
    "c": "c: DPoP token + proof",
    "d": "d: DPoP + mTLS",
    "e": "e: d, new arguments",
    "f": "f: d, tools/list of 50",
    "g": "g: d, SSE of 100 events",
    "h": "h: d, MCP 2026-07-28",
    "r": "r: d, Redis state",
}
COLOURS = {"direct": "#1f77b4", "proxied": "#d62728"}
ORDER = "abcdefghr"
MAX_NINES = 4  # up to p99.99: a 5 s round at 1 k req/s has 5 000 samples


def esc(text):
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def load(path):
    with open(path) as f:
        return [json.loads(l) for l in f if l.strip() and '"kind":"idle"' not in l.replace(" ", "")]


def spectra(runs):
    """{scenario: {path: [(nines, ms)]}}, medians over rounds of the fixed-rate runs."""
    acc = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for d in runs:
        if d.get("kind") != "fixed":
            continue
        for q, ms in d.get("spectrum_ms") or []:
            if q < 1.0:
                nines = -math.log10(1.0 - q) if q > 0 else 0.0
                if nines <= MAX_NINES + 1e-9 and ms > 0:
                    acc[d["scenario"]][d["path"]][nines].append(ms)
    return {
        s: {p: sorted((n, statistics.median(v)) for n, v in pts.items()) for p, pts in paths.items()}
        for s, paths in acc.items()
    }


def panel(x0, y0, w, h, title, series):
    """One log-log panel; returns SVG elements."""
    out = []
    values = [ms for pts in series.values() for _, ms in pts]
    if not values:
        return out
    lo = 10 ** math.floor(math.log10(min(values)))
    hi = 10 ** math.ceil(math.log10(max(values)))
    if hi <= lo:
        hi = lo * 10
    left, bottom = 46, 34
    pw, ph = w - left - 24, h - bottom - 24

    def X(n):
        return x0 + left + pw * n / MAX_NINES

    def Y(ms):
        return y0 + 24 + ph * (1 - (math.log10(ms) - math.log10(lo)) / (math.log10(hi) - math.log10(lo)))

    out.append(f'<text x="{x0 + w / 2}" y="{y0 + 15}" text-anchor="middle" font-weight="bold">{esc(title)}</text>')
    out.append(f'<rect x="{x0 + left}" y="{y0 + 24}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>')
    for n, label in enumerate(["p0", "p90", "p99", "p99.9", "p99.99"]):
        out.append(f'<line x1="{X(n)}" y1="{y0 + 24}" x2="{X(n)}" y2="{y0 + 24 + ph}" stroke="#eee"/>')
        out.append(f'<text x="{X(n)}" y="{y0 + 24 + ph + 14}" text-anchor="middle" font-size="10">{label}</text>')
    decade = lo
    while decade <= hi * 1.0001:
        out.append(f'<line x1="{x0 + left}" y1="{Y(decade)}" x2="{x0 + left + pw}" y2="{Y(decade)}" stroke="#eee"/>')
        out.append(f'<text x="{x0 + left - 4}" y="{Y(decade) + 3}" text-anchor="end" font-size="10">{decade:g}</text>')
        decade *= 10
    out.append(
        f'<text x="{x0 + 12}" y="{y0 + 24 + ph / 2}" font-size="10" transform="rotate(-90 {x0 + 12} {y0 + 24 + ph / 2})" '
        f'text-anchor="middle">ms</text>'
    )
    for path, pts in series.items():
        d = " ".join(f"{'M' if i == 0 else 'L'}{X(n):.1f},{Y(ms):.1f}" for i, (n, ms) in enumerate(pts))
        out.append(f'<path d="{d}" fill="none" stroke="{COLOURS.get(path, "#333")}" stroke-width="2"/>')
    return out


def latency_svg(spec, rate):
    scenarios = sorted(spec, key=ORDER.find)
    cols = 4
    w, h = 280, 210
    rows = math.ceil(len(scenarios) / cols)
    width, height = cols * w, rows * h + 50
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text x="10" y="{height - 28}">Latency by percentile at a fixed {esc(rate)} req/s (coordinated-omission corrected), '
        "median of the rounds; log scales.</text>",
        f'<rect x="10" y="{height - 18}" width="12" height="4" fill="{COLOURS["direct"]}"/>'
        f'<text x="26" y="{height - 12}">direct (generator → tool server)</text>',
        f'<rect x="260" y="{height - 18}" width="12" height="4" fill="{COLOURS["proxied"]}"/>'
        f'<text x="276" y="{height - 12}">proxied (generator → mcp-pep → tool server)</text>',
    ]
    for i, s in enumerate(scenarios):
        parts += panel((i % cols) * w, (i // cols) * h, w, h, NAMES.get(s, s), spec[s])
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def throughput_svg(runs):
    acc = defaultdict(list)
    for d in runs:
        if d.get("kind") == "max":
            acc[(d["scenario"], d["path"])].append(d["req_per_s"])
    scenarios = sorted({s for s, _ in acc}, key=ORDER.find)
    med = {k: statistics.median(v) for k, v in acc.items()}
    top = max(med.values()) if med else 1
    left, bar, gap, width = 190, 14, 10, 760
    height = len(scenarios) * (2 * bar + gap) + 60
    scale = (width - left - 80) / top
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{width}" height="{height}" fill="white"/>',
        '<text x="10" y="16" font-weight="bold">Maximum throughput (req/s, closed loop), median of the rounds</text>',
    ]
    y = 30
    for s in scenarios:
        parts.append(f'<text x="{left - 6}" y="{y + bar + 4}" text-anchor="end">{esc(NAMES.get(s, s))}</text>')
        for path in ("direct", "proxied"):
            v = med.get((s, path))
            if v is not None:
                parts.append(f'<rect x="{left}" y="{y}" width="{v * scale:.1f}" height="{bar - 2}" fill="{COLOURS[path]}"/>')
                parts.append(f'<text x="{left + v * scale + 4:.1f}" y="{y + bar - 4}" font-size="10">{v:,.0f}</text>')
            y += bar
        y += gap
    parts.append(f'<rect x="10" y="{height - 18}" width="12" height="4" fill="{COLOURS["direct"]}"/><text x="26" y="{height - 12}">direct</text>')
    parts.append(f'<rect x="90" y="{height - 18}" width="12" height="4" fill="{COLOURS["proxied"]}"/><text x="106" y="{height - 12}">proxied</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    runs = load(sys.argv[1])
    out = Path(sys.argv[2] if len(sys.argv) > 2 else "docs")
    rate = next((d["settings"]["rate"] for d in runs if d["settings"].get("rate")), "?")
    rate = f"{rate:.0f}" if isinstance(rate, float) else rate
    spec = spectra(runs)
    if not spec:
        sys.exit("no fixed-rate runs in " + sys.argv[1])
    (out / "load-latency.svg").write_text(latency_svg(spec, rate))
    (out / "load-throughput.svg").write_text(throughput_svg(runs))
    print(f"wrote {out / 'load-latency.svg'} and {out / 'load-throughput.svg'}")


if __name__ == "__main__":
    main()
