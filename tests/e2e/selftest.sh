#!/usr/bin/env bash
# Checks the e2e harness itself, without mcp-pep: the SDK clients and the
# conformance comparison against server-everything directly, and the deny path
# through deny_shim.mjs (a stand-in that answers a denied tools/call exactly as
# mcp-pep does). Also checks that the deny check is not vacuous: expecting a
# denial from the bare server must fail. Also that the authorization server
# (issuer.mjs) mints DPoP-bound JWTs of the expected shape, with and without nonces.
# Ends with "N passed, M failed".
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
bash "$here/setup.sh"
. "$here/lib.sh"
cd "$here"

port="$(free_port)"
start_everything "$port"
direct="http://127.0.0.1:$port/mcp"
shim_port="$(free_port)"
start_bg deny-shim "$E2E_NODE" deny_shim.mjs "$shim_port" "$direct" get-sum
shim="http://127.0.0.1:$shim_port/mcp"
wait_http "$shim"
echo "selftest: server-everything at $direct, deny shim at $shim, logs in $E2E_LOGDIR"


check py-direct "$E2E_PY" py_client.py "$direct"
check ts-direct "$E2E_NODE" ts_client.mjs "$direct"
check py-deny-shim "$E2E_PY" py_client.py "$shim" --expect-deny get-sum
check ts-deny-shim "$E2E_NODE" ts_client.mjs "$shim" --expect-deny get-sum
check py-deny-missing-fails fails "$E2E_PY" py_client.py "$direct" --expect-deny get-sum
check ts-deny-missing-fails fails "$E2E_NODE" ts_client.mjs "$direct" --expect-deny get-sum
check conformance-same-url ./conformance.sh "$direct" "$direct" "$E2E_LOGDIR/conformance-same"
check conformance-via-shim ./conformance.sh "$direct" "$shim" "$E2E_LOGDIR/conformance-shim"
check conformance-dead-proxy-fails fails ./conformance.sh "$direct" "http://127.0.0.1:$(free_port)/mcp" "$E2E_LOGDIR/conformance-dead"

# The authorization server (issuer.mjs) and the DPoP client side (dpop_client.mjs):
# tokens have the shape mcp-pep expects, also when the issuer demands nonces.
# issuer_mints NAME RESOURCE [--nonce]: start an issuer, mint a token, check it.
issuer_mints() {
  local name="$1" resource="$2" port i; shift 2
  port="$(free_port)"
  local out="$E2E_LOGDIR/$name-client.json" minted="$E2E_LOGDIR/$name-minted.json"
  start_bg "$name" "$E2E_NODE" issuer.mjs "$port" "$resource" "$out" "$@"
  for ((i = 0; i < 300; i++)); do [[ -s "$out" ]] && break; sleep 0.1; done
  "$E2E_NODE" dpop_client.mjs mint "http://127.0.0.1:$port" "$out" "$resource" >"$minted" &&
    "$E2E_PY" check_token.py "$minted" "http://127.0.0.1:$port" "$out" "$resource"
}
check issuer-mints-bound-jwt issuer_mints issuer "http://127.0.0.1:$(free_port)/mcp"
check issuer-nonce-mints-bound-jwt issuer_mints issuer-nonce "http://127.0.0.1:$(free_port)/mcp" --nonce

echo "selftest: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
