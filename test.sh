#!/usr/bin/env bash
# Runs every test of mcp-pep on a fresh machine: lint, unit and black-box Rust tests,
# then the end-to-end tests against real MCP peers (installed by tests/e2e/setup.sh
# from pinned lockfiles).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

step() { printf '\n=== %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy"
cargo clippy --locked --all-targets -- -D warnings

step "cargo test (with a real redis-server for the shared-state tests: tests/redis/setup.sh)"
MCP_PEP_REDIS_SERVER="$(bash tests/redis/setup.sh)"
export MCP_PEP_REDIS_SERVER
cargo test --locked

step "fuzz smoke: every parser target 10 s plus its regressions (cargo-fuzz, cached in fuzz/target)"
bash fuzz/run.sh --smoke

step "e2e: real MCP SDK clients, server-everything, conformance suite, both MCP eras"
cargo build --locked --bin mcp-pep --bin mcp-pep-load
bash tests/e2e/run.sh target/debug/mcp-pep

step "load generator smoke: mcp-pep-load through a proxy with every check on (DPoP + mTLS, both eras; 1 s rounds, fails on any error)"
CHECK=1 BIN_DIR=target/debug RATE=200 CONNS=4 FIXED_CONNS=4 WARMUP=0.2 PROOF_POOL=2000 OUT="$(mktemp)" \
  bash benches/load.sh 1 1 "d h"

step "the Keycloak stand-in against Keycloak's documented SPIFFE client authentication"
tests/e2e/.venv/bin/python tests/keycloak/selftest.py

step "policies: Rego tests and a 1500-input differential against real OPA"
bash tests/opa/run.sh target/debug/mcp-pep

step "image: the container image built without a daemon (umoci), run from its root filesystem"
bash tests/image/run.sh target/debug/mcp-pep

step "kubernetes: the Helm chart linted, rendered and validated for 1.29-1.33; the webhook it deploys"
bash tests/k8s/run.sh target/debug/mcp-pep

step "kubernetes: injected pods run as the kubelet would (image rootfs, netns per pod, ConfigMap, CSI socket)"
bash tests/sim/run.sh target/debug/mcp-pep
