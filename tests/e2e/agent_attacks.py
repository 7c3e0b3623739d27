#!/usr/bin/env python3
"""Stolen agent material at the tool server's sidecar (agent.sh): what an egress sidecar holds
(its DPoP key, its token, its SVID) is worth nothing in another process unless all of it is
there, and a proof is worth one request.

Usage: agent_attacks.py --ingress URL --issuer ISSUER --pki PKI_DIR --ca BUNDLE
                        --server-id ID --trusted SPIFFE_ID --untrusted SPIFFE_ID
                        [--upstream-log FILE]

As the trusted agent's sidecar would, this obtains a DPoP-bound token from the Keycloak
stand-in (client_credentials, jwt-spiffe with a JWT-SVID minted by pki.py, a proof by key K1),
then sends a 2026-07-28 tools/call read_file to the ingress over mTLS for each case of CASES:
the genuine request first (it must be answered, so the refusals are not vacuous), then each
forgery, which must be refused with 401 and a JSON-RPC error and, with --upstream-log, never
reach the tool server. Prints a line per case; exit 1 when any case went otherwise.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import httpx2

import pki
import py_mtls_client
from dpop_auth import DPoPKey

JWT_SPIFFE = "urn:ietf:params:oauth:client-assertion-type:jwt-spiffe"
MODERN = "2026-07-28"
BODY = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "tools/call",
    "params": {
        "name": "read_file",
        "arguments": {"path": "/workspace/readme.md"},
        "_meta": {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}},
    },
}

# name -> (client SVID, Authorization, DPoP header, expected status). The token and keys:
# K1 is the key the token is bound to (the egress's key), K2 any other key.
#   "token"/"none"/"bearer": Authorization DPoP <token> / absent / Bearer <token>
#   proof: "k1", "k2", "none", "replay" (the genuine request's proof again), "k1-get"
#   (htm GET), "k1-other-htu" (for another URL), "k1-no-ath" (not bound to the token)
CASES = [
    ("genuine: token + K1 proof + the agent's SVID", "trusted", "token", "k1", 200),
    ("token without its key (proof by K2)", "trusted", "token", "k2", 401),
    ("key without the token (proof by K1, no Authorization)", "trusted", "none", "k1", 401),
    ("token as a bearer token, no proof", "trusted", "bearer", "none", 401),
    ("token + K1, the genuine proof replayed", "trusted", "token", "replay", 401),
    ("token + K1 proof for GET", "trusted", "token", "k1-get", 401),
    ("token + K1 proof for another URL", "trusted", "token", "k1-other-htu", 401),
    ("token + K1 proof without ath", "trusted", "token", "k1-no-ath", 401),
    ("token + K1 over another agent's mTLS identity", "untrusted", "token", "k1", 401),
]


def obtain_token(issuer: str, pki_dir: Path, spiffe_id: str, key: DPoPKey) -> str:
    endpoint = f"{issuer}/protocol/openid-connect/token"
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": JWT_SPIFFE,
        "client_assertion": pki.mint_jwt_svid(pki_dir, spiffe_id, issuer),
    }
    resp = httpx2.post(endpoint, data=form, headers={"DPoP": key.proof("POST", endpoint)}, timeout=10)
    answer = resp.json()
    if resp.status_code != 200 or answer.get("token_type") != "DPoP":
        raise SystemExit(f"[attacks] FAIL: token request answered {resp.status_code}: {answer}")
    return answer["access_token"]


def count_lines(path: str | None) -> int:
    return sum(1 for _ in open(path)) if path else 0


def main() -> int:
    ap = argparse.ArgumentParser()
    for flag in ("--ingress", "--issuer", "--pki", "--ca", "--server-id", "--trusted", "--untrusted"):
        ap.add_argument(flag, required=True)
    ap.add_argument("--upstream-log")
    args = ap.parse_args()
    pki_dir = Path(args.pki)
    k1, k2 = DPoPKey(), DPoPKey()
    token = obtain_token(args.issuer, pki_dir, args.trusted, k1)
    print(f"[attacks] a token for {args.trusted} bound to K1 (jkt {k1.jkt})")
    clients = {
        name: httpx2.Client(verify=py_mtls_client.ssl_context(str(pki_dir / f"svid-{svid}.pem"),
                                                              str(pki_dir / f"svid-{svid}.key"), args.ca), timeout=10)
        for name, svid in (("trusted", "trusted-agent"), ("untrusted", "untrusted-agent"))
    }
    genuine_proof = None
    failures = 0
    for name, client, auth, proof_kind, want in CASES:
        proof = {
            "k1": lambda: k1.proof("POST", args.ingress, token),
            "k2": lambda: k2.proof("POST", args.ingress, token),
            "none": lambda: None,
            "replay": lambda: genuine_proof,
            "k1-get": lambda: k1.proof("GET", args.ingress, token),
            "k1-other-htu": lambda: k1.proof("POST", "https://127.0.0.1:1/mcp", token),
            "k1-no-ath": lambda: k1.proof("POST", args.ingress),
        }[proof_kind]()
        headers = {
            "content-type": "application/json",
            "accept": "application/json, text/event-stream",
            "mcp-protocol-version": MODERN,
            "mcp-method": "tools/call",
            "mcp-name": "read_file",
        }
        if auth != "none":
            headers["authorization"] = f"{'DPoP' if auth == 'token' else 'Bearer'} {token}"
        if proof is not None:
            headers["dpop"] = proof
        if proof_kind == "k1" and genuine_proof is None:
            genuine_proof = proof
        before = count_lines(args.upstream_log)
        resp = clients[client].post(args.ingress, content=json.dumps(BODY), headers=headers)
        time.sleep(0.05)  # the fixture writes its log line after answering
        reached = count_lines(args.upstream_log) - before
        try:
            error = resp.json().get("error")
        except ValueError:
            error = None
        ok = resp.status_code == want and (want == 200 or (error is not None and reached == 0))
        failures += not ok
        detail = f"JSON-RPC {error.get('code')} {error.get('message')!r}" if error else resp.text[:120]
        print(f"[attacks] {'ok  ' if ok else 'FAIL'} {name}: {resp.status_code} (want {want}) {detail}"
              + (f"; reached the tool server {reached}x" if args.upstream_log else ""))
    print(f"[attacks] {len(CASES) - failures}/{len(CASES)} cases as expected")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
