#!/usr/bin/env bash
# Usage: setup.sh
#
# Makes sure Debian's redis-server (7.x) is installed, for the shared-state tests
# (tests/replicas_redis.rs, benches/state.rs), and prints its path on stdout. The tests
# start their own server on a free 127.0.0.1 port (`--save '' --appendonly no`) and kill
# it; nothing here starts one. (On Debian images with a policy-rc.d that denies starts,
# as this project's machines have, the package's own service is not started either.)
set -euo pipefail
if ! command -v redis-server >/dev/null; then
  echo "redis: installing redis-server" >&2
  if [[ $(id -u) -ne 0 ]]; then echo "redis: apt-get needs root" >&2; exit 2; fi
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server; } >&2 \
    || { echo "redis: apt-get install redis-server failed" >&2; exit 2; }
fi
command -v redis-server
