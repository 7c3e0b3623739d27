#!/usr/bin/env bash
# Usage: agent.sh MCP_PEP_BIN
#
# Agents with no credentials at all (issue #12): each agent's MCP client (the official Python
# and TypeScript SDKs) speaks plain HTTP to 127.0.0.1 and holds nothing. Its own mcp-pep
# (egress) has the pod's X.509-SVID from its own Workload API (workload_api.py), decides the
# agent's calls with the shipped policies under the pod's SPIFFE ID (identity.local_spiffe_id),
# fetches a fresh JWT-SVID (audience: the realm) for every token request, obtains a DPoP-bound
# token from the Keycloak stand-in (tests/keycloak/keycloak.py: jwt-spiffe client
# authentication), and sends every call over mTLS with `Authorization: DPoP` and a fresh proof
# to the tool server's mcp-pep (ingress: mTLS, the realm as issuer, azp bound to the client
# certificate's SPIFFE ID, the shipped policies) in front of fixture_server.py.
#
#   agent SDK --http--> egress mcp-pep --mTLS + DPoP--> ingress mcp-pep --> fixture_server.py
#                          |  JWT-SVID      ^ jwt-spiffe + proof
#                 workload_api.py (agent)   keycloak.py (realm mcp)
#
# Cases:
#   - the three trust tiers for both SDKs (2026-07-28) and the Python SDK on 2025-era sessions:
#     tools/list filtered, allowed calls answered, denied ones refused; denials of the
#     untrusted agent are made by its own sidecar (the ingress never sees them, so no token
#     is spent on them);
#   - the credentials' provenance in the egress log (SVID -> assertion -> token, jkt, expiry),
#     the client's own Authorization/DPoP/Cookie replaced, no credential reaching the fixture,
#     no JWT in any mcp-pep log;
#   - a 2025-era SSE GET stream and DELETE through both sidecars (each needs its own proof);
#   - server-everything behind its own ingress (tests/e2e/policies): the Python and TS SDK 1.x
#     clients' sessions (initialize, GET stream, echo, get-env denied, DELETE);
#   - a nonce-demanding ingress (auth.dpop_nonce): one challenge, the nonce kept for later calls;
#   - a session longer than two token lifetimes (12 s tokens): refreshed in the background,
#     every call answered;
#   - the issuer down (killed) then back on the same port, and an issuer refusing the assertion
#     (invalid_client): a new egress answers 503 with a JSON-RPC error naming the cause,
#     /readyz 503, recovery without a restart;
#   - stolen material at the ingress (tests/e2e/agent_attacks.py): a token without its key, a key
#     without a token, a replayed proof, the token over another agent's mTLS identity;
#   - SVID rotation in the middle of a session: the trusted agent's Workload API pushes an SVID
#     of the second CA while the ingress comes to trust that CA only; the held session goes on,
#     new connections present the new SVID (an agent with an old-CA SVID is now refused).
# Run alone it installs the peers (setup.sh) and ends with "agent e2e: N passed, M failed".
# Sourced by run.sh it uses the caller's $bin, $here and lib.sh and adds to its count.

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -euo pipefail
  [[ $# -eq 1 ]] || { echo "usage: $0 MCP_PEP_BIN" >&2; exit 2; }
  here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
  bin="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
  bash "$here/setup.sh"
  . "$here/lib.sh"
  agent_standalone=1
else
  agent_standalone=0
fi
cd "$here"
repo="$(cd "$here/../.." && pwd)"

td=mcp-identity.local
sidecar_id="spiffe://$td/ns/mcp-tools/sa/mcp-pep"
agent_id() { echo "spiffe://$td/ns/mcp-agents/sa/$1"; }
ag="$E2E_LOGDIR/agent"
pki="$ag/pki"
mkdir -p "$ag"
# Unix socket paths are limited to 107 bytes: the sockets live in a short directory.
ag_sock_dir="$(mktemp -d /tmp/ag.XXXXXX)"
# Sourced after spiffe.sh, whose EXIT trap this one replaces: run its cleanup too.
agent_cleanup() {
  if declare -F spiffe_cleanup >/dev/null; then spiffe_cleanup; else e2e_cleanup; fi
  rm -rf "$ag_sock_dir"
}
trap agent_cleanup EXIT
"$E2E_PY" pki.py "$pki" >/dev/null

# start_workload_api NAME SVID [BUNDLE]: a Workload API serving OUTDIR/svid-SVID.* on
# $ag_sock_dir/NAME.sock, its material in $ag/wl-NAME.
start_workload_api() {
  local name="$1" svid="$2" bundle="${3:-bundle-$td.pem}" sock="$ag_sock_dir/$1.sock" i
  "$E2E_PY" pki.py workload-dir "$pki" "$ag/wl-$name" "$svid" "$bundle"
  start_bg "wl-$name" "$E2E_PY" workload_api.py --socket "$sock" --dir "$ag/wl-$name"
  for ((i = 0; i < 100; i++)); do [[ -S "$sock" ]] && return 0; sleep 0.1; done
  echo "agent: workload_api.py $name did not listen on $sock" >&2
  cat "$E2E_LOGDIR/wl-$name.log" >&2
  return 1
}
start_workload_api ingress mcp-pep
for a in trusted-agent semi-trusted-agent untrusted-agent; do start_workload_api "$a" "$a"; done

# --- The realm: one federated-jwt client per agent, client id = its SPIFFE ID (so azp is),
# an audience mapper naming the tool server ---
kc_port="$(free_port)"
kc_info="$ag/keycloak.json"
kc_clients="$ag/clients.json"
python3 - "$kc_clients" <<PY
import json, sys
ids = ["$(agent_id trusted-agent)", "$(agent_id semi-trusted-agent)", "$(agent_id untrusted-agent)"]
json.dump([{"clientId": i, "spiffeId": i, "realmRoles": ["mcp-agent"], "requireDPoP": True,
           "audience": "mcp-tool-server"} for i in ids],
          open(sys.argv[1], "w"))
PY
start_keycloak() {
  rm -f "$kc_info"
  start_bg keycloak "$E2E_PY" "$repo/tests/keycloak/keycloak.py" --port "$kc_port" --realm mcp \
    --trust-domain "$td" --workload-api-dir "$ag/wl-ingress" --clients "$kc_clients" \
    --token-lifetime 12 --out "$kc_info"
  kc_pid=$E2E_LAST_PID
  local i
  for ((i = 0; i < 100; i++)); do [[ -s "$kc_info" ]] && return 0; sleep 0.1; done
  echo "agent: keycloak.py did not come up" >&2
  cat "$E2E_LOGDIR/keycloak.log" >&2
  return 1
}
start_keycloak
issuer="http://127.0.0.1:$kc_port/realms/mcp"

# --- The tool server and its sidecar ---
fx_port="$(free_port)"
fx_log="$ag/upstream-requests.jsonl"
: >"$fx_log"
start_bg agent-fixture "$E2E_PY" fixture_server.py "$fx_port" --request-log "$fx_log"
fx="http://127.0.0.1:$fx_port/mcp"

# ingress NAME [YAML...]: the tool server's mcp-pep (in front of $ingress_upstream, default the
# fixture, with $ingress_policies, default the shipped ones); extra YAML lines go under auth:.
# Sets PORT_<NAME> and ADMIN_<NAME>.
start_ingress() {
  local name="$1" port admin; shift
  port="$(free_port)" admin="$(free_port)"
  cat >"$ag/$name.yaml" <<YAML
listen: "127.0.0.1:$port"
admin_listen: "127.0.0.1:$admin"
upstream:
  url: "${ingress_upstream:-$fx}"
policy:
  dir: "${ingress_policies:-$repo/policies}"
identity:
  source: workload_api
  workload_api_socket: "unix://$ag_sock_dir/ingress.sock"
  mtls: true
  trust_domains: [$td]
auth:
  issuers: [{issuer: "$issuer"}]
  public_url: "https://127.0.0.1:$port/mcp"
  audiences: [mcp-tool-server]
  spiffe_id_claim: azp
$(printf '  %s\n' "$@")
YAML
  start_bg "$name" env RUST_LOG=info "$bin" run --config "$ag/$name.yaml"
  printf -v "PORT_${name//-/_}" %s "$port"
  printf -v "ADMIN_${name//-/_}" %s "$admin"
}
start_ingress ingress
start_ingress ingress-nonce "dpop_nonce: true"
# server-everything behind a third ingress with the e2e policies (get-env denied to everyone).
if [[ -z "${direct:-}" ]]; then
  everything_port="$(free_port)"
  start_everything "$everything_port"
  direct="http://127.0.0.1:$everything_port/mcp"
fi
ingress_upstream="$direct" ingress_policies="$here/policies" start_ingress ingress-everything
ingress_everything="https://127.0.0.1:$PORT_ingress_everything/mcp"
ingress="https://127.0.0.1:$PORT_ingress/mcp"
ingress_nonce="https://127.0.0.1:$PORT_ingress_nonce/mcp"

# start_egress NAME AGENT UPSTREAM: the agent's mcp-pep: plain HTTP on loopback for the
# agent's client (which holds nothing), the pod's SVID and a token of its own upstream; it
# decides with $egress_policies (default the shipped ones).
# Sets PORT_<NAME> and ADMIN_<NAME> (dashes as underscores).
start_egress() {
  local name="$1" agent="$2" upstream="$3" port admin
  port="$(free_port)" admin="$(free_port)"
  cat >"$ag/$name.yaml" <<YAML
listen: "127.0.0.1:$port"
admin_listen: "127.0.0.1:$admin"
upstream:
  url: "$upstream"
  spiffe_id: "$sidecar_id"
  # Short, so that connections made after an SVID rotation come soon.
  pool_idle_timeout_ms: 300
  credentials:
    issuer: "$issuer"
    refresh_margin_s: 4
policy:
  dir: "${egress_policies:-$repo/policies}"
identity:
  source: workload_api
  workload_api_socket: "unix://$ag_sock_dir/$agent.sock"
  trust_domains: [$td]
  local_spiffe_id: "$(agent_id "$agent")"
YAML
  start_bg "$name" env RUST_LOG=info "$bin" run --config "$ag/$name.yaml"
  printf -v "PORT_${name//-/_}" %s "$port"
  printf -v "ADMIN_${name//-/_}" %s "$admin"
}
start_egress egress-trusted trusted-agent "$ingress"
start_egress egress-semi semi-trusted-agent "$ingress"
start_egress egress-untrusted untrusted-agent "$ingress"
start_egress egress-nonce trusted-agent "$ingress_nonce"
egress_policies="$here/policies" start_egress egress-everything trusted-agent "$ingress_everything"
egress_url() { local v="PORT_${1//-/_}"; echo "http://127.0.0.1:${!v}/mcp"; }
admin_url() { local v="ADMIN_${1//-/_}"; echo "http://127.0.0.1:${!v}"; }
wait_http "$fx" 30 || cat "$E2E_LOGDIR/agent-fixture.log" >&2
echo "agent: issuer $issuer, fixture $fx, ingress $ingress (nonce: $ingress_nonce), logs in $E2E_LOGDIR"

retry() {
  local secs="$1" i; shift
  for ((i = 0; i < secs * 10; i++)); do
    "$@" >/dev/null 2>&1 && break
    sleep 0.1
  done
  "$@"
}
# metric ADMIN_NAME SAMPLE OP N: the sample on that mcp-pep's /metrics compares OP N
# (ge, le, eq; "absent" counts as 0).
metric() {
  curl -sf "$(admin_url "$1")/metrics" | awk -v m="$2" -v op="$3" -v n="$4" '
    index($0, m" ") == 1 { v = $2; seen = 1 }
    END {
      x = seen ? v + 0 : 0
      ok = (op == "ge" && x >= n) || (op == "le" && x <= n) || (op == "eq" && x == n)
      print m " = " (seen ? v : "absent") ", want " op " " n; exit !ok }'
}
# logged NAME TEXT [FROM]: a line of NAME.log (from line FROM on) has TEXT, colour codes aside.
logged() { tail -n "+${3:-1}" "$E2E_LOGDIR/$1.log" | sed 's/\x1b\[[0-9;]*m//g' | grep -F -- "$2"; }
log_mark() { echo $(($(wc -l <"$E2E_LOGDIR/$1.log") + 1)); }
py() { "$E2E_PY" py_modern_client.py "$@"; }
ts() { "$E2E_NODE" ts_modern_client.mjs "$@"; }

for name in ingress ingress-nonce ingress-everything egress-trusted egress-semi egress-untrusted egress-nonce egress-everything; do
  check "agent-$name-ready" retry 20 curl -sf "$(admin_url "$name")/readyz"
done
# Where each credential came from: the egress names its DPoP key and the token's expiry.
check agent-egress-token-provenance logged egress-trusted 'outbound token obtained'
check agent-egress-token-jkt logged egress-trusted 'jkt='
check agent-egress-token-metric metric egress-trusted 'mcp_pep_outbound_token_requests_total{result="ok"}' ge 1

# --- The three tiers, both SDKs, no credentials in the clients ---
untrusted_denies=(--expect-deny write_file --expect-deny query_database --expect-deny call_api
  --expect-deny execute_command --expect-deny fetch_url)
check agent-trusted-py py "$(egress_url egress-trusted)" --mode 2026-07-28 --expect-version 2026-07-28 \
  --discover --expect-tools call_api,execute_command,fetch_url,query_database,read_file,write_file
check agent-trusted-ts ts "$(egress_url egress-trusted)" --mode pin --expect-version 2026-07-28
check agent-trusted-py-legacy py "$(egress_url egress-trusted)" --mode legacy --expect-version 2025-11-25
check agent-semi-trusted-py py "$(egress_url egress-semi)" --mode 2026-07-28 \
  --expect-tools call_api,query_database,read_file \
  --expect-deny write_file --expect-deny execute_command --expect-deny fetch_url
check agent-semi-trusted-ts ts "$(egress_url egress-semi)" --mode pin \
  --expect-deny write_file --expect-deny execute_command --expect-deny fetch_url
check agent-untrusted-py py "$(egress_url egress-untrusted)" --mode 2026-07-28 --expect-tools read_file \
  "${untrusted_denies[@]}"
check agent-untrusted-ts ts "$(egress_url egress-untrusted)" --mode pin "${untrusted_denies[@]}"
check agent-untrusted-py-legacy py "$(egress_url egress-untrusted)" --mode legacy "${untrusted_denies[@]}"
# The untrusted agent's refusals were made by its own sidecar, before any token was spent:
# the ingress decided none of them, and the fixture never saw them.
check agent-untrusted-denied-at-egress metric egress-untrusted \
  'mcp_pep_decisions_total{decision="deny",method="tools/call",tool="execute_command"}' ge 3
check agent-untrusted-denials-not-at-ingress metric ingress \
  'mcp_pep_decisions_total{decision="deny",method="tools/call",tool="execute_command"}' eq 0
check agent-egress-decision-log-names-pod logged egress-untrusted "$(agent_id untrusted-agent)"
# The ingress saw each agent's mTLS identity and its token (azp = that SPIFFE ID).
check agent-ingress-allowed-trusted-write logged ingress "$(agent_id trusted-agent)"
check agent-fixture-saw-allowed-calls python3 - "$fx_log" <<'PY'
import json, sys
calls = [e for e in map(json.loads, open(sys.argv[1])) if e.get("method") == "tools/call"]
names = {e.get("mcp-name") for e in calls}
print(f"tools/call at the fixture: {sorted(n for n in names if n)}; credential headers: "
      f"{sorted({k for e in calls for k, v in e.items() if v == 'present'})}")
assert "write_file" in names and "read_file" in names, "the allowed calls did not arrive"
assert not {"execute_command", "fetch_url"} & names, "a call refused to every tier reached the fixture"
assert not any(v == "present" for e in calls for v in e.values()), "a credential header reached the fixture"
PY
# The client's own credentials never pass: a bogus Authorization, DPoP proof and cookie sent
# to the egress are replaced (the ingress would refuse a second or an invalid DPoP header).
client_headers_replaced() {
  local out status
  out="$(curl -s -w '\n%{http_code}' "$(egress_url egress-trusted)" -H 'content-type: application/json' \
    -H 'accept: application/json, text/event-stream' -H 'mcp-protocol-version: 2026-07-28' \
    -H 'mcp-method: tools/call' -H 'mcp-name: read_file' \
    -H 'authorization: Bearer stolen-token' -H 'dpop: eyJhbGciOiJub25lIn0.e30.' -H 'cookie: session=stolen' \
    -d '{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/workspace/readme.md"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}')"
  status="${out##*$'\n'}"
  echo "egress answered $status: ${out%$'\n'*}" | head -c 600; echo
  [[ "$status" == 200 && "$out" == *'contents of /workspace/readme.md'* ]]
}
check agent-client-credentials-replaced client_headers_replaced

# --- 2025-era: the SSE GET stream and DELETE get proofs of their own ---
legacy_stream_and_delete() {
  local url hdr sid status
  url="$(egress_url egress-trusted)" hdr="$ag/init.headers"
  curl -s -D "$hdr" -o /dev/null "$url" -H 'content-type: application/json' \
    -H 'accept: application/json, text/event-stream' \
    -d '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}'
  sid="$(awk 'tolower($1) == "mcp-session-id:" { print $2 }' "$hdr" | tr -d '\r')"
  echo "session id: ${sid:-none}"
  [[ -n "$sid" ]] || return 1
  curl -s -o /dev/null "$url" -H 'content-type: application/json' -H "mcp-session-id: $sid" \
    -H 'mcp-protocol-version: 2025-06-18' -d '{"jsonrpc":"2.0","method":"notifications/initialized"}'
  # The GET stream opens (200, text/event-stream) and stays open until curl's timeout.
  status="$(curl -s -o /dev/null -w '%{http_code} %{content_type}' --max-time 2 "$url" \
    -H 'accept: text/event-stream' -H "mcp-session-id: $sid" -H 'mcp-protocol-version: 2025-06-18')" || true
  echo "GET stream: $status"
  [[ "$status" == "200 text/event-stream"* ]] || return 1
  status="$(curl -s -o /dev/null -w '%{http_code}' -X DELETE "$url" -H "mcp-session-id: $sid" \
    -H 'mcp-protocol-version: 2025-06-18')"
  echo "DELETE: $status"
  [[ "$status" == 200 || "$status" == 204 ]]
}
check agent-legacy-get-stream-and-delete legacy_stream_and_delete
check agent-ingress-get-had-proof metric ingress 'mcp_pep_rejections_total{reason="dpop_missing",stage="credentials"}' eq 0

# --- server-everything through both sidecars: the SDKs' 2025-era sessions (Python: GET stream
# and DELETE, each with its own proof) ---
check agent-everything-py "$E2E_PY" py_client.py "$(egress_url egress-everything)" --expect-deny get-env
check agent-everything-ts "$E2E_NODE" ts_client.mjs "$(egress_url egress-everything)" --expect-deny get-env
check agent-everything-get-env-denied-at-egress metric egress-everything \
  'mcp_pep_decisions_total{decision="deny",method="tools/call",tool="get-env"}' ge 2

# --- A nonce-demanding ingress: one challenge, then the nonce is kept ---
check agent-nonce-trusted-py py "$(egress_url egress-nonce)" --mode 2026-07-28 --no-write
check agent-nonce-trusted-py-again py "$(egress_url egress-nonce)" --mode 2026-07-28 --no-write
check agent-nonce-challenged metric ingress-nonce \
  'mcp_pep_rejections_total{reason="nonce_missing",stage="credentials"}' ge 1
check agent-nonce-kept metric ingress-nonce \
  'mcp_pep_rejections_total{reason="nonce_missing",stage="credentials"}' le 1

# --- A session longer than two token lifetimes (12 s tokens, refreshed 4 s ahead) ---
refreshes_before="$(curl -sf "$(admin_url egress-semi)/metrics" | awk '$1 == "mcp_pep_outbound_token_requests_total{result=\"ok\"}" { print $2 }')"
check agent-long-session-across-refreshes py "$(egress_url egress-semi)" --mode legacy --no-write \
  --expect-deny execute_command --hold-for 26
check agent-long-session-refreshed metric egress-semi 'mcp_pep_outbound_token_requests_total{result="ok"}' \
  ge $((${refreshes_before:-0} + 2))

# --- Stolen material at the ingress: the token, the key, a proof, another identity ---
check agent-stolen-material "$E2E_PY" agent_attacks.py --ingress "$ingress" --issuer "$issuer" \
  --pki "$pki" --ca "$pki/bundle-$td.pem" --server-id "$sidecar_id" \
  --trusted "$(agent_id trusted-agent)" --untrusted "$(agent_id untrusted-agent)" --upstream-log "$fx_log"

# --- The issuer refuses, then is down, then back: a fresh egress fails closed and recovers ---
curl -sf -X POST "http://127.0.0.1:$kc_port/_test/fail?count=1000&status=400&error=invalid_client" >/dev/null
start_egress egress-late trusted-agent "$ingress"
# fails_closed NAME CAUSE: a call through egress NAME answers 503 with a JSON-RPC error
# whose message names CAUSE; readyz is 503.
fails_closed() {
  local out status ready
  out="$(curl -s -w '\n%{http_code}' "$(egress_url "$1")" -H 'content-type: application/json' \
    -H 'accept: application/json, text/event-stream' -H 'mcp-protocol-version: 2026-07-28' \
    -H 'mcp-method: tools/list' \
    -d '{"jsonrpc":"2.0","id":7,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}')"
  status="${out##*$'\n'}"
  ready="$(curl -s -o /dev/null -w '%{http_code}' "$(admin_url "$1")/readyz")"
  echo "egress answered $status: ${out%$'\n'*}; readyz $ready"
  [[ "$status" == 503 && "$ready" == 503 && "$out" == *'"id":7'* && "$out" == *"$2"* ]]
}
check agent-issuer-refuses-fails-closed retry 10 fails_closed egress-late invalid_client
check agent-issuer-refusal-metric metric egress-late 'mcp_pep_outbound_token_requests_total{result="refused"}' ge 1
kill -TERM -- "-$kc_pid" 2>/dev/null || true
for ((i = 0; i < 50; i++)); do kill -0 "$kc_pid" 2>/dev/null || break; sleep 0.1; done
echo "agent: keycloak.py stopped"
check agent-issuer-down-fails-closed retry 15 fails_closed egress-late "could not be reached"
start_keycloak
echo "agent: keycloak.py back on port $kc_port (a new realm key)"
check agent-issuer-back-readyz retry 15 curl -sf "$(admin_url egress-late)/readyz"
check agent-issuer-back-calls py "$(egress_url egress-late)" --mode 2026-07-28 --no-write
# The agents started before the outage go on: their tokens (old realm key) are refused by the
# ingress once it knows only the new key, and each egress refreshes once and retries.
check agent-after-issuer-restart-trusted retry 20 py "$(egress_url egress-trusted)" --mode 2026-07-28 --no-write

# --- SVID rotation in the middle of a session ---
held_ready="$ag/held.ready" held_go="$ag/held.go"
rm -f "$held_ready" "$held_go"
start_bg agent-held-client "$E2E_PY" py_modern_client.py "$(egress_url egress-trusted)" --mode legacy \
  --no-write --ready-file "$held_ready" --wait-file "$held_go"
held_pid=$E2E_LAST_PID
check agent-held-session-open retry 30 test -e "$held_ready"
# The ingress keeps its SVID and comes to trust the second CA only; the trusted agent's pod
# gets an SVID of that CA (its bundle: both CAs, so it still verifies the ingress). In the
# order a real rotation takes, each step installed before the next: the ingress trusts both
# CAs, the agent's SVID moves to ca2, the ingress drops ca1. (Both at once leave a window in
# which the held session's calls, each on a new connection, meet a half-rotated pair.)
rotate_step() {
  local sidecar="$1" mark; shift
  mark="$(log_mark "$sidecar")"
  "$E2E_PY" pki.py workload-dir "$pki" "$@"
  retry 20 logged "$sidecar" "SVID material installed" "$mark"
}
check agent-rotation-ingress-trusts-both rotate_step ingress "$ag/wl-ingress" mcp-pep "bundle-$td-rotated.pem"
check agent-rotation-agent-svid-of-ca2 rotate_step egress-trusted "$ag/wl-trusted-agent" trusted-agent-ca2 \
  "bundle-$td-rotated.pem"
check agent-rotation-ingress-trusts-ca2-only rotate_step ingress "$ag/wl-ingress" mcp-pep "td/$td/ca2.pem"
echo "agent: rotated: the ingress trusts ca2 only; the trusted agent's SVID is signed by ca2"
sleep 1
check agent-rotation-new-session-works retry 10 py "$(egress_url egress-trusted)" --mode 2026-07-28 --no-write
touch "$held_go"
held_done() {
  local rc=0
  wait "$held_pid" || rc=$?
  cat "$E2E_LOGDIR/agent-held-client.log"
  [[ $rc -eq 0 ]]
}
check agent-held-session-completes held_done
# Not vacuous: an agent whose SVID is still of the first CA is now refused by the ingress.
check agent-rotation-old-ca-agent-refused fails py "$(egress_url egress-semi)" --mode 2026-07-28 --no-write

# --- Nothing leaked: no JWT (token, proof or JWT-SVID) in any mcp-pep log ---
no_jwt_in_logs() {
  local f found=0
  for f in "$E2E_LOGDIR"/{ingress,ingress-nonce,ingress-everything,egress-trusted,egress-semi,egress-untrusted,egress-nonce,egress-everything,egress-late}.log; do
    if sed 's/\x1b\[[0-9;]*m//g' "$f" | grep -Eq 'eyJ[A-Za-z0-9_-]{10,}'; then
      echo "a JWT in $(basename "$f")"; found=1
    fi
  done
  ((found == 0)) && echo "no JWT in the mcp-pep logs"
  ((found == 0))
}
check agent-no-jwt-in-logs no_jwt_in_logs

if ((agent_standalone)); then
  check agent-no-secrets-in-any-log secrets_not_logged access_token,dpop_proof,client_assertion,jwt_svid,private_key_pem
  echo "agent e2e: $passed passed, $failed failed"
  [[ $failed -eq 0 ]]
fi
