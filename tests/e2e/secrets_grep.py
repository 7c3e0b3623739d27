"""No secret of the e2e run in any of its logs.

Usage: secrets_grep.py LOGDIR [--require KIND,...]
       secrets_grep.py --self-test

The secrets: every line of LOGDIR/secrets-used.tsv (`kind<TAB>value`, appended by the peers
through secrets_log.py / secrets_log.mjs and the Keycloak stand-in: access tokens, DPoP proofs,
client assertions, JWT-SVIDs, DPoP and client private keys), and the key material the run
wrote: every `*.key` PEM (SVIDs, CAs, the JWT-SVID signing key), the `d` of every JWK in a
`*client.json` (the issuers' client keys), the token and proofs of every `*minted.json`.

The logs: every other regular file under LOGDIR (mcp-pep and decision logs, the stand-ins',
the fixtures' request logs, curl headers and bodies, conformance output). A JWT counts as
found when its payload or its signature appears (the header alone is no secret); a PEM when
any line of its body does; anything else when it appears whole. A hit names the file and
the kind, never the secret. Exit 1 on a hit, or when a --require'd kind has no secret (a
grep over nothing proves nothing).
"""

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path

SECRETS_FILE = "secrets-used.tsv"
ANSI = re.compile(rb"\x1b\[[0-9;]*m")
# Shorter fragments could occur by chance (a JWT header segment is shared by many tokens).
MIN_FRAGMENT = 20


def is_material(path: Path) -> bool:
    name = path.name
    return (name == SECRETS_FILE or name.endswith(".key") or name.endswith("client.json")
            or name.endswith("minted.json"))


def fragments(kind: str, value: str) -> list[str]:
    """The pieces whose appearance in a log is a leak. JWT parts are prefixed `.` (looked up
    as whole base64url runs: there are thousands of proofs), the rest searched for as is."""
    value = value.strip()
    if "BEGIN" in value and "PRIVATE KEY" in value:
        body = re.sub(r"-----[A-Z ]+-----", " ", value)
        return [line for line in body.split() if len(line) >= MIN_FRAGMENT]
    parts = value.split(".")
    if len(parts) == 3 and all(re.fullmatch(r"[A-Za-z0-9_-]*", p) for p in parts):
        return ["." + p for p in parts[1:] if len(p) >= MIN_FRAGMENT]
    return [value] if len(value) >= MIN_FRAGMENT else []


def collect(logdir: Path) -> dict[str, set[str]]:
    """kind -> fragments."""
    found: dict[str, set[str]] = {}

    def add(kind: str, value) -> None:
        if isinstance(value, str) and value:
            found.setdefault(kind, set()).update(fragments(kind, value))

    used = logdir / SECRETS_FILE
    if used.exists():
        for line in used.read_text(errors="replace").splitlines():
            kind, _, value = line.partition("\t")
            add(kind, value)
    for path in sorted(logdir.rglob("*")):
        if not path.is_file() or not is_material(path) or path.name == SECRETS_FILE:
            continue
        if path.name.endswith(".key"):
            add("private_key_pem", path.read_text(errors="replace"))
            continue
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if path.name.endswith("minted.json"):
            for member in ("token", "proof", "other_proof"):
                add("access_token" if member == "token" else "dpop_proof", doc.get(member))
            continue

        def walk(v) -> None:
            if isinstance(v, dict):
                if isinstance(v.get("kty"), str):
                    add("client_key_d", v.get("d"))
                for child in v.values():
                    walk(child)
            elif isinstance(v, list):
                for child in v:
                    walk(child)

        walk(doc)
    return {k: v for k, v in found.items() if v}


def scan(logdir: Path, secrets: dict[str, set[str]]) -> tuple[int, list[str]]:
    by_fragment = {f: kind for kind, frags in secrets.items() for f in frags}
    # JWT parts: each maximal base64url run of a log looked up in a set. Keys (PEM lines, a
    # JWK's d; a few hundred): searched for directly, since "\n" escapes glue them to a letter.
    token = re.compile(rb"[A-Za-z0-9_-]{%d,}" % MIN_FRAGMENT)
    jwt_parts = {f[1:]: kind for f, kind in by_fragment.items() if f.startswith(".")}
    pem_lines = {f for f in by_fragment if not f.startswith(".")}
    hits, files = [], 0
    for path in sorted(logdir.rglob("*")):
        if not path.is_file() or path.is_symlink() or is_material(path):
            continue
        files += 1
        data = ANSI.sub(b"", path.read_bytes())
        seen = set()
        for m in token.finditer(data):
            run = m.group().decode()
            if run in jwt_parts:
                seen.add(jwt_parts[run])
        text = data.decode("latin-1")
        for line in pem_lines:
            if line in text:
                seen.add(by_fragment[line])
        for kind in sorted(seen):
            hits.append(f"{kind} in {path.relative_to(logdir)}")
    return files, hits


def check(logdir: Path, require: list[str]) -> int:
    secrets = collect(logdir)
    counts = ", ".join(f"{k}: {len(v)}" for k, v in sorted(secrets.items())) or "none"
    print(f"secrets-grep: fragments of the run's secrets by kind: {counts}")
    missing = [k for k in require if k not in secrets]
    files, hits = scan(logdir, secrets)
    print(f"secrets-grep: {files} log files scanned")
    for hit in hits:
        print(f"secrets-grep: LEAK {hit}")
    if missing:
        print(f"secrets-grep: no secret of kind {', '.join(missing)} was recorded: the grep would prove nothing")
    return 1 if hits or missing else 0


def self_test() -> int:
    """The grep finds what it must (a JWT's signature in a JSON log with ANSI colour, a PEM
    line, a JWK d) and nothing in clean logs."""
    jwt_ = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJhZ2VudC03IiwiaWF0IjoxNzAwMDAwMDAwfQ." + "s" * 86
    pem = "-----BEGIN PRIVATE KEY-----\n" + "M" * 64 + "\n" + "Q" * 40 + "\n-----END PRIVATE KEY-----\n"
    d = "d" * 43
    cases = [
        ("clean.log", "INFO decided tools/call echo allow\n", False),
        ("jwt.log", '{"level":"INFO","\x1b[1mproof\x1b[0m":"' + jwt_ + '"}\n', True),
        ("sig.log", "signature=" + jwt_.split(".")[2] + "\n", True),
        ("pem.log", '{"msg":"key ' + pem.replace("\n", "\\n") + '"}\n', True),
        ("jwk.log", '{"jwk":{"kty":"EC","d":"' + d + '"}}\n', True),
        ("header-only.log", jwt_.split(".")[0] + "\n", False),
    ]
    failures = 0
    for name, content, leak in cases:
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            (root / SECRETS_FILE).write_text(f"dpop_proof\t{jwt_}\nprivate_key_pem\t{' '.join(pem.split())}\n"
                                             f"dpop_key_d\t{d}\n")
            (root / "sub").mkdir()
            (root / "sub" / "svid.key").write_text(pem)
            (root / name).write_text(content)
            _, hits = scan(root, collect(root))
            if bool(hits) != leak:
                print(f"secrets-grep self-test: {name}: hits {hits}, want {'a leak' if leak else 'none'}")
                failures += 1
    print(f"secrets-grep self-test: {len(cases) - failures}/{len(cases)} as expected")
    return 1 if failures else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("logdir", nargs="?", type=Path)
    ap.add_argument("--require", default="", help="comma-separated kinds that must have secrets")
    ap.add_argument("--self-test", action="store_true")
    args = ap.parse_args()
    if args.self_test:
        return self_test()
    if args.logdir is None:
        ap.error("LOGDIR or --self-test")
    return check(args.logdir, [k for k in args.require.split(",") if k])


if __name__ == "__main__":
    sys.exit(main())
