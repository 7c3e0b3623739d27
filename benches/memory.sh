#!/usr/bin/env bash
# Proxy memory vs open SSE streams and vs sessions held (issue #13 "How cost grows").
#
# Usage: benches/memory.sh [STREAM_STEPS] [SESSION_STEPS]
#   default: 1,10,100,1000,4000 streams; 1000,10000,100000 sessions
# One demo-server and one proxy per measurement (no credentials: the trusted agent by the
# loopback rule, as load scenario a), limits raised so that the bound measured is memory,
# not a refusal. Streams are legacy GET notification streams, one connection each (opened
# 50 at a time), each two descriptors in the proxy (client and upstream side). 4 000 is the
# most: the demo tool server serves 4 096 connections at once (its listener's default), and
# 10 000 would also need more than this machine's hard limit of 20 000 open files. JSON lines on stdout (benches/memory.py), with
# the tool server's RSS beside the proxy's as a yardstick (one connection per stream there).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
stream_steps="${1:-1,10,100,1000,4000}" session_steps="${2:-1000,10000,100000}"
[[ -n "${BIN_DIR:-}" ]] || cargo build --release --quiet --bin mcp-pep
bin="${BIN_DIR:-target/release}/mcp-pep"
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }
ulimit -n "$(ulimit -Hn)"

measure() { # KIND STEPS
  local up proxy
  up="$(free_port)" proxy="$(free_port)"
  "$bin" demo-server --listen "127.0.0.1:$up" >"$work/up-$1.log" 2>&1 &
  local up_pid=$!
  pids+=($up_pid)
  cat >"$work/$1.yaml" <<YAML
listen: 127.0.0.1:$proxy
admin_listen: ""
upstream: {url: "http://127.0.0.1:$up/mcp"}
policy: {dir: $PWD/policies}
log: {level: warn}
identity: {local_spiffe_id: "spiffe://mcp-identity.local/ns/mcp-agents/sa/trusted-agent"}
limits: {max_connections: 20000, max_streams_per_caller: 0, rate_per_caller: 0}
sessions: {max_sessions: 1000000}
YAML
  "$bin" run --config "$work/$1.yaml" >"$work/$1.log" 2>&1 &
  local pid=$!
  pids+=($pid)
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$proxy/healthz" && break; sleep 0.1; done
  python3 benches/memory.py "$proxy" "$pid" "$1" "$2" "$up_pid" || { tail -n 20 "$work/$1.log" >&2; exit 1; }
  kill -TERM "$pid"
}
measure streams "$stream_steps"
measure sessions "$session_steps"
