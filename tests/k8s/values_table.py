#!/usr/bin/env python3
"""The values table of charts/mcp-pep/README.md, made from values.yaml and values.schema.json.

    values_table.py [--check | --write] [CHART_DIR]

One row per value: its key, type and description come from the schema, its default from
values.yaml. A row is a leaf of values.yaml: a scalar, a list, an empty map, or a map of
free keys (labels, annotations: no `properties` in the schema). The table sits between the README's
`<!-- values-table:start -->` and `<!-- values-table:end -->` markers.

--check (the default) exits 1 when the README's table differs from the generated one;
--write replaces it. tests/k8s/run.sh runs --check.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

START = "<!-- values-table:start -->"
END = "<!-- values-table:end -->"


def resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    """Follow a `$ref` into the schema's definitions (siblings of $ref are kept for the description)."""
    while "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        node = {**schema["definitions"][name], **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def rows(values: Any, schema: dict[str, Any], node: dict[str, Any], path: str = ""):
    """(key, schema node, default) for every table row under `path`."""
    for key, value in values.items():
        key_path = f"{path}.{key}" if path else key
        child = (node.get("properties") or {}).get(key)
        if child is None:
            yield key_path, None, value
            continue
        resolved = resolve(schema, child)
        if isinstance(value, dict) and value and "properties" in resolved:
            yield from rows(value, schema, resolved, key_path)
        else:
            yield key_path, child, value


def type_of(schema: dict[str, Any], node: dict[str, Any] | None) -> str:
    if node is None:
        return "?"
    node = resolve(schema, node)
    if "enum" in node:
        return " \\| ".join(f"`{json.dumps(v)}`" for v in node["enum"])
    if "oneOf" in node:
        return "string or number"
    t = node.get("type", "object")
    return " or ".join(t) if isinstance(t, list) else t


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def default_of(value: Any) -> str:
    if value in ("", None):
        return '`""`' if value == "" else "`null`"
    if isinstance(value, (dict, list)) and not value:
        return f"`{json.dumps(value)}`"
    if isinstance(value, (dict, list)):
        return "<code>" + cell(json.dumps(value, separators=(", ", ": "))) + "</code>"
    return f"`{json.dumps(value)}`"


def table(chart: Path) -> str:
    values = yaml.safe_load((chart / "values.yaml").read_text())
    schema = json.loads((chart / "values.schema.json").read_text())
    lines = ["| key | type | default | description |", "|---|---|---|---|"]
    for key, node, value in rows(values, schema, schema):
        desc = "" if node is None else node.get("description") or resolve(schema, node).get("description", "")
        lines.append(f"| `{key}` | {type_of(schema, node)} | {default_of(value)} | {cell(desc)} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    mode = "--write" if "--write" in sys.argv else "--check"
    chart = Path(args[0]) if args else Path(__file__).resolve().parents[2] / "charts" / "mcp-pep"
    readme = chart / "README.md"
    text = readme.read_text()
    if START not in text or END not in text:
        print(f"values-table: {readme} has no {START} … {END} markers")
        return 1
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{START}\n{table(chart)}{END}{tail}"
    if mode == "--write":
        readme.write_text(new)
        print(f"values-table: wrote {readme}")
        return 0
    if new != text:
        print(f"values-table: {readme} is out of date; run: tests/k8s/.venv/bin/python tests/k8s/values_table.py --write")
        return 1
    print("values-table: README table is current")
    return 0


if __name__ == "__main__":
    sys.exit(main())
