#!/usr/bin/env python3
"""End-to-end client on the Python SDK 2.3.x `Client` for the 2026-07-28 stage (modern.sh).

Usage: py_modern_client.py URL [--mode auto|legacy|2026-07-28] [--expect-version V]
                           [--expect-deny TOOL]... [--deny-code N] [--no-write] [--listen]
                           [--trigger-url URL] [--expect-list-scope SCOPE[:MAX_TTL_MS]]
                           [--discover] [--expect-tools NAME,...]
                           [--dpop-issuer ISSUER_URL --dpop-client CLIENT_JSON [--expect-nonce]]
                           [--cert CERT --key KEY --ca CA [--server-id ID]]
                           [--hold-for S] [--ready-file F --wait-file G]

URL is a fixture_server.py (or ts_modern_server.mjs), directly or through mcp-pep.
`--mode` is the SDK's negotiation: `auto` (default: probes server/discover, falls back to
initialize), `legacy` (initialize) or a pinned version (`2026-07-28`, no probe).

Credentials (py_client.py's and py_mtls_client.py's code, imported):
  --dpop-issuer/--dpop-client/--expect-nonce: a DPoP-bound token by client_credentials from
     the issuer, then `Authorization: DPoP` and a fresh proof on every request
     (dpop_auth.DPoPAuth on the httpx2 client), one retry on 401 + DPoP-Nonce; --expect-nonce:
     the issuer and the MCP endpoint must each have asked for a nonce.
  --cert/--key/--ca: mutual TLS with an X.509-SVID (URL https://...); the server's certificate
     must chain to CA and name --server-id (default the sidecar's SPIFFE ID), checked on every
     TLS connection (py_mtls_client.PeerCheck); every response must have come over TLS.

Steps, each failing the run with a message:
  1. connect; print the negotiated protocol version (and server); `--expect-version V`
     requires it. On 2026-07-28 every POST must carry `MCP-Protocol-Version: 2026-07-28`
     and `Mcp-Method`, and no `Mcp-Session-Id`; on 2025-era an `initialize` was sent.
     `--discover` (2026-07-28): a `server/discover` request; supportedVersions has 2026-07-28.
  2. tools/list: must list read_file; every `--expect-deny` tool must be hidden;
     `--expect-tools a,b`: exactly these tools are listed.
     `--expect-list-scope private:60000`: the result's cacheScope must be SCOPE and its
     ttlMs at most MAX (2026-07-28 only; a filtering proxy must mark lists private).
  3. read_file {"path": "/workspace/readme.md"} -> "contents of /workspace/readme.md"
     (on 2026-07-28 the POST carried `Mcp-Name: read_file`).
  4. each `--expect-deny TOOL`: the call raises MCPError with the denial code (`--deny-code`;
     default -31001 on 2026-07-28, -32001 on 2025-era) and a message saying "denied";
     read_file works again right after (the client stays usable).
  5. unless --no-write or write_file is denied: write_file {"path": "/workspace/out.txt",
     "content": "hello"}: the server asks for confirmation by a form elicitation (MRTR
     `input_required` on 2026-07-28, a mid-call `elicitation/create` on 2025-era); the
     elicitation callback accepts {"confirm": true} exactly once; the result is
     "wrote 5 bytes to /workspace/out.txt". On 2026-07-28 both rounds were POSTed
     (two tools/call POSTs with Mcp-Name write_file).
  6. unless query_database is denied: query_database {"query": "select 1", "region": "us"}
     -> "rows for select 1 in us"; on 2026-07-28 the POST carried `Mcp-Param-Region: us`
     (mirrored from the tool's x-mcp-header, which the SDK reads from tools/list).
  7. `--listen` (2026-07-28 only): open subscriptions/listen {toolsListChanged}; once it is
     acknowledged, call add_tool {"name": "dyn_<random>"} (on `--trigger-url` with a second
     pinned client, else on this connection); a tools list_changed event must arrive
     within 10 s; then tools/list again, which (without --trigger-url) must list the new tool.
  8. `--hold-for S`: the same connection (one session on 2025-era) calls read_file every
     0.5 s for S seconds; `--ready-file F --wait-file G`: then F is created and the calls go
     on until G exists (at most 60 s), then once more. Every call must succeed: a long
     session through a sidecar that refreshes tokens or rotates SVIDs meanwhile.
Exit 0 when every step passed, 1 with "[pymodern] FAIL: ..." otherwise.
"""

import argparse
import json
import sys
import uuid
from pathlib import Path

import anyio
import httpx2
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client
from mcp.client.subscriptions import ToolsListChanged
from mcp.types import ElicitResult, ErrorData

import dpop_auth
import py_client
import py_mtls_client
from py_client import StepFailed, check, step

py_client.LOG_PREFIX = "pymodern"  # after py_mtls_client's import, which sets its own

MODERN = "2026-07-28"
READ_PATH = "/workspace/readme.md"
WRITE_PATH = "/workspace/out.txt"
# Arguments good enough for each catalog tool (a denied call is refused before they matter).
DENY_ARGS = {
    "read_file": {"path": READ_PATH},
    "write_file": {"path": WRITE_PATH, "content": "x"},
    "query_database": {"query": "select 1"},
    "call_api": {"endpoint": "/status"},
    "execute_command": {"command": "id"},
    "fetch_url": {"url": "https://evil.example/"},
}


class Recorder:
    """Every HTTP exchange the SDK makes (httpx2 response hook: headers of both sides)."""

    def __init__(self) -> None:
        self.exchanges: list[tuple[str, int, dict[str, str]]] = []
        self.body_methods: list[str] = []  # JSON-RPC methods of the POSTed bodies, in order

    async def on_response(self, resp: httpx2.Response) -> None:
        req = resp.request
        self.exchanges.append((req.method, resp.status_code, {k.lower(): v for k, v in req.headers.items()}))
        if req.method == "POST":
            try:
                body = json.loads(req.content)
                self.body_methods.append(body.get("method", "(response)") if isinstance(body, dict) else "(batch)")
            except ValueError:
                self.body_methods.append("(unparsed)")

    def posts(self, mcp_method: str | None = None, name: str | None = None) -> list[dict[str, str]]:
        out = [h for m, _, h in self.exchanges if m == "POST"]
        if mcp_method is not None:
            out = [h for h in out if h.get("mcp-method") == mcp_method]
        if name is not None:
            out = [h for h in out if h.get("mcp-name") == name]
        return out


def text_of(result) -> str:
    return " ".join(c.text for c in result.content if getattr(c, "type", None) == "text")


async def call_text(client: Client, tool: str, args: dict, want: str, label: str) -> None:
    result = await client.call_tool(tool, args)
    text = text_of(result)
    check(not result.is_error, f"{label}: isError: {text!r}")
    check(text == want, f"{label}: got {text!r}, want {want!r}")
    step(f"{label}: ok ({text!r})")


async def run(args: argparse.Namespace) -> None:
    rec = Recorder()
    elicitations: list[str] = []

    async def on_elicit(context, params) -> ElicitResult | ErrorData:
        elicitations.append(params.message)
        step(f"elicitation: {params.message!r} -> accept {{confirm: true}}")
        return ElicitResult(action="accept", content={"confirm": True})

    hooks = [rec.on_response]
    tls: dict = {}
    peers = None
    if args.cert:
        peers = py_mtls_client.PeerCheck(args.server_id)
        hooks.insert(0, peers)
        tls["verify"] = py_mtls_client.ssl_context(args.cert, args.key, args.ca)
    auth = await dpop_auth.setup(args.dpop_issuer, args.dpop_client, args.url)
    if auth is not None:
        step(dpop_auth.describe_token(auth))
    http = httpx2.AsyncClient(timeout=httpx2.Timeout(30, read=120), event_hooks={"response": hooks}, auth=auth, **tls)
    async with http:
        transport = streamable_http_client(args.url, http_client=http)
        # No client-side response cache: every list must reach the wire, so the result's
        # cacheScope/ttlMs seen here is the one the server (or the proxy) sent.
        client = Client(transport, mode=args.mode, elicitation_callback=on_elicit, cache=None)
        async with client:
            version = client.protocol_version
            info = client.server_info
            modern = version == MODERN
            step(f"negotiated protocol version {version} (mode {args.mode}, server {info.name if info else '?'})")
            if args.expect_version:
                check(version == args.expect_version, f"negotiated {version}, want {args.expect_version}")
            if modern:
                check("initialize" not in rec.body_methods, "modern: an initialize was sent")
            else:
                check("initialize" in rec.body_methods, f"legacy: no initialize was sent ({rec.body_methods})")
            step(f"connect: POSTed {rec.body_methods}")
            if args.discover:
                check(modern, "--discover needs a 2026-07-28 connection")
                raw = await client.session.send_discover(MODERN)
                supported = raw.get("supportedVersions", [])
                check(MODERN in supported, f"server/discover: supportedVersions {supported}")
                check(bool(rec.posts("server/discover")), "server/discover: no POST with Mcp-Method server/discover")
                step(f"server/discover: ok (supportedVersions {supported})")

            listed = await client.list_tools()
            names = sorted(t.name for t in listed.tools)
            check("read_file" in names, f"tools/list: no read_file in {names}")
            for tool in args.expect_deny:
                check(tool not in names, f"tools/list: {tool} is listed but must be hidden")
            if args.expect_tools is not None:
                want = sorted(t for t in args.expect_tools.split(",") if t)
                check(names == want, f"tools/list: {names}, want exactly {want}")
            scope, ttl = getattr(listed, "cache_scope", None), getattr(listed, "ttl_ms", None)
            step(f"tools/list: ok ({len(names)} tools, cacheScope {scope}, ttlMs {ttl})")
            if args.expect_list_scope:
                want_scope, _, max_ttl = args.expect_list_scope.partition(":")
                check(modern, "--expect-list-scope needs a 2026-07-28 connection")
                check(scope == want_scope, f"tools/list: cacheScope {scope!r}, want {want_scope!r}")
                if max_ttl:
                    check(ttl is not None and 0 <= ttl <= int(max_ttl), f"tools/list: ttlMs {ttl}, want <= {max_ttl}")

            await call_text(client, "read_file", {"path": READ_PATH}, f"contents of {READ_PATH}", "read_file")
            if modern:
                check(bool(rec.posts("tools/call", "read_file")), "read_file: no POST with Mcp-Method tools/call, Mcp-Name read_file")

            deny_code = args.deny_code if args.deny_code is not None else (-31001 if modern else -32001)
            for tool in args.expect_deny:
                label = f"deny {tool}"
                try:
                    res = await client.call_tool(tool, DENY_ARGS.get(tool, {}))
                except MCPError as e:
                    check(e.code == deny_code, f"{label}: error code {e.code}, want {deny_code} ({e.message})")
                    check("denied" in e.message, f"{label}: message lacks 'denied': {e.message!r}")
                    step(f"{label}: ok ({e.code} {e.message!r})")
                else:
                    raise StepFailed(f"{label}: not denied, got {text_of(res)[:200]!r}")
                await call_text(client, "read_file", {"path": READ_PATH}, f"contents of {READ_PATH}",
                                f"read_file after deny {tool}")

            if not args.no_write and "write_file" not in args.expect_deny:
                before = len(rec.posts("tools/call", "write_file"))
                await call_text(client, "write_file", {"path": WRITE_PATH, "content": "hello"},
                                f"wrote 5 bytes to {WRITE_PATH}", "write_file")
                check(len(elicitations) == 1, f"write_file: {len(elicitations)} elicitations, want 1")
                check("/workspace/out.txt" in elicitations[0], f"write_file: elicitation {elicitations[0]!r}")
                if modern:
                    rounds = len(rec.posts("tools/call", "write_file")) - before
                    check(rounds == 2, f"write_file: {rounds} tools/call POSTs, want 2 (input_required + retry)")
                step("write_file: MRTR elicitation round trip ok" if modern else "write_file: elicitation ok")

            if "query_database" not in args.expect_deny:
                await call_text(client, "query_database", {"query": "select 1", "region": "us"},
                                "rows for select 1 in us", "query_database")
                if modern:
                    sent = rec.posts("tools/call", "query_database")
                    check(bool(sent) and sent[-1].get("mcp-param-region") == "us",
                          f"query_database: Mcp-Param-Region not sent as 'us' ({sent[-1] if sent else 'no POST'})")
                    step("query_database: Mcp-Param-Region: us was sent")

            if args.listen:
                check(modern, "--listen needs a 2026-07-28 connection")
                await listen_for_change(client, args.trigger_url)

            if args.hold_for or args.ready_file:
                await hold(client, args)

        if modern:
            # After the client closed: a listen teardown's notifications/cancelled is in too.
            posts = rec.posts()
            sent = sorted({f"{m}[Mcp-Method {h.get('mcp-method', 'absent')}]" for m, h in zip(rec.body_methods, posts)})
            step(f"POSTs seen: {sent}")
            # Requests must carry Mcp-Method; 2026-07-28 defines no header rules for notification POSTs.
            bad = [h for m, h in zip(rec.body_methods, posts) if h.get("mcp-protocol-version") != MODERN
                   or (not m.startswith("notifications/") and "mcp-method" not in h)]
            check(not bad, f"modern POSTs without MCP-Protocol-Version {MODERN} or (requests) Mcp-Method: {bad[:2]}")
            check(not any("mcp-session-id" in h for _, _, h in rec.exchanges), "modern: an Mcp-Session-Id was sent")
            check(not any(m != "POST" for m, _, _ in rec.exchanges), "modern: a GET or DELETE was sent")
            step("headers: ok (every POST had MCP-Protocol-Version 2026-07-28, every request Mcp-Method, no session id)")
    if peers is not None:
        step(peers.summary())
    if auth is not None:
        step(dpop_auth.finish(auth, args.expect_nonce))
    step("all steps passed")


async def listen_for_change(client: Client, trigger_url: str | None) -> None:
    new_tool = f"dyn_{uuid.uuid4().hex[:8]}"
    async with client.listen(tools_list_changed=True) as sub:
        step(f"subscriptions/listen: acknowledged (honored {sub.honored})")
        if trigger_url:
            async with Client(trigger_url, mode=MODERN, cache=None) as trigger:
                await trigger.call_tool("add_tool", {"name": new_tool})
        else:
            await client.call_tool("add_tool", {"name": new_tool})
        step(f"add_tool {new_tool}: called{' on ' + trigger_url if trigger_url else ''}")
        got = None
        with anyio.move_on_after(10):
            async for event in sub:
                got = event
                break
        check(isinstance(got, ToolsListChanged), f"subscriptions/listen: no tools list_changed within 10 s (got {got!r})")
        step("subscriptions/listen: notifications/tools/list_changed received")
    names = sorted(t.name for t in (await client.list_tools()).tools)
    if not trigger_url:
        check(new_tool in names, f"tools/list after list_changed: {new_tool} missing from {names}")
    step(f"tools/list after list_changed: ok ({len(names)} tools, {new_tool} {'listed' if new_tool in names else 'not listed'})")


async def hold(client: Client, args: argparse.Namespace) -> None:
    """Step 8: keep the connection (and its session) busy for a while."""
    calls = 0

    async def one(label: str) -> None:
        nonlocal calls
        calls += 1
        result = await client.call_tool("read_file", {"path": READ_PATH})
        text = text_of(result)
        check(not result.is_error and text == f"contents of {READ_PATH}", f"{label}: got {text!r}")

    deadline = anyio.current_time() + args.hold_for
    while anyio.current_time() < deadline:
        await one(f"hold: call {calls + 1}")
        await anyio.sleep(0.5)
    if args.ready_file:
        Path(args.ready_file).touch()
        step(f"hold: {calls} calls so far; {args.ready_file} created, waiting for {args.wait_file}")
        with anyio.fail_after(60):
            while not Path(args.wait_file).exists():
                await one(f"hold: call {calls + 1} (waiting)")
                await anyio.sleep(0.5)
        await one(f"hold: call {calls + 1} (after {args.wait_file})")
    step(f"hold: {calls} read_file calls on one connection, all ok")


def main() -> int:
    parser = argparse.ArgumentParser(description="Python SDK 2.3.x client for the 2026-07-28 e2e stage")
    parser.add_argument("url")
    parser.add_argument("--mode", default="auto", help="auto (default), legacy, or a pinned version (2026-07-28)")
    parser.add_argument("--expect-version")
    parser.add_argument("--expect-deny", action="append", default=[], metavar="TOOL")
    parser.add_argument("--deny-code", type=int)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--listen", action="store_true")
    parser.add_argument("--trigger-url")
    parser.add_argument("--expect-list-scope", metavar="SCOPE[:MAX_TTL_MS]")
    parser.add_argument("--discover", action="store_true", help="send server/discover (2026-07-28)")
    parser.add_argument("--expect-tools", metavar="NAME,...", help="tools/list lists exactly these")
    dpop_auth.add_arguments(parser)
    parser.add_argument("--cert", help="client X.509-SVID (PEM): mutual TLS")
    parser.add_argument("--key", help="its private key (PEM)")
    parser.add_argument("--ca", help="X.509 bundle (PEM) the server must chain to")
    parser.add_argument("--server-id", default=py_mtls_client.SIDECAR_ID, help="the server's SPIFFE ID")
    parser.add_argument("--hold-for", type=float, default=0, metavar="S", help="step 8: call read_file for S seconds")
    parser.add_argument("--ready-file", help="step 8: create this file, then call until --wait-file exists")
    parser.add_argument("--wait-file")
    args = parser.parse_args()
    dpop_auth.check_arguments(parser, args)
    if bool(args.ready_file) != bool(args.wait_file):
        parser.error("--ready-file and --wait-file go together")
    if not (bool(args.cert) == bool(args.key) == bool(args.ca)):
        parser.error("--cert, --key and --ca go together")
    try:
        anyio.run(_bounded, args)
    except Exception as e:
        py_client.fail(e)
        return 1
    return 0


async def _bounded(args: argparse.Namespace) -> None:
    # A hung peer fails the test instead of stalling it.
    with anyio.fail_after(60 + args.hold_for + (60 if args.ready_file else 0)):
        await run(args)


if __name__ == "__main__":
    sys.exit(main())
