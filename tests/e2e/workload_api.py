#!/usr/bin/env python3
"""A SPIFFE Workload API server for tests, on the gRPC stubs the `spiffe` package ships.

Usage: workload_api.py --socket PATH --dir DIR

Serves SpiffeWorkloadAPI (FetchX509SVID, FetchX509Bundles and FetchJWTBundles streaming;
FetchJWTSVID, ValidateJWTSVID unary) on the unix socket PATH, to whoever connects: there is
no workload attestation. As SPIRE does, every call must carry the gRPC metadata
`workload.spiffe.io: true`, or it is refused with INVALID_ARGUMENT.

Material, read from DIR:
  svid.pem          the X.509-SVID: leaf, then intermediates (PEM)
  svid.key          its private key (PKCS#8 PEM)
  bundle.pem        the X.509 bundle (CA certificates) of the SVID's trust domain
  trust_domain      optional: that trust domain's name (default: from the SVID's SPIFFE ID)
  federated/TD.pem  optional: X.509 bundles of federated trust domains
  jwt_bundle.json   optional: the trust domain's JWT bundle (JWKS)
  jwt.key, jwt.kid  optional: the ES256 key (PKCS#8 PEM) and kid that sign JWT-SVIDs
  generation        rotation trigger: polled every 100 ms; when its content changes, DIR
                    is read again and every open stream receives the new material.
Without svid.pem the workload has no identity: X.509-SVID and JWT-SVID calls answer
PERMISSION_DENIED (as the spec says), bundle calls still answer.
`pki.py workload-dir` fills DIR. SIGTERM/SIGINT: stop, end the streams, remove the socket.
"""

import argparse
import logging
import os
import signal
import threading
import time
from concurrent import futures
from pathlib import Path

import grpc
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from google.protobuf import struct_pb2
from spiffe._proto import workload_pb2, workload_pb2_grpc

import secrets_log

log = logging.getLogger("workload-api")
HEADER = "workload.spiffe.io"


def der_chain(pem: bytes) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.DER) for c in x509.load_pem_x509_certificates(pem))


def spiffe_id_of(pem: bytes) -> str:
    leaf = x509.load_pem_x509_certificates(pem)[0]
    uris = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.UniformResourceIdentifier)
    if len(uris) != 1 or not uris[0].startswith("spiffe://"):
        raise ValueError(f"svid.pem: want exactly one spiffe:// URI SAN, got {uris}")
    return uris[0]


class Material:
    """One consistent snapshot of DIR."""

    def __init__(self, d: Path) -> None:
        def opt(name: str) -> bytes | None:
            p = d / name
            return p.read_bytes() if p.exists() else None

        svid_pem = opt("svid.pem")
        self.svid, self.spiffe_id = None, None
        if svid_pem is not None:
            key = serialization.load_pem_private_key((d / "svid.key").read_bytes(), None)
            self.spiffe_id = spiffe_id_of(svid_pem)
            self.svid = (der_chain(svid_pem), key.private_bytes(
                serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        td = (opt("trust_domain") or b"").decode().strip()
        if not td and not self.spiffe_id:
            raise ValueError("no svid.pem and no trust_domain: the trust domain is unknown")
        self.td = td or self.spiffe_id.split("/")[2]
        self.bundle = der_chain((d / "bundle.pem").read_bytes())
        fed = d / "federated"
        self.federated = {f"spiffe://{p.stem}": der_chain(p.read_bytes())
                          for p in sorted(fed.glob("*.pem"))} if fed.is_dir() else {}
        self.jwt_bundle = opt("jwt_bundle.json")
        key_pem, kid = opt("jwt.key"), opt("jwt.kid")
        self.jwt_key = serialization.load_pem_private_key(key_pem, None) if key_pem else None
        self.jwt_kid = kid.decode().strip() if kid else None

    def x509_bundles(self) -> dict[str, bytes]:
        # Keys are trust domain IDs (spiffe://TD), as SPIRE sends them.
        return {f"spiffe://{self.td}": self.bundle, **self.federated}


class State:
    """The current material and a version, bumped (with a notify) on every reload."""

    def __init__(self, d: Path) -> None:
        self.dir = d
        self.cond = threading.Condition()
        self.stopping = False
        self.version = 0
        self.generation = self._read_generation()
        self.material = Material(d)

    def _read_generation(self) -> str:
        try:
            return (self.dir / "generation").read_text()
        except FileNotFoundError:
            return ""

    def poll(self, stop: threading.Event) -> None:
        while not stop.wait(0.1):
            gen = self._read_generation()
            if gen == self.generation:
                continue
            try:
                material = Material(self.dir)
            except Exception as e:  # half-written material: try again on the next poll
                log.warning("generation %r: reload failed, keeping the old material: %s", gen.strip(), e)
                continue
            with self.cond:
                self.generation, self.material = gen, material
                self.version += 1
                self.cond.notify_all()
            log.info("generation %r: material reloaded (version %d, %s)", gen.strip(), self.version,
                     material.spiffe_id if material.svid else "no SVID")

    def stop(self) -> None:
        with self.cond:
            self.stopping = True
            self.cond.notify_all()

    def watch(self, context):
        """Yield the material now and after every reload until the RPC or the server ends."""
        context.add_callback(lambda: self._wake())
        seen = -1
        while True:
            with self.cond:
                while self.version == seen and not self.stopping and context.is_active():
                    self.cond.wait(1.0)
                if self.stopping or not context.is_active():
                    return
                seen, material = self.version, self.material
            yield material

    def _wake(self) -> None:
        with self.cond:
            self.cond.notify_all()


class WorkloadAPI(workload_pb2_grpc.SpiffeWorkloadAPIServicer):
    def __init__(self, state: State) -> None:
        self.state = state

    @staticmethod
    def _admit(context, method: str) -> None:
        md = dict(context.invocation_metadata())
        log.info("%s from %s", method, context.peer())
        if md.get(HEADER) != "true":
            log.info("%s refused: no %s: true metadata", method, HEADER)
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "security header missing from request")

    @staticmethod
    def _identity(m: Material, context) -> None:
        if m.svid is None:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, "no identity issued")

    def FetchX509SVID(self, request, context):
        self._admit(context, "FetchX509SVID")
        for m in self.state.watch(context):
            self._identity(m, context)
            chain, key = m.svid
            yield workload_pb2.X509SVIDResponse(
                svids=[workload_pb2.X509SVID(spiffe_id=m.spiffe_id, x509_svid=chain, x509_svid_key=key,
                                             bundle=m.bundle)],
                federated_bundles=m.federated)

    def FetchX509Bundles(self, request, context):
        self._admit(context, "FetchX509Bundles")
        for m in self.state.watch(context):
            yield workload_pb2.X509BundlesResponse(bundles=m.x509_bundles())

    def FetchJWTBundles(self, request, context):
        self._admit(context, "FetchJWTBundles")
        for m in self.state.watch(context):
            if m.jwt_bundle is None:
                context.abort(grpc.StatusCode.UNAVAILABLE, "no JWT bundle in the material directory")
            yield workload_pb2.JWTBundlesResponse(bundles={f"spiffe://{m.td}": m.jwt_bundle})

    def FetchJWTSVID(self, request, context):
        self._admit(context, "FetchJWTSVID")
        m = self.state.material
        self._identity(m, context)
        if not request.audience:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "audience must be specified")
        if request.spiffe_id and request.spiffe_id != m.spiffe_id:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, f"no identity issued for {request.spiffe_id}")
        if m.jwt_key is None:
            context.abort(grpc.StatusCode.UNAVAILABLE, "no JWT signing key in the material directory")
        now = int(time.time())
        token = jwt.encode({"sub": m.spiffe_id, "aud": list(request.audience), "exp": now + 300, "iat": now},
                           m.jwt_key, algorithm="ES256", headers={"typ": "JWT", "kid": m.jwt_kid})
        secrets_log.record("jwt_svid", token)
        return workload_pb2.JWTSVIDResponse(svids=[workload_pb2.JWTSVID(spiffe_id=m.spiffe_id, svid=token)])

    def ValidateJWTSVID(self, request, context):
        self._admit(context, "ValidateJWTSVID")
        m = self.state.material
        if not request.audience or not request.svid:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "audience and svid must be specified")
        try:
            if m.jwt_bundle is None:
                raise ValueError("no JWT bundle")
            kid = jwt.get_unverified_header(request.svid).get("kid")
            keys = {k.key_id: k for k in jwt.PyJWKSet.from_json(m.jwt_bundle.decode()).keys}
            if kid not in keys:
                raise ValueError(f"no key {kid!r} in the JWT bundle of {m.td}")
            claims = jwt.decode(request.svid, keys[kid].key, algorithms=["ES256", "ES384", "RS256", "PS256"],
                                audience=request.audience, options={"require": ["sub", "aud", "exp"]})
            if not claims["sub"].startswith(f"spiffe://{m.td}/"):
                raise ValueError(f"sub {claims['sub']!r} is not in trust domain {m.td}")
        except Exception as e:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"invalid JWT-SVID: {e}")
        s = struct_pb2.Struct()
        s.update(claims)
        return workload_pb2.ValidateJWTSVIDResponse(spiffe_id=claims["sub"], claims=s)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--socket", required=True, help="unix socket path (a unix:// prefix is accepted)")
    ap.add_argument("--dir", required=True, type=Path)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s workload-api %(levelname)s %(message)s")
    sock = args.socket.removeprefix("unix://").removeprefix("unix:")
    state = State(args.dir)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    if os.path.exists(sock):
        os.unlink(sock)
    # One thread per open stream: room for many (mcp-pep keeps two or three open).
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=64))
    workload_pb2_grpc.add_SpiffeWorkloadAPIServicer_to_server(WorkloadAPI(state), server)
    server.add_insecure_port(f"unix:{sock}")
    server.start()
    poller = threading.Thread(target=state.poll, args=(stop,), daemon=True)
    poller.start()
    m = state.material
    log.info("listening on unix:%s, %s, trust domain %s", sock, m.spiffe_id if m.svid else "no SVID", m.td)
    while not stop.wait(0.5):
        pass
    log.info("stopping")
    state.stop()  # end the streams first, then the server
    server.stop(grace=2).wait()
    poller.join()
    try:
        os.unlink(sock)
    except FileNotFoundError:
        pass
    log.info("stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
