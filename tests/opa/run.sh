#!/usr/bin/env bash
# Usage: run.sh [MCP_PEP_BIN]   (default: $MCP_PEP_BIN, else target/debug/mcp-pep)
#
# The shipped policies against real OPA (v1.20.2, opa-golib-python-bindings):
#   1. setup.sh: tests/opa/.venv with the pinned OPA binding;
#   2. opa_test.py: every test_* rule of policies/*_test.rego is true in OPA;
#   3. gen_inputs.py: 1500 policy inputs from a fixed seed;
#   4. mcp-pep policy eval --jsonl: regorus decides each of them;
#   5. differential.py: OPA decides each the same way (allow and reasons, exact).
# Outputs stay in tests/opa/out/. Ends with the plain "opa: N passed, M failed" line
# counting the steps; exits 1 if any failed.
set -uo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="${1:-${MCP_PEP_BIN:-target/debug/mcp-pep}}"
[[ "$bin" == /* ]] || bin="$root/$bin"
policies="${POLICY_DIR:-$root/policies}"
seed="${OPA_SEED:-20261123}"
count="${OPA_COUNT:-1500}"
out="$here/out"
mkdir -p "$out"
py="$here/.venv/bin/python"

passed=0 failed=0
step() {
  local name="$1"; shift
  echo "=== opa: $name"
  if "$@"; then passed=$((passed + 1)); echo "=== opa: $name: PASS"
  else failed=$((failed + 1)); echo "=== opa: $name: FAIL"; fi
}
skip() { failed=$((failed + 1)); echo "=== opa: $1: FAIL (skipped: $2)"; }

step "setup" bash "$here/setup.sh"
if [[ -x "$py" ]]; then
  step "rego unit tests in OPA" "$py" "$here/opa_test.py" "$policies"
  step "generate $count inputs (seed $seed)" "$py" "$here/gen_inputs.py" --seed "$seed" --count "$count" "$out/inputs.jsonl"
else
  skip "rego unit tests in OPA" "no venv"
  skip "generate inputs" "no venv"
fi
if [[ ! -x "$bin" ]]; then
  skip "regorus decisions" "$bin is not built"
elif [[ ! -s "$out/inputs.jsonl" ]]; then
  skip "regorus decisions" "no inputs"
else
  step "regorus decisions (mcp-pep policy eval --jsonl)" \
    bash -c '"$1" policy eval --policy-dir "$2" --input "$3" --jsonl >"$4"' _ "$bin" "$policies" "$out/inputs.jsonl" "$out/regorus.jsonl"
fi
if [[ -x "$py" && -s "$out/regorus.jsonl" && "$out/regorus.jsonl" -nt "$out/inputs.jsonl" ]]; then
  step "differential OPA vs regorus" "$py" "$here/differential.py" "$policies" "$out/inputs.jsonl" "$out/regorus.jsonl"
else
  skip "differential OPA vs regorus" "no regorus output"
fi

echo "opa: $passed passed, $failed failed"
[[ $failed -eq 0 ]]
