#!/usr/bin/env python3
"""A Keycloak stand-in for tests: SPIFFE client authentication (`jwt-spiffe`) + DPoP.

Keycloak itself cannot be installed here. This server answers the few endpoints an agent's
sidecar uses the way Keycloak 26.x answers them, as read from Keycloak's own source (see
README.md in this directory for each fact and every guess). It is a test peer, not an
authorization server: one realm, one SPIFFE identity provider, in-memory state.

Usage:
  keycloak.py --port P --realm R --trust-domain TD
              (--jwt-bundle FILE | --workload-api-dir DIR) --clients CLIENTS.json
              [--out INFO.json] [--token-lifetime S] [--alg RS256|PS256|ES256]
              [--hostname URL] [--idp-alias A] [--clock-skew S]
              [--dpop-error-code invalid_request|invalid_dpop_proof]
              [--rfc9068-header] [--nonce [--nonce-lifetime S]]

  --port 0 lets the OS pick; the port is in INFO.json (written once listening, atomically):
  {"issuer", "token_endpoint", "jwks_uri", "registration_endpoint", "discovery", "port",
   "realm", "trust_domain", "pid", "listen"} ("listen" is where to connect when --hostname
   names another URL). Serves on 127.0.0.1 only. SIGTERM/SIGINT: exit 0.

  --jwt-bundle FILE        the trust domain's JWT bundle (SPIFFE bundle JSON = a JWKS), re-read
                           whenever the file changes (stat), so a test may rewrite it mid-run;
                           a bundle that fails to parse keeps the previous one.
  --workload-api-dir DIR   the same, read from DIR/jwt_bundle.json (workload_api.py's material).
  --clients FILE           [{"clientId", "spiffeId", "realmRoles": [...], ...}], re-read on change
                           (see README.md for the optional fields).
  --nonce                  NOT Keycloak behaviour (Keycloak never sends DPoP-Nonce; the feature
                           is an open upstream request): the token endpoint demands a server
                           nonce in the proof, as a nonce-demanding authorization server or
                           resource server would (RFC 9449 §8). For tests of a client's nonce
                           retry only.

Endpoints (R = the realm):
  GET  /realms/R/.well-known/openid-configuration
  GET  /realms/R/protocol/openid-connect/certs
  POST /realms/R/protocol/openid-connect/token        client_credentials + jwt-spiffe (+ DPoP)
  POST /realms/R/clients-registrations/spiffe-dcr/register    the third-party SPIFFE DCR SPI
  GET  /realms/R                                       realm info (public key, token service)
Test hooks (not Keycloak):
  POST /_test/fail?count=N&status=503[&error=E]   the next N token requests fail so
  GET  /_test/stats                                token requests served/refused, last error
  POST /_test/reset                                zero the counters and pending failures
  POST /_test/rotate-key[?drop_old=1]              a new realm signing key (the old stays
                                                   published unless drop_old)
  POST /_test/mint  {"key": "sig"|"enc", "claims": {...}}   sign arbitrary claims (e.g. a
                                                   forgery with the `enc` key)
"""

import argparse
import base64
import datetime
import hashlib
import json
import os
import secrets
import signal
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, parse_qsl, quote, urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

JWT_SPIFFE = "urn:ietf:params:oauth:client-assertion-type:jwt-spiffe"
FEDERATED_JWT = "federated-jwt"
# Keycloak's TokenEndpoint rescue for "no client authenticator identified the client"
# (AuthenticationProcessor.handleClientAuthException): the same answer for an unknown
# client, a bad signature, a foreign trust domain or an unsupported assertion type.
GENERIC_CLIENT_ERROR = "Invalid client or Invalid client credentials"
# SpiffeIdentityProvider builds FederatedJWTClientValidator with maximumExpirationTime 300.
MAX_ASSERTION_AGE = 300
# DPoPUtil.DEFAULT_PROOF_LIFETIME and DEFAULT_ALLOWED_CLOCK_SKEW.
DPOP_LIFETIME, DPOP_SKEW = 10, 15
# Asymmetric algorithms Keycloak has signature providers for (SPIFFE allows RS/ES/PS 256-512).
ASYMMETRIC = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
KNOWN_ALGS = ASYMMETRIC + ("none", "HS256", "HS384", "HS512", "RSA1_5", "RSA-OAEP", "RSA-OAEP-256")
# What a service account gets from the realm's default roles (default-roles-R composite).
DEFAULT_REALM_ROLES = ("offline_access", "uma_authorization")
ACCOUNT_ROLES = ("manage-account", "manage-account-links", "view-profile")
DEFAULT_SCOPES = ("profile", "email")
OPTIONAL_SCOPES = ("address", "phone", "offline_access", "microprofile-jwt", "organization")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def jwk_thumbprint(jwk: dict) -> str:
    """RFC 7638: the required members of the key type, sorted, no whitespace, SHA-256."""
    members = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n"), "OKP": ("crv", "kty", "x")}[jwk["kty"]]
    canonical = json.dumps({k: jwk[k] for k in members}, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode()).digest())


class OAuthError(Exception):
    """One refusal, as Keycloak words it; `reason` is the stand-in's own, for stats and logs."""

    def __init__(self, status: int, error: str, description: str, reason: str = "", headers=None, body=None):
        super().__init__(description)
        self.status, self.error, self.description = status, error, description
        self.reason = reason or description
        self.headers = headers or {}
        self.body = body


def generic_client_error(reason: str) -> OAuthError:
    return OAuthError(401, "invalid_client", GENERIC_CLIENT_ERROR, reason)


# --- realm keys -------------------------------------------------------------------------------

class RealmKey:
    """A realm key as Keycloak publishes it: JWK with kid, alg, use, x5c, x5t, x5t#S256."""

    def __init__(self, realm: str, alg: str, use: str) -> None:
        self.alg, self.use = alg, use
        if alg.startswith("ES"):
            curve = {"ES256": ec.SECP256R1(), "ES384": ec.SECP384R1(), "ES512": ec.SECP521R1()}[alg]
            self.private = ec.generate_private_key(curve)
        else:
            self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(jwt.algorithms.get_default_algorithms()[
            "ES256" if alg.startswith("ES") else "RS256"].to_jwk(self.private.public_key()))
        jwk = {k: jwk[k] for k in ("kty", "crv", "x", "y", "n", "e") if k in jwk}
        self.kid = jwk_thumbprint(jwk)
        # Keycloak's generated keys carry a self-signed certificate, CN = the realm name.
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, realm)])
        now = datetime.datetime.now(datetime.timezone.utc)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(self.private.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=1))
                .not_valid_after(now + datetime.timedelta(days=3650))
                .sign(self.private, hashes.SHA256()))
        der = cert.public_bytes(serialization.Encoding.DER)
        self.jwk = {"kid": self.kid, **{"kty": jwk["kty"]}, "alg": alg, "use": use,
                    **{k: v for k, v in jwk.items() if k != "kty"},
                    "x5c": [base64.b64encode(der).decode()],
                    "x5t": b64url(hashlib.sha1(der).digest()),
                    "x5t#S256": b64url(hashlib.sha256(der).digest())}
        record_secret("private_key_pem", self.private.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        self.public_pem = self.private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)

    def sign(self, claims: dict, typ: str = "JWT") -> str:
        alg = "RS256" if self.use == "enc" else self.alg  # a forgery with the enc key: RS256
        return jwt.encode(claims, self.private, algorithm=alg, headers={"kid": self.kid, "typ": typ})


# --- the trust domain's JWT bundle ------------------------------------------------------------

class JwtBundle:
    """The SPIFFE identity provider's keys, from a file instead of a bundle endpoint.

    Keycloak (SpiffeBundleEndpointLoader) keeps the keys with `use: jwt-svid` or no `use`;
    only if there are none it falls back to `use: sig`. A key with `use: x509-svid` never
    verifies a JWT-SVID. The file is re-read whenever its stat changes.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp = None
        self._keys: list[dict] = []
        self._lock = threading.Lock()
        self.last_error = None

    def keys(self) -> list[dict]:
        with self._lock:
            try:
                st = os.stat(self.path)
                stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
                if stamp != self._stamp:
                    doc = json.loads(self.path.read_bytes())
                    jwks = [k for k in doc.get("keys", []) if isinstance(k, dict)]
                    keep = [k for k in jwks if k.get("use") in ("jwt-svid", None)]
                    self._keys = keep or [k for k in jwks if k.get("use") == "sig"]
                    self._stamp, self.last_error = stamp, None
                    log(f"JWT bundle {self.path}: {len(self._keys)} usable key(s) of {len(jwks)}")
            except (OSError, ValueError, AttributeError) as e:
                # A missing or half-written bundle keeps the previous keys (as a cache would).
                self.last_error = f"{type(e).__name__}: {e}"
            return list(self._keys)


# --- clients ----------------------------------------------------------------------------------

class Client:
    """A realm client with federated-jwt authentication (attributes jwt.credential.*)."""

    def __init__(self, d: dict, realm_issuer: str, idp_alias: str, dcr: bool = False) -> None:
        attrs = d.get("attributes") or {}
        self.client_id = d["clientId"]
        self.spiffe_id = d.get("spiffeId") or attrs.get("jwt.credential.sub")
        if not isinstance(self.client_id, str) or not isinstance(self.spiffe_id, str):
            raise ValueError(f"client {d!r}: clientId and spiffeId must be strings")
        self.idp = d.get("idp") or attrs.get("jwt.credential.issuer") or idp_alias
        self.authenticator = d.get("clientAuthenticatorType", FEDERATED_JWT)
        self.enabled = bool(d.get("enabled", True))
        self.service_accounts = bool(d.get("serviceAccountsEnabled", True))
        self.require_dpop = bool(d.get("requireDPoP", attrs.get("dpop.bound.access.tokens") == "true"))
        self.realm_roles = list(d.get("realmRoles", []))
        self.default_scopes = list(d.get("defaultClientScopes", DEFAULT_SCOPES))
        self.optional_scopes = list(d.get("optionalClientScopes", OPTIONAL_SCOPES))
        self.audience = d.get("audience")  # stands for an audience mapper; default "account"
        self.name = d.get("name") or d.get("client_name") or self.client_id
        self.dcr = dcr
        # Keycloak makes random UUIDs; name-based ones keep tokens comparable across runs.
        self.id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{realm_issuer}#client/{self.client_id}"))
        self.service_account_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{realm_issuer}#sa/{self.client_id}"))

    def representation(self) -> dict:
        """Roughly Keycloak's ClientRepresentation, as the DCR SPI returns it."""
        return {"id": self.id, "clientId": self.client_id, "name": self.name, "enabled": self.enabled,
                "clientAuthenticatorType": self.authenticator, "publicClient": False, "bearerOnly": False,
                "serviceAccountsEnabled": self.service_accounts, "standardFlowEnabled": False,
                "directAccessGrantsEnabled": False, "protocol": "openid-connect",
                "attributes": {"jwt.credential.issuer": self.idp, "jwt.credential.sub": self.spiffe_id},
                "defaultClientScopes": self.default_scopes, "optionalClientScopes": self.optional_scopes}


class Clients:
    """CLIENTS.json (re-read on change) plus the clients the DCR SPI registered."""

    def __init__(self, path: Path, issuer: str, idp_alias: str) -> None:
        self.path, self.issuer, self.idp_alias = path, issuer, idp_alias
        self._stamp = None
        self._file: list[Client] = []
        self._dcr: list[Client] = []
        self._lock = threading.Lock()
        self._reload()

    def _reload(self) -> None:
        st = os.stat(self.path)
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if stamp == self._stamp:
            return
        try:
            entries = json.loads(self.path.read_bytes())
            self._file = [Client(d, self.issuer, self.idp_alias) for d in entries]
            self._stamp = stamp
        except (ValueError, KeyError, TypeError) as e:
            if self._stamp is None:
                raise SystemExit(f"keycloak: {self.path}: {e}")
            log(f"{self.path}: reload failed, keeping the old clients: {e}")

    def all(self) -> list[Client]:
        with self._lock:
            try:
                self._reload()
            except OSError:
                pass
            return self._file + self._dcr

    def by_spiffe_id(self, spiffe_id) -> "Client | None":
        """SpiffeClientAssertionStrategy: the client whose jwt.credential.sub is the SVID's sub."""
        return next((c for c in self.all() if c.spiffe_id == spiffe_id), None)

    def register(self, client: Client) -> bool:
        with self._lock:
            if any(c.client_id == client.client_id or c.spiffe_id == client.spiffe_id
                   for c in self._file + self._dcr):
                return False
            self._dcr.append(client)
            return True


# --- server state -----------------------------------------------------------------------------

def record_secret(kind: str, value) -> None:
    """For the e2e run's log grep (tests/e2e/secrets_grep.py): appends `kind<TAB>value` to
    $E2E_SECRETS when set, as tests/e2e/secrets_log.py does for the clients."""
    path = os.environ.get("E2E_SECRETS")
    if not path or not value:
        return
    if isinstance(value, bytes):
        value = value.decode("ascii", "replace")
    with open(path, "a") as f:
        f.write(f"{kind}\t{' '.join(str(value).split())}\n")


def log(msg: str) -> None:
    print(f"keycloak-standin: {msg}", file=sys.stderr, flush=True)


class Realm:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.name = args.realm
        td = args.trust_domain.rstrip("/")
        self.trust_domain = td if td.startswith("spiffe://") else f"spiffe://{td}"
        self.sig_keys = [RealmKey(self.name, args.alg, "sig")]
        self.enc_key = RealmKey(self.name, "RSA-OAEP", "enc")
        bundle = args.jwt_bundle or Path(args.workload_api_dir) / "jwt_bundle.json"
        self.bundle = JwtBundle(Path(bundle))
        self.lock = threading.Lock()
        self.replay: dict[str, float] = {}  # sha1(jti "\n" htu) -> expiry (DPoPReplayCheck)
        self.nonces = [secrets.token_urlsafe(24), None]
        self.nonce_at = time.monotonic()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.pending_failures = 0
            self.failure_status, self.failure_error = 503, "temporarily_unavailable"
            self.stats = {"token_requests": 0, "served": 0, "refused": 0, "injected_failures": 0,
                          "served_dpop": 0, "served_bearer": 0, "served_by_client": {},
                          "refused_by_error": {}, "last_error": None, "last_token": None,
                          "dcr_registered": 0, "dcr_refused": 0}

    def bind(self, base_url: str) -> None:
        """Everything that depends on the URL Keycloak believes it has (Urls.realmIssuer)."""
        self.base_url = base_url.rstrip("/")
        self.issuer = f"{self.base_url}/realms/{self.name}"
        self.token_endpoint = f"{self.issuer}/protocol/openid-connect/token"
        self.jwks_uri = f"{self.issuer}/protocol/openid-connect/certs"
        self.registration_endpoint = f"{self.issuer}/clients-registrations/spiffe-dcr/register"
        self.clients = Clients(Path(self.args.clients), self.issuer, self.args.idp_alias)

    @property
    def active_key(self) -> RealmKey:
        return self.sig_keys[-1]

    # -- nonces (the --nonce mode; not Keycloak) --
    def current_nonces(self) -> list[str]:
        with self.lock:
            if time.monotonic() - self.nonce_at > self.args.nonce_lifetime:
                self.nonces = [secrets.token_urlsafe(24), self.nonces[0]]
                self.nonce_at = time.monotonic()
            return [n for n in self.nonces if n]

    # -- counters --
    def count_refusal(self, e: OAuthError, what: str = "token") -> None:
        with self.lock:
            if what == "token":
                self.stats["refused"] += 1
                by = self.stats["refused_by_error"]
                by[e.error] = by.get(e.error, 0) + 1
            else:
                self.stats["dcr_refused"] += 1
            self.stats["last_error"] = {"endpoint": what, "status": e.status, "error": e.error,
                                        "error_description": e.description, "reason": e.reason,
                                        "at": int(time.time())}


# --- the JWT-SVID checks ----------------------------------------------------------------------

def parse_jws(token) -> tuple[dict, dict]:
    if not isinstance(token, str) or token.count(".") != 2:
        raise ValueError("not a compact JWS")
    h, p, _ = token.split(".")
    header, payload = json.loads(b64url_decode(h)), json.loads(b64url_decode(p))
    if not isinstance(header, dict) or not isinstance(payload, dict):
        raise ValueError("header or payload is not a JSON object")
    return header, payload


def verify_jws_with(token: str, jwk: dict, alg: str) -> bool:
    try:
        key = jwt.PyJWK(jwk, algorithm=alg).key
        jwt.PyJWS().decode(token, key=key, algorithms=[alg])
        return True
    except Exception:  # wrong key type for alg, bad signature, unparsable key: all "no"
        return False


def check_svid(realm: Realm, token, client_id_param=None, *, lookup: bool = True):
    """Keycloak's checks of a JWT-SVID client assertion, in Keycloak's order.

    Returns (claims, client). Raises OAuthError with the status and wording Keycloak uses:
    401 invalid_client "Invalid client or Invalid client credentials" wherever Keycloak
    fails without a challenge (the flow's rescue answers), 400 invalid_client with the
    validator's own description wherever AbstractJWTClientValidator.failure(...) answers.
    """
    # 1. Parse (ClientAssertionState): a malformed assertion ends in the rescue.
    try:
        header, claims = parse_jws(token)
    except (ValueError, UnicodeDecodeError) as e:
        raise generic_client_error(f"client_assertion unparsable: {e}")
    sub = claims.get("sub")
    client = None
    if lookup:
        # 2. SpiffeClientAssertionStrategy: the client by jwt.credential.sub, its IdP by alias;
        #    FederatedJWTClientAuthenticator skips clients of another authenticator type.
        client = realm.clients.by_spiffe_id(sub)
        if client is None:
            raise generic_client_error(f"no client with jwt.credential.sub = {sub!r}")
        if client.idp != realm.args.idp_alias:
            raise generic_client_error(f"client {client.client_id}: jwt.credential.issuer {client.idp!r} "
                                       f"is no SPIFFE identity provider here")
        if client.authenticator != FEDERATED_JWT:
            raise generic_client_error(f"client {client.client_id}: authenticator {client.authenticator}")
    # 3. SpiffeIdentityProvider: sub must start with trustDomain + "/" (else an exception).
    if not isinstance(sub, str) or not sub.startswith(realm.trust_domain + "/"):
        raise generic_client_error(f"sub {sub!r} is not in trust domain {realm.trust_domain}")

    def fail(description: str) -> OAuthError:  # AbstractJWTClientValidator.failure(...)
        return OAuthError(400, "invalid_client", description)

    # 4. validateClient: client_id, if sent, must be the sub; a disabled client -> rescue.
    if client_id_param is not None and client_id_param != sub:
        raise fail("client_id parameter does not match sub claim")
    if client is not None and not client.enabled:
        raise generic_client_error(f"client {client.client_id} is disabled")
    # 5. validateSignatureAlgorithm: present, not none, asymmetric. (An alg Keycloak's Algorithm
    #    enum cannot read already broke the parse in step 1: the rescue.)
    alg = header.get("alg")
    if alg is not None and alg not in KNOWN_ALGS:
        raise generic_client_error(f"alg {alg!r} unreadable")
    if alg not in ASYMMETRIC:
        raise fail("Invalid signature algorithm")
    # 6. validateSignature: the key by kid among the bundle's usable keys. SpiffeIdentityProvider
    #    answers false without a description, so this ends in the rescue.
    kid = header.get("kid")
    candidates = [k for k in realm.bundle.keys() if kid is not None and k.get("kid") == kid]
    if not any(verify_jws_with(token, k, alg) for k in candidates):
        raise generic_client_error(f"signature: no usable bundle key verifies kid {kid!r}"
                                   + (f" ({realm.bundle.last_error})" if realm.bundle.last_error else ""))
    # 7. validateTokenAudience: the realm issuer, and only it.
    aud = claims.get("aud")
    auds = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if realm.issuer not in auds:
        raise fail("Invalid token audience")
    if len(auds) > 1:
        raise fail("Multiple audiences not allowed")
    # 8. validateTokenActive (AbstractBaseJWTValidator), allowedClockSkew, maxExp 300, reuse ok.
    skew, now = realm.args.clock_skew, int(time.time())
    exp, iat, nbf = claims.get("exp"), claims.get("iat"), claims.get("nbf")
    for name, v in (("exp", exp), ("iat", iat), ("nbf", nbf)):
        if v is not None and (not isinstance(v, (int, float)) or isinstance(v, bool)):
            raise generic_client_error(f"{name} is not a number")  # Jackson would not read it
    if exp is None:
        raise fail("Token exp claim is required")
    if (exp != 0 and now > exp + skew) or (nbf is not None and now + skew < nbf):
        raise fail("Token is not active")
    lifespan = exp - now
    if iat is None:
        if lifespan > MAX_ASSERTION_AGE:
            raise fail("Token expiration is too far in the future and iat claim not present in token")
    else:
        if iat - skew > now:
            raise fail("Token was issued in the future")
        if min(lifespan, MAX_ASSERTION_AGE) <= 0:
            raise fail("Token is not active")
        if now > iat + MAX_ASSERTION_AGE:
            raise fail("Token was issued too far in the past to be used now")
    return claims, client


# --- the DPoP proof checks --------------------------------------------------------------------

def same_url(a: str, b: str) -> bool:
    """DPoPUtil: java.net.URI equality after dropping the query (fragments still count)."""
    x, y = urlsplit(a), urlsplit(b)
    if not x.scheme or not x.netloc:
        raise ValueError("not absolute")
    return ((x.scheme.lower(), x.netloc.lower(), x.path or "/", x.fragment)
            == (y.scheme.lower(), y.netloc.lower(), y.path or "/", y.fragment))


def check_dpop(realm: Realm, proof, htu: str, method: str, client) -> "str | None":
    """DPoPUtil.handleDPoPHeader + validateDPoP, in Keycloak's order. Returns cnf.jkt or None."""
    if proof is None and not (client is not None and client.require_dpop):
        return None

    def fail(description: str) -> OAuthError:
        # Keycloak 26 answers invalid_request (older releases: invalid_dpop_proof).
        return OAuthError(400, realm.args.dpop_error_code, description)

    # 1. Present and parsable.
    if proof is None or not proof.strip():
        raise fail("DPoP proof is missing")
    try:
        header, claims = parse_jws(proof.strip())
    except (ValueError, UnicodeDecodeError):
        raise fail("DPoP header verification failure")
    alg = header.get("alg")
    if alg not in KNOWN_ALGS:
        raise fail("DPoP header verification failure")  # JWSHeader cannot map the algorithm
    # 2. typ, 3. an asymmetric alg, 4. a public jwk (and no private part).
    if header.get("typ") != "dpop+jwt":
        raise fail(f"Invalid or missing type in DPoP header: {header.get('typ')}")
    if alg not in ASYMMETRIC:
        raise fail(f"Unsupported DPoP algorithm: {alg}")
    jwk = header.get("jwk")
    if not isinstance(jwk, dict):
        raise fail("No JWK in DPoP header")
    public = {k: v for k, v in jwk.items() if k not in ("d", "p", "q", "dp", "dq", "qi", "oth", "k")}
    try:
        jwt.PyJWK(public, algorithm=alg)
        thumbprint = jwk_thumbprint(public)
    except Exception:
        raise fail("No public key in DPoP header")
    if "d" in jwk:
        raise fail("Private key is present in DPoP header")
    # 5. Signature (TokenVerifier: wrapped as "DPoP verification failure: ...").
    if not verify_jws_with(proof.strip(), public, alg):
        raise fail("DPoP verification failure: Invalid token signature")
    # 6. Mandatory claims, 7. htm/htu, 8. iat window, 9. replay (DPoP*Check, in this order).
    iat, jti, htm, p_htu = claims.get("iat"), claims.get("jti"), claims.get("htm"), claims.get("htu")
    if not (isinstance(iat, (int, float)) and not isinstance(iat, bool)
            and all(isinstance(v, str) and v.strip() for v in (jti, htm, p_htu))):
        raise fail("DPoP mandatory claims are missing")
    try:
        if not same_url(p_htu, htu):
            raise fail("DPoP HTTP URL mismatch")
    except ValueError:
        raise fail("Malformed HTTP URL in DPoP proof")
    if htm != method:
        raise fail("DPoP HTTP method mismatch")
    now = time.time()
    if not (iat <= now + DPOP_SKEW and iat >= now - DPOP_LIFETIME - DPOP_SKEW):
        raise fail("DPoP proof is not active")
    if realm.args.nonce:
        # Not Keycloak: RFC 9449 §8 server nonces, checked before the replay cache so that the
        # refused proof is not burnt (the client retries with a fresh one anyway).
        nonces = realm.current_nonces()
        if claims.get("nonce") not in nonces:
            raise OAuthError(400, "use_dpop_nonce", "Authorization server requires nonce in DPoP proof",
                             headers={"DPoP-Nonce": nonces[0]})
    key = hashlib.sha1(f"{jti}\n{p_htu}".encode()).hexdigest()
    with realm.lock:
        for k in [k for k, t in realm.replay.items() if t < now]:
            del realm.replay[k]
        if key in realm.replay:
            raise fail("DPoP proof has already been used")
        if len(realm.replay) < 100_000:
            realm.replay[key] = iat + DPOP_LIFETIME + DPOP_SKEW
    return thumbprint


# --- the token endpoint -----------------------------------------------------------------------

def first(form: dict, name: str):
    v = form.get(name)
    return v[0] if v else None


def token_request(realm: Realm, form: dict, headers, peer: str) -> tuple[int, dict, dict]:
    """TokenEndpoint.processGrantRequest for client_credentials, step by step."""
    # 1. checkGrantType.
    grant_type = first(form, "grant_type")
    if grant_type is None:
        raise OAuthError(400, "invalid_request", "Missing form parameter: grant_type")
    if grant_type != "client_credentials":
        raise OAuthError(400, "unsupported_grant_type", "Unsupported grant_type",
                         f"grant_type {grant_type!r}: the stand-in serves client_credentials only")
    # 2. checkClient: the client flow; only federated-jwt with jwt-spiffe can identify one here.
    assertion_type, assertion = first(form, "client_assertion_type"), first(form, "client_assertion")
    record_secret("client_assertion", assertion if isinstance(assertion, str) else None)
    record_secret("dpop_proof", headers.get("DPoP"))
    if assertion_type != JWT_SPIFFE or assertion is None:
        raise generic_client_error(f"no jwt-spiffe client assertion (client_assertion_type "
                                   f"{assertion_type!r})")
    _, client = check_svid(realm, assertion, first(form, "client_id"))
    # 3. checkParameterDuplicated.
    if any(len(v) != 1 for v in form.values()):
        raise OAuthError(400, "invalid_request", "duplicated parameter")
    # 4. DPoP (DPoPUtil.handleDPoPHeader): a proof makes the token DPoP-bound.
    jkt = check_dpop(realm, headers.get("DPoP"), realm.token_endpoint, "POST", client)
    # 5. ClientCredentialsGrantType.process: a service account, valid scopes.
    if not client.service_accounts:
        raise OAuthError(401, "unauthorized_client", "Client not enabled to retrieve service account")
    requested = (first(form, "scope") or "").split()
    allowed = {"openid", *client.default_scopes, *client.optional_scopes}
    if any(s not in allowed for s in requested):
        raise OAuthError(400, "invalid_scope", f"Invalid scopes: {first(form, 'scope')}")
    granted = (["openid"] if "openid" in requested else []) + client.default_scopes
    granted += [s for s in dict.fromkeys(requested) if s not in granted]
    # 6. The access token (TokenManager + the service-account and DPoP protocol mappers).
    asked = [v for v in (first(form, "resource"), first(form, "audience")) if v]
    aud = list(dict.fromkeys(asked)) or client.audience or "account"
    if isinstance(aud, list) and len(aud) == 1:
        aud = aud[0]
    auds = aud if isinstance(aud, list) else [aud]
    now = int(time.time())
    lifetime = realm.args.token_lifetime
    claims = {"exp": now + lifetime, "iat": now, "jti": str(uuid.uuid4()), "iss": realm.issuer,
              "aud": aud, "sub": client.service_account_id, "typ": "DPoP" if jkt else "Bearer",
              "azp": client.client_id, "acr": "1",
              "realm_access": {"roles": [f"default-roles-{realm.name.lower()}", *DEFAULT_REALM_ROLES,
                                         *[r for r in client.realm_roles if r not in DEFAULT_REALM_ROLES]]}}
    if "account" in auds:
        claims["resource_access"] = {"account": {"roles": list(ACCOUNT_ROLES)}}
    claims["scope"] = " ".join(granted)
    if jkt:
        claims["cnf"] = {"jkt": jkt}
    claims.update({"clientHost": peer, "email_verified": False,
                   "preferred_username": f"service-account-{client.client_id.lower()}",
                   "clientAddress": peer, "client_id": client.client_id})
    key = realm.active_key
    token = key.sign(claims, "at+jwt" if realm.args.rfc9068_header else "JWT")
    record_secret("access_token", token)
    with realm.lock:
        s = realm.stats
        s["served"] += 1
        s["served_dpop" if jkt else "served_bearer"] += 1
        s["served_by_client"][client.client_id] = s["served_by_client"].get(client.client_id, 0) + 1
        s["last_token"] = {"client_id": client.client_id, "jti": claims["jti"], "iat": now,
                           "exp": claims["exp"], "jkt": jkt, "kid": key.kid, "aud": aud}
    body = {"access_token": token, "expires_in": lifetime, "refresh_expires_in": 0,
            "token_type": "DPoP" if jkt else "Bearer", "not-before-policy": 0, "scope": claims["scope"]}
    return 200, body, {}


# --- the SPIFFE DCR SPI -----------------------------------------------------------------------

def dcr_request(realm: Realm, body: bytes) -> tuple[int, dict, dict]:
    """POST .../clients-registrations/spiffe-dcr/register (a third-party SPI, not upstream)."""
    try:
        req = json.loads(body)
        if not isinstance(req, dict):
            raise ValueError("not an object")
    except ValueError:
        raise OAuthError(400, "invalid_client_metadata", "Unable to read the registration request")
    statement = req.get("software_statement")
    if not isinstance(statement, str) or not statement:
        raise OAuthError(400, "invalid_software_statement", "software_statement is required")
    grant_types = req.get("grant_types", ["client_credentials"])
    if not isinstance(grant_types, list) or any(g != "client_credentials" for g in grant_types):
        raise OAuthError(400, "invalid_client_metadata", "Only the client_credentials grant is supported")
    try:
        claims, _ = check_svid(realm, statement, lookup=False)
    except OAuthError as e:
        raise OAuthError(400, "invalid_software_statement", e.description if e.status == 400 else
                         "Invalid software statement", e.reason)
    if realm.args.dcr_require_client_auth and claims.get("client_auth") not in ("client-spiffe-jwt", FEDERATED_JWT):
        raise OAuthError(400, "invalid_software_statement", "Invalid client_auth claim")
    spiffe_id = claims["sub"]
    scopes = req.get("scope", "")
    entry = {"clientId": spiffe_id, "spiffeId": spiffe_id, "name": req.get("client_name") or spiffe_id,
             "optionalClientScopes": list(OPTIONAL_SCOPES) + (scopes.split() if isinstance(scopes, str) else [])}
    client = Client(entry, realm.issuer, realm.args.idp_alias, dcr=True)
    if not realm.clients.register(client):
        # The SPI's ModelDuplicateException -> ErrorResponse.error("Client already exists", CONFLICT),
        # which Keycloak renders as an ErrorRepresentation.
        raise OAuthError(409, "client_exists", "Client already exists", f"{spiffe_id} already registered",
                         body={"errorMessage": "Client already exists"})
    with realm.lock:
        realm.stats["dcr_registered"] += 1
    location = f"{realm.registration_endpoint}/{quote(spiffe_id, safe='')}"
    return 201, client.representation(), {"Location": location}


# --- HTTP -------------------------------------------------------------------------------------

def discovery(realm: Realm) -> dict:
    oidc = f"{realm.issuer}/protocol/openid-connect"
    algs = list(ASYMMETRIC)
    return {
        "issuer": realm.issuer,
        "authorization_endpoint": f"{oidc}/auth",
        "token_endpoint": realm.token_endpoint,
        "introspection_endpoint": f"{oidc}/token/introspect",
        "userinfo_endpoint": f"{oidc}/userinfo",
        "end_session_endpoint": f"{oidc}/logout",
        "jwks_uri": realm.jwks_uri,
        "revocation_endpoint": f"{oidc}/revoke",
        # Real Keycloak names its own /clients-registrations/openid-connect here; the brief asks
        # for the SPIFFE DCR SPI's endpoint (the only registration this stand-in serves).
        "registration_endpoint": realm.registration_endpoint,
        "grant_types_supported": ["authorization_code", "client_credentials", "implicit", "password",
                                  "refresh_token", "urn:ietf:params:oauth:grant-type:device_code",
                                  "urn:ietf:params:oauth:grant-type:token-exchange",
                                  "urn:openid:params:grant-type:ciba"],
        "response_types_supported": ["code", "none", "id_token", "token", "id_token token", "code id_token",
                                     "code token", "code id_token token"],
        "subject_types_supported": ["public", "pairwise"],
        "id_token_signing_alg_values_supported": algs,
        "token_endpoint_auth_methods_supported": ["private_key_jwt", "client_secret_basic",
                                                  "client_secret_post", "tls_client_auth", "client_secret_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": algs,
        "dpop_signing_alg_values_supported": algs,
        "scopes_supported": ["openid", *DEFAULT_SCOPES, *OPTIONAL_SCOPES, "roles", "web-origins", "acr", "basic"],
        "code_challenge_methods_supported": ["plain", "S256"],
        "tls_client_certificate_bound_access_tokens": True,
        "authorization_response_iss_parameter_supported": True,
    }


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "keycloak-standin"
    realm: Realm = None  # set on the class before serving

    def log_message(self, fmt, *args):  # one concise line per request instead (see _send)
        pass

    def _body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            out = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()
                if len(out) > 1 << 20:
                    raise ValueError("body too large")
        n = int(self.headers.get("Content-Length") or 0)
        if n > 1 << 20:
            raise ValueError("body too large")
        return self.rfile.read(n) if n else b""

    def _send(self, status: int, body, headers=None, note: str = "") -> None:
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("Pragma", "no-cache")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        log(f"{self.command} {self.path.split('?')[0]} -> {status}{f' {note}' if note else ''}")

    def _error(self, e: OAuthError) -> None:
        body = e.body if e.body is not None else {"error": e.error, "error_description": e.description}
        self._send(e.status, body, e.headers, f"{e.error}: {e.reason}")

    def do_GET(self):
        self._dispatch()

    def do_POST(self):
        self._dispatch()

    def do_PUT(self):
        self._dispatch()

    def do_DELETE(self):
        self._dispatch()

    def _dispatch(self) -> None:
        realm = self.realm
        url = urlsplit(self.path)
        path, query = url.path, parse_qs(url.query)
        base = f"/realms/{realm.name}"
        routes = {
            (f"{base}/.well-known/openid-configuration", "GET"): lambda: self._send(200, discovery(realm)),
            (f"{base}/protocol/openid-connect/certs", "GET"): self._certs,
            (f"{base}/protocol/openid-connect/token", "POST"): self._token,
            (f"{base}/clients-registrations/spiffe-dcr/register", "POST"): self._dcr,
            (base, "GET"): self._realm_info,
            ("/_test/fail", "POST"): lambda: self._test_fail(query),
            ("/_test/stats", "GET"): self._test_stats,
            ("/_test/reset", "POST"): self._test_reset,
            ("/_test/rotate-key", "POST"): lambda: self._test_rotate(query),
            ("/_test/mint", "POST"): self._test_mint,
        }
        try:
            handler = routes.get((path, self.command))
            if handler is not None:
                return handler()
            if any(p == path for p, _ in routes):
                return self._send(405, {"error": "HTTP 405 Method Not Allowed"})
            parts = path.split("/")
            if len(parts) >= 3 and parts[1] == "realms" and parts[2] != realm.name:
                return self._send(404, {"error": "Realm does not exist"})
            self._send(404, {"error": "Unable to find matching target resource method"})
        except OAuthError as e:
            self._error(e)
        except (ValueError, ConnectionError) as e:
            self._send(400, {"error": "invalid_request", "error_description": str(e)})

    # -- realm endpoints --
    def _certs(self) -> None:
        realm = self.realm
        self._send(200, {"keys": [k.jwk for k in reversed(realm.sig_keys)] + [realm.enc_key.jwk]})

    def _realm_info(self) -> None:
        realm = self.realm
        self._send(200, {"realm": realm.name,
                         "public_key": base64.b64encode(realm.active_key.public_pem).decode(),
                         "token-service": f"{realm.issuer}/protocol/openid-connect",
                         "account-service": f"{realm.issuer}/account", "tokens-not-before": 0})

    def _token(self) -> None:
        realm = self.realm
        body = self._body()
        with realm.lock:
            realm.stats["token_requests"] += 1
            injected = realm.pending_failures > 0
            if injected:
                realm.pending_failures -= 1
                realm.stats["injected_failures"] += 1
                status, error = realm.failure_status, realm.failure_error
        if injected:
            e = OAuthError(status, error, "injected failure (keycloak stand-in /_test/fail)",
                           "injected by /_test/fail")
            with realm.lock:
                realm.stats["last_error"] = {"endpoint": "token", "status": status, "error": error,
                                             "error_description": e.description, "reason": e.reason,
                                             "at": int(time.time())}
            return self._error(e)
        try:
            ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            if ctype != "application/x-www-form-urlencoded":
                # JAX-RS @Consumes(form): RESTEasy refuses other media types before Keycloak runs.
                raise OAuthError(415, "unsupported_media_type", "Unsupported Media Type",
                                 f"Content-Type {ctype!r}", body={"error": "HTTP 415 Unsupported Media Type"})
            form: dict[str, list[str]] = {}
            for k, v in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True):
                form.setdefault(k, []).append(v)
            status, out, headers = token_request(realm, form, self.headers, self.client_address[0])
        except OAuthError as e:
            if realm.args.nonce and "DPoP-Nonce" not in e.headers:
                e.headers["DPoP-Nonce"] = realm.current_nonces()[0]
            realm.count_refusal(e)
            return self._error(e)
        if realm.args.nonce:
            headers["DPoP-Nonce"] = realm.current_nonces()[0]
        self._send(status, out, headers, f"{out['token_type']} for {realm.stats['last_token']['client_id']}")

    def _dcr(self) -> None:
        realm = self.realm
        try:
            status, out, headers = dcr_request(realm, self._body())
        except OAuthError as e:
            realm.count_refusal(e, "dcr")
            return self._error(e)
        self._send(status, out, headers, f"registered {out['clientId']}")

    # -- test hooks --
    def _test_fail(self, query: dict) -> None:
        realm = self.realm
        count = int(query.get("count", ["1"])[0])
        status = int(query.get("status", ["503"])[0])
        error = query.get("error", ["temporarily_unavailable"])[0]
        with realm.lock:
            realm.pending_failures, realm.failure_status, realm.failure_error = count, status, error
        self._send(200, {"pending_failures": count, "status": status, "error": error})

    def _test_stats(self) -> None:
        realm = self.realm
        with realm.lock:
            out = json.loads(json.dumps(realm.stats))
            out["pending_failures"] = realm.pending_failures
            out["active_kid"] = realm.active_key.kid
        out["clients"] = [{"clientId": c.client_id, "spiffeId": c.spiffe_id, "dcr": c.dcr}
                          for c in realm.clients.all()]
        out["jwt_bundle"] = {"path": str(realm.bundle.path), "usable_kids": [k.get("kid") for k in realm.bundle.keys()],
                             "last_error": realm.bundle.last_error}
        self._send(200, out)

    def _test_reset(self) -> None:
        self.realm.reset()
        self._send(200, {"reset": True})

    def _test_rotate(self, query: dict) -> None:
        realm = self.realm
        key = RealmKey(realm.name, realm.args.alg, "sig")
        with realm.lock:
            realm.sig_keys = ([] if query.get("drop_old", ["0"])[0] in ("1", "true") else realm.sig_keys) + [key]
        self._send(200, {"kid": key.kid, "published": [k.kid for k in realm.sig_keys]})

    def _test_mint(self) -> None:
        realm = self.realm
        req = json.loads(self._body() or b"{}")
        key = realm.enc_key if req.get("key") == "enc" else realm.active_key
        claims = req.get("claims") or {}
        self._send(200, {"token": key.sign(claims), "kid": key.kid, "use": key.use})


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--port", type=int, required=True, help="0: any free port (see INFO.json)")
    ap.add_argument("--realm", required=True)
    ap.add_argument("--trust-domain", required=True, help="e.g. mcp-identity.local or spiffe://mcp-identity.local")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--jwt-bundle", type=Path, help="the trust domain's JWT bundle (JWKS) file")
    src.add_argument("--workload-api-dir", type=Path, help="workload_api.py's DIR: reads DIR/jwt_bundle.json")
    ap.add_argument("--clients", type=Path, required=True)
    ap.add_argument("--out", type=Path, help="INFO.json, written once listening")
    ap.add_argument("--token-lifetime", type=int, default=300, help="access token lifespan (default 300)")
    ap.add_argument("--alg", default="RS256", choices=("RS256", "PS256", "ES256"), help="realm signing key")
    ap.add_argument("--hostname", help="the URL Keycloak believes it has (default http://127.0.0.1:PORT)")
    ap.add_argument("--idp-alias", default="spiffe", help="the SPIFFE identity provider's alias")
    ap.add_argument("--clock-skew", type=int, default=0, help="the IdP's allowedClockSkew (default 0)")
    ap.add_argument("--dpop-error-code", default="invalid_request", choices=("invalid_request", "invalid_dpop_proof"),
                    help="error for a bad proof: Keycloak 26 says invalid_request, <= 25 invalid_dpop_proof")
    ap.add_argument("--rfc9068-header", action="store_true", help="access token header typ at+jwt")
    ap.add_argument("--dcr-require-client-auth", action="store_true",
                    help="DCR: require the client_auth claim a SPIRE CredentialComposer adds")
    ap.add_argument("--nonce", action="store_true",
                    help="NOT Keycloak (it never sends DPoP-Nonce): demand a server nonce in DPoP proofs")
    ap.add_argument("--nonce-lifetime", type=int, default=60)
    args = ap.parse_args()
    if not args.clients.exists():
        ap.error(f"--clients {args.clients}: no such file")

    realm = Realm(args)
    Handler.realm = realm
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    port = server.server_address[1]
    realm.bind(args.hostname or f"http://127.0.0.1:{port}")
    if args.nonce:
        log("--nonce: demanding DPoP nonces at the token endpoint. Keycloak itself never does this.")

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    serving.start()
    if args.out:
        info = {"issuer": realm.issuer, "token_endpoint": realm.token_endpoint, "jwks_uri": realm.jwks_uri,
                "registration_endpoint": realm.registration_endpoint,
                "discovery": f"{realm.issuer}/.well-known/openid-configuration", "port": port,
                "realm": realm.name, "trust_domain": realm.trust_domain, "pid": os.getpid(),
                "listen": f"http://127.0.0.1:{port}"}
        tmp = args.out.with_name(f".{args.out.name}.tmp{os.getpid()}")
        tmp.write_text(json.dumps(info, indent=2) + "\n")
        os.replace(tmp, args.out)
    log(f"listening on 127.0.0.1:{port}, issuer {realm.issuer}, trust domain {realm.trust_domain}, "
        f"bundle {realm.bundle.path}, {len(realm.clients.all())} client(s)")
    while not stop.wait(0.5):
        pass
    log("stopping")
    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
