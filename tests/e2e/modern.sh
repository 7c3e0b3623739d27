#!/usr/bin/env bash
# Usage: modern.sh MCP_PEP_BIN
#
# The 2026-07-28 stage: mcp-pep in front of real 2026-07-28 peers.
#   Peers: fixture_server.py (Python SDK 2.3.x MCPServer, both eras; logs every POSTed
#   message to $E2E_LOGDIR/modern/upstream-requests.jsonl) and ts_modern_server.mjs (TS SDK v2
#   createMcpHandler); clients py_modern_client.py (Python SDK Client, mode auto / pinned
#   2026-07-28 / legacy) and ts_modern_client.mjs (@modelcontextprotocol/client, pinned /
#   auto / legacy); the conformance suite 0.2.0-alpha.12 (`conformance-next`) with
#   --requirements 2026-07-28 (conformance.sh with CONFORMANCE_SUITE=conformance-next).
#   1. Directly: every client against both servers (negotiated version asserted, read_file,
#      write_file's MRTR elicitation round trip, Mcp-Param-Region mirrored, subscriptions/listen
#      delivering notifications/tools/list_changed), the header table against the fixture
#      (what a real 2026-07-28 server answers), and the whole required conformance set.
#   2. Through mcp-pep with a permissive policy (policies-permissive/): the same clients, the
#      conformance suite compared direct vs proxied (nothing passing directly may fail), the
#      header table (each refused row answered by mcp-pep itself: the request never reaches
#      the upstream's request log), and filtered tools/list results rewritten to
#      cacheScope "private" with ttlMs <= 60000 (both servers answer public/3600000).
#   3. Through mcp-pep with the shipped policies (policies/) and a local SPIFFE identity
#      (identity.local_spiffe_id): the trusted agent discovers, reads, writes (MRTR) and
#      listens; the untrusted agent has write_file/query_database/call_api/execute_command/
#      fetch_url hidden and refused with JSON-RPC -31001 on HTTP 200 (2026-07-28) or -32001
#      (2025-era), never forwarded, and stays usable.
# Run alone it installs the peers (setup.sh) and ends with "modern e2e: N passed, M failed".
# Sourced by run.sh (`. modern.sh`) it uses the caller's $bin, $here and lib.sh and adds its
# checks to the caller's count. Every process is started by lib.sh's start_bg.

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  set -euo pipefail
  [[ $# -eq 1 ]] || { echo "usage: $0 MCP_PEP_BIN" >&2; exit 2; }
  here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
  bin="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
  bash "$here/setup.sh"
  . "$here/lib.sh"
  modern_standalone=1
else
  modern_standalone=0
fi
cd "$here"

m_dir="$E2E_LOGDIR/modern"
mkdir -p "$m_dir"
m_upstream_log="$m_dir/upstream-requests.jsonl"
: >"$m_upstream_log"
m_failed=()
# mcheck NAME CMD...: lib.sh's check, remembering the names of the failed checks.
mcheck() {
  local before=$failed
  check "$@"
  if ((failed > before)); then m_failed+=("$1"); fi
  return 0
}
m_trusted="spiffe://mcp-identity.local/ns/mcp-agents/sa/trusted-agent"
m_untrusted="spiffe://mcp-identity.local/ns/mcp-agents/sa/untrusted-agent"

# --- Peers -------------------------------------------------------------------------------
m_fx_port="$(free_port)"
start_bg modern-fixture "$E2E_PY" fixture_server.py "$m_fx_port" --request-log "$m_upstream_log"
m_fx="http://127.0.0.1:$m_fx_port/mcp"
m_ts_port="$(free_port)"
start_bg modern-ts-server "$E2E_NODE" ts_modern_server.mjs "$m_ts_port"
m_ts="http://127.0.0.1:$m_ts_port/mcp"
wait_http "$m_fx" 30 || cat "$E2E_LOGDIR/modern-fixture.log" >&2
wait_http "$m_ts" 30 || cat "$E2E_LOGDIR/modern-ts-server.log" >&2

# m_start_pep NAME UPSTREAM POLICY_DIR [LOCAL_SPIFFE_ID]: mcp-pep from a YAML config (loopback
# callers get LOCAL_SPIFFE_ID); sets m_pep (its MCP URL) and m_pep_admin.
m_start_pep() {
  local name="$1" upstream="$2" policy="$3" local_id="${4:-}" port admin config
  port="$(free_port)" admin="$(free_port)" config="$m_dir/$name.yaml"
  {
    echo "listen: \"127.0.0.1:$port\""
    echo "admin_listen: \"127.0.0.1:$admin\""
    echo "upstream:"
    echo "  url: \"$upstream\""
    echo "policy:"
    echo "  dir: \"$policy\""
    if [[ -n "$local_id" ]]; then
      echo "identity:"
      echo "  local_spiffe_id: \"$local_id\""
    fi
  } >"$config"
  start_bg "$name" env RUST_LOG=info "$bin" run --config "$config"
  m_pep="http://127.0.0.1:$port/mcp" m_pep_admin="http://127.0.0.1:$admin"
  wait_http "$m_pep_admin/healthz" 20 || { cat "$E2E_LOGDIR/$name.log" >&2; return 1; }
}

m_start_pep mcp-pep-modern "$m_fx" "$here/policies-permissive"
m_p1="$m_pep"
m_start_pep mcp-pep-modern-ts "$m_ts" "$here/policies-permissive"
m_p2="$m_pep"
m_start_pep mcp-pep-modern-trusted "$m_fx" "$here/../../policies" "$m_trusted"
m_p3="$m_pep"
m_start_pep mcp-pep-modern-untrusted "$m_fx" "$here/../../policies" "$m_untrusted"
m_p4="$m_pep"
echo "modern: fixture $m_fx, TS server $m_ts; mcp-pep permissive $m_p1 (-> fixture), $m_p2 (-> TS server)," \
  "shipped policies trusted $m_p3, untrusted $m_p4; logs in $m_dir"

m_pyc() { "$E2E_PY" py_modern_client.py "$@"; }
m_tsc() { "$E2E_NODE" ts_modern_client.mjs "$@"; }

# --- 1. Directly ---------------------------------------------------------------------------
mcheck modern-py-auto-direct m_pyc "$m_fx" --expect-version 2026-07-28 --listen
mcheck modern-py-pinned-direct m_pyc "$m_fx" --mode 2026-07-28 --expect-version 2026-07-28 --listen
mcheck modern-py-legacy-direct m_pyc "$m_fx" --mode legacy --expect-version 2025-11-25
mcheck modern-ts-pinned-direct m_tsc "$m_fx" --expect-version 2026-07-28 --listen
mcheck modern-ts-auto-direct m_tsc "$m_fx" --mode auto --expect-version 2026-07-28 --listen
mcheck modern-ts-legacy-direct m_tsc "$m_fx" --mode legacy --expect-version 2025-11-25
mcheck modern-ts-server-ts-client-direct m_tsc "$m_ts" --expect-version 2026-07-28 --listen
mcheck modern-ts-server-py-client-direct m_pyc "$m_ts" --expect-version 2026-07-28 --listen
# The TS server's stateless legacy leg cannot send a mid-call elicitation: no write_file there.
mcheck modern-ts-server-py-legacy-direct m_pyc "$m_ts" --mode legacy --expect-version 2025-11-25 --no-write
# Both servers mark tools/list public with a long TTL: the rewrite checks below are not vacuous.
mcheck modern-fixture-list-public-direct m_pyc "$m_fx" --mode 2026-07-28 --no-write --expect-list-scope public
mcheck modern-ts-server-list-public-direct m_tsc "$m_ts" --no-write --expect-list-scope public
# The denial checks are not vacuous: the fixture itself refuses nothing.
mcheck modern-deny-needs-proxy fails m_pyc "$m_fx" --mode 2026-07-28 --no-write --expect-deny execute_command

# --- The header table ----------------------------------------------------------------------
# Each row: name | HTTP method | request headers (";"-separated) | body (@ID@: a JSON-RPC id
# unique to the row and target) | expected HTTP status | expected JSON-RPC error code ("-":
# none expected) | a Python condition on the parsed response `r` ("-": none).
# Through mcp-pep a row expecting an error (or a status >= 400) must be answered by mcp-pep
# itself: its id must not show up in the upstream's request log; a row expecting success
# must reach it. Rows run in order: the Mcp-Param rows come after a tools/list through the
# same proxy (that is where it learns a tool's x-mcp-header parameters).
m_meta='"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}'
m_meta_v() { echo "\"_meta\":{\"io.modelcontextprotocol/protocolVersion\":\"$1\",\"io.modelcontextprotocol/clientCapabilities\":{}}"; }
m_read='"name":"read_file","arguments":{"path":"/workspace/readme.md"}'
m_query='"name":"query_database","arguments":{"query":"select 1","region":"us"}'
m_v='MCP-Protocol-Version: 2026-07-28'
m_header_table="$(cat <<EOF
missing-mcp-method        |POST|$m_v                                                        |{"jsonrpc":"2.0","id":"@ID@","method":"tools/list","params":{$m_meta}}|400|-32020|-
mcp-method-mismatch       |POST|$m_v; Mcp-Method: prompts/list                              |{"jsonrpc":"2.0","id":"@ID@","method":"tools/list","params":{$m_meta}}|400|-32020|-
missing-mcp-name          |POST|$m_v; Mcp-Method: tools/call                                |{"jsonrpc":"2.0","id":"@ID@","method":"tools/call","params":{$m_read,$m_meta}}|400|-32020|-
mcp-name-mismatch         |POST|$m_v; Mcp-Method: tools/call; Mcp-Name: write_file          |{"jsonrpc":"2.0","id":"@ID@","method":"tools/call","params":{$m_read,$m_meta}}|400|-32020|-
mcp-name-base64-accepted  |POST|$m_v; Mcp-Method: tools/call; Mcp-Name: =?base64?cmVhZF9maWxl?=|{"jsonrpc":"2.0","id":"@ID@","method":"tools/call","params":{$m_read,$m_meta}}|200|-|r["result"]["content"][0]["text"] == "contents of /workspace/readme.md"
version-header-vs-meta    |POST|$m_v; Mcp-Method: tools/list                                |{"jsonrpc":"2.0","id":"@ID@","method":"tools/list","params":{$(m_meta_v 2025-11-25)}}|400|-32020|-
meta-no-capabilities      |POST|$m_v; Mcp-Method: tools/list                                |{"jsonrpc":"2.0","id":"@ID@","method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}|400|-32602|-
meta-no-protocol-version  |POST|$m_v; Mcp-Method: tools/list                                |{"jsonrpc":"2.0","id":"@ID@","method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/clientCapabilities":{}}}}|400|-32602|-
unsupported-version       |POST|MCP-Protocol-Version: 2099-01-01; Mcp-Method: tools/list     |{"jsonrpc":"2.0","id":"@ID@","method":"tools/list","params":{$(m_meta_v 2099-01-01)}}|400|-32022|"2026-07-28" in r["error"]["data"]["supported"]
tools-list-first          |POST|$m_v; Mcp-Method: tools/list                                |{"jsonrpc":"2.0","id":"@ID@","method":"tools/list","params":{$m_meta}}|200|-|"query_database" in [t["name"] for t in r["result"]["tools"]]
mcp-param-mismatch        |POST|$m_v; Mcp-Method: tools/call; Mcp-Name: query_database; Mcp-Param-Region: eu|{"jsonrpc":"2.0","id":"@ID@","method":"tools/call","params":{$m_query,$m_meta}}|400|-32020|-
mcp-param-match-accepted  |POST|$m_v; Mcp-Method: tools/call; Mcp-Name: query_database; Mcp-Param-Region: us|{"jsonrpc":"2.0","id":"@ID@","method":"tools/call","params":{$m_query,$m_meta}}|200|-|r["result"]["content"][0]["text"] == "rows for select 1 in us"
modern-batch              |POST|$m_v; Mcp-Method: tools/list                                |[{"jsonrpc":"2.0","id":"@ID@","method":"tools/list","params":{$m_meta}},{"jsonrpc":"2.0","id":"@ID@-2","method":"tools/list","params":{$m_meta}}]|400|-|-
modern-get                |GET |$m_v                                                        |-|405|-|-
notification-accepted     |POST|$m_v                                                        |{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"@ID@",$m_meta}}|202|-|-
EOF
)"

m_trim() { local s="$1"; s="${s#"${s%%[![:space:]]*}"}"; s="${s%"${s##*[![:space:]]}"}"; printf '%s' "$s"; }

# m_header_case LABEL URL FORWARD_CHECK NAME VERB HEADERS BODY STATUS CODE COND: one row
# against URL. FORWARD_CHECK=1: also require the row to reach (or, when refused, not
# reach) the fixture, judged by its id in the upstream request log.
m_header_case() {
  local label="$1" url="$2" fwd="$3" name="$4" verb="$5" hdrs="$6" body="$7" want_status="$8" want_code="$9" cond="${10}"
  local id="hdr-$label-$name" out="$m_dir/hdr-$label-$name" h status
  local args=()
  IFS=';' read -ra hl <<<"$hdrs"
  for h in "${hl[@]}"; do h="$(m_trim "$h")"; [[ -n "$h" ]] && args+=(-H "$h"); done
  body="${body//@ID@/$id}"
  if [[ "$verb" == GET ]]; then
    status="$(curl -s -o "$out.body" -D "$out.headers" -w '%{http_code}' --max-time 5 \
      -H 'accept: text/event-stream' "${args[@]}" "$url")" || true
  else
    status="$(curl -s -o "$out.body" -D "$out.headers" -w '%{http_code}' --max-time 10 -X POST \
      -H 'content-type: application/json' -H 'accept: application/json, text/event-stream' \
      "${args[@]}" --data "$body" "$url")" || true
  fi
  sleep 0.2 # let the upstream's request log catch up with a forwarded request
  python3 - "$out.body" "$status" "$want_status" "$want_code" "$cond" "$id" "$m_upstream_log" \
    "$fwd" "$([[ "$body" == *"\"id\":\"$id\""* && "$verb" == POST ]] && echo 1 || echo 0)" "$label/$name" <<'EOF'
import json, sys
path, status, want_status, want_code, cond, rid, upstream_log, fwd, has_id, label = sys.argv[1:]
raw = open(path, encoding="utf-8", errors="replace").read()
r = None
try:
    r = json.loads(raw) if raw.strip() else None
except ValueError:  # an SSE answer: the message carrying our id, else the last JSON-RPC message
    msgs = []
    for line in raw.splitlines():
        if line.startswith("data:"):
            try:
                msgs.append(json.loads(line[5:]))
            except ValueError:
                pass
    r = next((m for m in msgs if m.get("id") == rid), msgs[-1] if msgs else None)
code = (r or {}).get("error", {}).get("code") if isinstance(r, dict) else None
print(f"{label}: HTTP {status}, JSON-RPC error {code}, body {raw[:240]!r}")
problems = []
if status != want_status:
    problems.append(f"HTTP {status}, want {want_status}")
if want_code != "-" and code != int(want_code):
    problems.append(f"JSON-RPC error code {code}, want {want_code}")
if want_code == "-" and want_status.startswith("2") and code is not None:
    problems.append(f"unexpected JSON-RPC error {code}")
if cond != "-":
    try:
        ok = bool(eval(cond, {"r": r}))
    except Exception as e:  # a missing member is a failed condition
        ok, cond = False, f"{cond} ({type(e).__name__}: {e})"
    if not ok:
        problems.append(f"condition failed: {cond}")
if fwd == "1" and has_id == "1":
    seen = False
    for line in open(upstream_log):
        try:
            seen = seen or json.loads(line).get("id") == rid
        except ValueError:
            pass
    should = want_status.startswith("2") and want_code == "-"
    if seen != should:
        problems.append("forwarded to the upstream, which mcp-pep must not do" if seen else "never reached the upstream")
    else:
        print(f"{label}: {'reached' if seen else 'did not reach'} the upstream, as it should")
for p in problems:
    print(f"{label}: {p}", file=sys.stderr)
sys.exit(1 if problems else 0)
EOF
}

# m_header_rows LABEL URL FORWARD_CHECK: every row of the table, failing if any row fails (one
# check); m_header_checks LABEL URL FORWARD_CHECK: one check `modern-hdr-LABEL-ROW` per row.
m_header_rows() {
  local label="$1" url="$2" fwd="$3" all=0 name verb hdrs body st code cond
  while IFS='|' read -r name verb hdrs body st code cond; do
    name="$(m_trim "$name")"
    [[ -z "$name" ]] && continue
    m_header_case "$label" "$url" "$fwd" "$name" "$(m_trim "$verb")" "$hdrs" "$(m_trim "$body")" \
      "$(m_trim "$st")" "$(m_trim "$code")" "$(m_trim "$cond")" || all=1
  done <<<"$m_header_table"
  return $all
}
m_header_checks() {
  local label="$1" url="$2" fwd="$3" name verb hdrs body st code cond
  while IFS='|' read -r name verb hdrs body st code cond; do
    name="$(m_trim "$name")"
    [[ -z "$name" ]] && continue
    mcheck "modern-hdr-$label-$name" m_header_case "$label" "$url" "$fwd" "$name" "$(m_trim "$verb")" "$hdrs" \
      "$(m_trim "$body")" "$(m_trim "$st")" "$(m_trim "$code")" "$(m_trim "$cond")"
  done <<<"$m_header_table"
}

# The table against the fixture itself: a real 2026-07-28 server answers every row so.
mcheck modern-header-table-direct m_header_rows direct "$m_fx" 0

# The whole required conformance set directly, and nothing lost through the proxy.
mcheck modern-conformance env CONFORMANCE_SUITE=conformance-next CONFORMANCE_ARGS="--requirements 2026-07-28" \
  CONFORMANCE_REQUIRE_ALL=1 ./conformance.sh "$m_fx" "$m_p1" "$m_dir/conformance"

# --- 2. Through mcp-pep, permissive policy -------------------------------------------------
mcheck modern-py-auto-proxy m_pyc "$m_p1" --expect-version 2026-07-28 --listen
mcheck modern-py-pinned-proxy m_pyc "$m_p1" --mode 2026-07-28 --expect-version 2026-07-28 --listen
mcheck modern-py-legacy-proxy m_pyc "$m_p1" --mode legacy --expect-version 2025-11-25
mcheck modern-ts-pinned-proxy m_tsc "$m_p1" --expect-version 2026-07-28 --listen
mcheck modern-ts-auto-proxy m_tsc "$m_p1" --mode auto --expect-version 2026-07-28 --listen
mcheck modern-ts-legacy-proxy m_tsc "$m_p1" --mode legacy --expect-version 2025-11-25
mcheck modern-ts-server-ts-client-proxy m_tsc "$m_p2" --expect-version 2026-07-28 --listen
mcheck modern-ts-server-py-client-proxy m_pyc "$m_p2" --expect-version 2026-07-28 --listen
# Filtered lists: private, ttlMs capped at the proxy default (60 s).
mcheck modern-list-private-proxy m_pyc "$m_p1" --mode 2026-07-28 --no-write --expect-list-scope private:60000
mcheck modern-ts-server-list-private-proxy m_tsc "$m_p2" --no-write --expect-list-scope private:60000
m_header_checks proxy "$m_p1" 1

# --- 3. Through mcp-pep, shipped policies, local SPIFFE identity ---------------------------
mcheck modern-shipped-trusted-discover m_header_case trusted "$m_p3" 1 discover POST "$m_v; Mcp-Method: server/discover" \
  "{\"jsonrpc\":\"2.0\",\"id\":\"@ID@\",\"method\":\"server/discover\",\"params\":{$m_meta}}" 200 - \
  '"2026-07-28" in r["result"]["supportedVersions"]'
mcheck modern-shipped-trusted-py-pinned m_pyc "$m_p3" --mode 2026-07-28 --expect-version 2026-07-28
mcheck modern-shipped-trusted-py-auto m_pyc "$m_p3" --expect-version 2026-07-28
mcheck modern-shipped-trusted-py-listen m_pyc "$m_p3" --mode 2026-07-28 --no-write --listen --trigger-url "$m_fx"
mcheck modern-shipped-trusted-ts-pinned m_tsc "$m_p3" --expect-version 2026-07-28 --listen --trigger-url "$m_fx"
m_untrusted_denies=(--expect-deny write_file --expect-deny query_database --expect-deny call_api
  --expect-deny execute_command --expect-deny fetch_url)
mcheck modern-shipped-untrusted-py-pinned m_pyc "$m_p4" --mode 2026-07-28 --expect-version 2026-07-28 "${m_untrusted_denies[@]}"
mcheck modern-shipped-untrusted-py-legacy m_pyc "$m_p4" --mode legacy --expect-version 2025-11-25 "${m_untrusted_denies[@]}"
mcheck modern-shipped-untrusted-ts-pinned m_tsc "$m_p4" --expect-version 2026-07-28 "${m_untrusted_denies[@]}"
mcheck modern-shipped-untrusted-ts-legacy m_tsc "$m_p4" --mode legacy --expect-version 2025-11-25 "${m_untrusted_denies[@]}"
# A denial on a 2026-07-28 request: HTTP 200, a JSON-RPC error outside -32768..-32000, not forwarded.
mcheck modern-shipped-untrusted-deny-curl m_header_case untrusted "$m_p4" 1 deny POST \
  "$m_v; Mcp-Method: tools/call; Mcp-Name: execute_command" \
  "{\"jsonrpc\":\"2.0\",\"id\":\"@ID@\",\"method\":\"tools/call\",\"params\":{\"name\":\"execute_command\",\"arguments\":{\"command\":\"id\"},$m_meta}}" \
  200 -31001 '"denied" in r["error"]["message"]'
mcheck modern-shipped-decision-log grep -q 'tool_access.category: untrusted may not use shell tools' \
  "$E2E_LOGDIR/mcp-pep-modern-untrusted.log"

if ((${#m_failed[@]})); then
  echo "modern: failed checks: ${m_failed[*]}"
fi
if ((modern_standalone)); then
  echo "modern e2e: $passed passed, $failed failed"
  [[ $failed -eq 0 ]]
fi
