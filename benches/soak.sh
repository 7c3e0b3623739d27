#!/usr/bin/env bash
# Soak: the proxy with every check on (DPoP + mTLS, the shipped policies, scenario d of
# benches/load.sh) under a steady load for a long time, while its policies are reloaded and
# its SVID rotated, to show nothing leaks and nothing is misdecided.
#
# Usage: benches/soak.sh [SECONDS] [RATE]        (default 600 s at 1000 req/s)
#
# - mcp-pep-load at RATE req/s on 16 kept-alive connections (fresh DPoP proof per request)
#   and, beside it, 10 req/s each on a new connection (a TLS handshake per request, so
#   every SVID rotation is met by new handshakes); both with --check: any request not
#   answered 200 with a JSON-RPC result (a denial, a 401, a timeout) fails the soak;
# - every 30 s a policy reload (a data file of the policy directory rewritten: a new
#   content revision, the same decisions);
# - every 120 s an SVID rotation (the proxy's certificate and key replaced by a new SVID
#   from the same CA, as the file source sees a SPIRE rotation);
# - every 10 s the proxy's RSS (VmRSS) and open file descriptors, into a CSV.
# At the end: each generator's JSON line, the reloads and rotations the proxy counted, and
# RSS / fd first, last and max. Not part of ./test.sh (it runs for minutes); the results
# are in docs/benchmarks.md. Env: BIN_DIR (default: release build), KEEP=1, OUT,
# RELOAD_EVERY (30 s), ROTATE_EVERY (120 s).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
secs="${1:-600}" rate="${2:-1000}"
reload_every="${RELOAD_EVERY:-30}" rotate_every="${ROTATE_EVERY:-120}"
[[ -n "${BIN_DIR:-}" ]] || cargo build --release --quiet --bin mcp-pep --bin mcp-pep-load
bin="${BIN_DIR:-target/release}/mcp-pep" load="${BIN_DIR:-target/release}/mcp-pep-load"
work="$(mktemp -d)"
out="${OUT:-$work/soak.jsonl}"
pids=()
cleanup() { for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; [[ -n "${KEEP:-}" ]] || rm -rf "$work"; }
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }

rotations=$(( secs / rotate_every + 1 ))
creds="$work/creds"
"$load" credentials --out "$creds" --rotations "$rotations" >/dev/null
# The SVID the proxy serves: a copy, replaced in place by each rotation.
cp "$creds/proxy.pem" "$work/svid.pem"
cp "$creds/proxy.key" "$work/svid.key"
# The policy directory: the shipped policies (tests left out) and one data file to rewrite.
mkdir -p "$work/policies"
for f in policies/*; do [[ $f == *_test.rego ]] || cp "$f" "$work/policies/"; done
echo '{"soak": {"generation": 0}}' >"$work/policies/soak.json"

td=mcp-identity.local
up_port="$(free_port)" pep_port="$(free_port)" admin_port="$(free_port)"
"$bin" demo-server --listen "127.0.0.1:$up_port" --mode json >"$work/upstream.log" 2>&1 &
pids+=($!)
cat >"$work/pep.yaml" <<YAML
listen: 127.0.0.1:$pep_port
admin_listen: 127.0.0.1:$admin_port
upstream:
  url: http://127.0.0.1:$up_port/mcp
policy:
  dir: $work/policies
log:
  level: warn
limits:
  rate_per_caller: 0
identity:
  source: files
  files: {cert: $work/svid.pem, key: $work/svid.key, bundles: {$td: $creds/ca.pem}}
  mtls: true
  trust_domains: [$td]
auth:
  issuers: [{issuer: $(cat "$creds/issuer.txt"), jwks_file: $creds/jwks.json}]
  audiences: [mcp-pep-load]
  public_url: https://127.0.0.1:$pep_port/mcp
  dpop: required
  # One DPoP key signs every proof: 1 000/s over the 25 s window is the default per-key
  # quota's edge (25 000 live proofs).
  dpop_replay_entries: 2000000
  dpop_replay_entries_per_key: 2000000
YAML
"$bin" run --config "$work/pep.yaml" >"$work/pep.log" 2>&1 &
pep_pid=$!
pids+=("$pep_pid")
for _ in $(seq 100); do curl -sf -o /dev/null "http://127.0.0.1:$admin_port/readyz" && break; sleep 0.1; done
curl -sf -o /dev/null "http://127.0.0.1:$admin_port/readyz" || { echo "the proxy is not ready" >&2; cat "$work/pep.log" >&2; exit 1; }

metric() { # NAME LABEL-SUBSTRING: the sum of a counter's matching series
  curl -s "http://127.0.0.1:$admin_port/metrics" | awk -v n="$1" -v l="$2" '$1 ~ "^"n && index($1, l) { s += $2 } END { print s + 0 }'
}
sample() { printf '%s,%s,%s\n' "$(( $(date +%s) - start ))" "$(awk '/^VmRSS:/ { print $2 }' "/proc/$pep_pid/status")" "$(ls "/proc/$pep_pid/fd" | wc -l)" >>"$work/samples.csv"; }

common=(--url "https://127.0.0.1:$pep_port/mcp" --auth dpop --token-file "$creds/token-dpop.jwt" --dpop-key "$creds/dpop.key"
  --ca "$creds/ca.pem" --cert "$creds/agent.pem" --key "$creds/agent.key" --duration-s "$secs" --warmup-s 1 --check --out "$out")
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "soak: ${secs}s at $rate req/s (16 kept-alive connections) + 10 req/s on new connections; reload every ${reload_every} s, SVID rotation every ${rotate_every} s"
echo "seconds,rss_kib,fds" >"$work/samples.csv"
start=$(date +%s)
sample
"$load" run "${common[@]}" --rate "$rate" --connections 16 --watch-pid "$pep_pid" --tag soak=steady >"$work/steady.json" 2>"$work/steady.err" &
steady=$!
"$load" run "${common[@]}" --rate 10 --connections 4 --new-connection --tag soak=handshakes >"$work/handshakes.json" 2>"$work/handshakes.err" &
handshakes=$!
pids+=("$steady" "$handshakes")

reloads=0 rotated=0
while kill -0 "$steady" 2>/dev/null; do
  sleep 10
  kill -0 "$steady" 2>/dev/null || break
  sample
  t=$(( $(date +%s) - start ))
  if (( t / reload_every > reloads )); then
    reloads=$(( reloads + 1 ))
    echo "{\"soak\": {\"generation\": $reloads}}" >"$work/policies/soak.json.tmp"
    mv "$work/policies/soak.json.tmp" "$work/policies/soak.json"
  fi
  if (( t / rotate_every > rotated && rotated < rotations )); then
    rotated=$(( rotated + 1 ))
    # Key and certificate written side by side, then moved in: the file source reads a
    # pair that does not fit at worst once and keeps the old SVID until the next poll.
    cp "$creds/proxy-rot-$rotated.key" "$work/svid.key.tmp"
    cp "$creds/proxy-rot-$rotated.pem" "$work/svid.pem.tmp"
    mv "$work/svid.key.tmp" "$work/svid.key"
    mv "$work/svid.pem.tmp" "$work/svid.pem"
  fi
done
status=0
wait "$steady" || status=1
wait "$handshakes" || status=1
sample

echo "steady:     $(cat "$work/steady.json")"
echo "handshakes: $(cat "$work/handshakes.json")"
echo "policy reloads written $reloads, counted ok $(metric mcp_pep_policy_reloads_total 'result="ok"'), failed $(metric mcp_pep_policy_reloads_total 'result="error"')"
echo "SVID rotations written $rotated, proxy SVID updates: $(curl -s "http://127.0.0.1:$admin_port/metrics" | grep '^mcp_pep_svid_updates_total' | tr '\n' ' ')"
echo "decisions: $(curl -s "http://127.0.0.1:$admin_port/metrics" | grep '^mcp_pep_decisions_total' | tr '\n' ' ')"
python3 - "$work/samples.csv" <<'PY'
import csv, sys
rows = [(int(r["seconds"]), int(r["rss_kib"]), int(r["fds"])) for r in csv.DictReader(open(sys.argv[1]))]
rss = [r[1] for r in rows]; fds = [r[2] for r in rows]
# Flatness from the first sample at 60 s: by then the replay cache holds a whole window of
# proofs (25 s at the default lifetime + skew) and the allocator its working set.
# The last sample is taken after the load (the last reload and rotation may just have
# compiled a new set beside the old engines): the flatness is read up to the one before.
steady = next((r for r in rows if r[0] >= 60), rows[-1])
last = rows[-2] if len(rows) > 2 else rows[-1]
loaded = [r[1] for r in rows[1:-1]] or rss
print(f"RSS MiB: idle {rss[0]/1024:.1f}, at {steady[0]} s {steady[1]/1024:.1f}, at {last[0]} s {last[1]/1024:.1f} "
      f"(growth {100 * (last[1] - steady[1]) / steady[1]:+.1f} %), max under load {max(loaded)/1024:.1f}, after the load "
      f"{rss[-1]/1024:.1f}; fds: idle {fds[0]}, max under load {max(fds[1:-1] or fds)}, after the load {fds[-1]}")
print("samples (s:MiB/fds): " + " ".join(f"{t}:{k/1024:.1f}/{f}" for t, k, f in rows))
PY
[[ $status == 0 ]] && echo "soak: no failed request" || { echo "soak: FAILED requests (see above)" >&2; tail -n 20 "$work/pep.log" >&2; exit 1; }
