#!/usr/bin/env python3
"""Where the proxy's CPU goes, from a folded perf profile (benches/profile.sh).

Each stack is charged to the innermost frame that names a component (the kernel, the
ECDSA code, regorus, a module of mcp-pep, hyper, ...), so allocation and copies count for
whoever asked for them. Then the 12 frames with the most self time.

Usage: benches/profile_summary.py target/load/flame-d.folded [CPU_US_PER_REQUEST]
"""
import collections
import re
import sys

COMPONENTS = [
    ("kernel (syscalls: loopback TCP, wake-ups)", r"^(entry_SYSCALL|__x64_sys|do_syscall|irqentry|asm_)"),
    ("ECDSA P-256 verify (aws-lc)", r"nistz256|ecdsa|ECDSA|beeu_mod_inverse|bn_mul_mont|ec_GFp|EC_POINT|ec_point"),
    ("SHA-256", r"sha256"),
    ("regorus (policy evaluation)", r"^regorus::"),
    ("mcp_pep::policy (input, cache, filter)", r"mcp_pep::policy"),
    ("mcp_pep::auth::dpop (proof parsing, checks)", r"mcp_pep::auth::dpop"),
    ("mcp_pep::auth (token cache, JWK, stage)", r"mcp_pep::auth"),
    ("mcp_pep::mcp (JSON-RPC inspection)", r"mcp_pep::mcp|mcp_pep::strict_json"),
    ("mcp_pep::limits", r"mcp_pep::limits"),
    ("mcp_pep::identity", r"mcp_pep::identity"),
    ("mcp_pep::proxy (headers, upstream client)", r"mcp_pep::proxy"),
    ("mcp_pep (listener, metrics, other)", r"mcp_pep::"),
    ("serde_json", r"serde_json"),
    ("rustls (TLS records, AES-GCM)", r"rustls|aes_gcm|aes_hw|gcm_|aesni"),
    ("hyper (HTTP/1.1)", r"^hyper|^h2::|httparse|^http::"),
    ("tracing", r"^tracing"),
    ("tokio (scheduler, I/O driver)", r"^tokio|mio::"),
    ("tower", r"tower"),
]
COMPILED = [(name, re.compile(rx)) for name, rx in COMPONENTS]


def component(frames):
    for frame in reversed(frames):
        for name, rx in COMPILED:
            if rx.search(frame):
                return name
    return "other"


def main():
    path = sys.argv[1]
    per_request = float(sys.argv[2]) if len(sys.argv) > 2 else None
    by_component, by_leaf, total = collections.Counter(), collections.Counter(), 0
    for line in open(path):
        stack, _, count = line.rstrip("\n").rpartition(" ")
        frames, n = stack.split(";"), int(count)
        total += n
        by_component[component(frames)] += n
        by_leaf[frames[-1]] += n
    print("| component | share of proxy CPU |" + (" µs per request |" if per_request else ""))
    print("|---|---|" + ("---|" if per_request else ""))
    for name, n in by_component.most_common():
        share = n / total
        print("| %s | %.1f %% |" % (name, 100 * share) + (" %.0f |" % (share * per_request) if per_request else ""))
    print("\nTop self time:")
    for frame, n in by_leaf.most_common(12):
        print("%6.2f %%  %s" % (100 * n / total, frame[:100]))


if __name__ == "__main__":
    main()
