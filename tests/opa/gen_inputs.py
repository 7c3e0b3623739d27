#!/usr/bin/env python3
"""Deterministic policy inputs for the OPA/regorus differential test.

    gen_inputs.py --seed S --count N OUT.jsonl

Writes N (>= 1000 unless --allow-small) input documents of the documented shape
(docs/policy-input.md: every field present, null where unset), one JSON object per
line: first a fixed cross product (every listed path, URL, tool, method, kind,
prompt and resource for each identity class), then a seeded random mix. The same
seed and count always give the same file.

The mix aims at where two Rego engines can disagree: every identity class (the
three known SPIFFE IDs, unknown ones, no identity), every kind and phase, every
plumbing method, the action methods, unknown and null methods, every catalog tool
plus unknown and null tools, and arguments that are good, bad, traversing,
relative, non-string, missing, null or padded with extra keys. Strings that end up
quoted in denial reasons carry quotes, backslashes, control characters, non-ASCII
letters (some whose case mapping differs between Go and Rust) and code points from
recent Unicode versions (Go's and regorus's printable tables must agree).
"""

from __future__ import annotations

import argparse
import json
import random
import sys

TD = "mcp-identity.local"
KNOWN = [
    f"spiffe://{TD}/ns/mcp-agents/sa/trusted-agent",
    f"spiffe://{TD}/ns/mcp-agents/sa/semi-trusted-agent",
    f"spiffe://{TD}/ns/mcp-agents/sa/untrusted-agent",
]
UNKNOWN = [
    f"spiffe://{TD}/ns/mcp-agents/sa/stranger-agent",
    "spiffe://evil.example/ns/mcp-agents/sa/trusted-agent",
    f"spiffe://{TD}/ns/mcp-agents/sa/trusted-agent/",
    f"SPIFFE://{TD}/ns/mcp-agents/sa/trusted-agent",
    f"spiffe://{TD}/ns/mcp-agents/sa/trusted-agent\u0000",
    f"spiffe://{TD}/ns/mcp-agents/sa/\"quoted\"-agent",
    "",
]

PLUMBING_REQUESTS = ["initialize", "ping", "tools/list", "prompts/list", "resources/list", "resources/templates/list"]
PLUMBING_NOTIFICATIONS = [
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/roots/list_changed",
]
ACTIONS = ["tools/call", "prompts/get", "resources/read"]
UNKNOWN_METHODS = [
    "completion/complete",
    "logging/setLevel",
    "resources/subscribe",
    "resources/unsubscribe",
    "sampling/createMessage",
    "elicitation/create",
    "notifications/message",
    "tools/call/",
    "Tools/Call",
    "tools/list ",
    "",
    "m\u00e9thode",
    "x\"y\\z",
]

CATALOG_TOOLS = ["read_file", "write_file", "query_database", "call_api", "execute_command", "fetch_url"]
UNKNOWN_TOOLS = ["delete_everything", "Read_File", "read_file ", "", "read_file\u200b", "fetch-url", "t\u00f6\u00f6l"]
PROMPTS = ["summarise", "code_review", "", "pr\u00f6mpt \"x\""]
RESOURCES = ["file:///workspace/notes.md", "file:///etc/passwd", "db://orders", "", "urn:x:\u2028"]

GOOD_PATHS = [
    "/workspace/README.md",
    "/workspace/a/b/c.txt",
    "/workspace/",
    "/workspace/.hidden",
    "/workspace/a..b",
    "/workspace/...",
    "/workspace//double",
    "/workspace/dir with spaces/f",
    "/workspace/\u00e9t\u00e9.txt",
    "/workspace/%2e%2e/encoded",
]
BAD_PATHS = [
    "/workspace/../etc/passwd",
    "/workspace/a/../../etc/shadow",
    "/workspace/..",
    "/workspace/a/..",
    "workspace/README.md",
    "./workspace/a",
    "README.md",
    "../workspace/a",
    "/etc/passwd",
    "/",
    "/workspace",
    "/workspacex/a",
    "/Workspace/a",
    " /workspace/a",
    "",
    "\\workspace\\a",
]
NON_STRINGS = [42, 0, -1, 1.5, -0.0, 1e21, 12345678901234567890123, True, False, None, [], ["/workspace/a"], {}, {"path": "/workspace/a"}]
GOOD_URLS = [
    "https://api.example.com",
    "https://api.example.com/",
    "https://api.example.com/v1/items",
    "https://api.example.com:443",
    "https://api.example.com:443/v1",
    "https://api.example.com/search?q=a&b=c",
    "https://api.example.com/#frag",
    "HTTPS://API.EXAMPLE.COM/v1",
    "https://Api.Example.Com/x",
]
BAD_URLS = [
    "http://api.example.com/v1",
    "https://evil.com/",
    "https://api.example.org/",
    "https://x.api.example.com/",
    "https://api.example.com.evil.com/",
    "https://api.example.com@evil.com",
    "https://api.example.com@evil.com/",
    "https://user@api.example.com/",
    "https://api.example.com:443@evil.com/",
    "https://api.example.com:8443/",
    "https://api.example.com:443:443/",
    "ftp://api.example.com/",
    "//api.example.com/",
    "api.example.com",
    "https://api.example.com?x=1",
    "https://api.example.com\\@evil.com/",
    "https://api.example.com/\n@evil",
    " https://api.example.com/",
    "https://ap\u0130.example.com/",
    "https://AP\u0130.EXAMPLE.COM/v1",
    "https://api.example.co\u1e3f/",
    "https://api.examp\u0142e.com/",
    "",
]

# Characters whose Go %q rendering depends on the printable tables, escapes or case
# mapping: controls, format characters, private use, noncharacters, line separators,
# and code points assigned in Unicode 15.0, 15.1 and 16.0.
SPICE = [
    "\"", "\\", "\t", "\n", "\r", "\u0000", "\u0007", "\u001b", "\u007f", "\u0085", "\u00a0",
    "\u00ad", "\u0130", "\u212a", "\u200b", "\u200d", "\u2028", "\u2029", "\ufeff", "\ue000",
    "\ufffd", "\uffff", "\U0010ffff", "\U000e0001", "\U0001f600", "\U0001f3f3\ufe0f\u200d\U0001f308",
    "\u0378", "\u08c0", "\U0001e4d0", "\U0001f6dc",  # 14.0/15.0
    "\u2ffc", "\u31ef", "\U0002ebf0",  # 15.1
    "\u1c89", "\ua7cb", "\U00010d40", "\U0001e5d0", "\U0001fae9", "\U0001cc00",  # 16.0
    "\u0661", "\u05d0", "\u0e01", "\u3000", "\u1680",
]


def spice(rng: random.Random, s: str) -> str:
    """s with one to three odd characters inserted at random places."""
    out = list(s)
    for _ in range(rng.randint(1, 3)):
        if rng.random() < 0.2:
            cp = rng.randrange(0x80, 0x110000)
            while 0xD800 <= cp <= 0xDFFF:
                cp = rng.randrange(0x80, 0x110000)
            ch = chr(cp)
        else:
            ch = rng.choice(SPICE)
        out.insert(rng.randint(0, len(out)), ch)
    return "".join(out)


def pick_identity(rng: random.Random):
    r = rng.random()
    if r < 0.66:
        sid = rng.choice(KNOWN)
    elif r < 0.84:
        sid = rng.choice(UNKNOWN)
    else:
        return None
    rest = sid.split("://", 1)[-1]
    td, _, path = rest.partition("/")
    return {"spiffe_id": sid, "trust_domain": td, "path": "/" + path, "source": rng.choice(["local", "mtls", "jwt-svid", "token"])}


def pick_path(rng: random.Random):
    r = rng.random()
    if r < 0.35:
        return rng.choice(GOOD_PATHS)
    if r < 0.7:
        return rng.choice(BAD_PATHS)
    if r < 0.85:
        return spice(rng, rng.choice(GOOD_PATHS + BAD_PATHS))
    return rng.choice(NON_STRINGS)


def pick_url(rng: random.Random):
    r = rng.random()
    if r < 0.35:
        return rng.choice(GOOD_URLS)
    if r < 0.7:
        return rng.choice(BAD_URLS)
    if r < 0.85:
        return spice(rng, rng.choice(GOOD_URLS + BAD_URLS))
    return rng.choice(NON_STRINGS)


def pick_arguments(rng: random.Random, tool):
    r = rng.random()
    if r < 0.08:
        return None  # a call that sent no arguments
    if r < 0.14:
        return {}  # sent, but without the governed one
    args: dict = {}
    if tool in ("read_file", "write_file") or (tool not in CATALOG_TOOLS and rng.random() < 0.5):
        args["path"] = pick_path(rng)
    if tool == "fetch_url" or (tool not in CATALOG_TOOLS and rng.random() < 0.5):
        args["url"] = pick_url(rng)
    if tool == "write_file":
        args["content"] = "hello"
    if tool == "query_database":
        args["query"] = "select 1"
    if tool == "execute_command":
        args["command"] = rng.choice(["ls", "rm -rf /", spice(rng, "echo")])
    if rng.random() < 0.25:  # extra keys, including the other tool's argument
        args[rng.choice(["extra", "url", "path", "Path", "", "\u00e9"])] = rng.choice(
            [1, "x", None, [1, 2], {"k": "v"}, pick_url(rng), pick_path(rng)]
        )
    return args


def pick_method(rng: random.Random, kind: str):
    if kind in ("response", "stream", "session_end"):
        # Documented: no method. Now and then one anyway, to see both engines agree.
        return None if rng.random() < 0.85 else rng.choice(PLUMBING_REQUESTS + ACTIONS + UNKNOWN_METHODS)
    r = rng.random()
    if kind == "notification":
        if r < 0.7:
            return rng.choice(PLUMBING_NOTIFICATIONS)
        if r < 0.9:
            return rng.choice(UNKNOWN_METHODS)
        return rng.choice([None, *PLUMBING_REQUESTS, *ACTIONS])
    if r < 0.5:
        return "tools/call"
    if r < 0.6:
        return rng.choice(["prompts/get", "resources/read"])
    if r < 0.8:
        return rng.choice(PLUMBING_REQUESTS + PLUMBING_NOTIFICATIONS)
    if r < 0.95:
        return rng.choice(UNKNOWN_METHODS) if rng.random() < 0.8 else spice(rng, rng.choice(UNKNOWN_METHODS))
    return None


def make(rng: random.Random) -> dict:
    kind = rng.choices(["request", "notification", "response", "stream", "session_end"], [70, 10, 8, 6, 6])[0]
    phase = "call"
    method = pick_method(rng, kind)
    # List items: a request with the action method and a name, no arguments
    # (src/policy/filter.rs); sometimes with arguments anyway.
    if kind == "request" and rng.random() < 0.22:
        phase = "list"
        method = rng.choice(ACTIONS) if rng.random() < 0.9 else method

    tool = prompt = resource = None
    arguments = None
    if method == "tools/call" or (method is not None and rng.random() < 0.05):
        r = rng.random()
        tool = rng.choice(CATALOG_TOOLS) if r < 0.8 else rng.choice(UNKNOWN_TOOLS) if r < 0.93 else None
        if tool is not None and rng.random() < 0.1:
            tool = spice(rng, tool)
        if method == "tools/call":
            arguments = pick_arguments(rng, tool)
    if method == "prompts/get":
        prompt = rng.choice(PROMPTS + [None])
        arguments = pick_arguments(rng, None) if rng.random() < 0.5 else None
    if method is not None and method.startswith("resources/") and method != "resources/list":
        resource = rng.choice(RESOURCES + [None])
    if phase == "list" and rng.random() < 0.85:
        arguments = None

    if kind in ("request",):
        msg_id = rng.choice([1, 7, 2**53 - 1, "abc", "srv-1", 0])
    elif kind == "response":
        msg_id = rng.choice(["srv-1", 3, None])
    else:
        msg_id = None

    return {
        "version": 1,
        "kind": kind,
        "phase": phase,
        "identity": pick_identity(rng),
        "token": None,
        "mcp": {
            "method": method,
            "id": msg_id,
            "tool": tool,
            "prompt": prompt,
            "resource": resource,
            "arguments": arguments,
            "is_error": kind == "response" and rng.random() < 0.2,
            "batch": rng.random() < 0.05,
            "session_id": rng.choice([None, "s-1", "0f1e2d3c"]),
            "protocol_version": rng.choice([None, "2025-11-25", "2025-06-18", "2025-03-26"]),
        },
        "http": {
            "method": {"stream": "GET", "session_end": "DELETE"}.get(kind, "POST"),
            "path": "/mcp",
        },
    }


def document(kind, phase, who, method, *, tool=None, prompt=None, resource=None, arguments=None, msg_id=1) -> dict:
    identity = None
    if who is not None:
        rest = who.split("://", 1)[-1]
        td, _, path = rest.partition("/")
        identity = {"spiffe_id": who, "trust_domain": td, "path": "/" + path, "source": "local"}
    return {
        "version": 1,
        "kind": kind,
        "phase": phase,
        "identity": identity,
        "token": None,
        "mcp": {
            "method": method,
            "id": msg_id if kind in ("request", "response") else None,
            "tool": tool,
            "prompt": prompt,
            "resource": resource,
            "arguments": arguments,
            "is_error": False,
            "batch": False,
            "session_id": "s-1",
            "protocol_version": "2025-11-25",
        },
        "http": {"method": {"stream": "GET", "session_end": "DELETE"}.get(kind, "POST"), "path": "/mcp"},
    }


def systematic():
    """Every listed value at least once for every identity class, before the random mix."""
    callers = [*KNOWN, UNKNOWN[0], None]
    for who in callers:
        for path in GOOD_PATHS + BAD_PATHS + NON_STRINGS:
            yield document("request", "call", who, "tools/call", tool="read_file", arguments={"path": path})
        for url in GOOD_URLS + BAD_URLS + NON_STRINGS:
            yield document("request", "call", who, "tools/call", tool="fetch_url", arguments={"url": url})
        for tool in CATALOG_TOOLS + UNKNOWN_TOOLS + [None]:
            yield document("request", "call", who, "tools/call", tool=tool, arguments=None)
            yield document("request", "call", who, "tools/call", tool=tool, arguments={})
            yield document("request", "list", who, "tools/call", tool=tool, arguments=None)
        for method in PLUMBING_REQUESTS + UNKNOWN_METHODS + [None]:
            yield document("request", "call", who, method)
        for method in PLUMBING_NOTIFICATIONS:
            yield document("notification", "call", who, method)
        for kind in ("response", "stream", "session_end"):
            yield document(kind, "call", who, None, msg_id="srv-1")
        for prompt in PROMPTS + [None]:
            yield document("request", "call", who, "prompts/get", prompt=prompt, arguments={})
        for resource in RESOURCES + [None]:
            yield document("request", "call", who, "resources/read", resource=resource)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--allow-small", action="store_true", help="allow fewer than 1000 inputs")
    ap.add_argument("out")
    args = ap.parse_args()
    if args.count < 1000 and not args.allow_small:
        ap.error("--count must be at least 1000 (or pass --allow-small)")
    rng = random.Random(args.seed)
    fixed = list(systematic())[: args.count]
    with open(args.out, "w", encoding="utf-8", newline="\n") as f:
        for n in range(args.count):
            doc = fixed[n] if n < len(fixed) else make(rng)
            # ensure_ascii: the file stays 7-bit; both engines decode the escapes.
            f.write(json.dumps(doc, ensure_ascii=True, allow_nan=False) + "\n")
    print(f"gen-inputs: {args.count} inputs (seed {args.seed}) -> {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
