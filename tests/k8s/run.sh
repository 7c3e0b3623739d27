#!/usr/bin/env bash
# Usage: run.sh [MCP_PEP_BIN]   (default: $MCP_PEP_BIN, else target/debug/mcp-pep)
#
# The Helm chart charts/mcp-pep, offline (no cluster, no helm binary):
#   1. setup.sh: tests/k8s/.venv with the pinned Helm v4 SDK and kubernetes-validate,
#      promtool from Debian's prometheus package;
#   2. k8s_test.py: Chart.yaml and its kubeVersion, strict lint for Kubernetes 1.29/1.31/1.33,
#      a render per ci/*-values.yaml, strict schema validation of every manifest for 1.29.0,
#      1.31.0 and 1.33.0, the objects' wiring, CRD objects by hand, the values schema, the
#      README table, the policies copy, the alerts (promtool check + unit tests), the
#      dashboard; with a built mcp-pep, its config check and a run of the standalone pod.
# Outputs stay in tests/k8s/out/. Ends with "k8s: N passed, M failed, K skipped"; exits 1
# if any failed.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="${1:-${MCP_PEP_BIN:-target/debug/mcp-pep}}"
[[ "$bin" == /* ]] || bin="$root/$bin"

echo "=== k8s: setup"
if ! bash "$here/setup.sh"; then
  echo "=== k8s: setup: FAIL"
  echo "k8s: 0 passed, 1 failed"
  exit 1
fi
echo "=== k8s: chart tests"
"$here/.venv/bin/python" "$here/k8s_test.py" --bin "$bin" --out "$here/out"
