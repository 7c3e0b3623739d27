#!/usr/bin/env python3
"""MCP client over mutual TLS with X.509-SVIDs, on the official Python SDK (`mcp`, httpx2).

Usage: py_mtls_client.py URL CERT KEY CA [--expect-deny TOOL] [--server-id ID]
                         [--call TOOL [--args JSON] [--expect-deny] [--expect-text TEXT]]
                         [--header NAME:VALUE]... [--ready-file F --wait-file G]
       py_mtls_client.py URL CERT KEY CA --expect-rejected STATUS:CODE:TEXT
                         [--header NAME:VALUE]... [--server-id ID]
       py_mtls_client.py URL CERT KEY CA --probe [--expect-cert PEM]
                         [--expect-refused by-server|by-client] [--server-id ID]

CERT/KEY: the client's X.509-SVID (PEM; `-` for none: no client certificate). CA: the
X.509 bundle (PEM) the server's SVID must chain to. SPIFFE SVIDs carry no DNS or IP name, so
the server certificate is verified as a chain (CERT_REQUIRED) without a host name check, and
then by its SPIFFE ID: the one URI SAN of the server's certificate must be --server-id
(default spiffe://mcp-identity.local/ns/mcp-tools/sa/mcp-pep), on every TLS connection the
client makes.

Session mode (py_client.py's steps): initialize, tools/list (`echo` listed, TOOL hidden), call
`echo`; with --ready-file/--wait-file create F and wait (at most 60 s) until G exists, then
call `echo` again in the same session (a session that outlives a rotation); with
--expect-deny TOOL require the policy denial of TOOL (-32001) and `echo` still working; with
--call TOOL call TOOL with the JSON object --args (default {}): it must be listed by tools/list
and succeed (its text containing --expect-text, if given), or with a bare --expect-deny be
hidden from tools/list and denied by the policy (-32001), `echo` still working after it; leave
(DELETE answered 2xx). Prints the server certificates seen. Exit 0 on success, 1 on failure.

--header NAME:VALUE (repeatable): sent on every HTTP request of the session (the httpx2
client's headers), e.g. a JWT-SVID in x-spiffe-jwt-svid.

--expect-rejected STATUS:CODE:TEXT: the session must not open: initialize answered with HTTP
STATUS and the JSON-RPC error CODE whose message contains TEXT (e.g.
401:-32005:the JWT-SVID names), which the SDK raises as an MCPError. Exit 0 only then.

--probe: one TLS connection and one HTTP request (GET /), no MCP. Prints the server's
certificate (serial, SHA-256, SPIFFE ID) and the HTTP status line. Exit 0 when the server
answered over TLS (and, with --expect-cert, presented exactly that certificate).
--expect-refused by-server: exit 0 only if the server refused the TLS connection (a TLS
alert, a reset or a close before any HTTP answer, e.g. no or an untrusted client
certificate); by-client: only if this client refused the server's certificate (it does not
chain to CA). Anything else, e.g. nothing listening, exits 1 or 2.
"""

import argparse
import hashlib
import json
import socket
import ssl
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import anyio
import httpx2
from cryptography import x509
from mcp import ClientSession, MCPError
from mcp.client.streamable_http import streamable_http_client

import py_client
from py_client import StepFailed, call_echo, check, expect_denied, step

py_client.LOG_PREFIX = "py-mtls"

SIDECAR_ID = "spiffe://mcp-identity.local/ns/mcp-tools/sa/mcp-pep"
CALLED_TOOL = object()  # a bare --expect-deny: the --call TOOL is the one denied


def json_object(text: str) -> dict:
    value = json.loads(text)
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"not a JSON object: {text}")
    return value


def header_arg(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"want NAME:VALUE, got {text!r}")
    return name.strip(), value.strip()


def rejected_arg(text: str) -> tuple[int, int, str]:
    parts = text.split(":", 2)
    try:
        return int(parts[0]), int(parts[1]), parts[2]
    except (IndexError, ValueError):
        raise argparse.ArgumentTypeError(f"want STATUS:CODE:TEXT, got {text!r}")


def ssl_context(cert: str, key: str, ca: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(cafile=ca)
    # The chain is verified; the name is the SPIFFE ID, checked by spiffe_id_of below.
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    if cert != "-":
        ctx.load_cert_chain(cert, key)
    return ctx


def spiffe_id_of(der: bytes) -> str:
    cert = x509.load_der_x509_certificate(der)
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        raise StepFailed("server certificate: no subjectAltName")
    uris = san.get_values_for_type(x509.UniformResourceIdentifier)
    check(len(uris) == 1 and uris[0].startswith("spiffe://"),
          f"server certificate: want exactly one spiffe:// URI SAN, got {uris}")
    return uris[0]


def describe(der: bytes) -> str:
    cert = x509.load_der_x509_certificate(der)
    return f"serial={cert.serial_number:x} sha256={hashlib.sha256(der).hexdigest()[:16]}"


def verify_peer(ssl_object: ssl.SSLObject | ssl.SSLSocket, server_id: str) -> bytes:
    der = ssl_object.getpeercert(binary_form=True)
    check(der is not None, "server presented no certificate")
    got = spiffe_id_of(der)
    check(got == server_id, f"server SPIFFE ID {got!r}, want {server_id!r}")
    return der


class PeerCheck:
    """An httpx2 response hook: every response came over TLS, and each TLS connection's server
    certificate names server_id (checked once per connection). Counts the responses per server
    certificate (`seen_certs`). py_modern_client.py uses it too."""

    def __init__(self, server_id: str) -> None:
        self.server_id = server_id
        self.seen_certs: dict[bytes, int] = {}  # server certificate -> responses over it
        self.connections: dict[int, object] = {}  # the TLS connections verified (kept: ids stay unique)

    async def __call__(self, resp: httpx2.Response) -> None:
        stream = resp.extensions.get("network_stream")
        ssl_object = stream.get_extra_info("ssl_object") if stream is not None else None
        check(ssl_object is not None, f"{resp.request.method} {resp.request.url}: not over TLS")
        if id(ssl_object) not in self.connections:  # once per TLS connection
            der = verify_peer(ssl_object, self.server_id)
            self.connections[id(ssl_object)] = ssl_object
            if len(self.connections) == 1:
                step(f"TLS: server {self.server_id} ({describe(der)}, {ssl_object.version()})")
        der = ssl_object.getpeercert(binary_form=True)
        self.seen_certs[der] = self.seen_certs.get(der, 0) + 1

    def summary(self) -> str:
        return (f"{len(self.connections)} TLS connection(s), each verified; server certificates seen: "
                + ", ".join(f"{describe(d)} x{n}" for d, n in self.seen_certs.items()))


async def call_tool(session: ClientSession, tool: str, arguments: dict, deny: bool,
                    expect_text: str | None) -> None:
    label = f"tools/call {tool} {json.dumps(arguments, separators=(',', ':'))}"
    if deny:
        return await expect_denied(session, tool, arguments, label)
    try:
        res = await session.call_tool(tool, arguments)
    except MCPError as e:
        raise StepFailed(f"{label}: error {e.code} {e.message!r}, want a result") from e
    texts = [c.text for c in res.content if getattr(c, "type", None) == "text"]
    check(not res.is_error, f"{label}: isError: {texts}")
    if expect_text is not None:
        check(any(expect_text in t for t in texts), f"{label}: no {expect_text!r} in {texts}")
    step(f"{label}: ok ({texts[0] if texts else str(res)[:100]!r})")


async def run(url: str, ctx: ssl.SSLContext, server_id: str, headers: dict[str, str], args) -> None:
    deny_tool = args.expect_deny if args.expect_deny != CALLED_TOOL else None
    ready_file, wait_file = args.ready_file, args.wait_file
    peers = PeerCheck(server_id)
    deletes: list[int] = []
    post_statuses: list[int] = []  # every POST's HTTP status, in order

    async def on_response(resp: httpx2.Response) -> None:
        if resp.request.method == "DELETE":
            deletes.append(resp.status_code)
        if resp.request.method == "POST":
            post_statuses.append(resp.status_code)

    http = httpx2.AsyncClient(verify=ctx, timeout=httpx2.Timeout(30, read=300), headers=headers,
                              event_hooks={"response": [peers, on_response]})
    if headers:
        step("headers on every request: " + ", ".join(f"{k}: {v[:24]}{'...' if len(v) > 24 else ''}"
                                                      for k, v in headers.items()))
    async with http:
        if args.expect_rejected:
            await expect_rejected(url, http, args.expect_rejected, post_statuses)
            return
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                init = await session.initialize()
                step(f"initialize: ok (protocol {init.protocol_version}, server {init.server_info.name})")
                names = sorted(t.name for t in (await session.list_tools()).tools)
                check("echo" in names, f"tools/list: no echo in {names}")
                check(deny_tool not in names, f"tools/list: {deny_tool} is listed but must be hidden")
                if args.call:
                    call_denied = args.expect_deny == CALLED_TOOL
                    check((args.call in names) != call_denied,
                          f"tools/list: {args.call} {'is listed but must be hidden' if call_denied else 'is not listed'}")
                step(f"tools/list: ok ({len(names)} tools)")
                await call_echo(session, "tools/call echo")

                if wait_file:
                    Path(ready_file).touch()
                    step(f"holding the session until {wait_file} exists")
                    with anyio.fail_after(60):
                        while not Path(wait_file).exists():
                            await anyio.sleep(0.05)
                    await call_echo(session, "tools/call echo after the hold")

                if deny_tool:
                    await expect_denied(session, deny_tool)
                    await call_echo(session, "tools/call echo after deny")

                if args.call:
                    await call_tool(session, args.call, args.args, args.expect_deny == CALLED_TOOL,
                                    args.expect_text)
                    await call_echo(session, f"tools/call echo after {args.call}")
        check(bool(deletes), "DELETE: the SDK did not send it")
        check(200 <= deletes[0] < 300, f"DELETE: status {deletes[0]}")
        step(f"DELETE: ok ({deletes[0]})")
    step(peers.summary())


async def expect_rejected(url: str, http: httpx2.AsyncClient, spec: tuple[int, int, str],
                          post_statuses: list[int]) -> None:
    """The session must not open: initialize refused with HTTP STATUS and JSON-RPC error CODE."""
    status, code, text = spec
    async with streamable_http_client(url, http_client=http) as (read, write):
        async with ClientSession(read, write) as session:
            # Caught here: past the SDK's task groups it would come wrapped in an ExceptionGroup.
            try:
                init = await session.initialize()
            except MCPError as e:
                refused = e
            else:
                raise StepFailed(f"initialize: ok (server {init.server_info.name}), want it refused")
    seen = post_statuses[0] if post_statuses else None  # the initialize POST
    step(f"initialize: refused: HTTP {seen}, JSON-RPC error {refused.code} {refused.message!r}")
    check(seen == status, f"initialize: HTTP status {seen}, want {status}")
    check(refused.code == code, f"initialize: error code {refused.code}, want {code}")
    check(text in refused.message, f"initialize: message lacks {text!r}: {refused.message!r}")
    step(f"refused as expected ({status}, {code}, {text!r})")


def probe(url: str, ctx: ssl.SSLContext, server_id: str, expect_cert: str | None, expect_refused: str | None) -> int:
    u = urlsplit(url)
    host, port = u.hostname, u.port or 443
    try:
        raw = socket.create_connection((host, port), timeout=5)
    except OSError as e:
        print(f"probe: cannot connect to {host}:{port}: {e}", file=sys.stderr)
        return 2
    outcome, detail, der = "accepted", "", None
    try:
        with ctx.wrap_socket(raw, server_hostname=None) as tls:
            der = tls.getpeercert(binary_form=True)
            # With TLS 1.3 the server judges the client certificate after the client's
            # handshake ended: its refusal shows on the first read.
            tls.sendall(f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while b"\r\n" not in data:
                chunk = tls.recv(4096)
                if not chunk:
                    break
                data += chunk
            if data.startswith(b"HTTP/"):
                detail = data.split(b"\r\n", 1)[0].decode(errors="replace")
            else:
                outcome, detail = "refused by-server", f"closed without an HTTP answer ({data[:40]!r})"
    except ssl.SSLCertVerificationError as e:
        outcome, detail = "refused by-client", f"server certificate rejected: {e.verify_message}"
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError) as e:
        outcome, detail = "refused by-server", f"{type(e).__name__}: {e}"
    except OSError as e:
        print(f"probe: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    cert_info = ""
    if der:
        try:
            cert_info = f", server {spiffe_id_of(der)} {describe(der)}"
        except StepFailed as e:
            cert_info = f", server certificate: {e}"
    print(f"probe: {outcome}: {detail}{cert_info}")
    if expect_refused:
        ok = outcome == f"refused {expect_refused}"
        if not ok:
            print(f"probe: want refused {expect_refused}", file=sys.stderr)
        return 0 if ok else 1
    if outcome != "accepted":
        return 1
    try:
        verify_peer_der = spiffe_id_of(der)
        check(verify_peer_der == server_id, f"server SPIFFE ID {verify_peer_der!r}, want {server_id!r}")
    except StepFailed as e:
        print(f"probe: {e}", file=sys.stderr)
        return 1
    if expect_cert:
        want = x509.load_pem_x509_certificate(Path(expect_cert).read_bytes())
        got = x509.load_der_x509_certificate(der)
        if got != want:
            print(f"probe: server certificate serial={got.serial_number:x}, want {expect_cert} "
                  f"(serial={want.serial_number:x})", file=sys.stderr)
            return 1
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("url")
    ap.add_argument("cert", help="client SVID certificate (PEM), or - for none")
    ap.add_argument("key", help="its private key (PEM), or -")
    ap.add_argument("ca", help="X.509 bundle (PEM) to verify the server with")
    ap.add_argument("--server-id", default=SIDECAR_ID)
    ap.add_argument("--expect-deny", metavar="TOOL", nargs="?", const=CALLED_TOOL,
                    help="TOOL must be denied; bare (with --call): the --call must be denied")
    ap.add_argument("--call", metavar="TOOL", help="call TOOL (allowed unless a bare --expect-deny)")
    ap.add_argument("--args", type=json_object, default={}, metavar="JSON", help="--call's arguments")
    ap.add_argument("--expect-text", metavar="TEXT", help="--call's result text must contain TEXT")
    ap.add_argument("--header", action="append", default=[], metavar="NAME:VALUE", type=header_arg)
    ap.add_argument("--expect-rejected", metavar="STATUS:CODE:TEXT", type=rejected_arg)
    ap.add_argument("--ready-file")
    ap.add_argument("--wait-file")
    ap.add_argument("--probe", action="store_true")
    ap.add_argument("--expect-cert", metavar="PEM")
    ap.add_argument("--expect-refused", choices=["by-server", "by-client"])
    args = ap.parse_args()
    if bool(args.ready_file) != bool(args.wait_file):
        ap.error("--ready-file and --wait-file go together")
    if (args.expect_cert or args.expect_refused) and not args.probe:
        ap.error("--expect-cert and --expect-refused need --probe")
    if args.expect_deny == CALLED_TOOL and not args.call:
        ap.error("a bare --expect-deny needs --call TOOL")
    if args.expect_text is not None and (not args.call or args.expect_deny == CALLED_TOOL):
        ap.error("--expect-text needs an allowed --call")
    if args.expect_rejected and (args.probe or args.call or args.expect_deny or args.ready_file):
        ap.error("--expect-rejected goes alone (with --header and --server-id)")
    if args.probe and args.header:
        ap.error("--header is for sessions, not --probe")
    ctx = ssl_context(args.cert, args.key, args.ca)
    if args.probe:
        return probe(args.url, ctx, args.server_id, args.expect_cert, args.expect_refused)
    t0 = time.monotonic()
    try:
        anyio.run(_bounded, args.url, ctx, args.server_id, dict(args.header), args)
    except Exception as e:
        py_client.fail(e)
        return 1
    step(f"all steps passed ({time.monotonic() - t0:.1f}s)")
    return 0


async def _bounded(*args) -> None:
    # Bound the whole run (the hold included): a hung proxy must fail the test, not stall CI.
    with anyio.fail_after(120):
        await run(*args)


if __name__ == "__main__":
    sys.exit(main())
