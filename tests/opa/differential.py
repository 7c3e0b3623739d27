#!/usr/bin/env python3
"""Differential test: real OPA and mcp-pep's regorus must decide every input alike.

    differential.py POLICY_DIR INPUTS.jsonl REGORUS_OUT.jsonl
    differential.py --self-check POLICY_DIR INPUTS.jsonl OUT.jsonl

Evaluates the entrypoint (default data.mcp.decision) for every non-blank line of
INPUTS.jsonl in OPA and compares it with the matching result in REGORUS_OUT.jsonl,
the output of `mcp-pep policy eval --policy-dir DIR --input INPUTS.jsonl --jsonl`
(one JSON value per input, in order; `null` for undefined). The values must be
identical: for the shipped policies, the decision objects with the same `allow` and
the same `reasons` list, element for element.

An OPA evaluation error is a difference too. The binding runs OPA with strict
built-in errors (see opa_lib.py): a policy that hits one depends on errors being
swallowed, which is exactly what the two engines may do differently.

--self-check writes OPA's own results to OUT.jsonl first (checks this script).

Prints `differential: N identical, M differ`, the classes of differences, the first
few in full; exits 1 on any difference or when fewer than --min-count (1000) inputs
were compared.
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from opa_lib import OpaError, load_engine  # noqa: E402

ERROR_KEY = "__opa_error__"


def read_inputs(path: Path) -> list[tuple[int, dict]]:
    """(line number, document) for every non-blank line, as the CLI reads them."""
    out = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if line.strip():
                out.append((n, json.loads(line)))
    return out


def read_values(path: Path) -> list:
    """Every JSON value of the file in order: one per line or pretty-printed."""
    text = path.read_text(encoding="utf-8")
    dec = json.JSONDecoder()
    values, i = [], 0
    while True:
        while i < len(text) and text[i].isspace():
            i += 1
        if i >= len(text):
            return values
        value, i = dec.raw_decode(text, i)
        values.append(value)


def canonical(value) -> str:
    # Canonical JSON: key order does not matter, true and 1 stay different.
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))


def evaluate(engine, query: str, doc) -> object:
    try:
        rs = engine.eval_query(query, doc)
    except OpaError as e:
        return {ERROR_KEY: str(e)}
    if not rs:
        return None  # undefined; the CLI prints null
    return rs[0]["x"]


def rules_of(value) -> str:
    """A short class of a result: allow and the layer.rule names of its reasons."""
    if isinstance(value, dict) and ERROR_KEY in value:
        msg = value[ERROR_KEY]
        m = re.search(r"(eval_\w+): ([\w.]+)", msg)
        return f"error({m.group(1)} {m.group(2)})" if m else "error"
    if isinstance(value, dict) and "allow" in value:
        reasons = value.get("reasons")
        names = sorted({str(r).split(":", 1)[0] for r in reasons}) if isinstance(reasons, list) else [repr(reasons)]
        return f"allow={json.dumps(value['allow'])} [{', '.join(names)}]"
    return canonical(value)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("policy_dir", type=Path)
    ap.add_argument("inputs", type=Path)
    ap.add_argument("regorus_out", type=Path)
    ap.add_argument("--entrypoint", default="data.mcp.decision")
    ap.add_argument("--self-check", action="store_true", help="write OPA's results as REGORUS_OUT, then compare")
    ap.add_argument("--show", type=int, default=5, help="differences printed in full (default 5)")
    ap.add_argument("--min-count", type=int, default=1000)
    args = ap.parse_args()

    inputs = read_inputs(args.inputs)
    engine, _ = load_engine(args.policy_dir)
    query = f"x := {args.entrypoint}"
    opa = [evaluate(engine, query, doc) for _, doc in inputs]

    if args.self_check:
        with args.regorus_out.open("w", encoding="utf-8") as f:
            for value in opa:
                f.write(json.dumps(value, ensure_ascii=False) + "\n")

    regorus = read_values(args.regorus_out)
    if len(regorus) != len(inputs):
        print(f"differential: {args.regorus_out} has {len(regorus)} results for {len(inputs)} inputs")
        print(f"differential: 0 identical, {len(inputs)} differ")
        return 1

    identical = 0
    diffs = []
    for (line, doc), o, r in zip(inputs, opa, regorus):
        if canonical(o) == canonical(r):
            identical += 1
        else:
            diffs.append((line, doc, o, r))

    print(f"differential: {identical} identical, {len(diffs)} differ")
    if diffs:
        classes = collections.Counter((rules_of(o), rules_of(r)) for _, _, o, r in diffs)
        print("differential: classes (count: OPA | regorus):")
        for (co, cr), n in classes.most_common():
            print(f"  {n:5d}: {co} | {cr}")
        for line, doc, o, r in diffs[: args.show]:
            print(f"--- input line {line}")
            print(f"input:   {json.dumps(doc, ensure_ascii=False)}")
            print(f"OPA:     {json.dumps(o, ensure_ascii=False)}")
            print(f"regorus: {json.dumps(r, ensure_ascii=False)}")
    if identical + len(diffs) < args.min_count:
        print(f"differential: only {identical + len(diffs)} inputs compared, need at least {args.min_count}")
        return 1
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
