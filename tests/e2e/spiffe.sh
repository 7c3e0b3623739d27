#!/usr/bin/env bash
# Usage: spiffe.sh MCP_PEP_BIN
#
# End-to-end SPIFFE identity: mcp-pep takes its X.509-SVID, X.509 bundle and JWT bundle from
# a SPIFFE Workload API (workload_api.py on a unix socket, serving a test PKI made by pki.py)
# and serves MCP over mutual TLS, deciding with an identity-aware policy
# (policies-spiffe/spiffe.rego: get-env for no one, get-sum for the trusted agent only).
# First workload_api_selftest.py checks the Workload API server against the `spiffe` client,
# and `mcp-pep policy test` runs the policy's unit tests (policies-spiffe/spiffe_test.rego).
# Then, through mcp-pep, with the Python MCP SDK over mTLS (py_mtls_client.py):
#   - the trusted and semi-trusted agents' SVIDs: initialize, tools/list, echo;
#   - the caller's SPIFFE ID reaches the policy: the trusted agent sees and calls get-sum
#     (1 + 2 = 3), the semi-trusted and untrusted agents have it hidden and denied (-32001),
#     and the decision log names the untrusted agent's SPIFFE ID with source mtls;
#   - the server presents the sidecar SVID (spiffe://mcp-identity.local/ns/mcp-tools/sa/mcp-pep)
#     from the Workload API, verified as a chain to the bundle and by its URI SAN;
#   - no client certificate, an evil.example SVID, and an SVID of the not yet trusted second
#     CA (ca2): the TLS connection refused by mcp-pep; plain HTTP on the port not answered;
#   - the untrusted agent: get-env denied (spiffe.rego denies it to every caller, as the
#     shipped tests/e2e/policies do), echo still works;
#   - rotation: the Workload API pushes an SVID signed by ca2 and the bundle {ca, ca2}; within
#     5 s new connections get the new certificate (Python ssl, and openssl s_client when
#     installed), a session opened before the rotation completes its calls, the old-bundle
#     client now refuses the server, the ca2 agent is now accepted, the trusted agent still works;
#   - JWT-SVIDs (header x-spiffe-jwt-svid, optional; audience = the sidecar's SPIFFE ID,
#     keys from the Workload API's FetchJWTBundles): one naming the client certificate's
#     SPIFFE ID is accepted and the identity stays mtls (the policy's reason says so); one
#     naming another agent, one for another audience, an expired one and one signed by a key
#     outside the bundle are refused before the session opens (HTTP 401, JSON-RPC -32005);
#     a JWT bundle pushed on the stream takes effect (a key without "use" is added, a key
#     with "use": "x509-svid" is not a JWT authority); the refusals are counted in
#     mcp_pep_rejections_total{stage="credentials"} and logged;
#   - /readyz on the admin port is 200.
#   - the shipped policies (policies/) over mTLS: a second mcp-pep on the same Workload API in
#     front of fixture_server.py; py_modern_client.py pinned to 2026-07-28 with each agent's
#     SVID: the trusted agent discovers, sees the six catalog tools, reads, writes (both MRTR
#     rounds) and listens; the semi-trusted agent may not write, execute or fetch; the untrusted
#     agent sees only read_file and every other catalog tool is refused with -31001, the client
#     usable after each; the refused calls never reach the fixture.
# Run alone it installs the peers (setup.sh), starts server-everything and ends with
# "spiffe e2e: N passed, M failed". Sourced by run.sh (`. spiffe.sh`) it uses the caller's
# $bin, $here, lib.sh and $direct (server-everything) and adds its checks to the caller's count.
# Every process is started by lib.sh's start_bg and ended by its EXIT trap.

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -euo pipefail
  [[ $# -eq 1 ]] || { echo "usage: $0 MCP_PEP_BIN" >&2; exit 2; }
  here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
  bin="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
  bash "$here/setup.sh"
  . "$here/lib.sh"
  spiffe_standalone=1
else
  spiffe_standalone=0
fi
cd "$here"

# The Workload API server itself (its own PKI, socket and process), against the `spiffe` client.
check workload-api-selftest "$E2E_PY" workload_api_selftest.py
# The identity-aware policy's unit tests.
check spiffe-policy-unit-tests "$bin" policy test --policy-dir "$here/policies-spiffe"

if [[ -z "${direct:-}" ]]; then
  upstream_port="$(free_port)"
  start_everything "$upstream_port"
  direct="http://127.0.0.1:$upstream_port/mcp"
fi

td=mcp-identity.local
sidecar_id="spiffe://$td/ns/mcp-tools/sa/mcp-pep"
agent_id() { echo "spiffe://$td/ns/mcp-agents/sa/$1"; }
jwt_header=x-spiffe-jwt-svid
spiffe_dir="$E2E_LOGDIR/spiffe"
pki="$spiffe_dir/pki"   # the test PKI (pki.py)
wl="$spiffe_dir/wl"     # the Workload API's material (pki.py workload-dir)
mkdir -p "$spiffe_dir"
sock="$spiffe_dir/agent.sock"
if ((${#sock} > 100)); then # unix socket paths are limited to 107 bytes
  spiffe_sock_dir="$(mktemp -d /tmp/wl.XXXXXX)"
  sock="$spiffe_sock_dir/agent.sock"
  spiffe_cleanup() { e2e_cleanup; rm -rf "$spiffe_sock_dir"; }
  trap spiffe_cleanup EXIT
fi
bundle="$pki/bundle-$td.pem"
rotated_bundle="$pki/bundle-$td-rotated.pem"

"$E2E_PY" pki.py "$pki"
"$E2E_PY" pki.py workload-dir "$pki" "$wl" mcp-pep "bundle-$td.pem"
start_bg workload-api "$E2E_PY" workload_api.py --socket "$sock" --dir "$wl"
for ((i = 0; i < 100; i++)); do [[ -S "$sock" ]] && break; sleep 0.1; done
[[ -S "$sock" ]] || { echo "spiffe: workload_api.py did not listen on $sock" >&2; cat "$E2E_LOGDIR/workload-api.log" >&2; exit 1; }

spiffe_port="$(free_port)" spiffe_admin_port="$(free_port)"
spiffe_mcp="https://127.0.0.1:$spiffe_port/mcp"
spiffe_admin="http://127.0.0.1:$spiffe_admin_port"
spiffe_config="$spiffe_dir/mcp-pep-spiffe.yaml"
cat >"$spiffe_config" <<YAML
listen: "127.0.0.1:$spiffe_port"
admin_listen: "127.0.0.1:$spiffe_admin_port"
upstream:
  url: "$direct"
policy:
  dir: "$here/policies-spiffe"
identity:
  source: workload_api
  workload_api_socket: "unix://$sock"
  mtls: true
  trust_domains: [$td]
  jwt_svid:
    header: $jwt_header
    audiences: ["$sidecar_id"]
    required: false
YAML
start_bg mcp-pep-spiffe env RUST_LOG=info "$bin" run --config "$spiffe_config"
echo "spiffe: workload API unix://$sock (material $wl), mcp-pep $spiffe_mcp (admin $spiffe_admin), logs in $E2E_LOGDIR"

# retry SECONDS CMD...: run CMD every 0.1 s until it succeeds, at most SECONDS; the last
# try's output is shown.
retry() {
  local secs="$1" i; shift
  for ((i = 0; i < secs * 10; i++)); do
    "$@" >/dev/null 2>&1 && break
    sleep 0.1
  done
  "$@"
}
# mtls CERT_NAME BUNDLE ARGS...: py_mtls_client.py to mcp-pep with OUTDIR/svid-CERT_NAME.*
# (- for no client certificate) and the X.509 bundle BUNDLE.
mtls() {
  local name="$1" ca="$2"; shift 2
  if [[ "$name" == - ]]; then
    "$E2E_PY" py_mtls_client.py "$spiffe_mcp" - - "$ca" --server-id "$sidecar_id" "$@"
  else
    "$E2E_PY" py_mtls_client.py "$spiffe_mcp" "$pki/svid-$name.pem" "$pki/svid-$name.key" "$ca" \
      --server-id "$sidecar_id" "$@"
  fi
}
# no_http_answer URL: nothing answers HTTP there (curl's status 000).
no_http_answer() {
  local status
  status="$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$1")" || true
  echo "plain HTTP to $1: status $status"
  [[ "$status" == 000 ]]
}
# openssl_serves CERT_PEM CLIENT_NAME BUNDLE: openssl s_client (another TLS stack) gets
# exactly CERT_PEM from mcp-pep, verified against BUNDLE, with a client SVID.
openssl_serves() {
  local want got
  want="$(openssl x509 -in "$1" -noout -fingerprint -sha256)"
  got="$(openssl s_client -connect "127.0.0.1:$spiffe_port" -CAfile "$3" -verify_return_error \
    -cert "$pki/svid-$2.pem" -key "$pki/svid-$2.key" </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256)" || true
  echo "openssl s_client: server ${got:-no certificate}; want $want"
  [[ -n "$got" && "$got" == "$want" ]]
}
# spiffe_metric NAME_WITH_LABELS N: the admin endpoint shows the sample >= N.
spiffe_metric() {
  curl -sf "$spiffe_admin/metrics" | awk -v m="$1" -v n="$2" '
    index($0, m" ") == 1 { v = $2; seen = 1 }
    END { print m " = " (seen ? v : "absent") ", want >= " n; exit !(seen && v >= n) }'
}
# decision_logged SPIFFE_ID TEXT [FROM [NAME]]: a line of mcp-pep's log (NAME.log, default
# mcp-pep-spiffe; from line FROM on, default 1) names the caller SPIFFE_ID and TEXT (e.g. the
# policy's reason), colour codes aside.
decision_logged() {
  tail -n "+${3:-1}" "$E2E_LOGDIR/${4:-mcp-pep-spiffe}.log" | sed 's/\x1b\[[0-9;]*m//g' | grep -F "$1" | grep -F "$2"
}
# log_mark: the number of the next line mcp-pep will write to its log (for decision_logged's FROM).
log_mark() { echo $(($(wc -l <"$E2E_LOGDIR/mcp-pep-spiffe.log") + 1)); }
# jwt_svid SPIFFE_ID AUDIENCE [--ttl S]: a JWT-SVID minted with the test PKI's JWT key (the
# key the Workload API's JWT bundle holds). jwt_svid_by PKI_DIR ...: with another PKI's key.
jwt_svid() { "$E2E_PY" pki.py mint-jwt-svid "$pki" "$@"; }
jwt_svid_by() { "$E2E_PY" pki.py mint-jwt-svid "$@"; }
# wait_exit PID LOG: PID (a start_bg child) exits 0; its log is shown.
wait_exit() {
  local rc=0
  wait "$1" || rc=$?
  cat "$2"
  echo "exit status $rc"
  [[ $rc -eq 0 ]]
}

check spiffe-mcp-pep-up wait_http "$spiffe_admin/healthz"
# Ready only once the first SVID and bundle came from the Workload API.
check spiffe-readyz retry 10 curl -sf "$spiffe_admin/readyz"
check spiffe-server-svid retry 5 mtls trusted-agent "$bundle" --probe --expect-cert "$pki/svid-mcp-pep.pem"
sum_args='{"a":1,"b":2}'
# The policy decides by the caller's SPIFFE ID: get-sum for the trusted agent only.
check spiffe-trusted-agent-get-sum mtls trusted-agent "$bundle" --call get-sum --args "$sum_args" \
  --expect-text 'The sum of 1 and 2 is 3.'
check spiffe-semi-trusted-agent-get-sum-denied mtls semi-trusted-agent "$bundle" \
  --call get-sum --args "$sum_args" --expect-deny
check spiffe-untrusted-agent-get-sum-denied mtls untrusted-agent "$bundle" \
  --call get-sum --args "$sum_args" --expect-deny
check spiffe-untrusted-agent-get-env-denied mtls untrusted-agent "$bundle" --expect-deny get-env
# The policy saw who called and how it was proven: its reason names the SPIFFE ID and the
# source (mtls), and the decision log line names the caller too.
check spiffe-decision-log-identity decision_logged "$(agent_id untrusted-agent)" \
  "e2e.identity: get-sum is for the trusted agent, not $(agent_id untrusted-agent) (mtls)"
check spiffe-decision-log-get-env decision_logged "$(agent_id untrusted-agent)" \
  'e2e.sensitive: get-env is not callable'
check spiffe-no-client-cert-refused mtls - "$bundle" --probe --expect-refused by-server
check spiffe-no-client-cert-sdk-fails fails mtls - "$bundle"
check spiffe-evil-agent-refused mtls evil-agent "$bundle" --probe --expect-refused by-server
check spiffe-evil-agent-sdk-fails fails mtls evil-agent "$bundle"
# An SVID of the second CA is not trusted before the bundle holds that CA.
check spiffe-ca2-agent-refused-before-rotation mtls trusted-agent-ca2 "$bundle" --probe --expect-refused by-server
check spiffe-plain-http-not-served no_http_answer "http://127.0.0.1:$spiffe_port/mcp"
check spiffe-deny-metric spiffe_metric 'mcp_pep_decisions_total{decision="deny",method="tools/call",tool="get-env"}' 1
check spiffe-deny-metric-get-sum spiffe_metric 'mcp_pep_decisions_total{decision="deny",method="tools/call",tool="get-sum"}' 2

# --- JWT-SVIDs in x-spiffe-jwt-svid, verified with the Workload API's JWT bundle ---
# One naming the client certificate's own SPIFFE ID: accepted, the tools work.
check spiffe-jwt-svid-matching mtls trusted-agent "$bundle" \
  --header "$jwt_header:$(jwt_svid "$(agent_id trusted-agent)" "$sidecar_id")" \
  --call get-sum --args "$sum_args" --expect-text 'The sum of 1 and 2 is 3.'
# The identity stays the certificate's (source mtls, not jwt-svid): the policy's reason says so.
spiffe_mark="$(log_mark)"
check spiffe-jwt-svid-matching-semi-trusted mtls semi-trusted-agent "$bundle" \
  --header "$jwt_header:$(jwt_svid "$(agent_id semi-trusted-agent)" "$sidecar_id")" \
  --call get-sum --args "$sum_args" --expect-deny
check spiffe-jwt-svid-matching-identity-source-mtls decision_logged "$(agent_id semi-trusted-agent)" \
  "e2e.identity: get-sum is for the trusted agent, not $(agent_id semi-trusted-agent) (mtls)" "$spiffe_mark"
# One naming another workload than the client certificate: refused before the session opens.
check spiffe-jwt-svid-other-id-refused mtls trusted-agent "$bundle" \
  --header "$jwt_header:$(jwt_svid "$(agent_id untrusted-agent)" "$sidecar_id")" \
  --expect-rejected '401:-32005:the JWT-SVID names'
check spiffe-jwt-svid-other-id-sdk-fails fails mtls trusted-agent "$bundle" \
  --header "$jwt_header:$(jwt_svid "$(agent_id untrusted-agent)" "$sidecar_id")"
check spiffe-jwt-svid-mismatch-logged decision_logged "$(agent_id untrusted-agent)" \
  "the client certificate $(agent_id trusted-agent)"
# Invalid JWT-SVIDs: another audience, expired.
check spiffe-jwt-svid-wrong-audience-refused mtls trusted-agent "$bundle" \
  --header "$jwt_header:$(jwt_svid "$(agent_id trusted-agent)" "spiffe://$td/ns/mcp-tools/sa/another-service")" \
  --expect-rejected '401:-32005:invalid JWT-SVID: '
check spiffe-jwt-svid-expired-refused mtls trusted-agent "$bundle" \
  --header "$jwt_header:$(jwt_svid "$(agent_id trusted-agent)" "$sidecar_id" --ttl -60)" \
  --expect-rejected '401:-32005:invalid JWT-SVID: '
# Signed by a key that is not in the JWT bundle (another PKI's): an unknown kid.
"$E2E_PY" pki.py "$spiffe_dir/pki-k2" >/dev/null
"$E2E_PY" pki.py "$spiffe_dir/pki-k3" >/dev/null
check spiffe-jwt-svid-unknown-key-refused mtls trusted-agent "$bundle" \
  --header "$jwt_header:$(jwt_svid_by "$spiffe_dir/pki-k2" "$(agent_id trusted-agent)" "$sidecar_id")" \
  --expect-rejected '401:-32005:invalid JWT-SVID: no JWT authority'
# The Workload API pushes a new JWT bundle: the key of pki-k2 marked "use": "x509-svid" (not a
# JWT authority: ignored) and the key of pki-k3 without "use" (a JWT authority), the first
# key kept. pki.py workload-dir (the rotation below) restores the usual bundle.
"$E2E_PY" - "$pki" "$spiffe_dir/pki-k2" "$spiffe_dir/pki-k3" "$wl/jwt_bundle.json" <<'PY'
import json, os, sys
from pathlib import Path
base, k2, k3, out = map(Path, sys.argv[1:])
keys = lambda d: json.loads((d / "jwt-bundle-mcp-identity.local.json").read_text())["keys"]
x509_use = {**keys(k2)[0], "use": "x509-svid"}
no_use = {k: v for k, v in keys(k3)[0].items() if k != "use"}
tmp = out.with_name(f".{out.name}.tmp")
tmp.write_text(json.dumps({"keys": keys(base) + [x509_use, no_use], "spiffe_sequence": 2}))
os.replace(tmp, out)
PY
echo "jwt-bundle-$(date +%s%N)" >"$wl/generation"
echo "spiffe: the workload API's JWT bundle now has a key with use x509-svid (pki-k2) and one without use (pki-k3)"
check spiffe-jwt-bundle-update-key-without-use retry 10 mtls trusted-agent "$bundle" \
  --header "$jwt_header:$(jwt_svid_by "$spiffe_dir/pki-k3" "$(agent_id trusted-agent)" "$sidecar_id")"
check spiffe-jwt-bundle-x509-svid-key-ignored mtls trusted-agent "$bundle" \
  --header "$jwt_header:$(jwt_svid_by "$spiffe_dir/pki-k2" "$(agent_id trusted-agent)" "$sidecar_id")" \
  --expect-rejected '401:-32005:invalid JWT-SVID: no JWT authority'
check spiffe-jwt-bundle-update-first-key-kept mtls trusted-agent "$bundle" \
  --header "$jwt_header:$(jwt_svid "$(agent_id trusted-agent)" "$sidecar_id")"
check spiffe-jwt-svid-mismatch-metric \
  spiffe_metric 'mcp_pep_rejections_total{reason="jwt_svid_mismatch",stage="credentials"}' 1
check spiffe-jwt-svid-audience-metric \
  spiffe_metric 'mcp_pep_rejections_total{reason="jwt_svid_audience",stage="credentials"}' 1
check spiffe-jwt-svid-expired-metric \
  spiffe_metric 'mcp_pep_rejections_total{reason="jwt_svid_expired",stage="credentials"}' 1
check spiffe-jwt-svid-unknown-kid-metric \
  spiffe_metric 'mcp_pep_rejections_total{reason="jwt_svid_unknown_kid",stage="credentials"}' 2

# --- The shipped policies over mTLS: 2026-07-28 clients in front of fixture_server.py ---
# A second mcp-pep on the same Workload API (the same sidecar SVID), serving mTLS in front of
# fixture_server.py with the shipped policies (policies/ at the repository root): the client
# certificate's SPIFFE ID is the identity the trust levels of policies/catalog.json key on.
# py_modern_client.py pinned to 2026-07-28 over mTLS (the server verified as a chain to the
# bundle and by its SPIFFE ID on every connection).
sp_fx_port="$(free_port)" sp_port="$(free_port)" sp_admin_port="$(free_port)"
sp_upstream_log="$spiffe_dir/shipped-upstream-requests.jsonl"
: >"$sp_upstream_log"
start_bg spiffe-fixture "$E2E_PY" fixture_server.py "$sp_fx_port" --request-log "$sp_upstream_log"
sp_fx="http://127.0.0.1:$sp_fx_port/mcp"
sp_mcp="https://127.0.0.1:$sp_port/mcp"
sp_admin="http://127.0.0.1:$sp_admin_port"
sp_config="$spiffe_dir/mcp-pep-spiffe-shipped.yaml"
cat >"$sp_config" <<YAML
listen: "127.0.0.1:$sp_port"
admin_listen: "127.0.0.1:$sp_admin_port"
upstream:
  url: "$sp_fx"
policy:
  dir: "$here/../../policies"
identity:
  source: workload_api
  workload_api_socket: "unix://$sock"
  mtls: true
  trust_domains: [$td]
YAML
start_bg mcp-pep-spiffe-shipped env RUST_LOG=info "$bin" run --config "$sp_config"
wait_http "$sp_fx" 30 || cat "$E2E_LOGDIR/spiffe-fixture.log" >&2
echo "spiffe: fixture $sp_fx, mcp-pep with the shipped policies $sp_mcp (admin $sp_admin)"
# modern_mtls CERT_NAME ARGS...: py_modern_client.py pinned to 2026-07-28 (unless ARGS has
# another --mode) to that mcp-pep over mTLS with OUTDIR/svid-CERT_NAME.*.
modern_mtls() {
  local name="$1"; shift
  "$E2E_PY" py_modern_client.py "$sp_mcp" --mode 2026-07-28 --expect-version 2026-07-28 \
    --cert "$pki/svid-$name.pem" --key "$pki/svid-$name.key" --ca "$bundle" --server-id "$sidecar_id" "$@"
}
sp_untrusted_denies=(--expect-deny write_file --expect-deny query_database --expect-deny call_api
  --expect-deny execute_command --expect-deny fetch_url)
check spiffe-shipped-readyz retry 10 curl -sf "$sp_admin/readyz"
check spiffe-shipped-no-client-cert-refused "$E2E_PY" py_mtls_client.py "$sp_mcp" - - "$bundle" \
  --server-id "$sidecar_id" --probe --expect-refused by-server
# Trusted: server/discover, tools/list filtered to the catalog (the fixture's test_* tools and
# add_tool are not in it), read_file, write_file's MRTR elicitation (both rounds allowed),
# query_database with Mcp-Param-Region, subscriptions/listen (add_tool called on the fixture).
check spiffe-shipped-trusted-py-pinned modern_mtls trusted-agent --discover \
  --expect-tools call_api,execute_command,fetch_url,query_database,read_file,write_file \
  --listen --trigger-url "$sp_fx"
# Python mode auto (a later --mode wins): its server/discover probe negotiates 2026-07-28 over mTLS.
check spiffe-shipped-trusted-py-auto modern_mtls trusted-agent --mode auto
# Semi-trusted: reads, queries and calls APIs; may not write, execute or fetch.
check spiffe-shipped-semi-trusted-py-pinned modern_mtls semi-trusted-agent \
  --expect-tools call_api,query_database,read_file \
  --expect-deny write_file --expect-deny execute_command --expect-deny fetch_url
# Untrusted: only read_file listed; every other catalog tool refused with -31001 (HTTP 200),
# read_file working after each refusal.
check spiffe-shipped-untrusted-py-pinned modern_mtls untrusted-agent --expect-tools read_file "${sp_untrusted_denies[@]}"
# Not vacuous: the bare fixture lists every tool and refuses nothing.
check spiffe-shipped-untrusted-needs-proxy fails "$E2E_PY" py_modern_client.py "$sp_fx" --mode 2026-07-28 \
  --expect-tools read_file "${sp_untrusted_denies[@]}"
# The server identity check bites: another expected SPIFFE ID fails the run.
check spiffe-shipped-wrong-server-id-fails fails modern_mtls trusted-agent --no-write \
  --server-id "spiffe://$td/ns/mcp-tools/sa/another-service"
check spiffe-shipped-decision-log decision_logged "$(agent_id untrusted-agent)" \
  'tool_access.category: untrusted may not use shell tools' 1 mcp-pep-spiffe-shipped
# What reached the fixture: the trusted agent's two write_file rounds; none of the refused calls.
check spiffe-shipped-upstream-log python3 - "$sp_upstream_log" <<'PY'
import json, sys
calls = [e.get("mcp-name") for e in map(json.loads, open(sys.argv[1])) if e.get("method") == "tools/call"]
print(f"tools/call that reached the fixture: {sorted(set(calls))}")
assert calls.count("write_file") >= 4, "want write_file's two MRTR rounds from each trusted run"
assert not {"execute_command", "fetch_url"} & set(calls), "a refused call reached the fixture"
PY

# --- Rotation: a new SVID (signed by ca2) and the bundle {ca, ca2} pushed on the stream ---
# A session opened before the rotation; it trusts both CAs, as a client would once the
# bundle with ca2 was distributed ahead of the new SVID.
held_ready="$spiffe_dir/held.ready" held_go="$spiffe_dir/held.go"
rm -f "$held_ready" "$held_go"
start_bg spiffe-held-client "$E2E_PY" py_mtls_client.py "$spiffe_mcp" "$pki/svid-trusted-agent.pem" \
  "$pki/svid-trusted-agent.key" "$rotated_bundle" --server-id "$sidecar_id" \
  --ready-file "$held_ready" --wait-file "$held_go"
held_pid=$E2E_LAST_PID
check spiffe-held-session-open retry 20 test -e "$held_ready"
"$E2E_PY" pki.py workload-dir "$pki" "$wl" mcp-pep-rotated "bundle-$td-rotated.pem"
echo "spiffe: rotated the workload API's material to svid-mcp-pep-rotated.pem + bundle {ca, ca2}"
check spiffe-rotation-new-cert retry 5 mtls trusted-agent "$rotated_bundle" --probe \
  --expect-cert "$pki/svid-mcp-pep-rotated.pem"
if command -v openssl >/dev/null; then
  check spiffe-rotation-openssl openssl_serves "$pki/svid-mcp-pep-rotated.pem" trusted-agent "$rotated_bundle"
fi
touch "$held_go"
check spiffe-held-session-completes wait_exit "$held_pid" "$E2E_LOGDIR/spiffe-held-client.log"
check spiffe-after-rotation-trusted-agent mtls trusted-agent "$rotated_bundle" --expect-deny get-env
# The server's new SVID chains to ca2 only: a client with the old bundle refuses it.
check spiffe-after-rotation-old-bundle-refuses-server mtls trusted-agent "$bundle" --probe --expect-refused by-client
# mcp-pep verifies clients against the new bundle too.
check spiffe-after-rotation-ca2-agent mtls trusted-agent-ca2 "$rotated_bundle"
check spiffe-after-rotation-evil-still-refused mtls evil-agent "$rotated_bundle" --probe --expect-refused by-server
check spiffe-readyz-after-rotation curl -sf "$spiffe_admin/readyz"

if ((spiffe_standalone)); then
  echo "spiffe e2e: $passed passed, $failed failed"
  [[ $failed -eq 0 ]]
fi
