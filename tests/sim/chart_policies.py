#!/usr/bin/env python3
"""The policy ConfigMaps the pods mount, as the Helm chart renders them.

  chart_policies.py OUT.json --chart DIR --policies DIR --namespace NS... [--no-chart]
                    [--identity SPIFFE_ID=LEVEL]... [--categories LEVEL=CAT,CAT]...

Renders charts/mcp-pep (helm_python, tests/k8s/.venv) with `policies.namespaces` = the pods'
namespaces and writes {"source": ..., "configmaps": {namespace: {name: data}}}. With
--identity/--categories the shipped catalog.json is changed (a trust level per SPIFFE ID, the
tool categories of a level) and handed to the chart as `policies.files`, the way a user would
change the data on a `helm upgrade`. If helm_python cannot be imported or the chart does not
render, the data is read from the policies directory (every .rego/.json but *_test.rego, the
files the chart ships) and "source" says why.
"""

import argparse
import json
import sys
from pathlib import Path

RELEASE, RELEASE_NS = "mcp-pep", "mcp-pep"


def changed_catalog(text: str, identities: list[str], categories: list[str]) -> str:
    catalog = json.loads(text)
    data = catalog["mcp_pep"]
    for item in identities:
        sid, _, level = item.rpartition("=")
        if level:
            data["identities"][sid] = level
        else:
            data["identities"].pop(sid, None)
    for item in categories:
        level, _, cats = item.partition("=")
        data["levels"][level]["categories"] = [c for c in cats.split(",") if c]
    return json.dumps(catalog, indent=2) + "\n"


def from_chart(args, files: dict[str, str]) -> dict:
    import helm_python as helm  # noqa: PLC0415 (optional)
    import yaml  # noqa: PLC0415

    values = {"policies": {"namespaces": args.namespace}}
    if files:
        values["policies"]["files"] = files
    chart = helm.Chart.load(args.chart)
    rendered = chart.render(values, name=RELEASE, namespace=RELEASE_NS, is_install=True)
    out: dict[str, dict] = {}
    for path, text in rendered.items():
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc and doc.get("kind") == "ConfigMap":
                ns = doc["metadata"].get("namespace", RELEASE_NS)
                data = dict(doc.get("data") or {})
                for k in (doc.get("binaryData") or {}):
                    raise ValueError(f"ConfigMap {doc['metadata']['name']}: binaryData {k} not emulated")
                out.setdefault(ns, {})[doc["metadata"]["name"]] = data
    return out


def from_dir(args, files: dict[str, str]) -> dict:
    data = {p.name: p.read_text() for p in sorted(Path(args.policies).iterdir())
            if p.suffix in (".rego", ".json") and not p.name.endswith("_test.rego")}
    data.update(files)
    return {ns: {"mcp-pep-policies": dict(data)} for ns in args.namespace}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--chart", required=True)
    ap.add_argument("--policies", required=True)
    ap.add_argument("--namespace", action="append", required=True)
    ap.add_argument("--no-chart", action="store_true")
    ap.add_argument("--identity", action="append", default=[])
    ap.add_argument("--categories", action="append", default=[])
    args = ap.parse_args()

    files = {}
    if args.identity or args.categories:
        files["catalog.json"] = changed_catalog((Path(args.policies) / "catalog.json").read_text(),
                                                args.identity, args.categories)
    source, configmaps = None, None
    if not args.no_chart:
        try:
            configmaps = from_chart(args, files)
            source = f"chart {args.chart} (helm_python render, release {RELEASE} in {RELEASE_NS})"
        except Exception as e:  # noqa: BLE001 (any failure: fall back, and say so)
            reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
            print(f"chart_policies.py: the chart did not render ({reason}); using {args.policies}",
                  file=sys.stderr)
            source = f"{args.policies} (the chart did not render: {reason})"
    else:
        source = f"{args.policies} (chart not used)"
    if configmaps is None:
        configmaps = from_dir(args, files)
    Path(args.out).write_text(json.dumps({"source": source, "configmaps": configmaps}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
