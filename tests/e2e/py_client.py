#!/usr/bin/env python3
"""End-to-end MCP client on the official Python SDK (`mcp`, streamable HTTP over httpx2).

Usage: py_client.py URL [--expect-deny TOOL]
                    [--dpop-issuer ISSUER_URL --dpop-client CLIENT_JSON [--expect-nonce]]

Steps: initialize, tools/list (must list `echo`, must not list the denied tool), call `echo`, wait for the GET SSE
stream the SDK opens after initialize, optionally call TOOL and require the proxy's
policy denial (MCP error -32001, message containing "denied"), call `echo` again
(session still usable), then leave the client context, which makes the SDK send
DELETE; we check it was sent and answered 2xx, and that the session is then gone.
Exit 0 on success, 1 with a message on the first failure.

With --dpop-issuer the client first obtains a DPoP-bound access token by client_credentials
from ISSUER_URL (OIDC discovery for the token endpoint; private_key_jwt with the client in
CLIENT_JSON, written by issuer.mjs; a DPoP proof for the token request, retried once on
`use_dpop_nonce`; resource = URL). Then an `httpx2.Auth` (dpop_auth.DPoPAuth) signs a fresh
DPoP proof for every request to URL (htm, htu, ath, the last server nonce) and sends
`Authorization: DPoP <token>`; a 401 carrying `DPoP-Nonce` is retried once with the nonce.
--expect-nonce: the issuer and the MCP endpoint must each have asked for a nonce at least once.
"""

import argparse
import sys

import anyio
import httpx2
from mcp import ClientSession, MCPError
from mcp.client.streamable_http import streamable_http_client

import dpop_auth


class StepFailed(Exception):
    pass


# Which client speaks in the log lines; py_mtls_client.py and py_modern_client.py set their own.
LOG_PREFIX = "py"


def step(msg: str) -> None:
    print(f"[{LOG_PREFIX}] {msg}", flush=True)


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise StepFailed(msg)


def fail(e: BaseException) -> None:
    """Report a run's failure as `[PREFIX] FAIL: ...` on stderr."""
    # The SDK's task groups wrap errors in ExceptionGroups; report the innermost.
    while isinstance(e, BaseExceptionGroup) and len(e.exceptions) == 1:
        e = e.exceptions[0]
    msg = str(e) if isinstance(e, (StepFailed, dpop_auth.DPoPError)) else f"{type(e).__name__}: {e!r}"
    print(f"[{LOG_PREFIX}] FAIL: {msg}", file=sys.stderr)


async def call_echo(session: ClientSession, label: str) -> None:
    result = await session.call_tool("echo", {"message": "hi"})
    texts = [c.text for c in result.content if getattr(c, "type", None) == "text"]
    check(not result.is_error, f"{label}: echo returned isError: {texts}")
    # server-everything answers "Echo: hi"; only require that our text came back.
    check(any("hi" in t for t in texts), f"{label}: echo text not returned: {texts}")
    step(f"{label}: ok ({texts[0]!r})")


async def expect_denied(session: ClientSession, tool: str, arguments: dict | None = None,
                        label: str | None = None) -> None:
    """The policy refuses TOOL: an MCPError -32001 saying "denied", never a result."""
    label = label or f"deny {tool}"
    try:
        res = await session.call_tool(tool, arguments or {})
    except MCPError as e:
        check(e.code == -32001, f"{label}: error code {e.code}, want -32001 ({e.message})")
        check("denied" in e.message, f"{label}: message lacks 'denied': {e.message!r}")
        step(f"{label}: ok ({e.code} {e.message!r})")
    else:
        raise StepFailed(f"{label}: not denied, got a result: {str(res)[:200]}")


async def run(url: str, deny_tool: str | None, dpop_issuer: str | None = None,
              dpop_client: str | None = None, expect_nonce: bool = False) -> None:
    auth = await dpop_auth.setup(dpop_issuer, dpop_client, url)
    if auth is not None:
        step(dpop_auth.describe_token(auth))
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
        timeout=httpx2.Timeout(30, read=300), event_hooks={"response": [on_response]}, auth=auth
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
                    await expect_denied(session, deny_tool)
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
        # With DPoP the request is authenticated, so the refusal is the session's, not a 401.
        check(auth is None or resp.status_code != 401, "after DELETE: 401, the credentials were refused")
        step(f"after DELETE: session refused ({resp.status_code})")

    if auth is not None:
        step(dpop_auth.finish(auth, expect_nonce))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("url")
    ap.add_argument("--expect-deny", metavar="TOOL")
    dpop_auth.add_arguments(ap)
    args = ap.parse_args()
    dpop_auth.check_arguments(ap, args)
    try:
        anyio.run(_bounded, args.url, args.expect_deny, args.dpop_issuer, args.dpop_client, args.expect_nonce)
    except Exception as e:
        fail(e)
        return 1
    step("all steps passed")
    return 0


async def _bounded(url: str, deny_tool: str | None, dpop_issuer: str | None,
                   dpop_client: str | None, expect_nonce: bool) -> None:
    # Bound the whole run: a hung proxy must fail the test, not stall CI.
    with anyio.fail_after(60):
        await run(url, deny_tool, dpop_issuer, dpop_client, expect_nonce)


if __name__ == "__main__":
    sys.exit(main())
