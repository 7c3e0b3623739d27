#!/usr/bin/env bash
# Usage: run.sh
#
# The shared-state stage: installs redis-server when missing (setup.sh), then runs the
# Rust tests of two mcp-pep replicas sharing one Redis (tests/replicas_redis.rs) with
# MCP_PEP_REDIS_SERVER set, so that none of them can skip. Each test starts and kills its
# own redis-server on a free loopback port.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$here/../.."
MCP_PEP_REDIS_SERVER="$(bash "$here/setup.sh")"
export MCP_PEP_REDIS_SERVER
echo "redis: $("$MCP_PEP_REDIS_SERVER" --version)"
cargo test --locked --test replicas_redis
