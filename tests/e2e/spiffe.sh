#!/usr/bin/env bash
# Usage: spiffe.sh MCP_PEP_BIN
#
# End-to-end SPIFFE identity: mcp-pep takes its X.509-SVID and trust bundle from a SPIFFE
# Workload API (workload_api.py on a unix socket, serving a test PKI made by pki.py) and
# serves MCP over mutual TLS. Through it, with the Python MCP SDK over mTLS
# (py_mtls_client.py):
#   - the trusted and semi-trusted agents' SVIDs: initialize, tools/list, echo;
#   - the server presents the sidecar SVID (spiffe://mcp-identity.local/ns/mcp-tools/sa/mcp-pep)
#     from the Workload API, verified as a chain to the bundle and by its URI SAN;
#   - no client certificate, an evil.example SVID, and an SVID of the not yet trusted second
#     CA (ca2): the TLS connection refused by mcp-pep; plain HTTP on the port not answered;
#   - the untrusted agent: get-env denied by the shipped policies (tests/e2e/policies deny
#     it to every caller), echo still works;
#   - rotation: the Workload API pushes an SVID signed by ca2 and the bundle {ca, ca2}; within
#     5 s new connections get the new certificate (Python ssl, and openssl s_client when
#     installed), a session opened before the rotation completes its calls, the old-bundle
#     client now refuses the server, the ca2 agent is now accepted, the trusted agent still works;
#   - /readyz on the admin port is 200.
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

if [[ -z "${direct:-}" ]]; then
  upstream_port="$(free_port)"
  start_everything "$upstream_port"
  direct="http://127.0.0.1:$upstream_port/mcp"
fi

td=mcp-identity.local
sidecar_id="spiffe://$td/ns/mcp-tools/sa/mcp-pep"
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
  dir: "$here/policies"
identity:
  source: workload_api
  workload_api_socket: "unix://$sock"
  mtls: true
  trust_domains: [$td]
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
  curl -sf "$spiffe_admin/metrics" | awk -v m="$1" -v n="$2" 'index($0, m" ") == 1 { v = $2; seen = 1 } END { exit !(seen && v >= n) }'
}
# decision_logged SPIFFE_ID TEXT: a line of mcp-pep's log names the caller SPIFFE_ID and
# TEXT (e.g. the policy's reason), colour codes aside.
decision_logged() {
  sed 's/\x1b\[[0-9;]*m//g' "$E2E_LOGDIR/mcp-pep-spiffe.log" | grep -F "$1" | grep -F "$2"
}
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
check spiffe-trusted-agent mtls trusted-agent "$bundle"
check spiffe-semi-trusted-agent mtls semi-trusted-agent "$bundle"
check spiffe-untrusted-agent-denied mtls untrusted-agent "$bundle" --expect-deny get-env
# The policy saw who called: the denial is logged with the caller's SPIFFE ID.
check spiffe-decision-log-identity decision_logged "spiffe://$td/ns/mcp-agents/sa/untrusted-agent" \
  'e2e.sensitive: get-env is not callable'
check spiffe-no-client-cert-refused mtls - "$bundle" --probe --expect-refused by-server
check spiffe-no-client-cert-sdk-fails fails mtls - "$bundle"
check spiffe-evil-agent-refused mtls evil-agent "$bundle" --probe --expect-refused by-server
check spiffe-evil-agent-sdk-fails fails mtls evil-agent "$bundle"
# An SVID of the second CA is not trusted before the bundle holds that CA.
check spiffe-ca2-agent-refused-before-rotation mtls trusted-agent-ca2 "$bundle" --probe --expect-refused by-server
check spiffe-plain-http-not-served no_http_answer "http://127.0.0.1:$spiffe_port/mcp"
check spiffe-deny-metric spiffe_metric 'mcp_pep_decisions_total{decision="deny",method="tools/call",tool="get-env"}' 1

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
