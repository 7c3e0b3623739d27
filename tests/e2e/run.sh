#!/usr/bin/env bash
# Usage: run.sh MCP_PEP_BIN
#
# End-to-end through real peers: server-everything behind mcp-pep, the official
# Python and TypeScript SDK clients through it (a sensitive tool denied, the session
# still usable), and the MCP conformance suite directly and through the proxy (no
# scenario or check that passes directly may fail through it). Then the credentials
# stage against a real authorization server (oidc-provider, issuer.mjs): a second
# mcp-pep with --issuer/--audience/--public-url, both SDK clients through it with
# DPoP-bound tokens (client_credentials + private_key_jwt) and a fresh proof per
# request; no credentials, a replayed proof, a token with another key's proof and a
# bound token sent as Bearer all refused with 401 challenges; the RFC 9728 metadata;
# and nonce mode end to end (a third mcp-pep from a YAML config with dpop_nonce: true,
# an issuer that demands nonces too). Then the 2026-07-28 clients (py_modern_client.py,
# ts_modern_client.mjs) with DPoP through two more mcp-peps in front of fixture_server.py
# (tests/e2e/policies; nonce mode with the shipped policies and a loopback identity). Then the
# 2026-07-28 stage (modern.sh) and SPIFFE (spiffe.sh): mcp-pep's SVID and bundles from a
# Workload API server, the Python SDK over mTLS (with the shipped policies in front of the
# fixture too), refused certificates, rotation. Last the agent stage (agent.sh): SDK clients
# with no credentials through their own egress mcp-pep (SVID, JWT-SVID -> Keycloak stand-in
# -> DPoP token, a proof per request) to an mTLS + DPoP ingress mcp-pep. Last of all, every
# token, proof, client assertion, JWT-SVID and private key the run used (secrets_log.py/.mjs,
# the Keycloak stand-in, the PKI's key files) is looked for in every log (secrets_grep.py).
# Ends with the plain "N passed, M failed" line.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bin="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
bash "$here/setup.sh"
. "$here/lib.sh"
cd "$here"

upstream_port="$(free_port)"
start_everything "$upstream_port"
direct="http://127.0.0.1:$upstream_port/mcp"

proxy_port="$(free_port)" admin_port="$(free_port)"
start_bg mcp-pep env RUST_LOG=info "$bin" run --listen "127.0.0.1:$proxy_port" --upstream "$direct" \
  --policy-dir "$here/policies" --admin-listen "127.0.0.1:$admin_port"
proxied="http://127.0.0.1:$proxy_port/mcp"
admin="http://127.0.0.1:$admin_port"
wait_http "$admin/healthz"
echo "e2e: server-everything $direct, mcp-pep $proxied (admin $admin), logs in $E2E_LOGDIR"

# metric_equals NAME_WITH_LABELS N: the admin endpoint shows the sample == N.
metric_equals() {
  curl -sf "$admin/metrics" | awk -v m="$1" -v n="$2" 'index($0, m" ") == 1 { v = $2; seen = 1 } END { exit !(seen && v == n) }'
}
# metric_at_least NAME_WITH_LABELS N: the admin endpoint shows the sample >= N.
metric_at_least() {
  curl -sf "$admin/metrics" | awk -v m="$1" -v n="$2" 'index($0, m" ") == 1 { v = $2; seen = 1 } END { exit !(seen && v >= n) }'
}

check readyz curl -sf "$admin/readyz"
check py-direct "$E2E_PY" py_client.py "$direct"
check ts-direct "$E2E_NODE" ts_client.mjs "$direct"
check py-through-proxy "$E2E_PY" py_client.py "$proxied" --expect-deny get-env
check ts-through-proxy "$E2E_NODE" ts_client.mjs "$proxied" --expect-deny get-env
# The deny check is not vacuous: the bare server does not deny get-env.
check py-deny-needs-proxy fails "$E2E_PY" py_client.py "$direct" --expect-deny get-env
check deny-metric metric_at_least 'mcp_pep_decisions_total{decision="deny",method="tools/call",tool="get-env"}' 2
check list-filter-metric metric_at_least 'mcp_pep_list_items_total{decision="deny",method="tools/call"}' 2
check allow-metric metric_at_least 'mcp_pep_decisions_total{decision="allow",method="tools/call",tool="echo"}' 4
# Every client ended its session, so no SSE stream may still be counted open.
check active-streams-back-to-zero metric_equals 'mcp_pep_active_streams' 0
check conformance ./conformance.sh "$direct" "$proxied" "$E2E_LOGDIR/conformance"
check decision-log grep -q 'e2e.sensitive: get-env is not callable' "$E2E_LOGDIR/mcp-pep.log"

# --- Credentials stage: DPoP-bound tokens from a real authorization server ---------

# start_issuer NAME PORT RESOURCE_URL OUTFILE [--nonce]: oidc-provider on
# 127.0.0.1:PORT; returns once it has written the client file (it then listens).
start_issuer() {
  local name="$1" port="$2" resource="$3" out="$4" i; shift 4
  rm -f "$out"
  start_bg "$name" "$E2E_NODE" issuer.mjs "$port" "$resource" "$out" "$@"
  for ((i = 0; i < 300; i++)); do
    [[ -s "$out" ]] && return 0
    sleep 0.1
  done
  echo "start_issuer: $name wrote no $out" >&2
  cat "$E2E_LOGDIR/$name.log" >&2
  return 1
}
# metric_at URL NAME_WITH_LABELS N: the admin endpoint at URL shows the sample >= N.
metric_at() {
  curl -sf "$1/metrics" | awk -v m="$2" -v n="$3" 'index($0, m" ") == 1 { v = $2; seen = 1 } END { exit !(seen && v >= n) }'
}
# json_field FILE KEY: one top-level string member of a JSON file.
json_field() { python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }
init_body='{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}'
# expect_post NAME WANT_STATUS CHALLENGE_PREFIX URL [CURL_ARGS...]: POST an initialize
# to URL; the status must be WANT_STATUS and, unless CHALLENGE_PREFIX is empty, the
# WWW-Authenticate value must start with it. Headers and body kept in the log dir.
expect_post() {
  local name="$1" want="$2" challenge="$3" url="$4" status value; shift 4
  local hdr="$E2E_LOGDIR/curl-$name.headers"
  status="$(curl -s -o "$E2E_LOGDIR/curl-$name.body" -D "$hdr" -w '%{http_code}' --max-time 10 -X POST "$url" \
    -H 'content-type: application/json' -H 'accept: application/json, text/event-stream' \
    --data "$init_body" "$@")" || true
  value="$(grep -i '^www-authenticate:' "$hdr" | head -1 | cut -d: -f2- | sed 's/^ *//' | tr -d '\r')"
  echo "$name: HTTP $status, WWW-Authenticate: ${value:--}"
  [[ "$status" == "$want" ]] || { echo "$name: want HTTP $want" >&2; return 1; }
  [[ -z "$challenge" || "$value" == "$challenge"* ]] || { echo "$name: want a challenge starting $challenge" >&2; return 1; }
}

issuer_port="$(free_port)" auth_port="$(free_port)" auth_admin_port="$(free_port)"
issuer="http://127.0.0.1:$issuer_port"
auth_mcp="http://127.0.0.1:$auth_port/mcp"
auth_admin="http://127.0.0.1:$auth_admin_port"
client_json="$E2E_LOGDIR/issuer-client.json"
start_issuer issuer "$issuer_port" "$auth_mcp" "$client_json"
start_bg mcp-pep-auth env RUST_LOG=info "$bin" run --listen "127.0.0.1:$auth_port" --upstream "$direct" \
  --policy-dir "$here/policies" --admin-listen "127.0.0.1:$auth_admin_port" \
  --issuer "$issuer" --audience "$auth_mcp" --public-url "$auth_mcp"
wait_http "$auth_admin/healthz"
echo "e2e: issuer $issuer (client $client_json), mcp-pep with credentials $auth_mcp (admin $auth_admin)"
dpop_args=(--dpop-issuer "$issuer" --dpop-client "$client_json")

check auth-py-dpop "$E2E_PY" py_client.py "$auth_mcp" --expect-deny get-env "${dpop_args[@]}"
check auth-ts-dpop "$E2E_NODE" ts_client.mjs "$auth_mcp" --expect-deny get-env "${dpop_args[@]}"
# Without DPoP the same SDK clients are refused at initialize.
check auth-py-no-credentials-fails fails "$E2E_PY" py_client.py "$auth_mcp"
check auth-no-credentials-401 expect_post no-credentials 401 'DPoP' "$auth_mcp"
# One bound token, one proof by its key for POST $auth_mcp, one proof by another key.
minted="$E2E_LOGDIR/minted.json"
"$E2E_NODE" dpop_client.mjs mint "$issuer" "$client_json" "$auth_mcp" >"$minted" || echo '{}' >"$minted"
token="$(json_field "$minted" token || true)" proof="$(json_field "$minted" proof || true)"
other_proof="$(json_field "$minted" other_proof || true)"
# The honest request first, so the refusals below are about the proof, not the token.
check auth-curl-proof-accepted expect_post proof-first 200 '' "$auth_mcp" \
  -H "Authorization: DPoP $token" -H "DPoP: $proof"
check auth-replayed-proof-401 expect_post proof-replayed 401 'DPoP error="invalid_dpop_proof"' "$auth_mcp" \
  -H "Authorization: DPoP $token" -H "DPoP: $proof"
check auth-other-key-401 expect_post other-key 401 'DPoP error="invalid_dpop_proof"' "$auth_mcp" \
  -H "Authorization: DPoP $token" -H "DPoP: $other_proof"
check auth-bearer-downgrade-401 expect_post bearer-downgrade 401 'DPoP error="invalid_token"' "$auth_mcp" \
  -H "Authorization: Bearer $token"
check auth-metadata python3 -c '
import json, sys, urllib.request
url, issuer, resource = sys.argv[1:]
doc = json.load(urllib.request.urlopen(url, timeout=5))
print(doc)
assert doc["authorization_servers"] == [issuer], doc
assert doc["resource"] == resource, doc
assert doc["dpop_bound_access_tokens_required"] is True, doc
assert "ES256" in doc["dpop_signing_alg_values_supported"], doc
' "http://127.0.0.1:$auth_port/.well-known/oauth-protected-resource/mcp" "$issuer" "$auth_mcp"
check auth-rejection-metrics metric_at "$auth_admin" 'mcp_pep_rejections_total{reason="replay",stage="credentials"}' 1
check auth-rejection-metric-jkt metric_at "$auth_admin" 'mcp_pep_rejections_total{reason="jkt",stage="credentials"}' 1
check auth-allow-metric metric_at "$auth_admin" 'mcp_pep_decisions_total{decision="allow",method="tools/call",tool="echo"}' 4

# Nonce mode end to end: an issuer that demands nonces at its token endpoint, and a
# third mcp-pep configured by YAML with dpop_nonce: true. Its upstream is a logging
# pass-through (deny_shim.mjs, denying nothing the clients call) in front of
# server-everything, which shows whether credentials reach the upstream.
nonce_issuer_port="$(free_port)" nonce_port="$(free_port)" nonce_admin_port="$(free_port)" shim_port="$(free_port)"
nonce_issuer="http://127.0.0.1:$nonce_issuer_port"
nonce_mcp="http://127.0.0.1:$nonce_port/mcp"
nonce_admin="http://127.0.0.1:$nonce_admin_port"
nonce_client_json="$E2E_LOGDIR/nonce-issuer-client.json"
start_bg upstream-shim "$E2E_NODE" deny_shim.mjs "$shim_port" "$direct" no-such-tool
wait_http "http://127.0.0.1:$shim_port/mcp"
start_issuer nonce-issuer "$nonce_issuer_port" "$nonce_mcp" "$nonce_client_json" --nonce
# start_auth_pep NAME PORT ADMIN_PORT UPSTREAM POLICY_DIR ISSUER NONCE [LOCAL_SPIFFE_ID]: mcp-pep
# from $E2E_LOGDIR/NAME.yaml on 127.0.0.1:PORT/mcp, DPoP-bound tokens from ISSUER required
# (audience and public URL: its own /mcp), dpop_nonce: NONCE (true/false); loopback callers
# get LOCAL_SPIFFE_ID when given. Returns once its admin port answers.
start_auth_pep() {
  local name="$1" port="$2" admin_port="$3" upstream="$4" policy="$5" issuer_url="$6" nonce="$7" local_id="${8:-}"
  local config="$E2E_LOGDIR/$name.yaml" mcp="http://127.0.0.1:$2/mcp"
  cat >"$config" <<YAML
listen: "127.0.0.1:$port"
admin_listen: "127.0.0.1:$admin_port"
upstream:
  url: "$upstream"
policy:
  dir: "$policy"
auth:
  issuers:
    - issuer: "$issuer_url"
  audiences: ["$mcp"]
  public_url: "$mcp"
  dpop: required
  dpop_nonce: $nonce
YAML
  if [[ -n "$local_id" ]]; then
    printf 'identity:\n  local_spiffe_id: "%s"\n' "$local_id" >>"$config"
  fi
  start_bg "$name" env RUST_LOG=info "$bin" run --config "$config"
  wait_http "http://127.0.0.1:$admin_port/healthz" 20 || { cat "$E2E_LOGDIR/$name.log" >&2; return 1; }
}
start_auth_pep mcp-pep-nonce "$nonce_port" "$nonce_admin_port" "http://127.0.0.1:$shim_port/mcp" \
  "$here/policies" "$nonce_issuer" true
echo "e2e: nonce issuer $nonce_issuer, mcp-pep with dpop_nonce $nonce_mcp (admin $nonce_admin)"
nonce_args=(--dpop-issuer "$nonce_issuer" --dpop-client "$nonce_client_json" --expect-nonce)

check nonce-py-dpop "$E2E_PY" py_client.py "$nonce_mcp" --expect-deny get-env "${nonce_args[@]}"
check nonce-ts-dpop "$E2E_NODE" ts_client.mjs "$nonce_mcp" --expect-deny get-env "${nonce_args[@]}"
# A proof without a nonce is answered use_dpop_nonce with a DPoP-Nonce header.
nonce_minted="$E2E_LOGDIR/nonce-minted.json"
"$E2E_NODE" dpop_client.mjs mint "$nonce_issuer" "$nonce_client_json" "$nonce_mcp" >"$nonce_minted" ||
  echo '{}' >"$nonce_minted"
check nonce-required-401 expect_post nonce-missing 401 'DPoP error="use_dpop_nonce"' "$nonce_mcp" \
  -H "Authorization: DPoP $(json_field "$nonce_minted" token || true)" \
  -H "DPoP: $(json_field "$nonce_minted" proof || true)"
check nonce-header grep -qi '^dpop-nonce: ' "$E2E_LOGDIR/curl-nonce-missing.headers"
# A token from the other issuer (not trusted here, and for another audience) is refused
# before its proof is looked at.
check foreign-token-401 expect_post foreign-token 401 'DPoP error="invalid_token"' "$nonce_mcp" \
  -H "Authorization: DPoP $token" -H "DPoP: $other_proof"
check nonce-metric metric_at "$nonce_admin" 'mcp_pep_rejections_total{reason="nonce_missing",stage="credentials"}' 3
# The upstream saw the clients' traffic, and never their Authorization or DPoP header.
check credentials-stripped-upstream bash -c '
  log="$1"
  grep -q "^POST .*session=" "$log" || { echo "the upstream shim saw no traffic" >&2; exit 1; }
  ! grep -E "authorization=present|dpop=present" "$log"
' _ "$E2E_LOGDIR/upstream-shim.log"

# --- 2026-07-28 clients with DPoP: fixture_server.py behind mcp-pep with credentials ---
# server-everything has no 2026-07-28, so two more mcp-peps stand in front of a fixture
# (fixture_server.py, logging what reaches it, credentials included), each trusting its own
# issuer (a token's audience is the one mcp-pep it is for):
#   - mcp-pep-modern-auth: DPoP required, tests/e2e/policies. Tokens only, no SPIFFE
#     identity: the shipped policies would deny every message, so the e2e policy (which denies
#     only get-env, not in the fixture) lets every step through the credentials stack.
#   - mcp-pep-modern-nonce: DPoP nonces (dpop_nonce: true, and an issuer demanding them), the
#     SHIPPED policies with the untrusted agent as the loopback identity
#     (identity.local_spiffe_id): a DPoP caller still gets the policy's -31001 denials.
ma_fx_port="$(free_port)"
ma_upstream_log="$E2E_LOGDIR/modern-auth-upstream.jsonl"
: >"$ma_upstream_log"
start_bg modern-auth-fixture "$E2E_PY" fixture_server.py "$ma_fx_port" --request-log "$ma_upstream_log"
ma_fx="http://127.0.0.1:$ma_fx_port/mcp"
wait_http "$ma_fx" 30 || cat "$E2E_LOGDIR/modern-auth-fixture.log" >&2
ma_issuer_port="$(free_port)" ma_port="$(free_port)" ma_admin_port="$(free_port)"
ma_issuer="http://127.0.0.1:$ma_issuer_port"
ma_mcp="http://127.0.0.1:$ma_port/mcp"
ma_client_json="$E2E_LOGDIR/modern-issuer-client.json"
start_issuer modern-issuer "$ma_issuer_port" "$ma_mcp" "$ma_client_json"
start_auth_pep mcp-pep-modern-auth "$ma_port" "$ma_admin_port" "$ma_fx" "$here/policies" "$ma_issuer" false
mn_issuer_port="$(free_port)" mn_port="$(free_port)" mn_admin_port="$(free_port)"
mn_issuer="http://127.0.0.1:$mn_issuer_port"
mn_mcp="http://127.0.0.1:$mn_port/mcp"
mn_client_json="$E2E_LOGDIR/modern-nonce-issuer-client.json"
start_issuer modern-nonce-issuer "$mn_issuer_port" "$mn_mcp" "$mn_client_json" --nonce
start_auth_pep mcp-pep-modern-nonce "$mn_port" "$mn_admin_port" "$ma_fx" "$here/../../policies" "$mn_issuer" true \
  "spiffe://mcp-identity.local/ns/mcp-agents/sa/untrusted-agent"
echo "e2e: fixture $ma_fx; mcp-pep with DPoP $ma_mcp (issuer $ma_issuer), with DPoP nonces and the shipped" \
  "policies (untrusted agent) $mn_mcp (issuer $mn_issuer)"
ma_dpop=(--dpop-issuer "$ma_issuer" --dpop-client "$ma_client_json")
mn_dpop=(--dpop-issuer "$mn_issuer" --dpop-client "$mn_client_json" --expect-nonce)

# Every step of the modern clients (discover, read_file, write_file's two MRTR rounds,
# Mcp-Param-Region, subscriptions/listen) with a token and a fresh proof per request.
check modern-auth-py-pinned-dpop "$E2E_PY" py_modern_client.py "$ma_mcp" --mode 2026-07-28 \
  --expect-version 2026-07-28 --discover --listen "${ma_dpop[@]}"
check modern-auth-py-auto-dpop "$E2E_PY" py_modern_client.py "$ma_mcp" --expect-version 2026-07-28 "${ma_dpop[@]}"
check modern-auth-ts-pinned-dpop "$E2E_NODE" ts_modern_client.mjs "$ma_mcp" --expect-version 2026-07-28 --listen \
  "${ma_dpop[@]}"
# The credentials are required: without DPoP the same clients are refused.
check modern-auth-py-no-credentials-fails fails "$E2E_PY" py_modern_client.py "$ma_mcp" --mode 2026-07-28 --no-write
check modern-auth-ts-no-credentials-fails fails "$E2E_NODE" ts_modern_client.mjs "$ma_mcp" --no-write
# --expect-nonce is not vacuous: this mcp-pep and its issuer ask for no nonce.
check modern-auth-expect-nonce-fails fails "$E2E_PY" py_modern_client.py "$ma_mcp" --mode 2026-07-28 --no-write \
  "${ma_dpop[@]}" --expect-nonce
# Nonce mode and the shipped policies: the untrusted agent sees only read_file; the other
# catalog tools are refused -31001 and the client stays usable (read_file after each).
mn_denies=(--expect-deny write_file --expect-deny query_database --expect-deny call_api
  --expect-deny execute_command --expect-deny fetch_url)
check modern-nonce-py-pinned-dpop "$E2E_PY" py_modern_client.py "$mn_mcp" --mode 2026-07-28 \
  --expect-version 2026-07-28 --expect-tools read_file "${mn_denies[@]}" "${mn_dpop[@]}"
check modern-nonce-ts-pinned-dpop "$E2E_NODE" ts_modern_client.mjs "$mn_mcp" --expect-version 2026-07-28 \
  "${mn_denies[@]}" "${mn_dpop[@]}"
check modern-nonce-metric metric_at "http://127.0.0.1:$mn_admin_port" \
  'mcp_pep_rejections_total{reason="nonce_missing",stage="credentials"}' 2
# What reached the fixture: both rounds of write_file, never a denied call, never credentials.
check modern-auth-upstream-log python3 - "$ma_upstream_log" <<'PY'
import json, sys
entries = [json.loads(line) for line in open(sys.argv[1])]
calls = [e.get("mcp-name") for e in entries if e.get("method") == "tools/call"]
print(f"{len(entries)} messages reached the fixture; tools/call: {sorted(set(calls))}")
assert calls.count("write_file") >= 4, "want write_file's two MRTR rounds from each client"
assert not {"execute_command", "call_api", "fetch_url"} & set(calls), "a denied call reached the fixture"
leaked = [e for e in entries if "authorization" in e or "dpop" in e]
assert not leaked, f"credentials reached the fixture: {leaked[:2]}"
PY

. "$here/modern.sh"
# --- SPIFFE identity: Workload API, mTLS, rotation (spiffe.sh) ---------------------
. "$here/spiffe.sh"
# --- Agents with no credentials: egress sidecars, the Keycloak stand-in (agent.sh) --
. "$here/agent.sh"

# --- Nothing leaked: no secret the whole run used in any of its logs ------------------
check no-secrets-in-any-log secrets_not_logged \
  access_token,dpop_proof,client_assertion,client_key_d,dpop_key_d,jwt_svid,private_key_pem

echo "e2e: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
