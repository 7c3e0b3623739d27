#!/usr/bin/env python3
"""The agent container of the simulation: the Python SDK 2.3 `Client` at $MCP_SERVER_URL (the
variable the injector set), run with tests/e2e/.venv/bin/python in the agent pod's netns.

  sim_client.py matrix [--mode auto|legacy|2026-07-28]
      Connects, lists the tools and calls each of the demo tool server's six tools once (write_file
      answers its form elicitation with accept), and prints one JSON object:
      {"url", "version", "tools": [names], "calls": {tool: {"outcome": allowed|denied|error,
      "code", "text"}}}. Exit 0 when it could connect and list (the caller judges the outcome).
  sim_client.py until TOOL OUTCOME [--timeout S]
      Calls TOOL every 0.25 s (a new connection each time) until its outcome is OUTCOME;
      prints {"tool", "outcome", "elapsed", "attempts", "code", "text"}; exit 1 on timeout.

allowed: the call completed with the demo server's "simulated by the demo server" text.
denied: an MCPError -31001/-32001 whose message says "denied" (mcp-pep's policy denial).
error: anything else.
"""

import argparse
import json
import os
import sys
import time

import anyio
import httpx2
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client
from mcp.types import ElicitResult

# Arguments each tool of the demo server (src/demo/server.rs) accepts, within what the shipped
# policies' argument rules allow a level that may use the tool (a /workspace/ path, an https URL
# to api.example.com): a refusal is then the trust level's, not the argument's.
ARGS = {
    "read_file": {"path": "/workspace/readme.md"},
    "write_file": {"path": "/workspace/out.txt", "content": "hello"},
    "query_database": {"query": "select 1"},
    "call_api": {"endpoint": "/status"},
    "execute_command": {"command": "id"},
    "fetch_url": {"url": "https://api.example.com/status"},
}
DENY_CODES = (-31001, -32001)


def url() -> str:
    u = os.environ.get("MCP_SERVER_URL")
    if not u:
        sys.exit("sim_client.py: MCP_SERVER_URL is not set (the injector sets it in every app container)")
    return u


async def on_elicit(context, params):
    return ElicitResult(action="accept", content={"ok": True})


async def call(client: Client, tool: str) -> dict:
    try:
        res = await client.call_tool(tool, ARGS[tool])
    except MCPError as e:
        outcome = "denied" if e.code in DENY_CODES and "denied" in e.message else "error"
        return {"outcome": outcome, "code": e.code, "text": e.message[:300]}
    text = " ".join(c.text for c in res.content if getattr(c, "type", None) == "text")
    ok = not res.is_error and "simulated by the demo server" in text
    return {"outcome": "allowed" if ok else "error", "code": None, "text": text[:300]}


def connect(mode: str) -> tuple[Client, httpx2.AsyncClient]:
    http = httpx2.AsyncClient(timeout=httpx2.Timeout(10, read=30))
    transport = streamable_http_client(url(), http_client=http)
    return Client(transport, mode=mode, elicitation_callback=on_elicit, cache=None), http


async def matrix(args) -> int:
    client, http = connect(args.mode)
    async with http, client:
        out = {"url": url(), "version": client.protocol_version, "tools": [], "calls": {}}
        out["tools"] = sorted(t.name for t in (await client.list_tools()).tools)
        for tool in ARGS:
            out["calls"][tool] = await call(client, tool)
    print(json.dumps(out))
    return 0


async def until(args) -> int:
    start, attempts, last = time.monotonic(), 0, {}
    while True:
        attempts += 1
        try:
            client, http = connect(args.mode)
            async with http, client:
                last = await call(client, args.tool)
        except Exception as e:  # noqa: BLE001 (a failed attempt is an outcome too)
            last = {"outcome": "error", "code": None, "text": describe(e)[:300]}
        elapsed = round(time.monotonic() - start, 2)
        if last["outcome"] == args.outcome or elapsed > args.timeout:
            print(json.dumps({"tool": args.tool, "elapsed": elapsed, "attempts": attempts, **last}))
            return 0 if last["outcome"] == args.outcome else 1
        await anyio.sleep(0.25)


def describe(e: BaseException) -> str:
    """The innermost errors of an exception group (anyio task groups wrap them)."""
    if isinstance(e, BaseExceptionGroup):
        return "; ".join(describe(x) for x in e.exceptions)
    return f"{type(e).__name__}: {e}"


def main() -> int:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("matrix")
    p.add_argument("--mode", default="auto")
    p = sub.add_parser("until")
    p.add_argument("tool", choices=sorted(ARGS))
    p.add_argument("outcome", choices=["allowed", "denied", "error"])
    p.add_argument("--timeout", type=float, default=15)
    p.add_argument("--mode", default="2026-07-28")
    args = ap.parse_args()
    try:
        return anyio.run(matrix if args.cmd == "matrix" else until, args)
    except Exception as e:  # noqa: BLE001
        print(f"sim_client.py: {describe(e)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
