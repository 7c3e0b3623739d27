#!/usr/bin/env bash
# Usage: run.sh MCP_PEP_BIN
#
# End-to-end through real peers: server-everything behind mcp-pep, the official
# Python and TypeScript SDK clients through it (a sensitive tool denied, the session
# still usable), and the MCP conformance suite directly and through the proxy (no
# scenario or check that passes directly may fail through it). Ends with the plain
# "N passed, M failed" line.
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

passed=0 failed=0
check() {
  local name="$1"; shift
  echo "--- $name"
  if "$@"; then passed=$((passed + 1)); echo "--- $name: PASS"
  else failed=$((failed + 1)); echo "--- $name: FAIL"; fi
}
fails() { ! "$@"; }
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

echo "e2e: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
