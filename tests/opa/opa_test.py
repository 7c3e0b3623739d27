#!/usr/bin/env python3
"""`opa test` with real OPA: every test_* rule of every *_test.rego file must be true.

    opa_test.py POLICY_DIR [-k SUBSTRING]

Loads every module and data file of POLICY_DIR into OPA (see opa_lib.py), finds the
test rules of each *_test.rego file with OPA's own parser (rego.parse_module) and
evaluates each as `data.<package>.<test_name>`, like mcp-pep's regorus runner
(src/policy/testing.rs). A test passes when its value is exactly `true`; undefined,
false, any other value or an evaluation error fails it.

mcp-pep discovers tests by their rule head starting a line with `test_`; a test rule
that this text rule would miss (or a line it would take for a test that is not one)
is reported as a failure too, so both runners always run the same set.

Prints PASS/FAIL per test and ends with `opa-test: N passed, M failed`; exits 1 on
any failure or when no test was found.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from opa_lib import OpaError, load_engine, rule_ref  # noqa: E402

LINE_TEST = re.compile(r"^(test_[A-Za-z0-9_]*)", re.MULTILINE)


def discover(engine, path: Path) -> tuple[list[str], list[str], list[str]]:
    """(package segments, test names in order, discovery problems) of one test file."""
    source = path.read_text(encoding="utf-8")
    rs = engine.eval_query(
        "x := rego.parse_module(input.name, input.source)",
        {"name": path.name, "source": source},
    )
    module = rs[0]["x"]
    package = [t["value"] for t in module["package"]["path"][1:]]
    names: list[str] = []
    problems: list[str] = []
    for rule in module.get("rules", []):
        head = rule["head"]
        ref = head.get("ref") or [{"type": "var", "value": head.get("name", "")}]
        segs = [str(t.get("value")) for t in ref]
        if not any(s.startswith("test_") for s in segs):
            continue
        if len(segs) != 1 or head.get("args"):
            problems.append(f"rule {'.'.join(segs)} looks like a test but is not a plain rule")
            continue
        if segs[0] not in names:
            names.append(segs[0])
    by_line = list(dict.fromkeys(LINE_TEST.findall(source)))
    if by_line != names:
        missed = [n for n in names if n not in by_line]
        extra = [n for n in by_line if n not in names]
        if missed:
            problems.append(f"not found by mcp-pep's line-based discovery (head not at line start): {missed}")
        if extra:
            problems.append(f"lines starting with test_ that OPA does not parse as test rules: {extra}")
        if not missed and not extra:
            problems.append("test order differs between OPA and line-based discovery")
    return package, names, problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("policy_dir", type=Path)
    ap.add_argument("-k", dest="only", default=None, help="run only tests whose name contains this")
    args = ap.parse_args()

    try:
        engine, files = load_engine(args.policy_dir)
    except OpaError as e:
        print(f"opa-test: loading {args.policy_dir}: {e}")
        print("opa-test: 0 passed, 1 failed")
        return 1

    passed = failed = 0
    for path in files:
        if path.suffix != ".rego" or not path.stem.endswith("_test"):
            continue
        try:
            package, names, problems = discover(engine, path)
        except OpaError as e:
            print(f"FAIL {path.name}: cannot parse: {e}")
            failed += 1
            continue
        for problem in problems:
            print(f"FAIL {path.name}: discovery: {problem}")
            failed += 1
        for name in names:
            if args.only and args.only not in name:
                continue
            label = f"{'.'.join(package)}.{name}"
            try:
                rs = engine.eval_query(f"x := {rule_ref(package, name)}")
            except OpaError as e:
                print(f"FAIL {label} ({path.name}): error: {e}")
                failed += 1
                continue
            if len(rs) == 1 and rs[0].get("x") is True:
                print(f"PASS {label}")
                passed += 1
            else:
                why = "undefined" if not rs else repr(rs[0].get("x")) if len(rs) == 1 else f"{len(rs)} results"
                print(f"FAIL {label} ({path.name}): {why}")
                failed += 1

    print(f"opa-test: {passed} passed, {failed} failed")
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
