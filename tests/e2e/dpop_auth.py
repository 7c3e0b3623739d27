"""DPoP for the Python e2e clients (RFC 9449), shared by py_client.py and py_modern_client.py.

  obtain_token(): a DPoP-bound access token by client_credentials from the issuer that
    issuer.mjs runs: OIDC discovery for the token endpoint, private_key_jwt (a fresh jti per
    assertion), a DPoP proof for the token request, one retry on `use_dpop_nonce`.
  DPoPAuth: an `httpx2.Auth` sending `Authorization: DPoP <token>` and a fresh proof (htm,
    htu = the URL without query and fragment, ath, the last server nonce) on every request;
    a 401 carrying `DPoP-Nonce` is retried once with the nonce.
  add_arguments() / check_arguments() / setup() / finish(): the clients' common
    `--dpop-issuer ISSUER_URL --dpop-client CLIENT_JSON [--expect-nonce]`.
"""

import argparse
import base64
import hashlib
import json
import time
import uuid

import httpx2
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import secrets_log


class DPoPError(Exception):
    """Getting or using the token failed (the clients report it like a failed step)."""


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise DPoPError(msg)


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
        secrets_log.record("dpop_key_d", b64url(self.private.private_numbers().private_value.to_bytes(32, "big")))
        secrets_log.record("private_key_pem", self.private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))

    def proof(self, method: str, url: str, token: str | None = None, nonce: str | None = None) -> str:
        claims: dict = {"jti": str(uuid.uuid4()), "htm": method.upper(), "htu": htu_of(url), "iat": int(time.time())}
        if token is not None:
            claims["ath"] = b64url(hashlib.sha256(token.encode()).digest())
        if nonce is not None:
            claims["nonce"] = nonce
        signed = jwt.encode(claims, self.private, algorithm="ES256", headers={"typ": "dpop+jwt", "jwk": self.jwk})
        secrets_log.record("dpop_proof", signed)
        return signed


class DPoPAuth(httpx2.Auth):
    """`Authorization: DPoP <token>` and a fresh proof on every request; one retry with the
    server's nonce on 401 + `DPoP-Nonce`."""

    def __init__(self, token: str, key: DPoPKey, token_nonce_retries: int = 0) -> None:
        self.token = token
        self.key = key
        self.token_nonce_retries = token_nonce_retries  # use_dpop_nonce retries at the token endpoint
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
    secrets_log.record("client_key_d", client["client_jwk"].get("d"))
    async with httpx2.AsyncClient(timeout=10) as http:
        meta = (await http.get(issuer.rstrip("/") + "/.well-known/openid-configuration")).raise_for_status().json()
        _check(meta["issuer"] == issuer, f"discovery: issuer {meta['issuer']!r} != {issuer!r}")
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
            secrets_log.record("client_assertion", assertion)
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
            _check(resp.status_code == 200, f"token endpoint: HTTP {resp.status_code} {body}")
            _check(body.get("token_type") == "DPoP", f"token endpoint: token_type {body.get('token_type')!r}, want DPoP")
            secrets_log.record("access_token", body["access_token"])
            return body["access_token"], attempt
    raise DPoPError("token endpoint: use_dpop_nonce twice")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dpop-issuer", metavar="ISSUER_URL",
                        help="get a DPoP-bound token there (client_credentials) and sign a proof per request")
    parser.add_argument("--dpop-client", metavar="CLIENT_JSON", help="the client file issuer.mjs wrote")
    parser.add_argument("--expect-nonce", action="store_true",
                        help="the issuer and the MCP endpoint must each have asked for a DPoP nonce")


def check_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if bool(args.dpop_issuer) != bool(args.dpop_client) or (args.expect_nonce and not args.dpop_issuer):
        parser.error("--dpop-issuer and --dpop-client go together; --expect-nonce needs them")


async def setup(issuer: str | None, client_file: str | None, resource: str) -> DPoPAuth | None:
    """The auth for the clients' httpx2.AsyncClient (None without --dpop-issuer)."""
    if not issuer:
        return None
    key = DPoPKey()
    token, retries = await obtain_token(issuer, client_file, resource, key)
    return DPoPAuth(token, key, retries)


def describe_token(auth: DPoPAuth) -> str:
    return (f"token: ok (DPoP, bound to jkt {auth.key.jkt}, "
            f"{auth.token_nonce_retries} nonce retries at the token endpoint)")


def finish(auth: DPoPAuth, expect_nonce: bool) -> str:
    """The run's DPoP summary; with expect_nonce, fails unless both sides asked for a nonce."""
    _check(not expect_nonce or auth.token_nonce_retries > 0, "DPoP: the issuer never asked for a nonce")
    _check(not expect_nonce or auth.nonce_retries > 0, "DPoP: the MCP endpoint never asked for a nonce")
    return f"DPoP: ok ({auth.requests} proofs signed, {auth.nonce_retries} use_dpop_nonce retries at the MCP endpoint)"
