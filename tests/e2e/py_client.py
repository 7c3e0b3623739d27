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
`use_dpop_nonce`; resource = URL). Then an `httpx2.Auth` (DPoPAuth) signs a fresh DPoP proof
for every request to URL (htm, htu, ath, the last server nonce) and sends
`Authorization: DPoP <token>`; a 401 carrying `DPoP-Nonce` is retried once with the nonce.
--expect-nonce: the issuer and the MCP endpoint must each have asked for a nonce at least once.
"""

import argparse
import base64
import hashlib
import json
import sys
import time
import uuid

import anyio
import httpx2
import jwt
from cryptography.hazmat.primitives.asymmetric import ec
from mcp import ClientSession, MCPError
from mcp.client.streamable_http import streamable_http_client


class StepFailed(Exception):
    pass


# Which client speaks in the log lines; py_mtls_client.py sets its own.
LOG_PREFIX = "py"


def step(msg: str) -> None:
    print(f"[{LOG_PREFIX}] {msg}", flush=True)


def check(cond: bool, msg: str) -> None:
    if not cond:
        raise StepFailed(msg)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def htu_of(url: str) -> str:
    """The request URL as DPoP `htu`: without query and fragment (RFC 9449 §4.2)."""
    return url.split("#", 1)[0].split("?", 1)[0]


class DPoPKey:
    """An ES256 key pair for DPoP proofs."""

    def __init__(self) -> None:
        self.private = ec.generate_private_key(ec.SECP256R1())
        nums = self.private.public_key().public_numbers()
        self.jwk = {
            "kty": "EC",
            "crv": "P-256",
            "x": b64url(nums.x.to_bytes(32, "big")),
            "y": b64url(nums.y.to_bytes(32, "big")),
        }
        # RFC 7638: required members, lexicographic order, no whitespace.
        canonical = json.dumps({k: self.jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"))
        self.jkt = b64url(hashlib.sha256(canonical.encode()).digest())

    def proof(self, method: str, url: str, token: str | None = None, nonce: str | None = None) -> str:
        claims: dict = {"jti": str(uuid.uuid4()), "htm": method.upper(), "htu": htu_of(url), "iat": int(time.time())}
        if token is not None:
            claims["ath"] = b64url(hashlib.sha256(token.encode()).digest())
        if nonce is not None:
            claims["nonce"] = nonce
        return jwt.encode(claims, self.private, algorithm="ES256", headers={"typ": "dpop+jwt", "jwk": self.jwk})


class DPoPAuth(httpx2.Auth):
    """`Authorization: DPoP <token>` and a fresh proof on every request; one retry with the
    server's nonce on 401 + `DPoP-Nonce`."""

    def __init__(self, token: str, key: DPoPKey) -> None:
        self.token = token
        self.key = key
        self.nonce: str | None = None  # the last DPoP-Nonce any response carried
        self.requests = 0
        self.nonce_retries = 0

    def _sign(self, request: httpx2.Request) -> None:
        request.headers["Authorization"] = f"DPoP {self.token}"
        request.headers["DPoP"] = self.key.proof(request.method, str(request.url), self.token, self.nonce)
        self.requests += 1

    def _note_nonce(self, response: httpx2.Response) -> str | None:
        fresh = response.headers.get("dpop-nonce")
        if fresh:
            self.nonce = fresh
        return fresh

    def auth_flow(self, request: httpx2.Request):
        self._sign(request)
        response = yield request
        if self._note_nonce(response) and response.status_code == 401:
            self.nonce_retries += 1
            self._sign(request)
            response = yield request
            self._note_nonce(response)


async def obtain_token(issuer: str, client_file: str, resource: str, key: DPoPKey) -> tuple[str, int]:
    """A DPoP-bound access token by client_credentials + private_key_jwt.
    Returns (token, nonce retries at the token endpoint)."""
    with open(client_file) as f:
        client = json.load(f)
    signing_key = jwt.algorithms.ECAlgorithm.from_jwk(json.dumps(client["client_jwk"]))
    async with httpx2.AsyncClient(timeout=10) as http:
        meta = (await http.get(issuer.rstrip("/") + "/.well-known/openid-configuration")).raise_for_status().json()
        check(meta["issuer"] == issuer, f"discovery: issuer {meta['issuer']!r} != {issuer!r}")
        endpoint = meta["token_endpoint"]
        nonce = None
        for attempt in range(2):
            now = int(time.time())
            assertion = jwt.encode(
                # A fresh jti per assertion: the issuer refuses a reused one.
                {"iss": client["client_id"], "sub": client["client_id"], "aud": meta["issuer"],
                 "jti": str(uuid.uuid4()), "iat": now, "exp": now + 60},
                signing_key, algorithm=client["client_alg"], headers={"kid": client["client_jwk"]["kid"]},
            )
            resp = await http.post(endpoint, headers={"DPoP": key.proof("POST", endpoint, nonce=nonce)}, data={
                "grant_type": "client_credentials",
                "client_id": client["client_id"],
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": assertion,
                "resource": resource,
                "scope": client.get("scope", "mcp"),
            })
            body = resp.json()
            server_nonce = resp.headers.get("dpop-nonce")
            if resp.status_code == 400 and body.get("error") == "use_dpop_nonce" and server_nonce and attempt == 0:
                nonce = server_nonce
                continue
            check(resp.status_code == 200, f"token endpoint: HTTP {resp.status_code} {body}")
            check(body.get("token_type") == "DPoP", f"token endpoint: token_type {body.get('token_type')!r}, want DPoP")
            return body["access_token"], attempt
    raise StepFailed("token endpoint: use_dpop_nonce twice")


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
    auth: DPoPAuth | None = None
    token_nonce_retries = 0
    if dpop_issuer:
        key = DPoPKey()
        token, token_nonce_retries = await obtain_token(dpop_issuer, dpop_client, url, key)
        auth = DPoPAuth(token, key)
        step(f"token: ok (DPoP, bound to jkt {key.jkt}, {token_nonce_retries} nonce retries at the token endpoint)")
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
        check(not expect_nonce or token_nonce_retries > 0, "DPoP: the issuer never asked for a nonce")
        check(not expect_nonce or auth.nonce_retries > 0, "DPoP: the MCP endpoint never asked for a nonce")
        step(f"DPoP: ok ({auth.requests} proofs signed, {auth.nonce_retries} use_dpop_nonce retries at the MCP endpoint)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("url")
    ap.add_argument("--expect-deny", metavar="TOOL")
    ap.add_argument("--dpop-issuer", metavar="ISSUER_URL")
    ap.add_argument("--dpop-client", metavar="CLIENT_JSON")
    ap.add_argument("--expect-nonce", action="store_true")
    args = ap.parse_args()
    if bool(args.dpop_issuer) != bool(args.dpop_client) or (args.expect_nonce and not args.dpop_issuer):
        ap.error("--dpop-issuer and --dpop-client go together; --expect-nonce needs them")
    try:
        anyio.run(_bounded, args.url, args.expect_deny, args.dpop_issuer, args.dpop_client, args.expect_nonce)
    except Exception as e:
        # The SDK's task groups wrap errors in ExceptionGroups; report the innermost.
        while isinstance(e, BaseExceptionGroup) and len(e.exceptions) == 1:
            e = e.exceptions[0]
        msg = str(e) if isinstance(e, StepFailed) else f"{type(e).__name__}: {e!r}"
        print(f"[py] FAIL: {msg}", file=sys.stderr)
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
