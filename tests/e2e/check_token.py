#!/usr/bin/env python3
"""Checks a token minted by `dpop_client.mjs mint` against the issuer that issued it
(harness self-check, no mcp-pep involved): the JWT access token is an ES256 `at+jwt`,
its signature verifies with the key from the issuer's JWKS (found by OIDC discovery),
`iss`/`aud`/`client_id` are right, `cnf.jkt` is the thumbprint of the proof's key, and
the proof is a `dpop+jwt` for POST URL with `ath` = SHA-256 of the token.

Usage: check_token.py MINTED_JSON ISSUER_URL CLIENT_JSON URL
"""
import base64
import hashlib
import json
import sys
import urllib.request

import jwt


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def main() -> int:
    minted_file, issuer, client_file, url = sys.argv[1:]
    minted = json.load(open(minted_file))
    client = json.load(open(client_file))
    meta = json.load(urllib.request.urlopen(issuer + "/.well-known/openid-configuration", timeout=5))
    assert meta["issuer"] == issuer, meta["issuer"]
    assert "ES256" in meta["dpop_signing_alg_values_supported"], meta.get("dpop_signing_alg_values_supported")
    jwks = jwt.PyJWKClient(meta["jwks_uri"])
    token = minted["token"]
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "ES256" and header["typ"] == "at+jwt", header
    claims = jwt.decode(token, jwks.get_signing_key_from_jwt(token).key, algorithms=["ES256"],
                        audience=url, issuer=issuer)
    assert claims["client_id"] == client["client_id"], claims
    assert claims["scope"] == "mcp", claims
    assert claims["cnf"]["jkt"] == minted["jkt"], (claims["cnf"], minted["jkt"])

    proof_header = jwt.get_unverified_header(minted["proof"])
    assert proof_header["typ"] == "dpop+jwt" and proof_header["alg"] == "ES256", proof_header
    jwk = proof_header["jwk"]
    canonical = json.dumps({k: jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"))
    assert b64url(hashlib.sha256(canonical.encode()).digest()) == minted["jkt"], "proof key is not cnf.jkt"
    proof = jwt.decode(minted["proof"], jwt.PyJWK(jwk).key, algorithms=["ES256"])
    assert proof["htm"] == "POST" and proof["htu"] == url, proof
    assert proof["ath"] == b64url(hashlib.sha256(token.encode()).digest()) == minted["ath"], proof
    other = jwt.get_unverified_header(minted["other_proof"])["jwk"]
    assert other != jwk, "other_proof is signed by the token's key"
    print(f"token ok: iss {claims['iss']} aud {claims['aud']} jkt {claims['cnf']['jkt']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
