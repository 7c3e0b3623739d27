"""Shared helpers for the OPA-side tests: load a policy directory into real OPA.

The directory is read the way mcp-pep reads it (src/policy/engine.rs, policy_files):
regular files directly in it whose names do not start with "." and end in .rego,
.json, .yaml or .yml, in sorted order. Every .rego file is a module, every data file
is deep-merged into data.

OPA comes from opa-golib-python-bindings (OPA v1.20.2 in-process). Note that the
binding prepares every query with rego.StrictBuiltinErrors(true), with no way to turn
it off: a built-in error (e.g. object.get on null) fails the whole evaluation, where
`opa eval`/`opa run` (and mcp-pep's regorus, set_strict_builtin_errors(false)) would
make the expression undefined. A policy that never relies on built-in errors decides
the same either way, so an OPA error here points at such a reliance.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from opa_bindings import OpaEngine, OpaError

__all__ = ["OpaError", "load_engine", "policy_files", "rule_ref", "DECISION_QUERY_VAR"]

DECISION_QUERY_VAR = "x"
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def policy_files(policy_dir: Path) -> list[Path]:
    files = [
        p
        for p in policy_dir.iterdir()
        if not p.name.startswith(".")
        and p.suffix in (".rego", ".json", ".yaml", ".yml")
        and p.is_file()
    ]
    return sorted(files)


def _load_data(path: Path):
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        return json.loads(text)
    try:
        import yaml  # PyYAML, pinned in requirements.txt
    except ImportError as e:  # pragma: no cover - setup.sh installs it
        raise SystemExit(f"{path}: YAML data needs PyYAML ({e})")
    return yaml.safe_load(text)


def load_engine(policy_dir: Path) -> tuple[OpaEngine, list[Path]]:
    """An OPA engine holding every module and data file of policy_dir."""
    files = policy_files(policy_dir)
    if not any(p.suffix == ".rego" for p in files):
        raise SystemExit(f"{policy_dir}: no .rego files")
    engine = OpaEngine()
    for path in files:
        if path.suffix == ".rego":
            # The module name shows in error locations: keep it short.
            engine.add_policy(path.name, path.read_text(encoding="utf-8"))
        else:
            data = _load_data(path)
            if not isinstance(data, dict):
                raise SystemExit(f"{path}: data file must hold an object")
            engine.add_data(data)
    return engine, files


def rule_ref(package: list[str], name: str) -> str:
    """data.<package>.<name>, with ["..."] for segments that are not identifiers."""
    out = "data"
    for seg in [*package, name]:
        out += f".{seg}" if _IDENT.match(seg) else "[" + json.dumps(seg) + "]"
    return out
