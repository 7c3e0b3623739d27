#!/usr/bin/env python3
"""The simulation's SPIFFE material, from tests/e2e/pki.py's own functions.

  sim_pki.py OUTDIR NAME=SPIFFE_ID...

pki.generate(OUTDIR) makes the e2e PKI (trust domain mcp-identity.local, its JWT key and
bundles); then every NAME gets an X.509-SVID for SPIFFE_ID from that trust domain's CA
(pki.make_svid: the pod's `spiffe://<td>/ns/<namespace>/sa/<service account>`, which the
e2e set lacks for the tool server) and a workload_api.py material directory OUTDIR/wl-NAME
(pki.workload_dir).
"""

import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "e2e"))
import pki  # noqa: E402  (tests/e2e/pki.py)


def main() -> int:
    out = Path(sys.argv[1])
    pki.generate(out)
    td_dir = out / "td" / pki.TD
    ca = x509.load_pem_x509_certificate((td_dir / "ca.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((td_dir / "ca.key").read_bytes(), None)
    for item in sys.argv[2:]:
        name, _, spiffe_id = item.partition("=")
        cert, key = pki.make_svid(spiffe_id, ca, ca_key)
        pki.write(out / f"svid-pod-{name}.pem", pki.cert_pem(cert))
        pki.write(out / f"svid-pod-{name}.key", pki.key_pem(key), 0o600)
        pki.workload_dir(out, out / f"wl-{name}", f"pod-{name}", f"bundle-{pki.TD}.pem")
        print(f"sim-pki: {name}: {spiffe_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
