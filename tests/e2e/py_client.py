#!/usr/bin/env python3
"""End-to-end MCP client on the official Python SDK (`mcp`, streamable HTTP over httpx2).

Usage: py_client.py URL [--expect-deny TOOL]

Steps: initialize, tools/list (must list `echo`, must not list the denied tool), call `echo`, wait for the GET SSE
stream the SDK opens after initialize, optionally call TOOL and require the proxy's
policy denial (MCP error -32001, message containing "denied"), call `echo` again
(session still usable), then leave the client context, which makes the SDK send
DELETE; we check it was sent and answered 2xx, and that the session is then gone.
Exit 0 on success, 1 with a message on the first failure.
"""

import argparse
import sys

import anyio
import httpx2
from mcp import ClientSession, MCPError
from mcp.client.streamable_http import streamable_http_client


class StepFailed(Exception):
    pass


def step(msg: str) -> None:
    print(f"[py] {msg}", flush=True)


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise StepFailed(msg)


async def call_echo(session: ClientSession, label: str) -> None:
    result = await session.call_tool("echo", {"message": "hi"})
    texts = [c.text for c in result.content if getattr(c, "type", None) == "text"]
    check(not result.is_error, f"{label}: echo returned isError: {texts}")
    # server-everything answers "Echo: hi"; only require that our text came back.
    check(any("hi" in t for t in texts), f"{label}: echo text not returned: {texts}")
    step(f"{label}: ok ({texts[0]!r})")


async def run(url: str, deny_tool: str | None) -> None:
    # Every HTTP exchange the SDK makes, recorded by httpx2 hooks. A response hook
    # runs once the headers arrive, so the long-lived GET stream is seen too.
    exchanges: list[tuple[str, int, str, str | None]] = []

    async def on_response(resp: httpx2.Response) -> None:
        req = resp.request
        exchanges.append(
            (req.method, resp.status_code, resp.headers.get("content-type", ""), req.headers.get("mcp-session-id"))
        )

    def seen(method: str) -> list[tuple[str, int, str, str | None]]:
        return [e for e in exchanges if e[0] == method]

    # Same timeouts as the SDK's default client (long read timeout for SSE).
    http = httpx2.AsyncClient(
        timeout=httpx2.Timeout(30, read=300), event_hooks={"response": [on_response]}
    )
    async with http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                init = await session.initialize()
                check(bool(init.server_info.name), "initialize: no serverInfo")
                step(f"initialize: ok (protocol {init.protocol_version}, server {init.server_info.name})")
                post = seen("POST")[0]
                check(post[3] is None, "initialize POST must not carry a session id")
                sid = next((e[3] for e in exchanges if e[3]), None)

                tools = await session.list_tools()
                names = sorted(t.name for t in tools.tools)
                check("echo" in names, f"tools/list: no echo in {names}")
                # The proxy filters the list: a tool the caller may not call is not shown.
                check(deny_tool not in names, f"tools/list: {deny_tool} is listed but must be hidden")
                step(f"tools/list: ok ({len(names)} tools)")

                await call_echo(session, "tools/call echo")

                # The SDK opens GET /mcp (SSE) after notifications/initialized; wait for it.
                with anyio.move_on_after(5):
                    while not seen("GET"):
                        await anyio.sleep(0.05)
                gets = seen("GET")
                check(bool(gets), "GET SSE stream: the SDK never opened it")
                method, status, ctype, get_sid = gets[0]
                check(status == 200 and ctype.startswith("text/event-stream"),
                      f"GET SSE stream: got {status} {ctype!r}")
                sid = sid or get_sid
                check(bool(get_sid) and get_sid == sid, f"GET SSE stream: session id {get_sid!r} != {sid!r}")
                step(f"GET SSE stream: ok ({status} {ctype})")

                if deny_tool:
                    try:
                        res = await session.call_tool(deny_tool, {})
                    except MCPError as e:
                        check(e.code == -32001, f"deny {deny_tool}: error code {e.code}, want -32001 ({e.message})")
                        check("denied" in e.message, f"deny {deny_tool}: message lacks 'denied': {e.message!r}")
                        step(f"deny {deny_tool}: ok ({e.code} {e.message!r})")
                    else:
                        raise StepFailed(f"deny {deny_tool}: not denied, got a result: {str(res)[:200]}")

                    await call_echo(session, "tools/call echo after deny")
        # Leaving streamable_http_client sends DELETE (terminate_on_close=True).
        deletes = seen("DELETE")
        check(bool(deletes), "DELETE: the SDK did not send it")
        check(deletes[0][3] == sid, f"DELETE: session id {deletes[0][3]!r} != {sid!r}")
        check(200 <= deletes[0][1] < 300, f"DELETE: status {deletes[0][1]}")
        step(f"DELETE: ok ({deletes[0][1]})")

        # The terminated session must be refused now (spec: 404; server-everything: 400).
        resp = await http.post(
            url,
            headers={"accept": "application/json, text/event-stream", "mcp-session-id": sid,
                     "mcp-protocol-version": init.protocol_version},
            json={"jsonrpc": "2.0", "id": 99, "method": "tools/list"},
        )
        check(400 <= resp.status_code < 500, f"after DELETE: session still answers ({resp.status_code})")
        step(f"after DELETE: session refused ({resp.status_code})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("url")
    ap.add_argument("--expect-deny", metavar="TOOL")
    args = ap.parse_args()
    try:
        anyio.run(_bounded, args.url, args.expect_deny)
    except Exception as e:
        # The SDK's task groups wrap errors in ExceptionGroups; report the innermost.
        while isinstance(e, BaseExceptionGroup) and len(e.exceptions) == 1:
            e = e.exceptions[0]
        msg = str(e) if isinstance(e, StepFailed) else f"{type(e).__name__}: {e!r}"
        print(f"[py] FAIL: {msg}", file=sys.stderr)
        return 1
    step("all steps passed")
    return 0


async def _bounded(url: str, deny_tool: str | None) -> None:
    # Bound the whole run: a hung proxy must fail the test, not stall CI.
    with anyio.fail_after(60):
        await run(url, deny_tool)


if __name__ == "__main__":
    sys.exit(main())
