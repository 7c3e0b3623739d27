#!/usr/bin/env python3
"""The mcp-pep Helm chart, tested offline (no cluster, no helm binary).

    k8s_test.py [--chart DIR] [--out DIR] [--bin MCP_PEP_BIN] [--promtool PATH]

Every check prints `PASS name` or `FAIL name: why` and counts; the last line is
`k8s: N passed, M failed, K skipped`, exit 1 on any failure. Checks that need the mcp-pep
binary are skipped when it is not built (or lacks the subcommand), never failed.

Helm is helm-python-sdk (the Helm v4 SDK): lint and render. Rendering cannot set the
Kubernetes version or the API versions (it uses v1.36.0 and only built-in APIs), so the
chart's kubeVersion constraint is evaluated here, and the Prometheus Operator objects are
rendered with monitoring.force. Manifests are validated with kubernetes-validate (strict) for
each supported Kubernetes version; CRD kinds have no schema there and are checked by hand.
"""

from __future__ import annotations

import argparse
import base64
import copy
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request
from pathlib import Path
from typing import Any, Callable

import helm_python as helm
import kubernetes_validate as kv
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
KUBE_VERSIONS = ["1.29.0", "1.31.0", "1.33.0"]
RELEASE, NAMESPACE = "mcp-pep", "mcp-pep"
CRD_KINDS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PodMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("cert-manager.io/v1", "Issuer"),
    ("cert-manager.io/v1", "Certificate"),
}
# The flags of `mcp-pep webhook` (the contract between the injector, the chart and the image).
WEBHOOK_FIXED_ARGS = ["webhook", "--listen", "0.0.0.0:8443", "--tls-cert", "/tls/tls.crt",
                      "--tls-key", "/tls/tls.key", "--metrics-listen", "0.0.0.0:9091"]
INJECTOR_FLAGS = {"--image", "--trust-domain", "--policy-configmap", "--csi-driver",
                  "--socket-name", "--issuer", "--log-format",
                  "--state-redis-url", "--state-redis-password-secret", "--state-redis-ca-secret"}
METRICS = {  # README "Observability"
    "mcp_pep_decisions_total", "mcp_pep_policy_reloads_total", "mcp_pep_svid_expiry_timestamp_seconds",
    "mcp_pep_upstream_errors_total", "mcp_pep_request_duration_seconds", "mcp_pep_policy_evaluation_duration_seconds",
}


class Failed(Exception):
    pass


def expect(cond: Any, why: str) -> None:
    if not cond:
        raise Failed(why)


class Runner:
    def __init__(self) -> None:
        self.passed = self.failed = self.skipped = 0

    def check(self, name: str, fn: Callable[[], Any]) -> bool:
        try:
            note = fn()
        except Failed as e:
            self.failed += 1
            print(f"FAIL {name}: {e}")
            return False
        except Skip as e:
            self.skipped += 1
            print(f"SKIP {name}: {e}")
            return True
        except Exception as e:  # a bug in the chart or the test: say where
            self.failed += 1
            print(f"FAIL {name}: {type(e).__name__}: {e}")
            if not isinstance(e, helm.HelmError):  # Helm's own errors say enough
                traceback.print_exc(limit=3, file=sys.stdout)
            return False
        self.passed += 1
        print(f"PASS {name}" + (f" ({note})" if note else ""))
        return True


class Skip(Exception):
    pass


# ---------------------------------------------------------------- rendering helpers


def load_values(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text()) or {}


def render(chart: helm.Chart, values: dict[str, Any], namespace: str = NAMESPACE) -> list[dict[str, Any]]:
    """Schema-validated render; every manifest document, NOTES.txt left out."""
    chart.validate_schema(values)
    out = chart.render(values, name=RELEASE, namespace=namespace, is_install=True)
    docs = []
    for path, text in sorted(out.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                doc.setdefault("metadata", {})
                docs.append(doc)
    return docs


def of_kind(docs, kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d["kind"] == kind]


def one(docs, kind: str, component: str | None = None) -> dict[str, Any]:
    found = [d for d in of_kind(docs, kind)
             if component is None or d["metadata"].get("labels", {}).get("app.kubernetes.io/component") == component]
    expect(len(found) == 1, f"expected one {kind}{' of ' + component if component else ''}, found {len(found)}")
    return found[0]


def matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    """A LabelSelector's verdict on a label set (matchLabels and matchExpressions)."""
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or []:
        k, op, vals = e["key"], e["operator"], e.get("values") or []
        if op == "In" and labels.get(k) not in vals:
            return False
        if op == "NotIn" and k in labels and labels[k] in vals:
            return False
        if op == "Exists" and k not in labels:
            return False
        if op == "DoesNotExist" and k in labels:
            return False
    return True


def pod_spec(deploy: dict[str, Any]) -> dict[str, Any]:
    return deploy["spec"]["template"]["spec"]


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container.get("env") or []}


def flag_value(args: list[str], flag: str) -> str | None:
    for i, a in enumerate(args):
        if a == flag and i + 1 < len(args):
            return args[i + 1]
        if a.startswith(flag + "="):
            return a.split("=", 1)[1]
    return None


# ---------------------------------------------------------------- semver (Masterminds' rules)


def parse_version(text: str) -> tuple[tuple[int, int, int], list[str]]:
    m = re.fullmatch(r"v?(\d+)(?:\.(\d+))?(?:\.(\d+))?(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?", text.strip())
    if not m:
        raise ValueError(f"not a version: {text!r}")
    core = tuple(int(x or 0) for x in m.group(1, 2, 3))
    return core, (m.group(4).split(".") if m.group(4) else [])


def compare(a: str, b: str) -> int:
    (ca, pa), (cb, pb) = parse_version(a), parse_version(b)
    if ca != cb:
        return -1 if ca < cb else 1
    if pa == pb:
        return 0
    if not pa or not pb:  # a release is above its prereleases
        return 1 if not pa else -1
    for x, y in zip(pa, pb):
        if x == y:
            continue
        if x.isdigit() and y.isdigit():
            return -1 if int(x) < int(y) else 1
        if x.isdigit() != y.isdigit():  # numeric identifiers sort first
            return -1 if x.isdigit() else 1
        return -1 if x < y else 1
    return -1 if len(pa) < len(pb) else (1 if len(pa) > len(pb) else 0)


def satisfies(version: str, constraint: str) -> bool:
    """Masterminds/semver (what Helm checks kubeVersion with): `||` of comma/space-separated
    comparisons; a prerelease version only matches a comparison that has a prerelease."""
    ops = {">=": lambda c: c >= 0, "<=": lambda c: c <= 0, ">": lambda c: c > 0,
           "<": lambda c: c < 0, "!=": lambda c: c != 0, "=": lambda c: c == 0}
    _, pre = parse_version(version)
    for alternative in constraint.split("||"):
        terms = re.findall(r"(>=|<=|!=|>|<|=)?\s*(v?[0-9][0-9A-Za-z.+-]*)", alternative)
        if not terms:
            raise ValueError(f"unsupported constraint {constraint!r}")
        ok = True
        for op, ver in terms:
            if pre and not parse_version(ver)[1]:
                ok = False
            if not ops[op or "="](compare(version, ver)):
                ok = False
        if ok:
            return True
    return False


# ---------------------------------------------------------------- the checks


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chart", type=Path, default=ROOT / "charts" / "mcp-pep")
    ap.add_argument("--out", type=Path, default=HERE / "out")
    ap.add_argument("--bin", type=Path, default=None)
    ap.add_argument("--promtool", default=None)
    args = ap.parse_args()
    chart_dir: Path = args.chart.resolve()
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*"):
        shutil.rmtree(stale) if stale.is_dir() else stale.unlink()
    r = Runner()
    chart = helm.Chart.load(chart_dir)
    ci_files = sorted((chart_dir / "ci").glob("*-values.yaml"))
    renders: dict[str, list[dict[str, Any]]] = {}
    ci_values: dict[str, dict[str, Any]] = {}

    # 1. Chart.yaml
    def chart_yaml():
        meta = yaml.safe_load((chart_dir / "Chart.yaml").read_text())
        expect(meta["apiVersion"] == "v2", "apiVersion must be v2 (Helm 3 and 4)")
        expect(meta.get("kubeVersion") == ">=1.29.0-0", f"kubeVersion is {meta.get('kubeVersion')!r}")
        expect(meta.get("type", "application") == "application", "type")
        for v in ["1.27.0", "v1.27.16", "1.28.0", "v1.28.15", "v1.28.15-eks-1234"]:
            expect(not satisfies(v, meta["kubeVersion"]), f"kubeVersion admits {v}")
        for v in ["1.29.0", "v1.29.0-eks-abc", "v1.29.4+k3s1", "1.31.0", "v1.33.0", "v1.36.0"]:
            expect(satisfies(v, meta["kubeVersion"]), f"kubeVersion refuses {v}")
        return f"kubeVersion {meta['kubeVersion']}: refuses 1.27/1.28, admits 1.29-1.36"
    r.check("Chart.yaml: apiVersion v2, kubeVersion excludes 1.27 and 1.28", chart_yaml)

    # 2. lint, strict, per Kubernetes version, defaults and every ci file
    for kube in KUBE_VERSIONS:
        def lint(kube=kube):
            notes = []
            for values_file in [None, *ci_files]:
                values = load_values(values_file) if values_file else None
                report = helm.lint(chart_dir, values, strict=True, kube_version=f"v{kube}", namespace=NAMESPACE)
                bad = [m for m in report["messages"] if m["severity"] >= 2] + [{"error": e} for e in report["errors"]]
                expect(not bad, f"{values_file.name if values_file else 'defaults'}: {bad}")
                notes += [m["error"] for m in report["messages"]]
            return f"{len(ci_files) + 1} value sets; info: {sorted(set(notes))}" if notes else f"{len(ci_files) + 1} value sets"
        r.check(f"helm lint --strict --kube-version {kube}", lint)

    # 3. render every ci file
    for f in ci_files:
        name = f.name.removesuffix("-values.yaml")
        def do_render(f=f, name=name):
            values = load_values(f)
            docs = render(chart, values)
            expect(docs, "rendered nothing")
            (out / f"{name}.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
            renders[name], ci_values[name] = docs, values
            return f"{len(docs)} objects: " + ", ".join(sorted({d['kind'] for d in docs}))
        r.check(f"render ci/{f.name}", do_render)
    expect_ci = {"default", "cert-manager", "standalone", "existing-configmap-monitoring", "network-policy", "failure-policy-ignore"}
    r.check("ci matrix covers default, cert-manager, standalone, existing ConfigMap + monitoring, network policy, failurePolicy Ignore",
            lambda: expect(expect_ci <= set(renders), f"missing: {sorted(expect_ci - set(renders))}"))

    # 4. Kubernetes schemas, strict, per version
    def validator_is_strict():
        cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "dataa": {}}
        try:
            kv.validate(cm, "1.29.0", strict=True)
        except kv.ValidationError:
            return "a misspelt key is refused"
        raise Failed("kubernetes-validate accepted an unknown field")
    r.check("kubernetes-validate refuses an unknown field (strict)", validator_is_strict)
    for kube in KUBE_VERSIONS:
        def validate(kube=kube):
            n = crds = 0
            for name, docs in renders.items():
                for d in docs:
                    key = (d["apiVersion"], d["kind"])
                    try:
                        kv.validate(d, kube, strict=True)
                        n += 1
                    except kv.SchemaNotFoundError:
                        expect(key in CRD_KINDS, f"{name}: no schema for {key} (not a known CRD kind)")
                        crds += 1
                    except kv.ValidationError as e:
                        raise Failed(f"{name}: {d['kind']}/{d['metadata'].get('name')}: {e}")
            return f"{n} manifests valid, {crds} CRD objects checked structurally"
        r.check(f"kubernetes-validate --strict {kube} (every ci render)", validate)

    # 5. what the rendered objects must say
    for name, docs in renders.items():
        values = chart.merge_values(ci_values[name])
        r.check(f"{name}: workloads hardened", lambda docs=docs: hardened(docs))
        if values["webhook"]["enabled"]:
            r.check(f"{name}: webhook Deployment, args, Service, PDB", lambda docs=docs, values=values: webhook_objects(docs, values))
            r.check(f"{name}: MutatingWebhookConfiguration", lambda docs=docs, values=values: webhook_config(docs, values))
            if values["webhook"]["tls"]["certManager"]["enabled"]:
                r.check(f"{name}: cert-manager Issuer/Certificate (structural)", lambda docs=docs, values=values: cert_manager(docs, values))
            else:
                r.check(f"{name}: generated TLS: the caBundle verifies the serving certificate for the Service name",
                        lambda docs=docs, name=name: generated_tls(docs, out / f"tls-{name}"))
        else:
            r.check(f"{name}: no webhook objects", lambda docs=docs: expect(
                not of_kind(docs, "MutatingWebhookConfiguration") and not [d for d in of_kind(docs, "Deployment")
                if d["metadata"]["labels"]["app.kubernetes.io/component"] == "webhook"], "webhook objects rendered"))
        r.check(f"{name}: policy ConfigMaps", lambda docs=docs, values=values: policy_configmaps(docs, values, chart_dir))
        if values["standalone"]["enabled"]:
            r.check(f"{name}: standalone Deployment, config, Services", lambda docs=docs, values=values: standalone(docs, values))
        r.check(f"{name}: monitoring objects", lambda docs=docs, values=values: monitoring(docs, values))
        if values["networkPolicy"]["enabled"]:
            r.check(f"{name}: NetworkPolicies select their pods and name their ports", lambda docs=docs: network_policies(docs))

    # 6. what must not render
    def refusals():
        cases = [
            ({"standalone": {"enabled": True}}, "standalone.upstream is required"),
            ({"policies": {"shipped": False}}, "policies: no files"),
        ]
        for values, want in cases:
            try:
                render(chart, values)
            except helm.HelmError as e:
                expect(want in str(e), f"{values}: error does not say {want!r}: {e}")
                continue
            raise Failed(f"{values} rendered")
        return f"{len(cases)} refused with their reason"
    r.check("render refuses incomplete values", refusals)

    # 7. the schema refuses bad values
    def schema_refuses():
        bad = [
            ({"unknownTop": 1}, "unknown top-level key"),
            ({"webhook": {"tls": {"typo": True}}}, "unknown nested key"),
            ({"webhook": {"replicas": "two"}}, "wrong type (string for integer)"),
            ({"webhook": {"failurePolicy": "Sometimes"}}, "value outside the enum"),
            ({"webhook": {"timeoutSeconds": 31}}, "timeoutSeconds above 30"),
            ({"standalone": {"config": {"policy": {"dirr": "/x"}}}}, "unknown key in the mcp-pep config"),
            ({"standalone": {"config": {"limits": {"max_json_depth": "deep"}}}}, "wrong type in the mcp-pep config"),
            ({"policies": {"files": {"../evil.rego": "package x"}}}, "policy file name outside the ConfigMap key grammar"),
            ({"monitoring": {"prometheusRule": {"svidExpiry": {"for": "5 minutes"}}}}, "not a Prometheus duration"),
            ({"webhook": {"resources": {"requests": {"cpu": "a lot"}}}}, "not a quantity"),
        ]
        for values, what in bad:
            try:
                chart.validate_schema(values)
            except helm.HelmValuesError:
                pass
            else:
                raise Failed(f"schema accepted {what}: {values}")
            try:
                chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
            except helm.HelmError:
                continue
            raise Failed(f"render (helm template) accepted {what}: {values}")
        for f in ci_files:
            chart.validate_schema(load_values(f))
        chart.validate_schema(yaml.safe_load((chart_dir / "values.yaml").read_text()))
        bad_file = out / "bad-values.yaml"
        bad_file.write_text("webhook:\n  replicas: two\n  typo: 1\n")
        report = helm.lint(chart_dir, load_values(bad_file), strict=True, kube_version="v1.31.0")
        expect(report["errors"] or any(m["severity"] >= 3 for m in report["messages"]), "lint accepted a bad values file")
        return f"{len(bad)} bad value sets refused by validate_schema and render; lint refuses {bad_file.name}"
    r.check("values.schema.json refuses unknown keys and wrong types", schema_refuses)

    # 8. coverage: values.yaml ↔ schema ↔ README; the config schema ↔ the repository README
    r.check("every values.yaml key is in values.schema.json (and every schema key in values.yaml)", lambda: schema_coverage(chart_dir))
    r.check("every values.yaml key is in the README values table", lambda: readme_coverage(chart_dir))
    r.check("the README values table is current (values_table.py --check)", lambda: expect(
        subprocess.run([sys.executable, str(HERE / "values_table.py"), "--check", str(chart_dir)], capture_output=True, text=True).returncode == 0,
        "charts/mcp-pep/README.md's table is out of date: run tests/k8s/.venv/bin/python tests/k8s/values_table.py --write"))
    r.check("standalone.config schema has exactly the keys of README's Configuration reference", lambda: config_schema_coverage(chart_dir))

    # 9. the chart's copy of the shipped policies
    r.check("charts/mcp-pep/policies equals policies/ (non-test *.rego, *.json)", lambda: policies_copy(chart_dir))

    # 10. alerts and dashboard with promtool
    promtool = args.promtool or shutil.which("promtool") or str(HERE / ".tools" / "usr" / "bin" / "promtool")
    r.check("PrometheusRule: promtool check rules (every ci render with rules)", lambda: promtool_check(promtool, renders, out))
    r.check("PrometheusRule: promtool test rules (each alert fires and stays quiet as it should)", lambda: promtool_test(promtool, chart, out))
    r.check("Grafana dashboard: panels, p50/p99 and decisions, queries parse (promtool)", lambda: dashboard(promtool, renders["default"], out))

    # 11. the chart's objects against the real binary, when built
    binary = args.bin or Path(os.environ.get("MCP_PEP_BIN", ROOT / "target" / "debug" / "mcp-pep"))
    r.check("mcp-pep check-config accepts each standalone render's MCP_PEP_CONFIG_YAML", lambda: binary_check_config(binary, renders, chart_dir, out))
    r.check("standalone pod run as rendered (kubelet-style ConfigMap volume) gets ready", lambda: binary_run_standalone(binary, renders, chart_dir, out))
    r.check("mcp-pep webhook accepts every flag the chart passes", lambda: binary_webhook_flags(binary, renders))
    r.check("webhook run as rendered: TLS verified with the caBundle, probes, AdmissionReview → injected pod valid for 1.29/1.31/1.33, refused for 1.27",
            lambda: binary_run_webhook(binary, renders, out))

    print(f"outputs: {out}/ (rendered manifests per ci file, rules, promtool tests, binary logs)")
    print(f"k8s: {r.passed} passed, {r.failed} failed, {r.skipped} skipped")
    return 1 if r.failed else 0


# ---------------------------------------------------------------- object checks


def workloads(docs):
    return of_kind(docs, "Deployment")


def hardened(docs):
    n = 0
    for d in workloads(docs):
        spec = pod_spec(d)
        name = d["metadata"]["name"]
        expect(spec.get("automountServiceAccountToken") is False, f"{name}: service account token mounted")
        psc = spec.get("securityContext", {})
        expect(psc.get("runAsNonRoot") is True and psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{name}: pod securityContext {psc}")
        for c in spec.get("initContainers", []) + spec["containers"]:
            sc = c.get("securityContext", {})
            want = {"runAsNonRoot": True, "runAsUser": 65532, "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False}
            for k, v in want.items():
                expect(sc.get(k) == v, f"{name}/{c['name']}: securityContext.{k} is {sc.get(k)!r}, want {v!r}")
            expect(sc.get("capabilities", {}).get("drop") == ["ALL"], f"{name}/{c['name']}: capabilities.drop")
            expect(sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{name}/{c['name']}: seccompProfile")
            expect(c.get("resources", {}).get("requests") and c["resources"].get("limits"), f"{name}/{c['name']}: resources")
            expect(c.get("readinessProbe") and c.get("livenessProbe"), f"{name}/{c['name']}: probes")
            ports = {p["name"] for p in c.get("ports", [])}
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                if probe in c:
                    expect(c[probe]["httpGet"]["port"] in ports, f"{name}/{c['name']}: {probe} port {c[probe]['httpGet']['port']} is not a container port")
            n += 1
        sel = d["spec"]["selector"]["matchLabels"]
        expect(matches({"matchLabels": sel}, d["spec"]["template"]["metadata"]["labels"]), f"{name}: selector does not match its pods")
    return f"{n} containers"


def webhook_objects(docs, values):
    w, i = values["webhook"], values["injector"]
    dep = one(docs, "Deployment", "webhook")
    spec = pod_spec(dep)
    c = spec["containers"][0]
    expect(dep["spec"]["replicas"] == w["replicas"], "replicas")
    a = c["args"]
    fixed = WEBHOOK_FIXED_ARGS if (w["port"], w["metricsPort"]) == (8443, 9091) else None
    if fixed:
        expect(a[:len(fixed)] == fixed, f"args start {a[:len(fixed)]}, want {fixed}")
    rest = a[len(WEBHOOK_FIXED_ARGS):]
    flags = rest[0::2]
    expect(set(flags) <= INJECTOR_FLAGS, f"unknown injector flags {set(flags) - INJECTOR_FLAGS}")
    image = values["image"]["repository"] + ":" + (values["image"]["tag"] or "0.1.0")
    if values["image"]["digest"]:
        image += "@" + values["image"]["digest"]
    expect(c["image"] == image, f"image {c['image']}, want {image}")
    want = {
        "--image": i["image"] or image, "--trust-domain": i["trustDomain"],
        "--policy-configmap": i["policyConfigMap"] or values["policies"]["existingConfigMap"] or values["policies"]["configMapName"],
        "--csi-driver": i["csiDriver"], "--socket-name": i["socketName"], "--log-format": i["logFormat"],
    }
    if i["issuer"]:
        want["--issuer"] = i["issuer"]
    for flag, key in (("--state-redis-url", "url"), ("--state-redis-password-secret", "passwordSecret"), ("--state-redis-ca-secret", "caSecret")):
        v = i["state"]["redis"][key]
        expect((flag in a) == bool(v), f"{flag} without its value, or the value without the flag")
        if v:
            want[flag] = v
    for flag, v in want.items():
        expect(flag_value(a, flag) == v, f"{flag} is {flag_value(a, flag)!r}, want {v!r}")
    expect(("--issuer" in a) == bool(i["issuer"]), "--issuer without an issuer")
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    expect(ports == {"https": w["port"], "metrics": w["metricsPort"]}, f"ports {ports}")
    expect(flag_value(a, "--listen") == f"0.0.0.0:{w['port']}" and flag_value(a, "--metrics-listen") == f"0.0.0.0:{w['metricsPort']}", "listen flags vs ports")
    expect(c["readinessProbe"]["httpGet"]["path"] == "/healthz" and c["livenessProbe"]["httpGet"]["path"] == "/healthz", "probes on /healthz")
    mounts = {m["name"]: m for m in c["volumeMounts"]}
    expect(mounts["tls"]["mountPath"] == "/tls" and mounts["tls"]["readOnly"], "tls mount")
    secret = {v["name"]: v for v in spec["volumes"]}["tls"]["secret"]["secretName"]
    expect(secret == f"{RELEASE}-webhook-tls", f"tls Secret {secret}")
    expect(spec["serviceAccountName"] == one(docs, "ServiceAccount", "webhook")["metadata"]["name"]
           if w["serviceAccount"]["create"] else True, "service account")
    svc = one(docs, "Service", "webhook")
    expect(matches({"matchLabels": svc["spec"]["selector"]}, dep["spec"]["template"]["metadata"]["labels"]), "Service selects no webhook pod")
    sp = {p["name"]: p for p in svc["spec"]["ports"]}
    expect(sp["https"]["port"] == w["service"]["port"] and sp["https"]["targetPort"] in ports, "Service https port")
    pdbs = [d for d in of_kind(docs, "PodDisruptionBudget") if d["metadata"]["labels"]["app.kubernetes.io/component"] == "webhook"]
    expect(len(pdbs) == (1 if w["podDisruptionBudget"]["enabled"] else 0), "PDB")
    for p in pdbs:
        expect(matches(p["spec"]["selector"], dep["spec"]["template"]["metadata"]["labels"]), "PDB selects no webhook pod")
    for k, v in (w["podAnnotations"] or {}).items():
        expect(dep["spec"]["template"]["metadata"]["annotations"].get(k) == v, f"pod annotation {k}")
    if w["env"]:
        expect(c["env"] == w["env"], "env")
    return f"args {' '.join(a)}"


def webhook_config(docs, values):
    w = values["webhook"]
    mwc = one(docs, "MutatingWebhookConfiguration")
    expect("namespace" not in mwc["metadata"], "cluster-scoped object with a namespace")
    expect(len(mwc["webhooks"]) == 1, "one webhook")
    h = mwc["webhooks"][0]
    expect(h["name"].count(".") >= 2, f"webhook name {h['name']} is not fully qualified")
    fixed = {"sideEffects": "None", "reinvocationPolicy": "IfNeeded", "matchPolicy": "Equivalent",
             "admissionReviewVersions": ["v1"], "failurePolicy": w["failurePolicy"], "timeoutSeconds": w["timeoutSeconds"]}
    for k, v in fixed.items():
        expect(h.get(k) == v, f"{k} is {h.get(k)!r}, want {v!r}")
    expect(h["rules"] == [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"], "scope": "Namespaced"}], f"rules {h['rules']}")
    svc = one(docs, "Service", "webhook")
    cc = h["clientConfig"]["service"]
    expect(cc == {"name": svc["metadata"]["name"], "namespace": NAMESPACE, "path": "/mutate", "port": w["service"]["port"]}, f"clientConfig.service {cc}")
    # which namespaces the selector admits
    key, val = w["namespaceSelector"]["labelKey"], w["namespaceSelector"]["labelValue"]
    sel = h["namespaceSelector"]

    def ns(name, labelled):
        labels = {"kubernetes.io/metadata.name": name}
        if labelled:
            labels[key] = val
        return matches(sel, labels)
    expect(ns("agents", True), "a labelled namespace is not selected")
    expect(not ns("agents", False), "an unlabelled namespace is selected")
    expect(not matches(sel, {"kubernetes.io/metadata.name": "agents", key: "disabled"}), "label value other than the opt-in is selected")
    for excluded in [NAMESPACE, "kube-system", *w["excludeNamespaces"]]:
        expect(not ns(excluded, True), f"{excluded} is selected")
    expect(h.get("objectSelector", {}) == (w["objectSelector"] or {}), "objectSelector")
    return f"{h['failurePolicy']}, {h['timeoutSeconds']} s, opt-in {key}={val}, excluded {[NAMESPACE, *w['excludeNamespaces']]}"


def cert_manager(docs, values):
    cm = values["webhook"]["tls"]["certManager"]
    mwc = one(docs, "MutatingWebhookConfiguration")
    expect("caBundle" not in mwc["webhooks"][0]["clientConfig"], "caBundle set although cainjector fills it")
    expect(not of_kind(docs, "Secret"), "a generated Secret besides cert-manager's")
    inject = mwc["metadata"].get("annotations", {}).get("cert-manager.io/inject-ca-from", "")
    ns, _, cert_name = inject.partition("/")
    certs = {d["metadata"]["name"]: d for d in of_kind(docs, "Certificate")}
    issuers = {d["metadata"]["name"]: d for d in of_kind(docs, "Issuer")}
    for d in list(certs.values()) + list(issuers.values()):
        expect(d["apiVersion"] == "cert-manager.io/v1" and d["metadata"].get("namespace") == NAMESPACE, f"{d['kind']} {d['metadata']['name']}: apiVersion/namespace")
        expect(set(d) <= {"apiVersion", "kind", "metadata", "spec"}, f"{d['kind']}: top-level keys {set(d)}")
    expect(ns == NAMESPACE and cert_name in certs, f"inject-ca-from {inject!r} names no rendered Certificate")
    serving = certs[cert_name]["spec"]
    dep = one(docs, "Deployment", "webhook")
    secret = {v["name"]: v for v in pod_spec(dep)["volumes"]}["tls"]["secret"]["secretName"]
    expect(serving["secretName"] == secret, f"Certificate writes {serving['secretName']}, the webhook mounts {secret}")
    svc = one(docs, "Service", "webhook")["metadata"]["name"]
    expect(f"{svc}.{NAMESPACE}.svc" in serving["dnsNames"], f"dnsNames {serving['dnsNames']} lack {svc}.{NAMESPACE}.svc")
    expect("server auth" in serving.get("usages", []), "usages lack server auth")
    allowed = {"secretName", "duration", "renewBefore", "commonName", "dnsNames", "usages", "privateKey", "issuerRef", "isCA"}
    for c in certs.values():
        expect(set(c["spec"]) <= allowed, f"Certificate {c['metadata']['name']}: unknown spec keys {set(c['spec']) - allowed}")
        expect(set(c["spec"]["issuerRef"]) <= {"name", "kind", "group"}, "issuerRef keys")
        pk = c["spec"].get("privateKey", {})
        expect(set(pk) <= {"algorithm", "size", "encoding", "rotationPolicy"} and pk.get("algorithm", "RSA") in {"RSA", "ECDSA", "Ed25519"}, f"privateKey {pk}")
        for k in ("duration", "renewBefore"):
            if k in c["spec"]:
                expect(re.fullmatch(r"([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+", c["spec"][k]), f"{k} {c['spec'][k]} is not a Go duration")
    for i in issuers.values():
        expect(len(i["spec"]) == 1 and next(iter(i["spec"])) in {"selfSigned", "ca"}, f"Issuer {i['metadata']['name']} spec {i['spec']}")
    ref = serving["issuerRef"]
    if cm["issuerRef"]["name"]:
        expect(ref == cm["issuerRef"], f"issuerRef {ref}, want {cm['issuerRef']}")
        expect(len(certs) == 1 and not issuers, "the chart made its own CA although an issuer was given")
    else:
        # serving ← CA Issuer ← CA Certificate (isCA) ← self-signed Issuer
        expect(ref["kind"] == "Issuer" and ref["name"] in issuers, f"issuerRef {ref} names no rendered Issuer")
        ca_issuer = issuers[ref["name"]]["spec"]
        expect("ca" in ca_issuer, "the serving certificate's Issuer is not a CA Issuer")
        ca_certs = [c for c in certs.values() if c["spec"]["secretName"] == ca_issuer["ca"]["secretName"]]
        expect(len(ca_certs) == 1 and ca_certs[0]["spec"].get("isCA"), "no CA Certificate writes the CA Issuer's Secret")
        root = ca_certs[0]["spec"]["issuerRef"]["name"]
        expect(root in issuers and "selfSigned" in issuers[root]["spec"], "the CA Certificate is not self-signed")
    return f"inject-ca-from {inject}, issuer {ref['kind']}/{ref['name']}"


def generated_tls(docs, workdir: Path):
    secret = one(docs, "Secret")
    mwc = one(docs, "MutatingWebhookConfiguration")
    dep = one(docs, "Deployment", "webhook")
    expect(secret["type"] == "kubernetes.io/tls", "Secret type")
    expect(secret["metadata"]["name"] == {v["name"]: v for v in pod_spec(dep)["volumes"]}["tls"]["secret"]["secretName"], "the webhook mounts another Secret")
    ca_b64 = mwc["webhooks"][0]["clientConfig"].get("caBundle")
    expect(ca_b64 == secret["data"]["ca.crt"], "caBundle is not the Secret's ca.crt (one render generated two CAs)")
    import hashlib
    want_sum = hashlib.sha256(json.dumps({"ca": base64.b64decode(secret["data"]["ca.crt"]).decode(),
                                          "cert": base64.b64decode(secret["data"]["tls.crt"]).decode(),
                                          "key": base64.b64decode(secret["data"]["tls.key"]).decode()},
                                         separators=(",", ":"), sort_keys=True).encode()).hexdigest()
    expect(dep["spec"]["template"]["metadata"]["annotations"].get("checksum/tls") == want_sum, "checksum/tls is not the Secret's material")
    workdir.mkdir(parents=True, exist_ok=True)
    for k in ("tls.crt", "tls.key", "ca.crt"):
        (workdir / k).write_bytes(base64.b64decode(secret["data"][k]))
    host = f"{one(docs, 'Service', 'webhook')['metadata']['name']}.{NAMESPACE}.svc"
    # A TLS server with the Secret's pair; a client that trusts only the caBundle and
    # checks the Service's DNS name, as the API server does.
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(workdir / "tls.crt", workdir / "tls.key")
    client_ctx = ssl.create_default_context(cadata=base64.b64decode(ca_b64).decode())
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    errors: list[str] = []

    def serve():
        try:
            conn, _ = listener.accept()
            with server_ctx.wrap_socket(conn, server_side=True) as s:
                s.recv(1)
        except Exception as e:  # the client's verdict is what counts
            errors.append(str(e))
        finally:
            listener.close()
    t = threading.Thread(target=serve, daemon=True)
    t.start()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        with client_ctx.wrap_socket(raw, server_hostname=host) as tls:
            peer = tls.getpeercert()
            tls.send(b"x")
    t.join(5)
    sans = [v for k, v in peer.get("subjectAltName", ()) if k == "DNS"]
    expect(host in sans, f"SANs {sans}")
    return f"TLS handshake to {host} verified with the caBundle; SANs {sans}"


def policy_configmaps(docs, values, chart_dir: Path):
    p = values["policies"]
    cms = [d for d in of_kind(docs, "ConfigMap") if d["metadata"]["labels"].get("app.kubernetes.io/component") == "policies"]
    name = p["existingConfigMap"] or p["configMapName"]
    if p["existingConfigMap"]:
        expect(not cms, "a policy ConfigMap rendered although existingConfigMap is set")
    else:
        want_ns = sorted({NAMESPACE, *p["namespaces"]})
        expect(sorted(c["metadata"]["namespace"] for c in cms) == want_ns, f"ConfigMaps in {[c['metadata']['namespace'] for c in cms]}, want {want_ns}")
        want = {}
        if p["shipped"]:
            want = {f.name: f.read_text() for f in sorted((chart_dir / "policies").iterdir())
                    if f.suffix in {".rego", ".json", ".yaml", ".yml"}}
        want.update(p["files"])
        for c in cms:
            expect(c["metadata"]["name"] == name, "name")
            expect(c["data"] == want, f"{c['metadata']['namespace']}: data differs from the files: "
                   + ", ".join(k for k in sorted(set(c["data"]) | set(want)) if c["data"].get(k) != want.get(k)))
    # everything that mounts or names it names this one
    for d in workloads(docs):
        for v in pod_spec(d).get("volumes", []):
            if "configMap" in v:
                expect(v["configMap"]["name"] == name, f"{d['metadata']['name']} mounts {v['configMap']['name']}")
        for c in pod_spec(d)["containers"]:
            for m in c.get("volumeMounts", []):
                expect("subPath" not in m, f"{d['metadata']['name']}: subPath mount (the kubelet never updates it)")
            if "--policy-configmap" in c.get("args", []):
                expect(flag_value(c["args"], "--policy-configmap") == (values["injector"]["policyConfigMap"] or name), "--policy-configmap")
    return f"{name} in {sorted(c['metadata']['namespace'] for c in cms) or 'none (existing)'}" + (f", {len(cms[0]['data'])} files" if cms else "")


def standalone(docs, values):
    s = values["standalone"]
    dep = one(docs, "Deployment", "standalone")
    spec = pod_spec(dep)
    c = spec["containers"][0]
    expect(c["args"] == ["run"], f"args {c['args']}")
    env = env_of(c)
    config = yaml.safe_load(env["MCP_PEP_CONFIG_YAML"])
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    expect(config["listen"] == f"0.0.0.0:{ports['mcp']}" and ports["mcp"] == s["port"], f"listen {config['listen']} vs port {ports}")
    expect(config["admin_listen"] == f"0.0.0.0:{ports['admin']}" and ports["admin"] == s["adminPort"], "admin_listen vs admin port")
    expect(config["upstream"]["url"] == s["upstream"], "upstream")
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    expect(config["policy"]["dir"] in mounts and mounts[config["policy"]["dir"]]["readOnly"], "policy.dir is not the policies mount")
    expect(config["log"] == {"format": values["injector"]["logFormat"], "level": s["logLevel"]} or "log" in s["config"], "log")
    for path, v in flatten(s["config"]):  # the merge kept every configured key
        expect(get_path(config, path) == v, f"config {'.'.join(path)} is {get_path(config, path)!r}, want {v!r}")
    if s["spiffe"]:
        expect(config["identity"]["source"] == "workload_api" and values["injector"]["trustDomain"] in config["identity"]["trust_domains"], "identity")
        vols = {v["name"]: v for v in spec["volumes"]}
        csi = [v for v in vols.values() if "csi" in v]
        expect(len(csi) == 1 and csi[0]["csi"] == {"driver": values["injector"]["csiDriver"], "readOnly": True}, f"csi volume {csi}")
        mount = [m for m in c["volumeMounts"] if m["name"] == csi[0]["name"]][0]
        expect(env["SPIFFE_ENDPOINT_SOCKET"] == f"unix://{mount['mountPath']}/{values['injector']['socketName']}" and mount["readOnly"], "SPIFFE_ENDPOINT_SOCKET vs the CSI mount")
    for e in s["env"]:
        expect(env.get(e["name"]) == e.get("value"), f"env {e['name']}")
    state_wiring(s["state"], config, spec, c)
    expect(dep["spec"]["replicas"] == s["replicas"], "replicas")
    expect(spec["terminationGracePeriodSeconds"] * 1000 > config.get("shutdown_grace_ms", 10000), "terminationGracePeriodSeconds not above shutdown_grace_ms")
    svcs = [d for d in of_kind(docs, "Service") if d["metadata"]["labels"]["app.kubernetes.io/component"] == "standalone"]
    expect(len(svcs) == 2, "an MCP Service and a metrics Service")
    for svc in svcs:
        expect(matches({"matchLabels": svc["spec"]["selector"]}, dep["spec"]["template"]["metadata"]["labels"]), f"{svc['metadata']['name']} selects no pod")
        for port in svc["spec"]["ports"]:
            expect(port["targetPort"] in ports, f"{svc['metadata']['name']}: targetPort {port['targetPort']}")
    mcp_svc = [x for x in svcs if x["spec"]["ports"][0]["name"] == "mcp"][0]
    expect(mcp_svc["spec"]["ports"][0]["port"] == s["service"]["port"] and mcp_svc["spec"]["type"] == s["service"]["type"], "MCP Service port/type")
    return f"config {json.dumps(config)[:160]}…"


def mounted_secret(spec, container, path: str):
    """(Secret name, key) that the file `path` of the container comes from, or None."""
    vols = {v["name"]: v for v in spec["volumes"]}
    for m in container["volumeMounts"]:
        if not path.startswith(m["mountPath"].rstrip("/") + "/") or not m.get("readOnly"):
            continue
        rel = path[len(m["mountPath"].rstrip("/")) + 1:]
        vol = vols[m["name"]]
        sources = [src["secret"] for src in vol.get("projected", {}).get("sources", [])]
        if "secret" in vol:
            sources.append({"name": vol["secret"]["secretName"], "items": vol["secret"].get("items", [])})
        for src in sources:
            for item in src.get("items", []):
                if item["path"] == rel:
                    return src["name"], item["key"]
    return None


def state_wiring(st, config, spec, c):
    """standalone.state: the config's state section and the Secret files it reads."""
    if st["backend"] != "redis":
        expect("state" not in config, "state section without backend redis")
        return
    r, cr = st["redis"], config["state"]["redis"]
    expect(config["state"]["backend"] == "redis" and cr["url"] == r["url"], f"state {config['state']}")
    expect((cr["key_prefix"], cr["timeout_ms"], cr["connect_timeout_ms"], cr["pool_size"]) ==
           (r["keyPrefix"], r["timeoutMs"], r["connectTimeoutMs"], r["poolSize"]), "redis tuning")
    expect(cr.get("username", "") == r["username"], "redis username")
    for file_key, secret in (("password_file", r["passwordSecret"]), ("ca_file", r["caSecret"])):
        if secret["name"]:
            src = mounted_secret(spec, c, cr[file_key])
            expect(src == (secret["name"], secret["key"]), f"{file_key} {cr[file_key]} comes from {src}, want {secret}")
        else:
            expect(file_key not in cr, f"{file_key} without a Secret")
    nonce = st["nonceKeySecret"]
    if nonce["name"]:
        f = config["auth"]["dpop_nonce_secret_file"]
        expect(mounted_secret(spec, c, f) == (nonce["name"], nonce["key"]), f"dpop_nonce_secret_file {f}")


def kubelet_secrets(work: Path, spec, container, config) -> None:
    """Every Secret file the config names, laid out locally with stand-in content (what
    check-config reads), and the config's paths moved there."""
    fake = {"password": "stand-in password\n", "ca.crt": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
            "key": "k" * 48 + "\n"}

    def move(node):
        for k, v in list(node.items()):
            if isinstance(v, dict):
                move(v)
            elif isinstance(v, str) and k.endswith("_file") and mounted_secret(spec, container, v):
                local = work / "secrets" / v.lstrip("/")
                local.parent.mkdir(parents=True, exist_ok=True)
                local.write_text(fake.get(local.name, "stand-in\n"))
                node[k] = str(local)
    move(config)


def flatten(d, prefix=()):
    for k, v in d.items():
        if isinstance(v, dict) and v:
            yield from flatten(v, prefix + (k,))
        else:
            yield prefix + (k,), v


def get_path(d, path):
    for k in path:
        if not isinstance(d, dict) or k not in d:
            return None
        d = d[k]
    return d


def monitoring(docs, values):
    m = values["monitoring"]
    kinds = {d["kind"] for d in docs if d["apiVersion"] == "monitoring.coreos.com/v1"}
    # render() serves no monitoring.coreos.com/v1: only the force flag brings them
    want = set()
    if m["force"]:
        if m["serviceMonitor"]["enabled"] and (values["webhook"]["enabled"] or values["standalone"]["enabled"]):
            want.add("ServiceMonitor")
        if m["podMonitor"]["enabled"]:
            want.add("PodMonitor")
        if m["prometheusRule"]["enabled"]:
            want.add("PrometheusRule")
    expect(kinds == want, f"monitoring kinds {sorted(kinds)}, want {sorted(want)}")
    notes = []
    for d in of_kind(docs, "ServiceMonitor"):
        spec = d["spec"]
        expect(set(spec) <= {"selector", "namespaceSelector", "endpoints", "jobLabel"}, f"ServiceMonitor spec keys {set(spec)}")
        targets = [s for s in of_kind(docs, "Service") if matches(spec["selector"], s["metadata"].get("labels", {}))
                   and s["metadata"]["namespace"] in spec["namespaceSelector"]["matchNames"]]
        expect(targets, "ServiceMonitor selects no Service")
        for ep in spec["endpoints"]:
            expect(set(ep) <= {"port", "path", "scheme", "interval", "scrapeTimeout", "relabelings", "metricRelabelings"}, f"endpoint keys {set(ep)}")
            for s in targets:
                expect(ep["port"] in {p["name"] for p in s["spec"]["ports"]}, f"{s['metadata']['name']} has no port {ep['port']}")
            expect(duration_s(ep["scrapeTimeout"]) <= duration_s(ep["interval"]), "scrapeTimeout above interval")
        notes.append(f"ServiceMonitor → {[s['metadata']['name'] for s in targets]}")
    for d in of_kind(docs, "PodMonitor"):
        spec = d["spec"]
        expect(spec["namespaceSelector"] == {"any": True}, "PodMonitor namespaceSelector")
        for ep in spec["podMetricsEndpoints"]:
            expect(set(ep) <= {"port", "path", "scheme", "interval", "scrapeTimeout", "relabelings", "metricRelabelings"}, f"endpoint keys {set(ep)}")
            expect(ep["port"] == "admin" and ep["path"] == "/metrics", "the sidecar's admin port (contract: port name admin)")
            for rl in ep.get("relabelings", []):
                expect(set(rl) <= {"sourceLabels", "regex", "action", "targetLabel", "replacement", "separator"} and rl.get("action") in {"keep", "drop", "replace", "labelmap"}, f"relabeling {rl}")
            srcs = [s for rl in ep["relabelings"] for s in rl["sourceLabels"]]
            expect("__meta_kubernetes_pod_annotationpresent_mcp_pep_io_injected" in srcs, "PodMonitor does not key on the mcp-pep.io/injected annotation")
        notes.append("PodMonitor: injected sidecars")
    for d in of_kind(docs, "PrometheusRule"):
        groups = d["spec"]["groups"]
        expect(set(d["spec"]) == {"groups"}, "PrometheusRule spec keys")
        alerts = {r["alert"]: r for g in groups for r in g["rules"]}
        want_alerts = {"MCPPepDenyRateSpike": "mcp_pep_decisions_total{decision=\"deny\"}",
                       "MCPPepPolicyReloadFailed": "mcp_pep_policy_reloads_total{result=\"error\"}",
                       "MCPPepSVIDNearExpiry": "mcp_pep_svid_expiry_timestamp_seconds",
                       "MCPPepUpstreamErrors": "mcp_pep_upstream_errors_total"}
        expect(set(alerts) == set(want_alerts), f"alerts {sorted(alerts)}")
        for name, metric in want_alerts.items():
            rule = alerts[name]
            expect(set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, f"{name}: keys {set(rule)}")
            expect(metric in rule["expr"], f"{name}: expr does not use {metric}")
            expect(rule["labels"].get("severity") and {"summary", "description"} <= set(rule["annotations"]), f"{name}: severity/summary/description")
            for k, v in m["prometheusRule"]["labels"].items():
                expect(rule["labels"].get(k) == v, f"{name}: label {k}")
        svid = alerts["MCPPepSVIDNearExpiry"]["expr"]
        expect(re.search(r"- time\(\) < " + str(m["prometheusRule"]["svidExpiry"]["thresholdSeconds"]) + r"$", svid.strip()), f"SVID expr {svid}")
        notes.append(f"PrometheusRule: {sorted(alerts)}")
    for d in of_kind(docs, "ServiceMonitor") + of_kind(docs, "PodMonitor") + of_kind(docs, "PrometheusRule"):
        for k, v in m["labels"].items():
            expect(d["metadata"]["labels"].get(k) == v, f"{d['kind']}: label {k}")
    dash = [d for d in of_kind(docs, "ConfigMap") if "mcp-pep.json" in d.get("data", {})]
    expect(len(dash) == (1 if m["dashboard"]["enabled"] else 0), "dashboard ConfigMap")
    for d in dash:
        expect(d["metadata"]["labels"].get("grafana_dashboard") == "1", "grafana_dashboard label")
        expect(d["metadata"]["namespace"] == (m["dashboard"]["namespace"] or NAMESPACE), "dashboard namespace")
    return "; ".join(notes) or "no Prometheus Operator objects (API not served, not forced)"


def duration_s(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    return sum(float(n) * units[u] for n, u in re.findall(r"(\d+)(ms|s|m|h|d|w|y)", text))


def network_policies(docs):
    nps = of_kind(docs, "NetworkPolicy")
    expect(nps, "no NetworkPolicy")
    notes = []
    for np in nps:
        pods = [d for d in workloads(docs) if matches(np["spec"]["podSelector"], d["spec"]["template"]["metadata"]["labels"])]
        expect(len(pods) == 1, f"{np['metadata']['name']} selects {len(pods)} Deployments")
        names = {p["name"] for c in pod_spec(pods[0])["containers"] for p in c.get("ports", [])}
        for rule in np["spec"].get("ingress", []):
            for p in rule.get("ports", []):
                expect(isinstance(p["port"], int) or p["port"] in names, f"{np['metadata']['name']}: port {p['port']} is not a container port")
        if pods[0]["metadata"]["labels"]["app.kubernetes.io/component"] == "webhook":
            expect(np["spec"]["policyTypes"] == ["Ingress", "Egress"] and np["spec"]["egress"] == [], "the webhook may open no connection")
        notes.append(f"{np['metadata']['name']} → {pods[0]['metadata']['name']}")
    return ", ".join(notes)


# ---------------------------------------------------------------- coverage


def values_paths(values, prefix=""):
    """Every key path of values.yaml (each level, not only leaves)."""
    for k, v in values.items():
        path = f"{prefix}.{k}" if prefix else k
        yield path, v
        if isinstance(v, dict):
            yield from values_paths(v, path)


def schema_node(schema, node, path: list[str]):
    from values_table import resolve
    for k in path:
        node = resolve(schema, node)
        props = node.get("properties")
        if props is not None and k in props:
            node = props[k]
        elif isinstance(node.get("additionalProperties"), dict):
            node = node["additionalProperties"]
        else:
            return None
    return resolve(schema, node)


def schema_closed(schema, node, where, seen=None):
    """Every object level of the schema is closed (additionalProperties false or a typed map)."""
    from values_table import resolve
    node = resolve(schema, node)
    if node.get("type") == "object" or "properties" in node:
        ap = node.get("additionalProperties", True)
        if ap is True and where not in ALLOWED_OPEN:
            raise Failed(f"{where}: object schema without additionalProperties false")
        for k, child in (node.get("properties") or {}).items():
            schema_closed(schema, child, f"{where}.{k}" if where else k)
        if isinstance(ap, dict):
            schema_closed(schema, ap, f"{where}.*")
    if node.get("type") == "array" and isinstance(node.get("items"), dict):
        schema_closed(schema, node["items"], f"{where}[]")


# Kubernetes' own affinity types, checked by the API server and by kubernetes-validate on
# the rendered manifests (their kinds are closed; what is inside each is Kubernetes' schema).
ALLOWED_OPEN = {f"{c}.affinity.{k}" for c in ("webhook", "standalone") for k in ("nodeAffinity", "podAffinity", "podAntiAffinity")}


def schema_coverage(chart_dir: Path):
    sys.path.insert(0, str(HERE))
    schema = json.loads((chart_dir / "values.schema.json").read_text())
    values = yaml.safe_load((chart_dir / "values.yaml").read_text())
    missing = [p for p, _ in values_paths(values) if schema_node(schema, schema, p.split(".")) is None]
    expect(not missing, f"not in the schema: {missing}")
    # the other way: every schema property of the chart's own values exists in values.yaml
    orphans = []

    def walk(node, vals, path):
        from values_table import resolve
        node = resolve(schema, node)
        if not isinstance(vals, dict) or (vals == {} and path):
            return
        for k, child in (node.get("properties") or {}).items():
            p = f"{path}.{k}" if path else k
            if k not in vals:
                orphans.append(p)
            elif "$ref" not in child:  # a shared Kubernetes-shaped type may have optional keys
                walk(child, vals[k], p)
    walk(schema, values, "")
    expect(not orphans, f"in the schema, not in values.yaml: {orphans}")
    schema_closed(schema, schema, "")
    return f"{sum(1 for _ in values_paths(values))} keys; every object level closed"


def readme_coverage(chart_dir: Path):
    values = yaml.safe_load((chart_dir / "values.yaml").read_text())
    readme = (chart_dir / "README.md").read_text()
    table_keys = set(re.findall(r"^\| `([^`]+)` \|", readme.split("<!-- values-table:start -->")[1].split("<!-- values-table:end -->")[0], re.M))
    leaves = [p for p, v in values_paths(values) if not isinstance(v, dict) or not v or free_map(chart_dir, p)]
    # a free-form map's own keys (labels, annotations) are data, not chart values
    leaves = [p for p in leaves if not any(p.startswith(f + ".") for f in leaves)]
    missing = [p for p in leaves if p not in table_keys]
    expect(not missing, f"not in the README table: {missing}")
    extra = sorted(table_keys - set(leaves))
    expect(not extra, f"README rows for no value: {extra}")
    return f"{len(leaves)} values, {len(table_keys)} rows"


def free_map(chart_dir: Path, path: str) -> bool:
    sys.path.insert(0, str(HERE))
    schema = json.loads((chart_dir / "values.schema.json").read_text())
    node = schema_node(schema, schema, path.split("."))
    return node is not None and "properties" not in node


def config_schema_coverage(chart_dir: Path):
    sys.path.insert(0, str(HERE))
    from values_table import resolve
    schema = json.loads((chart_dir / "values.schema.json").read_text())
    cfg = resolve(schema, schema["definitions"]["mcpPepConfig"])
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Configuration reference", 1)[1].split("\n## ", 1)[0]
    documented = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            documented |= set(re.findall(r"`([a-z0-9_.]+)`", line.split("|")[1]))
    in_schema = set()

    def walk(node, path):
        node = resolve(schema, node)
        for k, child in (node.get("properties") or {}).items():
            p = f"{path}.{k}" if path else k
            child_r = resolve(schema, child)
            if "properties" in child_r:
                walk(child_r, p)
            else:
                in_schema.add(p)
    walk(cfg, "")
    expect(documented, "found no keys in README's Configuration reference")
    expect(in_schema == documented, f"only in the schema: {sorted(in_schema - documented)}; only in README: {sorted(documented - in_schema)}")
    return f"{len(documented)} keys"


def policies_copy(chart_dir: Path):
    src, copy_dir = ROOT / "policies", chart_dir / "policies"
    want = {f.name: f.read_bytes() for f in src.iterdir()
            if f.suffix in {".rego", ".json"} and not f.name.endswith("_test.rego") and not f.name.startswith(".")}
    have = {f.name: f.read_bytes() for f in copy_dir.iterdir()}
    fix = f"cp {' '.join('policies/' + n for n in sorted(want))} charts/mcp-pep/policies/"
    expect(set(have) == set(want), f"files differ: only in policies/ {sorted(set(want) - set(have))}, only in the chart {sorted(set(have) - set(want))}; fix: rm charts/mcp-pep/policies/* && {fix}")
    diff = [n for n in want if want[n] != have[n]]
    expect(not diff, f"contents differ: {diff}; fix: {fix}")
    return f"{len(want)} files identical"


# ---------------------------------------------------------------- promtool


def rules_of(docs):
    return [d["spec"] for d in of_kind(docs, "PrometheusRule")]


def run_promtool(promtool: str, *argv: str, cwd: Path | None = None) -> str:
    if not Path(promtool).exists() and not shutil.which(promtool):
        raise Failed(f"no promtool at {promtool}: run tests/k8s/setup.sh")
    p = subprocess.run([promtool, *argv], capture_output=True, text=True, cwd=cwd, timeout=120)
    expect(p.returncode == 0, f"promtool {' '.join(argv)}: {p.stdout.strip()} {p.stderr.strip()}")
    return p.stdout


def promtool_check(promtool, renders, out: Path):
    n = 0
    for name, docs in renders.items():
        for i, spec in enumerate(rules_of(docs)):
            f = out / f"rules-{name}-{i}.yaml"
            f.write_text(yaml.safe_dump(spec, sort_keys=False))
            run_promtool(promtool, "check", "rules", str(f))
            n += 1
    expect(n, "no ci render has a PrometheusRule")
    return f"{n} rule files"


def promtool_test(promtool, chart, out: Path):
    docs = render(chart, {"monitoring": {"force": True}})
    spec = rules_of(docs)[0]
    # promtool compares annotations exactly; they are checked by `check rules` (templates
    # parse) and by the structural check, so the unit tests drop them.
    for g in spec["groups"]:
        for rule in g["rules"]:
            rule.pop("annotations", None)
    (out / "rules-defaults.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    shutil.copy(HERE / "alerts_test.yaml", out / "alerts_test.yaml")
    text = run_promtool(promtool, "test", "rules", "alerts_test.yaml", cwd=out)
    return text.strip().splitlines()[-1] if text.strip() else "SUCCESS"


def dashboard(promtool, docs, out: Path):
    cm = [d for d in of_kind(docs, "ConfigMap") if "mcp-pep.json" in d.get("data", {})]
    expect(len(cm) == 1, "no dashboard ConfigMap in the default render")
    dash = json.loads(cm[0]["data"]["mcp-pep.json"])
    expect(dash.get("uid") and dash.get("title") and dash.get("panels"), "uid/title/panels")
    ids = [p["id"] for p in dash["panels"]]
    expect(len(ids) == len(set(ids)), "panel ids repeat")
    exprs = [(p["title"], t["expr"]) for p in dash["panels"] for t in p.get("targets", [])]
    text = "\n".join(e for _, e in exprs)
    for metric in ("mcp_pep_request_duration_seconds_bucket", "mcp_pep_policy_evaluation_duration_seconds_bucket"):
        for q in ("0.5", "0.99"):
            expect(f"histogram_quantile({q}, sum by (le) (rate({metric}" in text, f"no p{q[2:] or '50'} of {metric}")
    expect("sum by (decision) (rate(mcp_pep_decisions_total" in text, "no decisions by outcome")
    used = set(re.findall(r"mcp_pep_[a-z_]+", text))
    known = METRICS | {m + s for m in METRICS for s in ("_bucket", "_count", "_sum")}
    expect(used <= known, f"unknown metrics {used - known}")
    # every query parses: as recording rules, with Grafana's variables substituted
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:panel_{i}", "expr": e.replace("$__rate_interval", "5m").replace("$namespace", ".*")}
        for i, (_, e) in enumerate(exprs)]}]}
    f = out / "dashboard-queries.yaml"
    f.write_text(yaml.safe_dump(rules, sort_keys=False))
    run_promtool(promtool, "check", "rules", str(f))
    return f"{len(dash['panels'])} panels, {len(exprs)} queries"


# ---------------------------------------------------------------- the real binary


def binary_or_skip(binary: Path) -> Path:
    if not binary.is_file() or not os.access(binary, os.X_OK):
        raise Skip(f"{binary} is not built (cargo build --bin mcp-pep, or set MCP_PEP_BIN)")
    return binary


def kubelet_configmap(root: Path, data: dict[str, str]) -> Path:
    """A ConfigMap volume as the kubelet lays it out: files are symlinks through `..data`, a
    symlink to a timestamped directory."""
    stamp = root / "..2026_01_01_00_00_00.000000000"
    stamp.mkdir(parents=True)
    for k, v in data.items():
        (stamp / k).write_text(v)
        (root / k).symlink_to(Path("..data") / k)
    (root / "..data").symlink_to(stamp.name)
    return root


def standalone_pods(renders, chart_dir: Path):
    """(ci name, Deployment, the policy ConfigMap's data as mounted)."""
    shipped = {f.name: f.read_text() for f in sorted((chart_dir / "policies").iterdir())}
    for name, docs in renders.items():
        deps = [d for d in of_kind(docs, "Deployment") if d["metadata"]["labels"]["app.kubernetes.io/component"] == "standalone"]
        if not deps:
            continue
        volume = [v for v in pod_spec(deps[0])["volumes"] if "configMap" in v][0]["configMap"]["name"]
        cms = [d for d in of_kind(docs, "ConfigMap") if d["metadata"]["name"] == volume and d["metadata"]["namespace"] == NAMESPACE]
        # an existing ConfigMap is not rendered: the shipped policies stand in for it
        yield name, deps[0], (cms[0]["data"] if cms else shipped)


def binary_check_config(binary, renders, chart_dir: Path, out: Path):
    binary = binary_or_skip(binary)
    n = 0
    for name, dep, data in standalone_pods(renders, chart_dir):
        c = pod_spec(dep)["containers"][0]
        config = yaml.safe_load(env_of(c)["MCP_PEP_CONFIG_YAML"])
        work = out / f"bin-{name}"
        policies = kubelet_configmap(work / "policies", data)
        config["policy"]["dir"] = str(policies)  # the mount path, on this machine
        kubelet_secrets(work, pod_spec(dep), c, config)
        cfg = work / "pep.yaml"
        cfg.write_text(yaml.safe_dump(config))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MCP_PEP_", "SPIFFE_"))}
        p = subprocess.run([str(binary), "check-config", "--config", str(cfg)], capture_output=True, text=True, env=env, timeout=60)
        (work / "check-config.log").write_text(p.stdout + p.stderr)
        expect(p.returncode == 0, f"{name}: check-config exit {p.returncode}: {(p.stdout + p.stderr).strip()[-400:]}")
        n += 1
    expect(n, "no ci render has a standalone Deployment")
    return f"{n} configurations"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def binary_run_standalone(binary, renders, chart_dir: Path, out: Path):
    """The standalone pods of the renders without SPIFFE or issuers (nothing external to
    wait for), run as their spec says: args, env (MCP_PEP_CONFIG_YAML when the binary reads
    it), the policies as a kubelet ConfigMap volume. Addresses move to free loopback ports and
    the policy mount to a local directory; the probes' paths and ports are the rendered ones."""
    binary = binary_or_skip(binary)
    notes = []
    for name, dep, data in standalone_pods(renders, chart_dir):
        c = pod_spec(dep)["containers"][0]
        config = yaml.safe_load(env_of(c)["MCP_PEP_CONFIG_YAML"])
        if "identity" not in config and "auth" not in config:
            notes.append(run_standalone(binary, name, c, config, data, out))
    if not notes:
        raise Skip("no standalone render without SPIFFE and issuers")
    return "; ".join(notes)


def run_standalone(binary, name, c, config, data, out: Path) -> str:
    work = out / f"bin-run-{name}"
    policies = kubelet_configmap(work / "policies", data)
    ports = {p["name"]: free_port() for p in c["ports"]}
    config["listen"] = f"127.0.0.1:{ports['mcp']}"
    config["admin_listen"] = f"127.0.0.1:{ports['admin']}"
    config["policy"]["dir"] = str(policies)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MCP_PEP_", "SPIFFE_"))}
    env.update({k: v for k, v in env_of(c).items() if k != "MCP_PEP_CONFIG_YAML"})
    help_text = subprocess.run([str(binary), "run", "--help"], capture_output=True, text=True, timeout=30).stdout
    argv = [str(binary), *c["args"]]
    if "MCP_PEP_CONFIG_YAML" in help_text:
        env["MCP_PEP_CONFIG_YAML"] = json.dumps(config)
        how = "MCP_PEP_CONFIG_YAML"
    else:  # until `run` reads the env var: the same configuration as a file
        (work / "pep.yaml").write_text(yaml.safe_dump(config))
        argv += ["--config", str(work / "pep.yaml")]
        how = "--config (this binary does not read MCP_PEP_CONFIG_YAML)"
    with open(work / "mcp-pep.log", "w") as log:
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            probes = {}
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                g = c[probe]["httpGet"]
                probes[probe] = f"http://127.0.0.1:{ports[g['port']]}{g['path']}"
            deadline = time.time() + 30
            status = {}
            while time.time() < deadline and proc.poll() is None:
                status = {k: http_status(u) for k, u in probes.items()}
                if all(s == 200 for s in status.values()):
                    break
                time.sleep(0.2)
            expect(proc.poll() is None, f"{name}: mcp-pep exited {proc.returncode}: {(work / 'mcp-pep.log').read_text()[-400:]}")
            expect(all(s == 200 for s in status.values()), f"{name}: probes {status}")
            # the policies are loaded: a request is decided, not refused with 503
            req = urllib.request.Request(f"http://127.0.0.1:{ports['mcp']}{config.get('mcp_path', '/mcp')}",
                                         data=b'{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}',
                                         headers={"Content-Type": "application/json", "Accept": "application/json, text/event-stream"})
            code = http_status(req)
            expect(code not in (0, 503), f"{name}: the MCP endpoint answered {code} (503: no policy loaded)")
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    return f"{name}: {len(data)} policy files, probes 200, config via {how}, MCP answered {code}"


def http_status(req) -> int:
    try:
        with urllib.request.urlopen(req, timeout=2) as resp:
            return resp.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return 0


def binary_webhook_flags(binary, renders):
    binary = binary_or_skip(binary)
    p = subprocess.run([str(binary), "webhook", "--help"], capture_output=True, text=True, timeout=30)
    if p.returncode != 0:
        raise Skip("this binary has no `webhook` subcommand yet")
    flags = set()
    for docs in renders.values():
        for d in of_kind(docs, "Deployment"):
            for c in pod_spec(d)["containers"]:
                if c["args"][:1] == ["webhook"]:
                    flags |= {a for a in c["args"] if a.startswith("--")}
    missing = sorted(f for f in flags if f not in p.stdout)
    expect(not missing, f"`mcp-pep webhook --help` lacks {missing}")
    return f"{len(flags)} flags"



# ---------------------------------------------------------------- the webhook, run as rendered


def json_patch(doc, ops):
    """RFC 6902 (add, remove, replace, test), enough to apply an AdmissionReview's patch."""
    doc = copy.deepcopy(doc)

    def parts(ptr):
        return [p.replace("~1", "/").replace("~0", "~") for p in ptr.split("/")[1:]]
    for op in ops:
        path = parts(op["path"])
        if not path:
            expect(op["op"] in ("add", "replace"), f"patch op {op['op']} on the root")
            doc = copy.deepcopy(op["value"])
            continue
        parent = doc
        for p in path[:-1]:
            parent = parent[int(p)] if isinstance(parent, list) else parent[p]
        last = path[-1]
        if op["op"] == "add":
            if isinstance(parent, list):
                parent.insert(len(parent) if last == "-" else int(last), copy.deepcopy(op["value"]))
            else:
                parent[last] = copy.deepcopy(op["value"])
        elif op["op"] == "replace":
            expect((int(last) < len(parent)) if isinstance(parent, list) else last in parent, f"replace of a missing {op['path']}")
            parent[int(last) if isinstance(parent, list) else last] = copy.deepcopy(op["value"])
        elif op["op"] == "remove":
            del parent[int(last) if isinstance(parent, list) else last]
        elif op["op"] == "test":
            expect((parent[int(last)] if isinstance(parent, list) else parent.get(last)) == op["value"], f"patch test failed at {op['path']}")
        else:
            raise Failed(f"unsupported patch op {op['op']}")
    return doc


def agent_pod(annotations):
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"generateName": "agent-", "labels": {"app": "agent"}, "annotations": annotations},
            "spec": {"serviceAccountName": "trusted-agent",
                     "containers": [{"name": "agent", "image": "registry.example.org/agent:1", "ports": [{"containerPort": 8000}]}]}}


def admission_review(pod, uid):
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {
        "uid": uid, "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "resource": {"group": "", "version": "v1", "resource": "pods"},
        "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
        "requestResource": {"group": "", "version": "v1", "resource": "pods"},
        "namespace": "agents", "operation": "CREATE",
        "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
        "object": pod, "oldObject": None, "dryRun": False,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}}}


def binary_run_webhook(binary, renders, out: Path):
    """The webhook container of a render with its own TLS (default) and of one with every
    injector value changed (cert-manager; the default's Secret stands in for cert-manager's),
    run with the rendered args (addresses moved to free loopback ports, /tls to local files),
    called as the API server would: HTTPS verified against the caBundle for the Service's DNS
    name, an AdmissionReview v1 per pod. The patched pod must carry what the chart's values
    say and be a valid Pod for every supported Kubernetes version."""
    binary = binary_or_skip(binary)
    if subprocess.run([str(binary), "webhook", "--help"], capture_output=True, timeout=30).returncode != 0:
        raise Skip("this binary has no `webhook` subcommand yet")
    tls_docs = renders["default"]
    secret = one(tls_docs, "Secret")
    ca = base64.b64decode(one(tls_docs, "MutatingWebhookConfiguration")["webhooks"][0]["clientConfig"]["caBundle"]).decode()
    notes = []
    for name in ("default", "cert-manager"):
        docs = renders[name]
        dep = one(docs, "Deployment", "webhook")
        c = pod_spec(dep)["containers"][0]
        a = list(c["args"])
        work = out / f"bin-webhook-{name}"
        work.mkdir(parents=True, exist_ok=True)
        for k in ("tls.crt", "tls.key"):
            (work / k).write_bytes(base64.b64decode(secret["data"][k]))
        ports = {"https": free_port(), "metrics": free_port()}
        mount = [m for m in c["volumeMounts"] if m["name"] == "tls"][0]["mountPath"]
        for i, v in enumerate(a):
            if a[i - 1] == "--listen":
                a[i] = f"127.0.0.1:{ports['https']}"
            elif a[i - 1] == "--metrics-listen":
                a[i] = f"127.0.0.1:{ports['metrics']}"
            elif v.startswith(mount + "/"):
                a[i] = str(work / v[len(mount) + 1:])
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MCP_PEP_", "SPIFFE_"))}
        env.update(env_of(c))
        host = f"{one(docs, 'Service', 'webhook')['metadata']['name']}.{NAMESPACE}.svc"
        ctx = ssl.create_default_context(cadata=ca)
        with open(work / "webhook.log", "w") as log:
            proc = subprocess.Popen([str(binary), *a], env=env, stdout=log, stderr=subprocess.STDOUT)
            try:
                def https(path, body=None):
                    with socket.create_connection(("127.0.0.1", ports["https"]), timeout=5) as raw:
                        with ctx.wrap_socket(raw, server_hostname=host) as tls:
                            data = json.dumps(body).encode() if body is not None else b""
                            head = (f"{'POST' if body is not None else 'GET'} {path} HTTP/1.1\r\nHost: {host}\r\n"
                                    f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\nConnection: close\r\n\r\n")
                            tls.sendall(head.encode() + data)
                            chunks = []
                            while chunk := tls.recv(65536):
                                chunks.append(chunk)
                    raw_resp = b"".join(chunks)
                    head, _, payload = raw_resp.partition(b"\r\n\r\n")
                    status = int(head.split()[1])
                    if b"transfer-encoding: chunked" in head.lower():
                        payload = dechunk(payload)
                    return status, payload
                probes = {"readinessProbe": c["readinessProbe"]["httpGet"], "livenessProbe": c["livenessProbe"]["httpGet"]}
                deadline, status = time.time() + 20, {}
                while time.time() < deadline and proc.poll() is None:
                    status = {}
                    for probe, g in probes.items():
                        try:
                            if g.get("scheme") == "HTTPS":
                                status[probe] = https(g["path"])[0]
                            else:
                                status[probe] = http_status(f"http://127.0.0.1:{ports[g['port']]}{g['path']}")
                        except OSError as e:
                            status[probe] = str(e)[:80]
                    if all(v == 200 for v in status.values()):
                        break
                    time.sleep(0.2)
                expect(proc.poll() is None, f"{name}: webhook exited {proc.returncode}: {(work / 'webhook.log').read_text()[-400:]}")
                expect(all(v == 200 for v in status.values()), f"{name}: probes {status}")
                want_image = flag_value(c["args"], "--image")
                annotations = {"mcp-pep.io/upstream": "http://tool-server.tools.svc:8080/mcp"}
                if flag_value(c["args"], "--issuer"):
                    annotations["mcp-pep.io/public-url"] = "https://agent.example.org/mcp"
                code, body = https("/mutate", admission_review(agent_pod(annotations), "uid-1"))
                expect(code == 200, f"{name}: /mutate answered {code}: {body[:200]!r}")
                resp = json.loads(body)
                (work / "admission-response.json").write_text(json.dumps(resp, indent=2))
                expect(resp.get("apiVersion") == "admission.k8s.io/v1" and resp.get("kind") == "AdmissionReview", "AdmissionReview v1 envelope")
                r = resp["response"]
                expect(r["uid"] == "uid-1" and r["allowed"] is True and r.get("patchType") == "JSONPatch", f"{name}: response {str(r)[:300]}")
                pod = json_patch(agent_pod(annotations), json.loads(base64.b64decode(r["patch"])))
                pod["metadata"]["name"], pod["metadata"]["namespace"] = "agent-x", "agents"
                (work / "injected-pod.yaml").write_text(yaml.safe_dump(pod, sort_keys=False))
                for kube in KUBE_VERSIONS:
                    try:
                        kv.validate(pod, kube, strict=True)
                    except kv.ValidationError as e:
                        raise Failed(f"{name}: the injected pod is not a valid Pod for {kube}: {e}")
                # Native sidecars do not exist before 1.28: a 1.27 schema must refuse the pod.
                try:
                    kv.validate(pod, "1.27.0", strict=True)
                except kv.ValidationError:
                    pass
                else:
                    raise Failed(f"{name}: the injected pod (restartPolicy on an init container) passed as a 1.27 Pod")
                side = pod["spec"]["initContainers"][0]
                expect(side["name"] == "mcp-pep" and side.get("restartPolicy") == "Always", f"{name}: initContainers[0] {side.get('name')}, restartPolicy {side.get('restartPolicy')}")
                expect(side["image"] == want_image, f"{name}: sidecar image {side['image']}, --image {want_image}")
                vols = {v["name"]: v for v in pod["spec"]["volumes"]}
                cm = [v for v in vols.values() if "configMap" in v]
                expect(len(cm) == 1 and cm[0]["configMap"]["name"] == flag_value(c["args"], "--policy-configmap"), f"{name}: policy volume {cm}")
                csi = [v for v in vols.values() if "csi" in v]
                expect(len(csi) == 1 and csi[0]["csi"].get("driver") == flag_value(c["args"], "--csi-driver") and csi[0]["csi"].get("readOnly") is True, f"{name}: csi volume {csi}")
                senv = env_of(side)
                expect(senv.get("SPIFFE_ENDPOINT_SOCKET", "").endswith("/" + flag_value(c["args"], "--socket-name")), f"{name}: SPIFFE_ENDPOINT_SOCKET {senv.get('SPIFFE_ENDPOINT_SOCKET')}")
                cfg = yaml.safe_load(senv["MCP_PEP_CONFIG_YAML"])
                expect(flag_value(c["args"], "--trust-domain") in cfg["identity"]["trust_domains"], f"{name}: trust domain")
                expect(cfg["log"]["format"] == flag_value(c["args"], "--log-format"), f"{name}: log format")
                if flag_value(c["args"], "--issuer"):
                    expect(cfg["auth"]["issuers"][0]["issuer"] == flag_value(c["args"], "--issuer"), f"{name}: issuer")
                pmount = [m for m in side["volumeMounts"] if m["name"] == cm[0]["name"]][0]
                expect(cfg["policy"]["dir"] == pmount["mountPath"] and "subPath" not in pmount, f"{name}: policy mount vs policy.dir")
                # opted out by annotation: allowed, nothing added
                code, body = https("/mutate", admission_review(agent_pod({"mcp-pep.io/inject": "disabled"}), "uid-2"))
                r2 = json.loads(body)["response"]
                expect(code == 200 and r2["allowed"] is True and (not r2.get("patch") or json.loads(base64.b64decode(r2["patch"])) == []),
                       f"{name}: an opted-out pod was patched: {str(r2)[:200]}")
            finally:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        notes.append(f"{name}: sidecar {side['image']}, ConfigMap {cm[0]['configMap']['name']}, {csi[0]['csi']['driver']}")
    return "; ".join(notes)


def dechunk(payload: bytes) -> bytes:
    out = b""
    while payload:
        size_line, _, rest = payload.partition(b"\r\n")
        size = int(size_line.split(b";")[0], 16)
        if size == 0:
            break
        out += rest[:size]
        payload = rest[size + 2:]
    return out


if __name__ == "__main__":
    sys.exit(main())
