#!/usr/bin/env bash
# Load comparison, direct vs proxied, in one run on one machine.
#
# Usage: benches/load.sh [SECONDS_PER_ROUND] [CONCURRENCY] [ROUNDS]
#
# Starts `mcp-pep demo-server` (JSON responses) and `mcp-pep run` in front of it with the
# shipped policies, the caller given the trusted agent's identity (loopback rule). Opens one
# MCP session on each path, then alternates `wrk` rounds of the same tools/call (read_file,
# allowed) direct and proxied, and prints each round and the medians. Needs `wrk`
# (Debian package). Ends every process it started.
#
# WITH_REDIS=1 adds a third path, `redis`: a second mcp-pep, the same but with
# `state.backend: redis` on a redis-server started here on a free loopback port (installed
# by tests/redis/setup.sh): each of its requests checks the session in Redis (one EVALSHA).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
secs="${1:-10}" conc="${2:-32}" rounds="${3:-3}"
command -v wrk >/dev/null || { echo "load.sh needs wrk (apt-get install wrk)" >&2; exit 2; }

cargo build --release --quiet --bin mcp-pep
bin=target/release/mcp-pep
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; [[ -n "${KEEP:-}" ]] || rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }

up_port="$(free_port)" pep_port="$(free_port)"
"$bin" demo-server --listen "127.0.0.1:$up_port" --mode json >"$work/upstream.log" 2>&1 &
pids+=($!)
cat >"$work/pep.yaml" <<YAML
listen: 127.0.0.1:$pep_port
admin_listen: ""
upstream:
  url: http://127.0.0.1:$up_port/mcp
policy:
  dir: $PWD/policies
identity:
  local_spiffe_id: spiffe://mcp-identity.local/ns/mcp-agents/sa/trusted-agent
log:
  level: warn
# One client drives tens of thousands of requests per second: the per-caller budget
# (limits.rate_per_caller, 1000/s by default) would measure 429s instead of the proxy.
limits:
  rate_per_caller: 0
YAML
"$bin" run --config "$work/pep.yaml" >"$work/pep.log" 2>&1 &
pids+=($!)
paths="direct proxied"
if [[ -n "${WITH_REDIS:-}" ]]; then
  redis_bin="$(bash tests/redis/setup.sh)" redis_port="$(free_port)" redis_pep_port="$(free_port)"
  "$redis_bin" --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no >"$work/redis.log" 2>&1 &
  pids+=($!)
  sed "s/^listen: .*/listen: 127.0.0.1:$redis_pep_port/" "$work/pep.yaml" >"$work/pep-redis.yaml"
  printf 'state:\n  backend: redis\n  redis:\n    url: redis://127.0.0.1:%s/\n' "$redis_port" >>"$work/pep-redis.yaml"
  "$bin" run --config "$work/pep-redis.yaml" >"$work/pep-redis.log" 2>&1 &
  pids+=($!)
  paths="direct proxied redis"
fi
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$pep_port/healthz" && break; sleep 0.1; done
if [[ -n "${WITH_REDIS:-}" ]]; then
  for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$redis_pep_port/healthz" && break; sleep 0.1; done
fi

# session URL: initialize over URL, print the Mcp-Session-Id.
session() {
  curl -s -D - -o /dev/null "$1" -H 'content-type: application/json' \
    -H 'accept: application/json, text/event-stream' \
    -d '{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"load","version":"1"}}}' |
    awk -F': ' 'tolower($1) == "mcp-session-id" { gsub("\r", "", $2); print $2 }'
}
direct="http://127.0.0.1:$up_port/mcp" proxied="http://127.0.0.1:$pep_port/mcp"
direct_sid="$(session "$direct")" proxied_sid="$(session "$proxied")"
[[ -n "$direct_sid" && -n "$proxied_sid" ]] || { echo "could not open MCP sessions" >&2; cat "$work"/*.log >&2; exit 1; }
if [[ -n "${WITH_REDIS:-}" ]]; then
  redis_url="http://127.0.0.1:$redis_pep_port/mcp" redis_sid="$(session "http://127.0.0.1:$redis_pep_port/mcp")"
  [[ -n "$redis_sid" ]] || { echo "could not open an MCP session through the redis proxy" >&2; cat "$work"/*.log >&2; exit 1; }
fi
body='{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/workspace/README.md"}}}'

# round NAME URL SID: one wrk run; prints "rps p50_ms p99_ms non2xx".
round() {
  cat >"$work/$1.lua" <<LUA
wrk.method = "POST"
wrk.body = '$body'
wrk.headers["content-type"] = "application/json"
wrk.headers["accept"] = "application/json, text/event-stream"
wrk.headers["mcp-protocol-version"] = "2025-11-25"
wrk.headers["mcp-session-id"] = "$3"
LUA
  wrk -t 1 -c "$conc" -d "${secs}s" --latency -s "$work/$1.lua" "$2" >"$work/$1.txt"
  awk 'function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
       /Requests\/sec/ { rps = $2 } $1 == "50%" { p50 = ms($2) } $1 == "99%" { p99 = ms($2) }
       /Non-2xx/ { bad = $NF }
       END { printf "%.0f %.3f %.3f %d\n", rps, p50, p99, bad }' "$work/$1.txt"
}

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
echo "load: wrk -t 1 -c $conc -d ${secs}s, POST tools/call read_file, $rounds rounds alternating"
printf '%-8s %-6s %10s %10s %10s %8s\n' path round req/s p50_ms p99_ms non200
for r in $(seq "$rounds"); do
  for path in $paths; do
    case $path in
      direct) res="$(round "direct-$r" "$direct" "$direct_sid")" ;;
      proxied) res="$(round "proxied-$r" "$proxied" "$proxied_sid")" ;;
      redis) res="$(round "redis-$r" "$redis_url" "$redis_sid")" ;;
    esac
    echo "$path $r $res" >>"$work/results"
    read -r rps p50 p99 bad <<<"$res"
    printf '%-8s %-6s %10s %10s %10s %8s\n' "$path" "$r" "$rps" "$p50" "$p99" "$bad"
  done
done
python3 - "$work/results" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
paths = [p for p in ("direct", "proxied", "redis") if any(r[0] == p for r in rows)]
med = {p: [statistics.median(float(r[i]) for r in rows if r[0] == p) for i in (2, 3, 4)] for p in paths}
for name in paths:
    m = med[name]
    print(f"median   {name:<7} {m[0]:.0f} req/s  p50 {m[1]:.3f} ms  p99 {m[2]:.3f} ms")
d, p = med["direct"], med["proxied"]
print(f"proxied/direct: throughput {p[0]/d[0]:.2f}x, p50 +{p[1]-d[1]:.3f} ms, p99 +{p[2]-d[2]:.3f} ms")
if "redis" in med:
    x = med["redis"]
    print(f"redis/proxied: throughput {x[0]/p[0]:.2f}x, p50 +{x[1]-p[1]:.3f} ms, p99 +{x[2]-p[2]:.3f} ms")
PY
