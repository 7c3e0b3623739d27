#!/usr/bin/env bash
# Installs real OPA (opa-golib-python-bindings) into tests/opa/.venv from the pinned
# requirements.txt, idempotently: skipped when the stamp (hash of requirements.txt)
# says the venv is current and OPA evaluates; a changed pin or a broken venv redoes it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

stamp=".venv/.opa-stamp"
want="$(sha256sum requirements.txt | cut -d' ' -f1)"
smoke='from opa_bindings import OpaEngine; import yaml; assert OpaEngine().eval_query("x := 1 + 1") == [{"x": 2}]'
if [[ "$(cat "$stamp" 2>/dev/null)" == "$want" ]] && .venv/bin/python -c "$smoke" 2>/dev/null; then
  echo "setup: tests/opa/.venv up to date"
else
  echo "setup: creating tests/opa/.venv and installing requirements.txt"
  [[ -x .venv/bin/python ]] || python3 -m venv .venv
  # The binding's metadata requires Python >= 3.14; it works on 3.11.
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --ignore-requires-python -r requirements.txt
  .venv/bin/python -c "$smoke"
  echo "$want" >"$stamp"
fi
echo "setup: done"
