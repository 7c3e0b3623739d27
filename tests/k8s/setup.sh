#!/usr/bin/env bash
# Installs what the chart tests need, idempotently:
#   - tests/k8s/.venv from the pinned requirements.txt (helm-python-sdk, kubernetes-validate),
#     skipped when the stamp (hash of requirements.txt) says it is current and the smoke test
#     passes; a changed pin or a broken venv redoes it;
#   - promtool (alert rule checks and unit tests) from Debian's `prometheus` package, unpacked
#     into tests/k8s/.tools without installing the package (no service is started), unless a
#     promtool is already on PATH or unpacked.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

stamp=".venv/.k8s-stamp"
want="$(sha256sum requirements.txt | cut -d' ' -f1)"
smoke='import helm_python as h, kubernetes_validate as kv, yaml; assert h.__version__ == "0.2.2"; h.validate_release_name("mcp-pep"); kv.validate({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}, "1.29.0", strict=True)'
if [[ "$(cat "$stamp" 2>/dev/null)" == "$want" ]] && .venv/bin/python -c "$smoke" 2>/dev/null; then
  echo "setup: tests/k8s/.venv up to date"
else
  echo "setup: creating tests/k8s/.venv and installing requirements.txt"
  [[ -x .venv/bin/python ]] || python3 -m venv .venv
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --no-deps -r requirements.txt
  .venv/bin/python -m pip check --disable-pip-version-check >/dev/null
  .venv/bin/python -c "$smoke"
  echo "$want" >"$stamp"
fi

if command -v promtool >/dev/null 2>&1; then
  echo "setup: promtool on PATH: $(command -v promtool)"
elif [[ -x .tools/usr/bin/promtool ]] && .tools/usr/bin/promtool --version >/dev/null 2>&1; then
  echo "setup: tests/k8s/.tools/usr/bin/promtool up to date"
else
  echo "setup: unpacking promtool from Debian's prometheus package into tests/k8s/.tools"
  rm -rf .tools && mkdir -p .tools/deb
  # `apt-get download` needs the package lists; a fresh machine may not have them yet.
  if ! (cd .tools/deb && apt-get download prometheus >/dev/null 2>&1); then
    if [[ $(id -u) -eq 0 ]]; then apt-get update -qq >/dev/null; fi
    (cd .tools/deb && apt-get download prometheus >/dev/null 2>&1)
  fi
  dpkg-deb -x .tools/deb/prometheus_*.deb .tools
  rm -rf .tools/deb
  .tools/usr/bin/promtool --version 2>&1 | head -1
fi
echo "setup: done"
