#!/usr/bin/env python3
"""Checks workload_api.py against the SPIFFE Workload API client of the `spiffe` package.

Usage: .venv/bin/python workload_api_selftest.py

Makes a test PKI (pki.py) in a temp dir, starts workload_api.py there on a unix socket with
the sidecar's SVID, and checks with the `spiffe` client (WorkloadApiClient, X509Source):
the X.509-SVID (SPIFFE ID, certificate, key), the X.509 and JWT bundles, a JWT-SVID fetched,
validated locally and by ValidateJWTSVID; rotation (new files, `generation` bumped) reaches
the open FetchX509SVID and FetchJWTBundles streams and the X509Source; calls without the
`workload.spiffe.io` metadata are refused INVALID_ARGUMENT (raw grpc); without an SVID the
X.509 calls answer PERMISSION_DENIED; SIGTERM stops the server and removes its socket.
Ends with "workload-api selftest: N passed, M failed"; exits 1 on any failure.
"""

import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from spiffe import JwtSvid, TrustDomain, WorkloadApiClient, X509Source
from spiffe._proto import workload_pb2, workload_pb2_grpc

HERE = Path(__file__).resolve().parent
TD = "mcp-identity.local"
SIDECAR = f"spiffe://{TD}/ns/mcp-tools/sa/mcp-pep"
AGENT = f"spiffe://{TD}/ns/mcp-agents/sa/trusted-agent"
MD = (("workload.spiffe.io", "true"),)

passed = failed = 0


def check(name: str, fn) -> None:
    global passed, failed
    try:
        detail = fn()
    except Exception as e:
        failed += 1
        print(f"--- {name}: FAIL: {type(e).__name__}: {e}", flush=True)
        traceback.print_exc(limit=3)
    else:
        passed += 1
        print(f"--- {name}: PASS{f' ({detail})' if detail else ''}", flush=True)


def expect(cond: bool, msg: str) -> None:
    if not cond:
        raise AssertionError(msg)


def wait_for(cond, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def serial_of(pem_file: Path) -> int:
    return x509.load_pem_x509_certificate(pem_file.read_bytes()).serial_number


def pki(*args: str) -> str:
    return subprocess.run([sys.executable, str(HERE / "pki.py"), *args], check=True,
                          capture_output=True, text=True).stdout.strip()


def raw_code(stub_call, request, streaming: bool, metadata=None):
    """The status code of one raw gRPC call (OK when it answers)."""
    try:
        resp = stub_call(request, metadata=metadata, timeout=5)
        if streaming:
            next(resp)
            resp.cancel()
        return grpc.StatusCode.OK
    except grpc.RpcError as e:
        return e.code()


def main() -> int:
    # A short path: unix socket paths are limited to 107 bytes.
    tmp = Path(tempfile.mkdtemp(prefix="wlapi.", dir="/tmp"))
    pkidir, wl, sock = tmp / "pki", tmp / "wl", tmp / "agent.sock"
    log = open(tmp / "workload_api.log", "w")
    server = None
    try:
        pki(str(pkidir))
        pki("workload-dir", str(pkidir), str(wl), "mcp-pep")
        server = subprocess.Popen([sys.executable, str(HERE / "workload_api.py"), "--socket", str(sock),
                                   "--dir", str(wl)], stdout=log, stderr=subprocess.STDOUT)
        wait_for(sock.exists, 10, "the socket")
        run_checks(pkidir, wl, sock, server)
    finally:
        if server is not None and server.poll() is None:
            server.kill()
            server.wait()
        log.close()
        if failed:
            print("workload_api.py log:\n" + (tmp / "workload_api.log").read_text(), file=sys.stderr)
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"workload-api selftest: {passed} passed, {failed} failed")
    return 1 if failed else 0


def run_checks(pkidir: Path, wl: Path, sock: Path, server: subprocess.Popen) -> None:
    td = TrustDomain(TD)
    client = WorkloadApiClient(socket_path=f"unix://{sock}", default_timeout=5)
    ca = x509.load_pem_x509_certificate((pkidir / "td" / TD / "ca.pem").read_bytes())
    ca2 = x509.load_pem_x509_certificate((pkidir / "td" / TD / "ca2.pem").read_bytes())
    kid = (pkidir / "jwt-signing.kid").read_text().strip()

    def x509_svid():
        svid = client.fetch_x509_svid()
        expect(str(svid.spiffe_id) == SIDECAR, f"spiffe id {svid.spiffe_id}")
        expect(svid.leaf.serial_number == serial_of(pkidir / "svid-mcp-pep.pem"), "not svid-mcp-pep.pem")
        want = serialization.load_pem_private_key((pkidir / "svid-mcp-pep.key").read_bytes(), None)
        expect(svid.private_key.private_numbers() == want.private_numbers(), "another private key")
        expect(len(svid.cert_chain) == 1, f"chain of {len(svid.cert_chain)}")
        return str(svid.spiffe_id)
    check("fetch-x509-svid", x509_svid)

    def x509_context():
        ctx = client.fetch_x509_context()
        b = ctx.x509_bundle_set.get_bundle_for_trust_domain(td)
        expect(b is not None and b.x509_authorities == {ca}, "the SVID's bundle is not {ca}")
        return f"{len(ctx.x509_svids)} SVID"
    check("fetch-x509-context", x509_context)

    def x509_bundles():
        bs = client.fetch_x509_bundles()
        b = bs.get_bundle_for_trust_domain(td)
        expect(b is not None and b.x509_authorities == {ca}, "bundle of mcp-identity.local is not {ca}")
        return ", ".join(sorted(str(b.trust_domain) for b in bs.bundles))
    check("fetch-x509-bundles", x509_bundles)

    def jwt_bundles():
        b = client.fetch_jwt_bundles().get_bundle_for_trust_domain(td)
        expect(b is not None and set(b.jwt_authorities) == {kid}, f"JWT authorities {b and list(b.jwt_authorities)}")
        return f"kid {kid}"
    check("fetch-jwt-bundles", jwt_bundles)

    def jwt_svid():
        svid = client.fetch_jwt_svid(audience={"http://127.0.0.1/mcp"})
        expect(str(svid.spiffe_id) == SIDECAR, f"sub {svid.spiffe_id}")
        bundle = client.fetch_jwt_bundles().get_bundle_for_trust_domain(td)
        ok = JwtSvid.parse_and_validate(svid.token, bundle, {"http://127.0.0.1/mcp"})
        expect(str(ok.spiffe_id) == SIDECAR, "validated sub")
        client.validate_jwt_svid(svid.token, "http://127.0.0.1/mcp")
        return "fetched, validated locally and by ValidateJWTSVID"
    check("fetch-and-validate-jwt-svid", jwt_svid)

    def minted_jwt_svid():
        token = pki("mint-jwt-svid", str(pkidir), AGENT, "aud-x")
        expect(str(client.validate_jwt_svid(token, "aud-x").spiffe_id) == AGENT, "sub")
        try:
            client.validate_jwt_svid(token, "aud-other")
        except Exception as e:
            return f"wrong audience refused: {type(e).__name__}"
        raise AssertionError("a JWT-SVID for another audience was accepted")
    check("pki-minted-jwt-svid-validates", minted_jwt_svid)

    # Raw gRPC: the metadata header is mandatory on every method.
    channel = grpc.insecure_channel(f"unix:{sock}")
    stub = workload_pb2_grpc.SpiffeWorkloadAPIStub(channel)
    calls = [("FetchX509SVID", stub.FetchX509SVID, workload_pb2.X509SVIDRequest(), True),
             ("FetchX509Bundles", stub.FetchX509Bundles, workload_pb2.X509BundlesRequest(), True),
             ("FetchJWTBundles", stub.FetchJWTBundles, workload_pb2.JWTBundlesRequest(), True),
             ("FetchJWTSVID", stub.FetchJWTSVID, workload_pb2.JWTSVIDRequest(audience=["a"]), False)]

    def no_header_refused():
        for name, call, req, streaming in calls:
            code = raw_code(call, req, streaming)
            expect(code == grpc.StatusCode.INVALID_ARGUMENT, f"{name} without metadata: {code}")
            code = raw_code(call, req, streaming, (("workload.spiffe.io", "false"),))
            expect(code == grpc.StatusCode.INVALID_ARGUMENT, f"{name} with header false: {code}")
        # A valid JWT-SVID, so the refusal is the header's (a bad token is INVALID_ARGUMENT too).
        req = workload_pb2.ValidateJWTSVIDRequest(audience="a", svid=pki("mint-jwt-svid", str(pkidir), AGENT, "a"))
        code = raw_code(stub.ValidateJWTSVID, req, False)
        expect(code == grpc.StatusCode.INVALID_ARGUMENT, f"ValidateJWTSVID without metadata: {code}")
        code = raw_code(stub.ValidateJWTSVID, req, False, MD)
        expect(code == grpc.StatusCode.OK, f"ValidateJWTSVID with metadata: {code}")
        return f"{len(calls) + 1} methods refused INVALID_ARGUMENT"
    check("no-metadata-header-refused", no_header_refused)

    def with_header_raw():
        for name, call, req, streaming in calls:
            code = raw_code(call, req, streaming, MD)
            expect(code == grpc.StatusCode.OK, f"{name} with metadata: {code}")
        resp = next(stub.FetchX509SVID(workload_pb2.X509SVIDRequest(), metadata=MD, timeout=5))
        svid = resp.svids[0]
        expect(svid.spiffe_id == SIDECAR and svid.bundle and svid.x509_svid and svid.x509_svid_key, "fields")
        bundles = next(stub.FetchX509Bundles(workload_pb2.X509BundlesRequest(), metadata=MD, timeout=5)).bundles
        expect(list(bundles) == [f"spiffe://{TD}"], f"bundle keys {list(bundles)}")
        return f"bundle keys {list(bundles)}"
    check("raw-calls-with-metadata", with_header_raw)

    # Streams opened before the rotation.
    contexts, jwt_updates, errors = [], [], []
    x509_stream = client.stream_x509_contexts(contexts.append, errors.append)
    jwt_stream = client.stream_jwt_bundles(jwt_updates.append, errors.append)
    source = X509Source(socket_path=f"unix://{sock}", timeout_in_seconds=5)
    updates = threading.Event()
    source.subscribe_for_updates(updates.set)

    def streams_open():
        wait_for(lambda: contexts and jwt_updates, 5, "the first stream updates")
        expect(source.get_x509_context().default_svid.leaf.serial_number == serial_of(pkidir / "svid-mcp-pep.pem"),
               "X509Source: not svid-mcp-pep.pem")
        return f"{len(contexts)} X.509 context, {len(jwt_updates)} JWT bundle update(s)"
    check("streams-first-update", streams_open)

    rotated_serial = serial_of(pkidir / "svid-mcp-pep-rotated.pem")
    n_ctx, n_jwt = len(contexts), len(jwt_updates)
    t0 = time.monotonic()
    pki("workload-dir", str(pkidir), str(wl), "mcp-pep-rotated", f"bundle-{TD}-rotated.pem")

    def rotation_pushed():
        wait_for(lambda: len(contexts) > n_ctx, 5, "a new X.509 context on the open stream")
        new = contexts[-1]
        expect(new.default_svid.leaf.serial_number == rotated_serial, "stream: not the rotated SVID")
        expect(str(new.default_svid.spiffe_id) == SIDECAR, "stream: SPIFFE ID changed")
        b = new.x509_bundle_set.get_bundle_for_trust_domain(td)
        expect(b.x509_authorities == {ca, ca2}, "stream: bundle is not {ca, ca2}")
        wait_for(lambda: len(jwt_updates) > n_jwt, 5, "a new JWT bundle update on the open stream")
        return f"pushed {time.monotonic() - t0:.2f}s after the rotation began"
    check("rotation-pushed-on-streams", rotation_pushed)

    def rotation_x509_source():
        wait_for(lambda: source.get_x509_context().default_svid.leaf.serial_number == rotated_serial, 5,
                 "X509Source to hold the rotated SVID")
        expect(updates.is_set(), "X509Source subscribers were not told")
        expect(source.get_bundle_for_trust_domain(td).x509_authorities == {ca, ca2}, "X509Source bundle")
        expect(client.fetch_x509_svid().leaf.serial_number == rotated_serial, "a new fetch: not rotated")
        return "X509Source and a new fetch see the rotated SVID and bundle {ca, ca2}"
    check("rotation-x509-source", rotation_x509_source)
    expect_no_errors = list(errors)
    check("streams-no-errors", lambda: expect(not expect_no_errors, f"stream errors: {expect_no_errors}"))
    source.close()
    x509_stream.cancel()
    jwt_stream.cancel()

    def no_identity():
        for f in ("svid.pem", "svid.key"):
            (wl / f).unlink()
        (wl / "trust_domain").write_text(TD + "\n")
        (wl / "generation").write_text(f"no-identity-{time.time_ns()}\n")
        wait_for(lambda: raw_code(stub.FetchX509SVID, workload_pb2.X509SVIDRequest(), True, MD)
                 == grpc.StatusCode.PERMISSION_DENIED, 5, "FetchX509SVID to answer PERMISSION_DENIED")
        code = raw_code(stub.FetchJWTSVID, workload_pb2.JWTSVIDRequest(audience=["a"]), False, MD)
        expect(code == grpc.StatusCode.PERMISSION_DENIED, f"FetchJWTSVID: {code}")
        expect(client.fetch_x509_bundles().get_bundle_for_trust_domain(td) is not None, "bundles still served")
        return "X.509/JWT-SVID: PERMISSION_DENIED; bundles still served"
    check("no-identity-permission-denied", no_identity)
    client.close()

    def sigterm():
        # With a stream still open: the server must end it and exit anyway.
        stream = stub.FetchX509Bundles(workload_pb2.X509BundlesRequest(), metadata=MD)
        next(stream)
        server.send_signal(signal.SIGTERM)
        code = server.wait(timeout=5)
        expect(code == 0, f"exit code {code}")
        expect(not sock.exists(), "socket left behind")
        try:  # the open stream ended (OK, or CANCELLED/UNAVAILABLE by the stop), it did not hang
            rest = list(stream)
        except grpc.RpcError as e:
            expect(e.code() in (grpc.StatusCode.CANCELLED, grpc.StatusCode.UNAVAILABLE), f"stream: {e.code()}")
            rest = []
        channel.close()
        return f"exit 0, socket removed, open stream ended after {len(rest)} more message(s)"
    check("sigterm-clean-shutdown", sigterm)


if __name__ == "__main__":
    sys.exit(main())
