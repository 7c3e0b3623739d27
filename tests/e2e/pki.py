#!/usr/bin/env python3
"""A test SPIFFE PKI for the e2e suite, made with `cryptography` (EC P-256 everywhere).

Usage:
  pki.py OUTDIR
      Writes (PEM; keys PKCS#8 PEM):
        td/mcp-identity.local/ca.pem, ca.key     root CA of trust domain mcp-identity.local
        td/mcp-identity.local/ca2.pem, ca2.key   a second root of the same trust domain (rotation)
        td/evil.example/ca.pem, ca.key           root CA of a foreign trust domain
        bundle-mcp-identity.local.pem            X.509 bundle = ca.pem
        bundle-mcp-identity.local-rotated.pem    X.509 bundle after rotation = ca.pem + ca2.pem
        bundle-evil.example.pem                  X.509 bundle of evil.example
        svid-NAME.pem, svid-NAME.key             X.509-SVIDs (leaf only; the CA is the issuer):
          mcp-pep               spiffe://mcp-identity.local/ns/mcp-tools/sa/mcp-pep      (ca)
          mcp-pep-rotated       spiffe://mcp-identity.local/ns/mcp-tools/sa/mcp-pep      (ca2)
          trusted-agent         spiffe://mcp-identity.local/ns/mcp-agents/sa/trusted-agent
          semi-trusted-agent    spiffe://mcp-identity.local/ns/mcp-agents/sa/semi-trusted-agent
          untrusted-agent       spiffe://mcp-identity.local/ns/mcp-agents/sa/untrusted-agent
          trusted-agent-ca2     spiffe://mcp-identity.local/ns/mcp-agents/sa/trusted-agent (ca2:
                                trusted only once the bundle holds ca2)
          evil-agent            spiffe://evil.example/ns/mcp-agents/sa/trusted-agent   (evil CA)
        jwt-signing.key, jwt-signing.kid         the ES256 key that signs JWT-SVIDs, and its kid
        jwt-bundle-mcp-identity.local.json       SPIFFE bundle (JWKS) with that key, use jwt-svid
  pki.py mint-jwt-svid OUTDIR SPIFFE_ID AUDIENCE [--ttl SECONDS]
      Prints a JWT-SVID (ES256, typ JWT, kid; sub, aud, exp = now + 300, iat) signed with
      OUTDIR/jwt-signing.key.
  pki.py workload-dir OUTDIR WLDIR SVID [BUNDLE]
      Fills (or refreshes) a workload_api.py material directory: WLDIR/svid.pem, svid.key from
      OUTDIR/svid-SVID.*, bundle.pem from OUTDIR/BUNDLE (default bundle-mcp-identity.local.pem),
      jwt_bundle.json, jwt.key, jwt.kid; each file replaced atomically, then `generation` bumped
      last, so a running workload_api.py pushes the new material on its streams.

X.509-SVID leaves: basicConstraints CA:false (critical), keyUsage digitalSignature +
keyAgreement (critical), extendedKeyUsage serverAuth + clientAuth, exactly one URI SAN (the
SPIFFE ID) and no other name, validity 1 h, random serial. CAs: CA:true (critical), keyUsage
keyCertSign + cRLSign (critical), URI SAN = the trust domain's SPIFFE ID, validity 1 day.
"""

import argparse
import base64
import datetime
import hashlib
import json
import os
import sys
import time
from pathlib import Path

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

TD = "mcp-identity.local"
EVIL_TD = "evil.example"
SIDECAR_ID = f"spiffe://{TD}/ns/mcp-tools/sa/mcp-pep"
AGENTS = ("trusted-agent", "semi-trusted-agent", "untrusted-agent")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Atomically replace PATH (temp file in the same directory, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def _builder(subject: x509.Name, issuer: x509.Name, pub, lifetime: datetime.timedelta) -> x509.CertificateBuilder:
    now = datetime.datetime.now(datetime.timezone.utc)
    # Back-date a minute against clock skew; the window stays `lifetime` long.
    start = now - datetime.timedelta(minutes=1)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer).public_key(pub)
            .serial_number(x509.random_serial_number())
            .not_valid_before(start).not_valid_after(start + lifetime)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False))


def make_ca(td: str, label: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = new_key()
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mcp-pep e2e"),
                      x509.NameAttribute(NameOID.COMMON_NAME, f"{td} {label}")])
    cert = (_builder(name, name, key.public_key(), datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=False, key_cert_sign=True, crl_sign=True,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(f"spiffe://{td}")]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    return cert, key


def make_svid(spiffe_id: str, ca: x509.Certificate, ca_key) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = new_key()
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "mcp-pep e2e")])
    cert = (_builder(subject, ca.subject, key.public_key(), datetime.timedelta(hours=1))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                         key_encipherment=False, data_encipherment=False,
                                         key_agreement=True, key_cert_sign=False, crl_sign=False,
                                         encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                  ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(spiffe_id)]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    return cert, key


def public_jwk(key: ec.EllipticCurvePrivateKey) -> dict:
    nums = key.public_key().public_numbers()
    return {"kty": "EC", "crv": "P-256",
            "x": b64url(nums.x.to_bytes(32, "big")), "y": b64url(nums.y.to_bytes(32, "big"))}


def jwk_thumbprint(jwk: dict) -> str:
    """RFC 7638: the required members in lexicographic order, no whitespace."""
    canonical = json.dumps({k: jwk[k] for k in ("crv", "kty", "x", "y")}, separators=(",", ":"))
    return b64url(hashlib.sha256(canonical.encode()).digest())


def generate(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    cas = {}
    for td, label, stem in ((TD, "CA 1", "ca"), (TD, "CA 2", "ca2"), (EVIL_TD, "CA", "ca")):
        cert, key = make_ca(td, label)
        write(out / "td" / td / f"{stem}.pem", cert_pem(cert))
        write(out / "td" / td / f"{stem}.key", key_pem(key), 0o600)
        cas[(td, stem)] = (cert, key)
    ca, ca2, evil = cas[(TD, "ca")], cas[(TD, "ca2")], cas[(EVIL_TD, "ca")]
    write(out / f"bundle-{TD}.pem", cert_pem(ca[0]))
    write(out / f"bundle-{TD}-rotated.pem", cert_pem(ca[0]) + cert_pem(ca2[0]))
    write(out / f"bundle-{EVIL_TD}.pem", cert_pem(evil[0]))

    svids = [("mcp-pep", SIDECAR_ID, ca), ("mcp-pep-rotated", SIDECAR_ID, ca2)]
    svids += [(a, f"spiffe://{TD}/ns/mcp-agents/sa/{a}", ca) for a in AGENTS]
    svids += [("trusted-agent-ca2", f"spiffe://{TD}/ns/mcp-agents/sa/trusted-agent", ca2)]
    svids += [("evil-agent", f"spiffe://{EVIL_TD}/ns/mcp-agents/sa/trusted-agent", evil)]
    for name, spiffe_id, (ca_cert, ca_key) in svids:
        cert, key = make_svid(spiffe_id, ca_cert, ca_key)
        write(out / f"svid-{name}.pem", cert_pem(cert))
        write(out / f"svid-{name}.key", key_pem(key), 0o600)

    jwt_key = new_key()
    jwk = public_jwk(jwt_key)
    kid = jwk_thumbprint(jwk)
    write(out / "jwt-signing.key", key_pem(jwt_key), 0o600)
    write(out / "jwt-signing.kid", kid.encode() + b"\n")
    bundle = {"keys": [{**jwk, "kid": kid, "use": "jwt-svid"}], "spiffe_sequence": 1}
    write(out / f"jwt-bundle-{TD}.json", json.dumps(bundle, indent=2).encode() + b"\n")
    print(f"pki: trust domains {TD} (ca, ca2) and {EVIL_TD}, {len(svids)} X.509-SVIDs, "
          f"JWT key {kid} in {out}")


def mint_jwt_svid(out: Path, spiffe_id: str, audience: str, ttl: int = 300) -> str:
    key = serialization.load_pem_private_key((out / "jwt-signing.key").read_bytes(), None)
    kid = (out / "jwt-signing.kid").read_text().strip()
    now = int(time.time())
    return jwt.encode({"sub": spiffe_id, "aud": [audience], "exp": now + ttl, "iat": now},
                      key, algorithm="ES256", headers={"typ": "JWT", "kid": kid})


def workload_dir(out: Path, wl: Path, svid: str, bundle: str) -> None:
    write(wl / "svid.pem", (out / f"svid-{svid}.pem").read_bytes())
    write(wl / "svid.key", (out / f"svid-{svid}.key").read_bytes(), 0o600)
    write(wl / "bundle.pem", (out / bundle).read_bytes())
    write(wl / "jwt_bundle.json", (out / f"jwt-bundle-{TD}.json").read_bytes())
    write(wl / "jwt.key", (out / "jwt-signing.key").read_bytes(), 0o600)
    write(wl / "jwt.kid", (out / "jwt-signing.kid").read_bytes())
    # Last, and always a new value: the server reloads when the content changes.
    write(wl / "generation", f"{time.time_ns()}\n".encode())


def main() -> int:
    argv = sys.argv[1:]
    if argv and argv[0] == "mint-jwt-svid":
        ap = argparse.ArgumentParser(prog="pki.py mint-jwt-svid")
        ap.add_argument("outdir", type=Path)
        ap.add_argument("spiffe_id")
        ap.add_argument("audience")
        ap.add_argument("--ttl", type=int, default=300)
        a = ap.parse_args(argv[1:])
        print(mint_jwt_svid(a.outdir, a.spiffe_id, a.audience, a.ttl))
    elif argv and argv[0] == "workload-dir":
        ap = argparse.ArgumentParser(prog="pki.py workload-dir")
        ap.add_argument("outdir", type=Path)
        ap.add_argument("wldir", type=Path)
        ap.add_argument("svid", help="NAME of OUTDIR/svid-NAME.pem, e.g. mcp-pep")
        ap.add_argument("bundle", nargs="?", default=f"bundle-{TD}.pem")
        a = ap.parse_args(argv[1:])
        workload_dir(a.outdir, a.wldir, a.svid, a.bundle)
    else:
        ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
        ap.add_argument("outdir", type=Path)
        generate(ap.parse_args(argv).outdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
