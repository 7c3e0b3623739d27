#!/usr/bin/env bash
# Load scenarios, each direct vs proxied in one run on one machine, driven by mcp-pep-load.
#
# Usage: benches/load.sh [SECONDS_PER_ROUND] [ROUNDS] [SCENARIOS]
#   e.g. benches/load.sh 5 3            every scenario, 5 s rounds, 3 rounds alternating
#        benches/load.sh 5 3 "a d e"    some of them
#
# Scenarios (the shipped policies; the caller is the trusted agent):
#   a  no credentials (the trusted agent by the loopback rule, identity.local_spiffe_id)
#   b  JWT Bearer token (auth.dpop: optional)
#   c  DPoP-bound token + a fresh proof per request (auth.dpop: required)
#   d  c over mTLS: the agent's X.509-SVID, the token's azp = the certificate's SPIFFE ID
#   e  d with new arguments on every call (every policy decision a cache miss)
#   f  d, tools/list of 50 tools, filtered per caller
#   g  d, a tools/call answered by an SSE stream of 100 events
#   h  d in MCP 2026-07-28 (stateless, _meta and the standard headers)
#   r  d with state.backend: redis (only with WITH_REDIS=1; redis-server from tests/redis/setup.sh):
#      the replay script, the session script and the shared rate bucket, three round trips
#
# Each scenario alternates direct (generator -> demo-server, no credentials: the checks'
# cost is the difference) and proxied rounds; each round is a max-throughput run
# (CONNS connections, closed loop) and a fixed-rate run (RATE req/s, open loop, latency
# from the due time). Scenario a also runs one connection closed loop (kind max1).
# mcp-pep-load samples the proxy's (or, direct, the tool server's) CPU time and RSS over
# each measurement. Results: one JSON line per run in $OUT (default
# target/load/results-<time>.jsonl), a summary table at the end (benches/load_summary.py).
#
# Env: RATE (1000), CONNS (32), FIXED_CONNS (16), THREADS (generator threads, 1),
#      WARMUP (1 s), OUT, KEEP=1 (keep the work dir with the logs), BIN_DIR,
#      PROOF_POOL (proofs signed ahead per run; default: mcp-pep-load's), CHECK=1 (fail
#      on any failed request: the smoke run of ./test.sh), PERF_DIR (record the proxy with
#      `perf record` during each proxied max-throughput run of round 1 into
#      PERF_DIR/<scenario>.data: benches/profile.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
secs="${1:-5}" rounds="${2:-3}" scenarios="${3:-a b c d e f g h}"
rate="${RATE:-1000}" conns="${CONNS:-32}" fixed_conns="${FIXED_CONNS:-16}" threads="${THREADS:-1}" warmup="${WARMUP:-1}"
[[ -n "${WITH_REDIS:-}" && "$scenarios" != *r* ]] && scenarios="$scenarios r"

# BIN_DIR: binaries already built (e.g. target/debug to try the script); default: release.
[[ -n "${BIN_DIR:-}" ]] || cargo build --release --quiet --bin mcp-pep --bin mcp-pep-load
bin="${BIN_DIR:-target/release}/mcp-pep" load="${BIN_DIR:-target/release}/mcp-pep-load"
mkdir -p target/load
out="${OUT:-target/load/results-$(date -u +%Y%m%dT%H%M%SZ).jsonl}"
work="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; [[ -n "${KEEP:-}" ]] || rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }

creds="$work/creds"
"$load" credentials --out "$creds" >/dev/null
td=mcp-identity.local
trusted="spiffe://$td/ns/mcp-agents/sa/trusted-agent"

# Tool servers: JSON answers and a 50-tool list; SSE answers of 100 events.
declare -A port pid
start_upstream() { # NAME ARGS...
  local name="$1"; shift
  port[$name]="$(free_port)"
  "$bin" demo-server --listen "127.0.0.1:${port[$name]}" "$@" >"$work/$name.log" 2>&1 &
  pid[$name]=$!; pids+=($!)
}
start_upstream up_json --mode json --tools 50
start_upstream up_sse --mode sse --sse-events 100

# Proxies: NAME UPSTREAM AUTH(none|optional|required) TLS(plain|mtls) [STATE]
start_proxy() {
  local name="$1" up="$2" auth="$3" tls="$4" state="${5:-memory}"
  port[$name]="$(free_port)"
  local scheme=http; [[ $tls == mtls ]] && scheme=https
  {
    echo "listen: 127.0.0.1:${port[$name]}"
    echo 'admin_listen: ""'
    echo "upstream:"
    echo "  url: http://127.0.0.1:${port[$up]}/mcp"
    echo "policy:"
    echo "  dir: $PWD/policies"
    echo "log:"
    echo "  level: warn"
    # One client drives thousands of requests per second: the per-caller budget
    # (limits.rate_per_caller, 1000/s by default) would measure 429s instead of the proxy.
    echo "limits:"
    if [[ $state == redis ]]; then
      # On Redis the budget is shared (limits.rate_scope: auto): one EVALSHA per request.
      # Set far above the load so that it is paid, never hit.
      echo "  rate_per_caller: 10000000"
      echo "  rate_burst_per_caller: 10000000"
    else
      echo "  rate_per_caller: 0"
    fi
    if [[ $tls == plain ]]; then
      echo "identity:"
      echo "  local_spiffe_id: $trusted"
    else
      echo "identity:"
      echo "  source: files"
      echo "  files: {cert: $creds/proxy.pem, key: $creds/proxy.key, bundles: {$td: $creds/ca.pem}}"
      echo "  mtls: true"
      echo "  trust_domains: [$td]"
    fi
    if [[ $auth != none ]]; then
      echo "auth:"
      echo "  issuers: [{issuer: $(cat "$creds/issuer.txt"), jwks_file: $creds/jwks.json}]"
      echo "  audiences: [mcp-pep-load]"
      echo "  public_url: $scheme://127.0.0.1:${port[$name]}/mcp"
      echo "  dpop: $auth"
      # One DPoP key sends every proof: the per-key replay quota (25 000 live proofs,
      # ≈ 1 000/s over the 25 s window) and the cache (200 000) would refuse the excess.
      echo "  dpop_replay_entries: 2000000"
      echo "  dpop_replay_entries_per_key: 2000000"
    fi
    if [[ $state == redis ]]; then
      printf 'state:\n  backend: redis\n  redis:\n    url: redis://127.0.0.1:%s/\n' "${port[redis]}"
    fi
  } >"$work/$name.yaml"
  "$bin" run --config "$work/$name.yaml" >"$work/$name.log" 2>&1 &
  pid[$name]=$!; pids+=($!)
}
start_proxy p_none up_json none plain
start_proxy p_bearer up_json optional plain
start_proxy p_dpop up_json required plain
start_proxy p_mtls up_json required mtls
start_proxy p_sse up_sse required mtls
proxies="p_none p_bearer p_dpop p_mtls p_sse"
if [[ $scenarios == *r* ]]; then
  redis_bin="$(bash tests/redis/setup.sh)"
  port[redis]="$(free_port)"
  "$redis_bin" --port "${port[redis]}" --bind 127.0.0.1 --save '' --appendonly no >"$work/redis.log" 2>&1 &
  pids+=($!)
  sleep 0.5
  start_proxy p_redis up_json required mtls redis
  proxies="$proxies p_redis"
fi
for name in up_json up_sse $proxies; do
  scheme=http; [[ $name == p_mtls || $name == p_sse || $name == p_redis ]] && scheme=https
  for _ in $(seq 100); do
    if [[ $scheme == http ]]; then curl -s -o /dev/null "http://127.0.0.1:${port[$name]}/mcp" -X GET && break
    else curl -s -o /dev/null --cacert "$creds/ca.pem" --cert "$creds/agent.pem" --key "$creds/agent.key" "https://127.0.0.1:${port[$name]}/healthz" && break; fi
    sleep 0.1
  done
done
sleep 0.5

machine="$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
# RSS of every proxy before any load.
for name in $proxies; do
  printf '{"kind":"idle","proxy":"%s","rss_kib":%s,"machine":"%s"}\n' "$name" "$(rss_kib "${pid[$name]}")" "$machine" >>"$out"
done

# args SCENARIO PATH: the generator's arguments (and the process to watch).
args() {
  local s="$1" path="$2" proxy up=up_json
  case $s in a) proxy=p_none ;; b) proxy=p_bearer ;; c) proxy=p_dpop ;; g) proxy=p_sse; up=up_sse ;; r) proxy=p_redis ;; *) proxy=p_mtls ;; esac
  if [[ $path == direct ]]; then
    echo "--url http://127.0.0.1:${port[$up]}/mcp --watch-pid ${pid[$up]}"
  else
    local scheme=http; [[ $proxy == p_mtls || $proxy == p_sse || $proxy == p_redis ]] && scheme=https
    echo "--url $scheme://127.0.0.1:${port[$proxy]}/mcp --watch-pid ${pid[$proxy]}"
    case $s in
      b) echo "--auth bearer --token-file $creds/token-bearer.jwt" ;;
      c) echo "--auth dpop --token-file $creds/token-dpop.jwt --dpop-key $creds/dpop.key" ;;
      a) ;;
      *) echo "--auth dpop --token-file $creds/token-dpop.jwt --dpop-key $creds/dpop.key"
         echo "--ca $creds/ca.pem --cert $creds/agent.pem --key $creds/agent.key" ;;
    esac
  fi
  case $s in
    e) echo '--vary-arguments --arguments {"path":"/workspace/f-{n}.txt"}' ;;
    f) echo "--method tools/list" ;;
    h) echo "--era modern" ;;
  esac
}

echo "machine: $machine; load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "mcp-pep-load: ${secs}s rounds (+${warmup}s warm-up), $rounds rounds alternating; max: $conns connections; fixed: $rate req/s on up to $fixed_conns connections; results: $out"
printf '%-3s %-8s %-5s %-6s %10s %9s %9s %9s %9s %8s %7s\n' sc path round kind req/s p50_ms p90_ms p99_ms p99.9_ms cpu_us rss_MiB
for s in $scenarios; do
  for r in $(seq "$rounds"); do
    for path in direct proxied; do
      kinds="max fixed"; [[ $s == a ]] && kinds="max max1 fixed"
      for kind in $kinds; do
        case $kind in
          max) mode=(--connections "$conns") ;;
          max1) mode=(--connections 1) ;;
          fixed) mode=(--rate "$rate" --connections "$fixed_conns") ;;
        esac
        extra=()
        perf_pid=""
        if [[ -n "${PERF_DIR:-}" && $path == proxied && $kind == max && $r == 1 ]]; then
          # The measured seconds only (after the warm-up), 997 Hz, DWARF call graphs.
          proxy_pid="$(args "$s" proxied | sed -n 's/.*--watch-pid \([0-9]*\).*/\1/p')"
          (sleep "$warmup"; exec perf record -q -F 997 --call-graph dwarf,32768 -p "$proxy_pid" \
            -o "$PERF_DIR/$s.data" -- sleep "$secs") >"$PERF_DIR/$s.log" 2>&1 &
          perf_pid=$!
        fi
        [[ -n "${PROOF_POOL:-}" ]] && extra+=(--proof-pool "$PROOF_POOL")
        [[ -n "${CHECK:-}" ]] && extra+=(--check)
        # shellcheck disable=SC2046 # the arguments are words by design
        line="$("$load" run $(args "$s" "$path") "${mode[@]}" "${extra[@]}" --duration-s "$secs" --warmup-s "$warmup" \
          --threads "$threads" --tag scenario="$s" --tag path="$path" --tag round="$r" --tag kind="$kind" --out "$out")" \
          || { echo "mcp-pep-load failed (scenario $s, $path, $kind)" >&2; tail -n 20 "$work"/*.log >&2; exit 1; }
        [[ -z "$perf_pid" ]] || wait "$perf_pid" || { echo "perf record failed: $(cat "$PERF_DIR/$s.log")" >&2; exit 1; }
        python3 -c '
import json, sys
d = json.loads(sys.argv[1]); l = d["latency_ms"] or {}; p = d["process"] or {}
err = sum(d["errors"].values())
print("%-3s %-8s %-5s %-6s %10.0f %9s %9s %9s %9s %8s %7.1f%s" % (d["scenario"], d["path"], d["round"], d["kind"], d["req_per_s"],
  l.get("p50"), l.get("p90"), l.get("p99"), l.get("p99.9"), p.get("cpu_us_per_request"), p.get("rss_kib_max", 0) / 1024,
  "  ERRORS %s" % d["errors"] if err else ""))' "$line"
      done
    done
  done
done
python3 benches/load_summary.py "$out"
