#!/usr/bin/env bash
# CPU flame graphs of the proxy under load: `perf record` on the proxy process during the
# proxied max-throughput run of each scenario (benches/load.sh, one round), folded and drawn
# with inferno into docs/flame-<scenario>.svg.
#
# Usage: benches/profile.sh [SECONDS] [SCENARIOS]     e.g. benches/profile.sh 5 "d e"
# Needs perf (Debian linux-perf: installed here with apt-get when missing) and inferno
# (installed with cargo into target/tools, pinned). Needs root or
# kernel.perf_event_paranoid <= 1 to record another process.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
secs="${1:-5}" scenarios="${2:-d e}"
INFERNO_VERSION=0.12.8

if ! command -v perf >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-perf >/dev/null
fi
tools="$PWD/target/tools"
if [[ "$("$tools/bin/inferno-flamegraph" --version 2>/dev/null)" != "inferno-flamegraph $INFERNO_VERSION" ]]; then
  cargo install inferno --locked --version "$INFERNO_VERSION" --root "$tools" --quiet
fi

dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
mkdir -p target/load
PERF_DIR="$dir" OUT="$dir/results.jsonl" bash benches/load.sh "$secs" 1 "$scenarios"
for s in $scenarios; do
  # Unwound stacks -> one line per stack; symbols demangled; sample counts per stack.
  perf script -i "$dir/$s.data" 2>/dev/null | "$tools/bin/inferno-collapse-perf" >"$dir/$s.folded"
  "$tools/bin/inferno-flamegraph" --title "mcp-pep, scenario $s (benches/load.sh), proxy CPU" \
    --width 1400 --minwidth 0.2 <"$dir/$s.folded" >"docs/flame-$s.svg"
  cp "$dir/$s.folded" "target/load/flame-$s.folded"
  # The proxied max-throughput run's CPU per request, to put the shares in microseconds.
  cpu="$(python3 -c 'import json, sys
for l in open(sys.argv[1]):
    d = json.loads(l)
    if d.get("scenario") == sys.argv[2] and d.get("path") == "proxied" and d.get("kind") == "max":
        print((d.get("process") or {}).get("cpu_us_per_request") or "")' "$dir/results.jsonl" "$s")"
  echo "== scenario $s (proxy CPU $cpu µs per request at max throughput)"
  python3 benches/profile_summary.py "target/load/flame-$s.folded" $cpu
done
