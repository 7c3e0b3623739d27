#!/usr/bin/env python3
"""Deterministic policy inputs for the OPA/regorus differential test.

    gen_inputs.py --seed S --count N OUT.jsonl

Writes N (>= 1000 unless --allow-small) input documents of the documented shape
(policy input contract v2: every field present, null where unset), one JSON object
per line: first a fixed cross product (every listed path, URL, tool, method, kind,
prompt, resource, subscription and input request for each identity class, in both
eras), then a seeded random mix. The same seed and count always give the same file.

The mix aims at where two Rego engines can disagree: every identity class (the
three known SPIFFE IDs, unknown ones, no identity), both eras (legacy sessions,
modern 2026-07-28), every kind (input_request too) and phase (subscribe too), every
plumbing method (server/discover, subscriptions/listen too), the action methods,
unknown and null methods, every catalog tool plus unknown and null tools, and
arguments that are good, bad, traversing, relative, non-string, missing, null or
padded with extra keys. Input requests use every input method plus unknown and
non-string ones, with params that are typical, odd (URL elicitations to good, bad,
odd and non-string URLs, odd modes) or missing, null or not an object. The fields
policies must not need (client_capabilities, input_responses, request_state,
notifications) vary too. Strings that end up quoted in denial reasons carry
quotes, backslashes, control characters, non-ASCII letters (some whose case
mapping differs between Go and Rust) and code points from recent Unicode versions
(Go's and regorus's printable tables must agree).
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
MODERN_PLUMBING = ["server/discover", "subscriptions/listen"]
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
    "/workspace/\u00e9t\u00e9.txt",
    "/workspace/%2e%2e/encoded",
    "/workspace/..\\etc",
    "/workspace/a\u0000b",
    "/workspace/\uff0e\uff0e\uff0fetc",
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


ERAS = ["legacy", "modern"]
LEGACY_VERSIONS = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"]
MODERN_VERSION = "2026-07-28"
CAPABILITIES = [
    {},
    {"elicitation": {"form": {}}},
    {"elicitation": {"form": {}, "url": {}}, "sampling": {}, "roots": {"listChanged": True}},
    {"sampling": {"tools": {}}, "roots": {}},
    {"experimental": {"x\u00e9": {"on": True}}},
]

INPUT_METHODS = ["elicitation/create", "sampling/createMessage", "roots/list"]
UNKNOWN_INPUT_METHODS = ["tools/call", "ping", "Elicitation/Create", "roots/list ", "", "x\"y\\z", None, 3]
MISSING = object()  # a key left out of params
FORM = {"mode": "form", "message": "Your name?", "requestedSchema": {"type": "object", "properties": {"name": {"type": "string"}}}}
SAMPLING = {"messages": [{"role": "user", "content": {"type": "text", "text": "hi"}}], "maxTokens": 100}
# URLs only an elicitation sends a user to, on top of GOOD_URLS and BAD_URLS.
ELICIT_URLS = [
    "https://api.example.com/auth?state=abc&redirect=https://evil.example/",
    "https://evil.example/x",
    "javascript:alert(1)",
    "data:text/html,<script>alert(1)</script>",
    "file:///etc/passwd",
]
ODD_MODES = ["URL", "Url", "url ", "", None, 1, ["url"]]
ODD_PARAMS = [MISSING, None, "https://evil.example/", [], ["url"], 5, True]
NOTIFICATIONS = [
    {"resourceSubscriptions": ["file:///workspace/notes.md"]},
    {"resourceSubscriptions": ["db://orders", "file:///etc/passwd"], "toolsListChanged": True},
    {"toolsListChanged": True, "promptsListChanged": True, "resourcesListChanged": True},
    {"resourceSubscriptions": "db://orders"},
    {"resourceSubscriptions": [1, None, {"uri": "db://orders"}]},
    {},
    None,
]
INPUT_RESPONSES = [
    {"k-1": {"action": "accept", "content": {"name": "x"}}},
    {"k-2": {"role": "assistant", "model": "m", "content": {"type": "text", "text": "hi"}}},
    {"k-3": {"roots": [{"uri": "file:///workspace/"}]}, "k-4": {"action": "decline"}},
    {},
]
REQUEST_STATES = ["opaque-1", "eyJhbGciOiJub25lIn0.e30.", "", "\u0000\"state\"\n"]


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


def pick_method(rng: random.Random, kind: str, era: str = "legacy"):
    if kind in ("response", "stream", "session_end"):
        # Documented: no method. Now and then one anyway, to see both engines agree.
        return None if rng.random() < 0.85 else rng.choice(PLUMBING_REQUESTS + MODERN_PLUMBING + ACTIONS + UNKNOWN_METHODS)
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
        # Each era's own plumbing mostly, the other's now and then.
        own = MODERN_PLUMBING * 4 if era == "modern" else PLUMBING_REQUESTS
        return rng.choice(own + PLUMBING_REQUESTS + MODERN_PLUMBING + PLUMBING_NOTIFICATIONS)
    if r < 0.95:
        return rng.choice(UNKNOWN_METHODS) if rng.random() < 0.8 else spice(rng, rng.choice(UNKNOWN_METHODS))
    return None


def pick_elicitation_url(rng: random.Random):
    r = rng.random()
    if r < 0.3:
        return rng.choice(GOOD_URLS)
    if r < 0.7:
        return rng.choice(BAD_URLS + ELICIT_URLS)
    if r < 0.85:
        return spice(rng, rng.choice(GOOD_URLS + BAD_URLS + ELICIT_URLS))
    if r < 0.93:
        return MISSING
    return rng.choice(NON_STRINGS)


def elicitation(mode, url=MISSING) -> dict:
    params = {"message": "Sign in", "elicitationId": "e-1"}
    if mode is not MISSING:
        params["mode"] = mode
    if url is not MISSING:
        params["url"] = url
    return params


def input_request(method, params=MISSING, key="k-1") -> dict:
    """One entry of an input_required answer; MISSING params leaves the key out."""
    ask = {"key": key, "method": method}
    if params is not MISSING:
        ask["params"] = params
    return ask


def pick_input_request(rng: random.Random):
    r = rng.random()
    if r < 0.05:
        return None  # the contract never sends this; both engines must still agree
    if r < 0.17:
        method = rng.choice(UNKNOWN_INPUT_METHODS)
        if isinstance(method, str) and rng.random() < 0.3:
            method = spice(rng, method)
    else:
        method = rng.choices(INPUT_METHODS, [60, 20, 20])[0]
    if rng.random() < 0.1:
        return input_request(method, rng.choice(ODD_PARAMS))
    if method == "elicitation/create":
        m = rng.random()
        if m < 0.55:
            params = elicitation("url", pick_elicitation_url(rng))
        elif m < 0.8:
            params = dict(FORM)
            if rng.random() < 0.3:
                params["url"] = pick_elicitation_url(rng)  # a form's stray url
        elif m < 0.9:
            params = elicitation(MISSING, rng.choice(BAD_URLS))
        else:
            params = elicitation(rng.choice(ODD_MODES), pick_elicitation_url(rng))
    elif method == "sampling/createMessage":
        params = SAMPLING
    else:
        params = {} if rng.random() < 0.8 else {"mode": "url", "url": rng.choice(BAD_URLS)}
    return input_request(method, params, key=rng.choice(["k-1", "", spice(rng, "k")]))


def make(rng: random.Random) -> dict:
    era = rng.choice(ERAS)
    if era == "modern":
        # No sessions: no stream of server requests, no DELETE; input requests instead.
        kind = rng.choices(["request", "notification", "input_request", "response"], [62, 8, 28, 2])[0]
    else:
        kind = rng.choices(["request", "notification", "response", "stream", "session_end", "input_request"], [70, 10, 8, 5, 5, 2])[0]
    phase = "call"
    method = pick_method(rng, "request" if kind == "input_request" else kind, era)
    # List items: a request with the action method and a name, no arguments
    # (src/policy/filter.rs); sometimes with arguments anyway. Subscribed resources
    # (modern): a read of each URI, no arguments.
    if kind == "request" and rng.random() < 0.22:
        phase = "list"
        method = rng.choice(ACTIONS) if rng.random() < 0.9 else method
    elif kind == "request" and era == "modern" and rng.random() < 0.15:
        phase = "subscribe"
        method = "resources/read" if rng.random() < 0.95 else method
    elif kind == "input_request" and rng.random() < 0.9:
        method = rng.choice(ACTIONS)  # only actions ask; the rest is odd on purpose

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
    if phase in ("list", "subscribe") and rng.random() < 0.85:
        arguments = None

    if kind in ("request", "input_request"):
        msg_id = rng.choice([1, 7, 2**53 - 1, "abc", "srv-1", 0])
    elif kind == "response":
        msg_id = rng.choice(["srv-1", 3, None])
    else:
        msg_id = None

    fields: dict = {}
    if era == "modern":
        fields["client_capabilities"] = rng.choice(CAPABILITIES) if rng.random() < 0.9 else None
        if method in ACTIONS and rng.random() < 0.25:  # an MRTR retry
            fields["input_responses"] = rng.choice(INPUT_RESPONSES)
            fields["request_state"] = rng.choice(REQUEST_STATES + [spice(rng, "state")])
        if method == "subscriptions/listen":
            fields["notifications"] = rng.choice(NOTIFICATIONS)
    elif method == "initialize" and kind == "request":
        caps = rng.choice(CAPABILITIES)
        fields["client_capabilities"] = caps
        arguments = {"protocolVersion": rng.choice(LEGACY_VERSIONS), "capabilities": caps, "clientInfo": {"name": spice(rng, "client"), "version": "1"}}
    if kind == "input_request":
        fields["input_request"] = pick_input_request(rng)

    doc = {
        "version": 2,
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
            "batch": era == "legacy" and rng.random() < 0.05,
            **era_fields(era, rng.choice([None, "s-1", "0f1e2d3c"]), rng.choice([None, *LEGACY_VERSIONS])),
        },
        "http": {
            "method": {"stream": "GET", "session_end": "DELETE"}.get(kind, "POST"),
            "path": "/mcp",
        },
    }
    doc["mcp"].update(fields)
    return doc


def era_fields(era: str, session_id="s-1", legacy_version="2025-11-25") -> dict:
    """The mcp fields set by the era; the other v2 fields null."""
    modern = era == "modern"
    return {
        "session_id": None if modern else session_id,
        "protocol_version": MODERN_VERSION if modern else legacy_version,
        "era": era,
        "client_capabilities": CAPABILITIES[2] if modern else None,
        "input_responses": None,
        "request_state": None,
        "notifications": None,
        "input_request": None,
    }


def document(kind, phase, who, method, *, era="legacy", tool=None, prompt=None, resource=None, arguments=None, msg_id=1, **fields) -> dict:
    """fields: v2 mcp fields to set (client_capabilities, input_request, ...)."""
    identity = None
    if who is not None:
        rest = who.split("://", 1)[-1]
        td, _, path = rest.partition("/")
        identity = {"spiffe_id": who, "trust_domain": td, "path": "/" + path, "source": "local"}
    mcp = {
        "method": method,
        "id": msg_id if kind in ("request", "response", "input_request") else None,
        "tool": tool,
        "prompt": prompt,
        "resource": resource,
        "arguments": arguments,
        "is_error": False,
        "batch": False,
        **era_fields(era),
    }
    mcp.update(fields)
    return {
        "version": 2,
        "kind": kind,
        "phase": phase,
        "identity": identity,
        "token": None,
        "mcp": mcp,
        "http": {"method": {"stream": "GET", "session_end": "DELETE"}.get(kind, "POST"), "path": "/mcp"},
    }


# Calls an input request can come back from (kind input_request is the call's own
# document): each action, allowed or not for some level, and a few that never ask.
ASKING_CALLS = [
    ("tools/call", {"tool": "read_file", "arguments": {"path": "/workspace/README.md"}}),
    ("tools/call", {"tool": "read_file", "arguments": {"path": "/etc/passwd"}}),
    ("tools/call", {"tool": "query_database", "arguments": {"query": "select 1"}}),
    ("tools/call", {"tool": "execute_command", "arguments": {"command": "ls"}}),
    ("tools/call", {"tool": "fetch_url", "arguments": {"url": "https://evil.com/"}}),
    ("prompts/get", {"prompt": "summarise", "arguments": {}}),
    ("resources/read", {"resource": "file:///workspace/notes.md"}),
]
ODD_ASKING_CALLS = [
    ("tools/call", {"tool": "delete_everything", "arguments": {}}),
    ("ping", {}),
    ("subscriptions/listen", {}),
    (None, {}),
]


def asking(who, method, ask, *, target=None, era="modern") -> dict:
    call, named = target or ASKING_CALLS[0]
    return document("input_request", "call", who, call, era=era, msg_id=7, input_request=ask, **named)


def systematic():
    """Every listed value at least once for every identity class, before the random mix.

    The v1 lists alternate between the eras; what only an input request carries
    (its methods, params, URLs) rotates over the known callers, which may all be asked
    for elicitations.
    """
    callers = [*KNOWN, UNKNOWN[0], None]
    for who in callers:
        for i, path in enumerate(GOOD_PATHS + BAD_PATHS + NON_STRINGS):
            yield document("request", "call", who, "tools/call", era=ERAS[i % 2], tool="read_file", arguments={"path": path})
        for i, url in enumerate(GOOD_URLS + BAD_URLS + NON_STRINGS):
            yield document("request", "call", who, "tools/call", era=ERAS[i % 2], tool="fetch_url", arguments={"url": url})
        for i, tool in enumerate(CATALOG_TOOLS + UNKNOWN_TOOLS + [None]):
            era = ERAS[i % 2]
            yield document("request", "call", who, "tools/call", era=era, tool=tool, arguments=None)
            yield document("request", "call", who, "tools/call", era=era, tool=tool, arguments={})
            yield document("request", "list", who, "tools/call", era=era, tool=tool, arguments=None)
        for i, method in enumerate(PLUMBING_REQUESTS + UNKNOWN_METHODS + [None]):
            yield document("request", "call", who, method, era=ERAS[i % 2])
        for method in MODERN_PLUMBING:
            yield document("request", "call", who, method, era="modern")
        for method in PLUMBING_NOTIFICATIONS:
            yield document("notification", "call", who, method)
        for kind in ("response", "stream", "session_end"):
            yield document(kind, "call", who, None, msg_id="srv-1")
        for i, prompt in enumerate(PROMPTS + [None]):
            yield document("request", "call", who, "prompts/get", era=ERAS[i % 2], prompt=prompt, arguments={})
        for i, resource in enumerate(RESOURCES + [None]):
            yield document("request", "call", who, "resources/read", era=ERAS[i % 2], resource=resource)
            yield document("request", "subscribe", who, "resources/read", era="modern", resource=resource, msg_id=5)
        # Each input method from each asking call: the input matrix times the call's.
        for target in ASKING_CALLS:
            for method, params in zip(INPUT_METHODS, [FORM, SAMPLING, {}]):
                yield asking(who, method, input_request(method, params), target=target)
        yield asking(who, "elicitation/create", None)

    known = lambda n: KNOWN[n % len(KNOWN)]  # noqa: E731
    for n, method in enumerate(MODERN_PLUMBING):
        yield document("request", "call", known(n), method, era="legacy")  # out of its era
    for n, notifications in enumerate(NOTIFICATIONS):
        yield document("request", "call", known(n), "subscriptions/listen", era="modern", notifications=notifications)
    for n, url in enumerate(GOOD_URLS + BAD_URLS + ELICIT_URLS + NON_STRINGS + [MISSING]):
        yield asking(known(n), "elicitation/create", input_request("elicitation/create", elicitation("url", url)))
    odd_elicitations = [
        elicitation(MISSING, "https://evil.example/x"),  # no mode: a form
        {**FORM, "url": "https://evil.example/x"},  # a form's stray url
        *(elicitation(mode, "https://evil.example/x") for mode in ODD_MODES),
    ]
    for n, params in enumerate(odd_elicitations):
        yield asking(known(n), "elicitation/create", input_request("elicitation/create", params))
    for n, (method, params) in enumerate((m, p) for m in INPUT_METHODS for p in ODD_PARAMS):
        yield asking(known(n), method, input_request(method, params))
    for n, method in enumerate(UNKNOWN_INPUT_METHODS):
        yield asking(known(n), method, input_request(method, {}))
    yield asking(KNOWN[0], None, {"key": "k-1"})
    yield asking(KNOWN[1], None, {})
    for n, target in enumerate(ODD_ASKING_CALLS):
        for method in INPUT_METHODS:
            yield asking(known(n), method, input_request(method, {}), target=target)
    # Input requests in the legacy era (the contract has none there): alike all the same.
    for who in KNOWN:
        yield asking(who, "roots/list", input_request("roots/list", {}), era="legacy")
    # MRTR retries: answers and state the policies do not read.
    for n, responses in enumerate(INPUT_RESPONSES):
        call, named = ASKING_CALLS[n % len(ASKING_CALLS)]
        yield document("request", "call", known(n), call, era="modern", input_responses=responses, request_state=REQUEST_STATES[n], **named)
    # A legacy initialize carries its capabilities twice: as arguments and on their own.
    for n, caps in enumerate(CAPABILITIES):
        params = {"protocolVersion": LEGACY_VERSIONS[n % len(LEGACY_VERSIONS)], "capabilities": caps, "clientInfo": {"name": "c", "version": "1"}}
        yield document("request", "call", known(n), "initialize", arguments=params, client_capabilities=caps)


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
