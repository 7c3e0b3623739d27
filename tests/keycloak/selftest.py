#!/usr/bin/env python3
"""Checks keycloak.py (the Keycloak stand-in) with JWT-SVIDs and DPoP proofs made here.

Usage: tests/e2e/.venv/bin/python tests/keycloak/selftest.py [-v]

Makes a test PKI with tests/e2e/pki.py in a temp dir (its ES256 JWT-SVID key and bundle),
starts two stand-ins on free loopback ports (`--port 0`, the port read from INFO.json):
one reading a bundle file that the checks rewrite mid-run, one reading a workload_api.py
material directory with `--nonce`. Checks discovery and JWKS, a good DPoP-bound token
(cnf.jkt = the proof key's thumbprint, verified against the published `sig` key and not
the `enc` key), Bearer without a proof, every refusal with Keycloak's status/error/description,
bundle rewrites (use x509-svid, no use, a new key), DCR, the fail hook and stats, key
rotation, nonces, SIGTERM. Ends with "keycloak-selftest: N passed, M failed"; exit 1 on
any failure. Kills what it starts.
"""

import base64
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

HERE = Path(__file__).resolve().parent
E2E = HERE.parent / "e2e"
TD = "mcp-identity.local"
TRUSTED = f"spiffe://{TD}/ns/mcp-agents/sa/trusted-agent"
SEMI = f"spiffe://{TD}/ns/mcp-agents/sa/semi-trusted-agent"
UNTRUSTED = f"spiffe://{TD}/ns/mcp-agents/sa/untrusted-agent"
DPOP_AGENT = f"spiffe://{TD}/ns/mcp-agents/sa/dpop-agent"
DCR_AGENT = f"spiffe://{TD}/ns/mcp-agents/sa/dcr-agent"
UNKNOWN = f"spiffe://{TD}/ns/mcp-agents/sa/nobody"
EVIL = "spiffe://evil.example/ns/mcp-agents/sa/trusted-agent"
JWT_SPIFFE = "urn:ietf:params:oauth:client-assertion-type:jwt-spiffe"
GENERIC = "Invalid client or Invalid client credentials"
VERBOSE = "-v" in sys.argv

passed = failed = 0
procs: list[subprocess.Popen] = []


def check(name: str, fn) -> None:
    global passed, failed
    try:
        detail = fn()
    except Exception as e:
        failed += 1
        print(f"--- {name}: FAIL: {type(e).__name__}: {e}", flush=True)
        traceback.print_exc(limit=2)
    else:
        passed += 1
        print(f"--- {name}: PASS{f' ({detail})' if detail else ''}", flush=True)


def expect(cond: bool, msg: str) -> None:
    if not cond:
        raise AssertionError(msg)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


# --- HTTP -------------------------------------------------------------------------------------

def http(method: str, url: str, body: bytes | None = None, headers: dict | None = None):
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            status, hdrs, data = r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        status, hdrs, data = e.code, e.headers, e.read()
    return status, hdrs, (json.loads(data) if data else None)


def get(url: str):
    return http("GET", url)


# --- credentials ------------------------------------------------------------------------------

class Pki:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.key = serialization.load_pem_private_key((out / "jwt-signing.key").read_bytes(), None)
        self.kid = (out / "jwt-signing.kid").read_text().strip()
        self.bundle = json.loads((out / f"jwt-bundle-{TD}.json").read_text())


def svid(pki: Pki, sub: str, aud, *, key=None, kid: str | None = "default", alg: str = "ES256",
         iat: int | None | str = "now", exp: int | None = None, ttl: int = 300, extra: dict | None = None) -> str:
    """A JWT-SVID like SPIRE's (or pki.py mint-jwt-svid's), with every part overridable."""
    now = int(time.time())
    claims = {"sub": sub, "aud": aud}
    claims["exp"] = exp if exp is not None else now + ttl
    if iat == "now":
        claims["iat"] = now
    elif iat is not None:
        claims["iat"] = iat
    claims.update(extra or {})
    headers = {"typ": "JWT"}
    if kid is not None:
        headers["kid"] = pki.kid if kid == "default" else kid
    return jwt.encode(claims, key if key is not None else pki.key, algorithm=alg, headers=headers)


class ProofKey:
    def __init__(self, alg: str = "ES256") -> None:
        self.alg = alg
        if alg.startswith("ES"):
            self.private = ec.generate_private_key(ec.SECP256R1())
        else:
            self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pub = json.loads(jwt.algorithms.get_default_algorithms()[alg].to_jwk(self.private.public_key()))
        self.jwk = {k: pub[k] for k in ("kty", "crv", "x", "y", "n", "e") if k in pub}
        members = ("crv", "kty", "x", "y") if self.jwk["kty"] == "EC" else ("e", "kty", "n")
        canon = json.dumps({k: self.jwk[k] for k in members}, separators=(",", ":"))
        self.jkt = b64url(hashlib.sha256(canon.encode()).digest())

    def proof(self, htu: str, htm: str = "POST", *, iat: int | None = None, typ: str = "dpop+jwt",
              jwk: dict | None = None, omit: tuple = (), extra: dict | None = None, sign_with=None) -> str:
        claims = {"jti": str(uuid.uuid4()), "htm": htm, "htu": htu, "iat": iat if iat is not None else int(time.time())}
        claims.update(extra or {})
        for k in omit:
            claims.pop(k, None)
        return jwt.encode(claims, sign_with if sign_with is not None else self.private, algorithm=self.alg,
                          headers={"typ": typ, "jwk": jwk if jwk is not None else self.jwk})


# --- the stand-in -----------------------------------------------------------------------------

class StandIn:
    def __init__(self, tmp: Path, name: str, source: list[str], clients: Path, *extra: str) -> None:
        self.info_path = tmp / f"{name}-info.json"
        self.log = open(tmp / f"{name}.log", "w")
        cmd = [sys.executable, str(HERE / "keycloak.py"), "--port", "0", "--realm", "mcp",
               "--trust-domain", TD, *source, "--clients", str(clients), "--out", str(self.info_path), *extra]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
        procs.append(self.proc)
        deadline = time.monotonic() + 15
        while not self.info_path.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start (rc {self.proc.poll()}); see {self.log.name}")
            time.sleep(0.05)
        self.info = json.loads(self.info_path.read_text())
        self.issuer = self.info["issuer"]
        self.token_endpoint = self.info["token_endpoint"]
        self.base = f"http://127.0.0.1:{self.info['port']}"

    def token(self, assertion: str | None, *, proof: str | None = None, form: dict | list | None = None,
              assertion_type: str = JWT_SPIFFE, grant_type: str | None = "client_credentials"):
        fields = []
        if grant_type is not None:
            fields.append(("grant_type", grant_type))
        if assertion_type is not None:
            fields.append(("client_assertion_type", assertion_type))
        if assertion is not None:
            fields.append(("client_assertion", assertion))
        fields += list(form.items()) if isinstance(form, dict) else (form or [])
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        if proof is not None:
            headers["DPoP"] = proof
        return http("POST", self.token_endpoint, urllib.parse.urlencode(fields).encode(), headers)

    def stats(self) -> dict:
        return get(f"{self.base}/_test/stats")[2]


def refused(result, status: int, error: str, description: str | None = None) -> str:
    got_status, _, body = result
    expect(got_status == status and body and body.get("error") == error and
           (description is None or body.get("error_description") == description),
           f"want {status} {error} {description!r}, got {got_status} {body}")
    return f"{status} {error}: {body.get('error_description')}"


def verify_access_token(token: str, jwks: dict, use: str = "sig") -> dict:
    kid = jwt.get_unverified_header(token)["kid"]
    key = next((k for k in jwks["keys"] if k["kid"] == kid and k.get("use") == use), None)
    expect(key is not None, f"no {use} key {kid} in the JWKS")
    # An enc key (alg RSA-OAEP) can only have "signed" a forgery, with RS256.
    alg = "RS256" if use == "enc" else key["alg"]
    return jwt.decode(token, jwt.PyJWK(key, algorithm=alg).key, algorithms=[alg], options={"verify_aud": False})


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="keycloak-selftest."))
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
    try:
        subprocess.run([sys.executable, str(E2E / "pki.py"), str(tmp / "pki")], check=True, env=env,
                       stdout=subprocess.DEVNULL)
        pki = Pki(tmp / "pki")
        bundle_file = tmp / "jwt-bundle.json"

        def write_bundle(doc: dict) -> None:
            t = bundle_file.with_name(".b.tmp")
            t.write_text(json.dumps(doc))
            os.replace(t, bundle_file)

        write_bundle(pki.bundle)
        clients = tmp / "clients.json"
        clients.write_text(json.dumps([
            {"clientId": "trusted-agent", "spiffeId": TRUSTED, "realmRoles": ["mcp-tools"],
             "optionalClientScopes": ["mcp:tools", "offline_access"]},
            {"clientId": SEMI, "spiffeId": SEMI, "realmRoles": []},
            {"clientId": "no-service-account", "spiffeId": UNTRUSTED, "serviceAccountsEnabled": False},
            {"clientId": "dpop-required", "spiffeId": DPOP_AGENT, "requireDPoP": True},
            {"clientId": "evil", "spiffeId": EVIL},
        ]))
        wl = tmp / "wl"
        subprocess.run([sys.executable, str(E2E / "pki.py"), "workload-dir", str(tmp / "pki"), str(wl),
                        "trusted-agent"], check=True, env=env)

        kc = StandIn(tmp, "kc", ["--jwt-bundle", str(bundle_file)], clients)
        kn = StandIn(tmp, "kc-nonce", ["--workload-api-dir", str(wl)], clients, "--nonce")
        good = lambda sub=TRUSTED, **kw: svid(pki, sub, [kc.issuer], **kw)  # noqa: E731
        es = ProofKey("ES256")
        state: dict = {}

        # --- metadata ---
        def discovery():
            status, _, doc = get(kc.info["discovery"])
            expect(status == 200, f"status {status}")
            expect(doc["issuer"] == kc.issuer == f"{kc.base}/realms/mcp", f"issuer {doc['issuer']}")
            expect(doc["token_endpoint"] == kc.token_endpoint and doc["jwks_uri"] == kc.info["jwks_uri"], "endpoints")
            expect({"ES256", "RS256", "PS256"} <= set(doc["dpop_signing_alg_values_supported"]), "dpop algs")
            expect(doc["registration_endpoint"].endswith("/realms/mcp/clients-registrations/spiffe-dcr/register"),
                   doc["registration_endpoint"])
            expect(get(f"{kc.base}/realms/other/.well-known/openid-configuration")[0] == 404, "other realm not 404")
            return doc["issuer"]
        check("discovery", discovery)

        def certs():
            status, _, jwks = get(kc.info["jwks_uri"])
            expect(status == 200, f"status {status}")
            sig = [k for k in jwks["keys"] if k["use"] == "sig"]
            enc = [k for k in jwks["keys"] if k["use"] == "enc"]
            expect(len(sig) == 1 and sig[0]["alg"] == "RS256" and sig[0]["kty"] == "RSA", f"sig {sig}")
            expect(len(enc) == 1 and enc[0]["alg"] == "RSA-OAEP" and enc[0]["kid"] != sig[0]["kid"], f"enc {enc}")
            expect(all("x5c" in k and "x5t#S256" in k for k in jwks["keys"]), "x5c")
            state["jwks"] = jwks
            return f"sig {sig[0]['kid'][:8]}…, enc {enc[0]['kid'][:8]}…"
        check("certs-sig-and-enc", certs)

        # --- good requests ---
        def good_dpop():
            status, hdrs, body = kc.token(good(), proof=es.proof(kc.token_endpoint))
            expect(status == 200, f"{status} {body}")
            expect(body["token_type"] == "DPoP" and body["expires_in"] == 300 and body["scope"] == "profile email",
                   f"body {body}")
            expect(hdrs.get("Cache-Control") == "no-store", "no Cache-Control: no-store")
            claims = verify_access_token(body["access_token"], state["jwks"])
            expect(claims["cnf"]["jkt"] == es.jkt, f"cnf.jkt {claims['cnf']} != {es.jkt}")
            expect(claims["typ"] == "DPoP" and claims["azp"] == "trusted-agent" and claims["iss"] == kc.issuer,
                   f"claims {claims}")
            expect(claims["aud"] == "account" and claims["scope"] == "profile email", f"aud/scope {claims}")
            expect("mcp-tools" in claims["realm_access"]["roles"], f"roles {claims['realm_access']}")
            expect(claims["exp"] - claims["iat"] == 300 and claims["jti"] and str(uuid.UUID(claims["sub"])),
                   "exp/iat/jti/sub")
            expect(jwt.get_unverified_header(body["access_token"])["typ"] == "JWT", "header typ")
            state["token"] = body["access_token"]
            return f"cnf.jkt {es.jkt[:12]}…, sub {claims['sub'][:8]}…"
        check("good-request-dpop-bound", good_dpop)

        def not_with_enc():
            enc = next(k for k in state["jwks"]["keys"] if k["use"] == "enc")
            try:
                jwt.decode(state["token"], jwt.PyJWK(enc, algorithm="RS256").key, algorithms=["RS256"],
                           options={"verify_aud": False})
            except jwt.InvalidSignatureError:
                return "the enc key does not verify it"
            raise AssertionError("the enc key verified the access token")
        check("token-not-verifiable-with-enc-key", not_with_enc)

        def bearer():
            status, _, body = kc.token(good())
            expect(status == 200 and body["token_type"] == "Bearer", f"{status} {body}")
            claims = verify_access_token(body["access_token"], state["jwks"])
            expect("cnf" not in claims and claims["typ"] == "Bearer", f"claims {claims}")
            return "token_type Bearer, no cnf"
        check("no-proof-bearer", bearer)

        for alg in ("RS256", "PS256"):
            def other_alg(alg=alg):
                k = ProofKey(alg)
                status, _, body = kc.token(good(), proof=k.proof(kc.token_endpoint))
                expect(status == 200, f"{status} {body}")
                claims = verify_access_token(body["access_token"], state["jwks"])
                expect(claims["cnf"]["jkt"] == k.jkt, "jkt")
                return f"{alg} proof bound"
            check(f"proof-{alg}", other_alg)

        def audience_param():
            status, _, body = kc.token(good(), proof=es.proof(kc.token_endpoint),
                                       form={"audience": "https://mcp.example/mcp"})
            expect(status == 200, f"{status} {body}")
            claims = verify_access_token(body["access_token"], state["jwks"])
            expect(claims["aud"] == "https://mcp.example/mcp" and "resource_access" not in claims, f"aud {claims['aud']}")
            status, _, body = kc.token(good(), form={"resource": "https://r.example/mcp"})
            claims = verify_access_token(body["access_token"], state["jwks"])
            expect(claims["aud"] == "https://r.example/mcp", f"resource aud {claims['aud']}")
            return "audience and resource set aud"
        check("audience-and-resource", audience_param)

        def scopes():
            status, _, body = kc.token(good(), form={"scope": "openid mcp:tools"})
            expect(status == 200 and body["scope"] == "openid profile email mcp:tools", f"{status} {body}")
            return refused(kc.token(good(), form={"scope": "admin"}), 400, "invalid_scope", "Invalid scopes: admin")
        check("scope-granted-and-invalid-scope", scopes)

        def client_id_equal():
            status, _, body = kc.token(svid(pki, SEMI, [kc.issuer]), proof=es.proof(kc.token_endpoint),
                                       form={"client_id": SEMI})
            expect(status == 200, f"{status} {body}")
            claims = verify_access_token(body["access_token"], state["jwks"])
            expect(claims["azp"] == SEMI, f"azp {claims['azp']}")
            return "client_id = SPIFFE ID accepted, azp = SPIFFE ID"
        check("client-id-equal-to-spiffe-id", client_id_equal)

        def pki_minted():
            mint = lambda *a: subprocess.run([sys.executable, str(E2E / "pki.py"), "mint-jwt-svid", str(pki.out),  # noqa: E731
                                              TRUSTED, kc.issuer, *a], check=True, env=env, capture_output=True,
                                             text=True).stdout.strip()
            status, _, body = kc.token(mint(), proof=es.proof(kc.token_endpoint))
            expect(status == 200 and body["token_type"] == "DPoP", f"{status} {body}")
            return refused(kc.token(mint("--ttl", "-60")), 400, "invalid_client", "Token is not active")
        check("pki-mint-jwt-svid-accepted-expired-refused", pki_minted)

        def no_iat_short():
            status, _, body = kc.token(good(iat=None, ttl=200))
            expect(status == 200, f"{status} {body}")
            return "exp - now <= 300 without iat accepted"
        check("no-iat-short-exp-accepted", no_iat_short)

        def htu_query():
            status, _, body = kc.token(good(), proof=es.proof(kc.token_endpoint + "?x=1"))
            expect(status == 200, f"{status} {body}")
            return "the query is not compared"
        check("proof-htu-query-ignored", htu_query)

        # --- refusals: the JWT-SVID ---
        other_key = ec.generate_private_key(ec.SECP256R1())
        cases = [
            ("wrong-aud", lambda: kc.token(svid(pki, TRUSTED, ["https://elsewhere/realms/mcp"])),
             400, "invalid_client", "Invalid token audience"),
            ("aud-string-wrong", lambda: kc.token(svid(pki, TRUSTED, kc.issuer + "/")),
             400, "invalid_client", "Invalid token audience"),
            ("two-audiences", lambda: kc.token(svid(pki, TRUSTED, [kc.issuer, "https://other"])),
             400, "invalid_client", "Multiple audiences not allowed"),
            ("stale-iat", lambda: kc.token(good(iat=int(time.time()) - 301, ttl=60)),
             400, "invalid_client", "Token was issued too far in the past to be used now"),
            ("future-iat", lambda: kc.token(good(iat=int(time.time()) + 30)),
             400, "invalid_client", "Token was issued in the future"),
            ("no-iat-long-exp", lambda: kc.token(good(iat=None, ttl=600)),
             400, "invalid_client", "Token expiration is too far in the future and iat claim not present in token"),
            ("expired", lambda: kc.token(good(iat=int(time.time()) - 120, ttl=-60)),
             400, "invalid_client", "Token is not active"),
            ("no-exp", lambda: kc.token(jwt.encode({"sub": TRUSTED, "aud": [kc.issuer], "iat": int(time.time())},
                                                   pki.key, algorithm="ES256", headers={"kid": pki.kid})),
             400, "invalid_client", "Token exp claim is required"),
            ("unknown-spiffe-id", lambda: kc.token(good(UNKNOWN)), 401, "invalid_client", GENERIC),
            ("foreign-trust-domain", lambda: kc.token(good(EVIL)), 401, "invalid_client", GENERIC),
            ("bad-signature", lambda: kc.token(good(key=other_key)), 401, "invalid_client", GENERIC),
            ("unknown-kid", lambda: kc.token(good(kid="no-such-kid")), 401, "invalid_client", GENERIC),
            ("no-kid", lambda: kc.token(good(kid=None)), 401, "invalid_client", GENERIC),
            ("hs256-assertion", lambda: kc.token(good(key="a-shared-secret-of-32-bytes-long!", alg="HS256")),
             400, "invalid_client", "Invalid signature algorithm"),
            ("malformed-assertion", lambda: kc.token("not.a.jwt"), 401, "invalid_client", GENERIC),
            ("client-id-differs", lambda: kc.token(good(), form={"client_id": "trusted-agent"}),
             400, "invalid_client", "client_id parameter does not match sub claim"),
            ("wrong-grant-type", lambda: kc.token(good(), grant_type="password"),
             400, "unsupported_grant_type", "Unsupported grant_type"),
            ("no-grant-type", lambda: kc.token(good(), grant_type=None),
             400, "invalid_request", "Missing form parameter: grant_type"),
            ("wrong-assertion-type", lambda: kc.token(
                good(), assertion_type="urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
             401, "invalid_client", GENERIC),
            ("no-assertion", lambda: kc.token(None), 401, "invalid_client", GENERIC),
            ("no-service-account", lambda: kc.token(good(UNTRUSTED)),
             401, "unauthorized_client", "Client not enabled to retrieve service account"),
            ("duplicated-parameter", lambda: kc.token(good(), form=[("scope", "email"), ("scope", "profile")]),
             400, "invalid_request", "duplicated parameter"),
        ]
        for name, call, status, error, desc in cases:
            check(f"refused-{name}", lambda call=call, s=status, e=error, d=desc: refused(call(), s, e, d))

        # --- refusals: the DPoP proof ---
        ep = lambda: kc.token_endpoint  # noqa: E731
        private_jwk = {**es.jwk, "d": b64url(es.private.private_numbers().private_value.to_bytes(32, "big"))}
        proof_cases = [
            ("typ-jwt", lambda: es.proof(ep(), typ="JWT"), "Invalid or missing type in DPoP header: JWT"),
            ("bad-signature", lambda: es.proof(ep(), sign_with=ec.generate_private_key(ec.SECP256R1())),
             "DPoP verification failure: Invalid token signature"),
            ("private-key-in-jwk", lambda: es.proof(ep(), jwk=private_jwk), "Private key is present in DPoP header"),
            ("no-jwk", lambda: jwt.encode({"jti": "x", "htm": "POST", "htu": ep(), "iat": int(time.time())},
                                          es.private, algorithm="ES256", headers={"typ": "dpop+jwt"}),
             "No JWK in DPoP header"),
            ("hs256", lambda: jwt.encode({"jti": "x", "htm": "POST", "htu": ep(), "iat": int(time.time())},
                                         "a-shared-secret-of-32-bytes-long!", algorithm="HS256",
                                         headers={"typ": "dpop+jwt"}), "Unsupported DPoP algorithm: HS256"),
            ("wrong-htm", lambda: es.proof(ep(), htm="GET"), "DPoP HTTP method mismatch"),
            ("wrong-htu", lambda: es.proof(kc.base + "/realms/mcp/protocol/openid-connect/certs"),
             "DPoP HTTP URL mismatch"),
            ("htu-other-host", lambda: es.proof(ep().replace("127.0.0.1", "localhost")), "DPoP HTTP URL mismatch"),
            ("stale-iat", lambda: es.proof(ep(), iat=int(time.time()) - 30), "DPoP proof is not active"),
            ("future-iat", lambda: es.proof(ep(), iat=int(time.time()) + 20), "DPoP proof is not active"),
            ("no-jti", lambda: es.proof(ep(), omit=("jti",)), "DPoP mandatory claims are missing"),
            ("garbage", lambda: "garbage", "DPoP header verification failure"),
        ]
        for name, make, desc in proof_cases:
            check(f"refused-proof-{name}",
                  lambda make=make, d=desc: refused(kc.token(good(), proof=make()), 400, "invalid_request", d))

        def replay():
            p = es.proof(kc.token_endpoint)
            status, _, body = kc.token(good(), proof=p)
            expect(status == 200, f"first use {status} {body}")
            return refused(kc.token(good(), proof=p), 400, "invalid_request", "DPoP proof has already been used")
        check("refused-proof-replayed", replay)

        def dpop_required():
            r = refused(kc.token(good(DPOP_AGENT)), 400, "invalid_request", "DPoP proof is missing")
            status, _, body = kc.token(good(DPOP_AGENT), proof=es.proof(kc.token_endpoint))
            expect(status == 200 and body["token_type"] == "DPoP", f"{status} {body}")
            return r + "; with a proof: DPoP"
        check("client-requires-dpop", dpop_required)

        # --- the bundle file, rewritten mid-run ---
        def bundle_x509_use():
            k = pki.bundle["keys"][0]
            write_bundle({"keys": [{**k, "use": "x509-svid"}]})
            r = refused(kc.token(good()), 401, "invalid_client", GENERIC)
            write_bundle({"keys": [{kk: v for kk, v in k.items() if kk != "use"}]})
            status, _, body = kc.token(good())
            expect(status == 200, f"key without use: {status} {body}")
            write_bundle({"keys": [{**k, "use": "sig"}]})
            status, _, body = kc.token(good())
            expect(status == 200, f"only a sig key (Keycloak's fallback): {status} {body}")
            write_bundle(pki.bundle)
            return r + "; no use and a sig-only bundle accepted"
        check("bundle-key-use-x509-svid-refused", bundle_x509_use)

        def bundle_rotation():
            new = ec.generate_private_key(ec.SECP256R1())
            pub = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(new.public_key()))
            new_jwk = {"kty": "EC", "crv": "P-256", "x": pub["x"], "y": pub["y"], "kid": "rotated", "use": "jwt-svid"}
            write_bundle({"keys": [new_jwk], "spiffe_sequence": 2})
            r = refused(kc.token(good()), 401, "invalid_client", GENERIC)
            status, _, body = kc.token(good(key=new, kid="rotated"))
            expect(status == 200, f"new key: {status} {body}")
            write_bundle({"keys": [new_jwk, *pki.bundle["keys"]]})
            expect(kc.token(good())[0] == 200, "old key back")
            bundle_file.write_text("{half-written")
            expect(kc.token(good())[0] == 200, "a broken bundle file must keep the last good one")
            write_bundle(pki.bundle)
            return "old key refused after the rewrite: " + r
        check("bundle-rewrite-rotation", bundle_rotation)

        # --- DCR ---
        def dcr():
            url = kc.info["registration_endpoint"]
            body = json.dumps({"software_statement": good(DCR_AGENT), "client_name": "dcr agent",
                               "grant_types": ["client_credentials"]}).encode()
            status, hdrs, rep = http("POST", url, body, {"Content-Type": "application/json"})
            expect(status == 201, f"{status} {rep}")
            expect(rep["clientId"] == DCR_AGENT and rep["clientAuthenticatorType"] == "federated-jwt" and
                   rep["attributes"]["jwt.credential.sub"] == DCR_AGENT and rep["serviceAccountsEnabled"],
                   f"rep {rep}")
            expect(hdrs.get("Location", "").startswith(url + "/"), f"Location {hdrs.get('Location')}")
            status, _, tok = kc.token(good(DCR_AGENT), proof=es.proof(kc.token_endpoint),
                                      form={"client_id": DCR_AGENT})
            expect(status == 200, f"token after DCR: {status} {tok}")
            claims = verify_access_token(tok["access_token"], state["jwks"])
            expect(claims["azp"] == DCR_AGENT and claims["cnf"]["jkt"] == es.jkt, f"claims {claims}")
            body2 = json.dumps({"software_statement": good(DCR_AGENT)}).encode()
            status, _, again = http("POST", url, body2, {"Content-Type": "application/json"})
            expect(status == 409 and again == {"errorMessage": "Client already exists"}, f"again {status} {again}")
            return "201, token with azp = SPIFFE ID, then 409"
        check("dcr-register-then-token-then-409", dcr)

        def dcr_refused():
            url = kc.info["registration_endpoint"]
            h = {"Content-Type": "application/json"}
            post = lambda d: http("POST", url, json.dumps(d).encode(), h)  # noqa: E731
            a = refused(post({"software_statement": svid(pki, UNKNOWN, ["https://elsewhere"])}),
                        400, "invalid_software_statement", "Invalid token audience")
            refused(post({"client_name": "x"}), 400, "invalid_software_statement", "software_statement is required")
            refused(post({"software_statement": good(UNKNOWN, key=other_key)}), 400, "invalid_software_statement")
            refused(post({"software_statement": good(EVIL)}), 400, "invalid_software_statement")
            refused(post({"software_statement": good(UNKNOWN), "grant_types": ["authorization_code"]}),
                    400, "invalid_client_metadata")
            expect(not any(c["spiffeId"] == UNKNOWN for c in kc.stats()["clients"]), "a refused DCR registered")
            return a
        check("dcr-refusals", dcr_refused)

        # --- hooks ---
        def fail_hook():
            before = kc.stats()
            status, _, body = http("POST", f"{kc.base}/_test/fail?count=2&status=503")
            expect(status == 200 and body["pending_failures"] == 2, f"{status} {body}")
            r1, r2 = kc.token(good()), kc.token(good())
            expect(r1[0] == 503 and r2[0] == 503, f"{r1[0]} {r2[0]}")
            expect(kc.token(good())[0] == 200, "third request not served")
            after = kc.stats()
            expect(after["injected_failures"] - before["injected_failures"] == 2, "injected count")
            expect(after["served"] - before["served"] == 1, "served count")
            expect(after["token_requests"] - before["token_requests"] == 3, "request count")
            expect(after["last_error"]["status"] == 503 and after["pending_failures"] == 0, f"last {after['last_error']}")
            expect(after["refused"] >= len(cases) + len(proof_cases), f"refused {after['refused']}")
            return f"served {after['served']}, refused {after['refused']}, by error {after['refused_by_error']}"
        check("fail-hook-and-stats", fail_hook)

        def mint_enc():
            status, _, body = http("POST", f"{kc.base}/_test/mint", json.dumps(
                {"key": "enc", "claims": {"iss": kc.issuer, "sub": "forged"}}).encode())
            expect(status == 200 and body["use"] == "enc", f"{status} {body}")
            kid = jwt.get_unverified_header(body["token"])["kid"]
            expect(not any(k["kid"] == kid and k["use"] == "sig" for k in state["jwks"]["keys"]), "enc kid is a sig kid")
            verify_access_token(body["token"], state["jwks"], use="enc")  # it is the enc key's signature
            return "a forgery signed by the enc key (kid of the enc key)"
        check("mint-with-enc-key", mint_enc)

        def rotate():
            old = state["jwks"]["keys"][0]["kid"]
            status, _, body = http("POST", f"{kc.base}/_test/rotate-key")
            expect(status == 200 and body["kid"] != old and old in body["published"], f"{status} {body}")
            _, _, jwks = get(kc.info["jwks_uri"])
            expect({old, body["kid"]} <= {k["kid"] for k in jwks["keys"] if k["use"] == "sig"}, "both published")
            _, _, tok = kc.token(good())
            expect(jwt.get_unverified_header(tok["access_token"])["kid"] == body["kid"], "not signed by the new key")
            verify_access_token(tok["access_token"], jwks)
            return f"new kid {body['kid'][:8]}…, old still published"
        check("rotate-key", rotate)

        # --- the nonce instance (reads the workload API material directory) ---
        def nonce():
            k = ProofKey("ES256")
            mk = lambda: svid(pki, TRUSTED, [kn.issuer])  # noqa: E731
            status, hdrs, body = kn.token(mk(), proof=k.proof(kn.token_endpoint))
            expect(status == 400 and body["error"] == "use_dpop_nonce" and hdrs.get("DPoP-Nonce"), f"{status} {body}")
            n = hdrs["DPoP-Nonce"]
            status, hdrs, body = kn.token(mk(), proof=k.proof(kn.token_endpoint, extra={"nonce": n}))
            expect(status == 200 and body["token_type"] == "DPoP" and hdrs.get("DPoP-Nonce"), f"{status} {body}")
            refused(kn.token(mk(), proof=k.proof(kn.token_endpoint, extra={"nonce": "stale"})), 400, "use_dpop_nonce")
            return "use_dpop_nonce, then served with the nonce (bundle from the workload dir)"
        check("nonce-mode", nonce)

        def wl_bundle():
            st = kn.stats()
            expect(st["jwt_bundle"]["path"] == str(wl / "jwt_bundle.json") and
                   st["jwt_bundle"]["usable_kids"] == [pki.kid], f"{st['jwt_bundle']}")
            return "DIR/jwt_bundle.json"
        check("workload-api-dir-bundle", wl_bundle)

        def sigterm():
            for s in (kc, kn):
                s.proc.send_signal(signal.SIGTERM)
            rcs = [s.proc.wait(timeout=5) for s in (kc, kn)]
            expect(rcs == [0, 0], f"exit codes {rcs}")
            return "both exited 0"
        check("sigterm-clean-exit", sigterm)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        if VERBOSE or failed:
            for f in sorted(tmp.glob("*.log")):
                print(f"=== {f.name}\n{f.read_text()[-4000:]}")
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"keycloak-selftest: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
