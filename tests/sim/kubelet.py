#!/usr/bin/env python3
"""The parts of the kubelet (and of the container runtime under it) that the simulation needs,
applied to injected manifests. Standard library only, but `pods`, which needs PyYAML.

  kubelet.py pods INJECTED.yaml OUTDIR
      One JSON file per pod template (Pod, or a controller's template) in OUTDIR/<name>.json:
      {kind, name, namespace, serviceAccount, labels, annotations, spec}; Services in
      OUTDIR/services.json.
  kubelet.py container-spec POD.json CONTAINER IMAGE_CONFIG.json --volume NAME=HOSTDIR...
                            --etc-hosts F --etc-hostname F --resolv-conf F --termination-log F
                            [--services SERVICES.json]
      What the runtime executes for that container (JSON on stdout): argv, env, cwd, uid, gid,
      read-only root, no_new_privs, capabilities, and the mounts in order. Kubernetes rules:
      no `command` keeps the image Entrypoint, `args` replace its Cmd; `$(VAR)` in args and env
      values expands from the container's env; the container's env overrides the service links
      (enableServiceLinks: `<SVC>_SERVICE_HOST`, `<SVC>_PORT_<P>_TCP`, ... for SERVICES.json,
      [{name, clusterIP, ports: [{name, port, protocol}]}]), which override the image's;
      securityContext (container, then pod) overrides the image User; runAsNonRoot refuses
      uid 0 (CreateContainerConfigError). Fails on anything it does not emulate (subPath,
      valueFrom, envFrom, volume kinds other than configMap/csi/emptyDir).
  kubelet.py find-port POD.json NAME
      A Service targetPort name → the container port (Endpoints' FindPort: app containers, then
      restartable init containers, the native sidecars).
  kubelet.py probe POD.json CONTAINER startupProbe|readinessProbe|livenessProbe
      "PORT PATH TIMEOUT PERIOD THRESHOLD" for an httpGet probe (a named port resolved on that
      container).
  kubelet.py configmap-write VOLDIR DATA.json
      The kubelet's AtomicWriter: DATA.json ({key: content}) goes to a new
      `..YYYY_MM_DD_hh_mm_ss.NNNNNNNNN` directory, a `..data_tmp` symlink to it is renamed over
      `..data`, each key is a symlink `key -> ..data/key`, keys no longer present lose theirs,
      and the old timestamped directory is removed. Unchanged data: nothing is touched.
"""

import argparse
import json
import os
import re
import secrets
import shutil
import sys
import time
from pathlib import Path

CONTROLLERS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "ReplicationController", "Job"}


def die(msg: str) -> None:
    print(f"kubelet.py: {msg}", file=sys.stderr)
    sys.exit(1)


def cmd_pods(args) -> None:
    import yaml  # noqa: PLC0415 (only this subcommand reads YAML)

    out = Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)
    services = []
    for doc in yaml.safe_load_all(Path(args.injected).read_text()):
        if not doc:
            continue
        kind, meta = doc.get("kind"), doc.get("metadata", {})
        if kind == "Service":
            services.append(doc)
            continue
        if kind == "Pod":
            tmeta, spec = meta, doc["spec"]
        elif kind in CONTROLLERS:
            tmeta, spec = doc["spec"]["template"].get("metadata", {}), doc["spec"]["template"]["spec"]
        elif kind == "CronJob":
            t = doc["spec"]["jobTemplate"]["spec"]["template"]
            tmeta, spec = t.get("metadata", {}), t["spec"]
        else:
            continue
        pod = {
            "kind": kind,
            "name": meta["name"],
            "namespace": meta.get("namespace", "default"),
            "serviceAccount": spec.get("serviceAccountName") or spec.get("serviceAccount") or "default",
            "labels": tmeta.get("labels", {}),
            "annotations": tmeta.get("annotations", {}),
            "spec": spec,
        }
        (out / f"{pod['name']}.json").write_text(json.dumps(pod, indent=2))
    (out / "services.json").write_text(json.dumps(services, indent=2))


def find_container(pod: dict, name: str) -> dict:
    spec = pod["spec"]
    for c in spec.get("initContainers", []) + spec.get("containers", []):
        if c.get("name") == name:
            return c
    die(f"pod {pod['name']}: no container {name}")


_REF = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(text: str, env: dict) -> str:
    """Kubernetes' $(VAR) expansion: a known VAR is replaced, an unknown one kept, $$ is $."""
    def sub(m):
        if m.group(0) == "$$":
            return "$"
        return env.get(m.group(1), m.group(0))
    return _REF.sub(sub, text)


def service_links(svc: dict) -> dict[str, str]:
    """The Docker-links style variables the kubelet sets for one Service."""
    name = svc["name"].upper().replace("-", "_")
    ip, ports = svc["clusterIP"], svc["ports"]
    if not ports:
        return {}
    env = {f"{name}_SERVICE_HOST": ip, f"{name}_SERVICE_PORT": str(ports[0]["port"])}
    for p in ports:
        if p.get("name"):
            env[f"{name}_SERVICE_PORT_{p['name'].upper().replace('-', '_')}"] = str(p["port"])
    first = ports[0]
    proto = first.get("protocol", "TCP")
    env[f"{name}_PORT"] = f"{proto.lower()}://{ip}:{first['port']}"
    for p in ports:
        proto = p.get("protocol", "TCP")
        pre = f"{name}_PORT_{p['port']}_{proto.upper()}"
        env[pre] = f"{proto.lower()}://{ip}:{p['port']}"
        env[f"{pre}_PROTO"] = proto.lower()
        env[f"{pre}_PORT"] = str(p["port"])
        env[f"{pre}_ADDR"] = ip
    return env


def parse_user(user: str) -> tuple[int | None, int | None]:
    if not user:
        return 0, 0
    u, _, g = user.partition(":")
    return (int(u) if u.isdigit() else None), (int(g) if g.isdigit() else None)


def cmd_container_spec(args) -> None:
    pod = json.loads(Path(args.pod).read_text())
    c = find_container(pod, args.container)
    image = json.loads(Path(args.image_config).read_text()).get("config", {})
    volumes = {v["name"]: v for v in pod["spec"].get("volumes", [])}
    hostdirs = dict(v.split("=", 1) for v in args.volume)

    if c.get("envFrom"):
        die(f"{args.container}: envFrom is not emulated")
    links: dict[str, str] = {}
    if args.services and pod["spec"].get("enableServiceLinks", True):
        for svc in json.loads(Path(args.services).read_text()):
            links.update(service_links(svc))
    cenv: dict[str, str] = dict(links)
    for e in c.get("env", []):
        if "valueFrom" in e:
            die(f"{args.container}: env {e['name']} uses valueFrom, not emulated")
        cenv[e["name"]] = expand(e.get("value", ""), cenv)
    env: dict[str, str] = {}
    for kv in image.get("Env") or []:
        k, _, v = kv.partition("=")
        env[k] = v
    env.update(cenv)  # the service links, then the container's own env
    # The kubelet adds HOSTNAME (the pod name) and the service links of the namespace; the
    # second are left out (enableServiceLinks would add TOOL_SERVER_SERVICE_HOST and so on).
    env.setdefault("HOSTNAME", pod["name"])

    entrypoint = image.get("Entrypoint") or []
    cmd = image.get("Cmd") or []
    if "command" in c:
        argv = [expand(a, cenv) for a in c["command"]] + [expand(a, cenv) for a in c.get("args", [])]
    else:
        argv = list(entrypoint) + ([expand(a, cenv) for a in c["args"]] if "args" in c else list(cmd))
    if not argv:
        die(f"{args.container}: no command (image has no Entrypoint/Cmd)")

    psc, csc = pod["spec"].get("securityContext", {}) or {}, c.get("securityContext", {}) or {}
    img_uid, img_gid = parse_user(image.get("User", ""))
    uid = csc.get("runAsUser", psc.get("runAsUser", img_uid))
    # Without runAsGroup: the image's group; with only runAsUser, containerd takes the user's
    # group from the image's /etc/passwd (approximated by 0).
    override_uid = "runAsUser" in csc or "runAsUser" in psc
    gid = csc.get("runAsGroup", psc.get("runAsGroup", 0 if override_uid else img_gid))
    if gid is None:
        gid = 0
    if csc.get("runAsNonRoot", psc.get("runAsNonRoot", False)):
        if uid is None:
            die(f"{args.container}: runAsNonRoot and the image has a non-numeric user: CreateContainerConfigError")
        if uid == 0:
            die(f"{args.container}: runAsNonRoot and the container would run as root: CreateContainerConfigError")
    if uid is None:
        die(f"{args.container}: non-numeric image user {image.get('User')!r} is not emulated")
    caps = csc.get("capabilities", {}) or {}
    if caps.get("add"):
        die(f"{args.container}: capabilities.add is not emulated")
    drop_all = "ALL" in (caps.get("drop") or [])
    # allowPrivilegeEscalation defaults to true (unless privileged or CAP_SYS_ADMIN); false sets
    # no_new_privs.
    no_new_privs = csc.get("allowPrivilegeEscalation", True) is False

    mounts = [
        {"type": "proc", "target": "/proc"},
        {"type": "dev", "target": "/dev"},
        {"type": "sysfs", "target": "/sys", "readOnly": True},
    ]
    for m in c.get("volumeMounts", []):
        if m.get("subPath") or m.get("subPathExpr"):
            die(f"{args.container}: subPath mounts are not emulated")
        v = volumes.get(m["name"])
        if v is None:
            die(f"{args.container}: volumeMount {m['name']} names no volume")
        if not any(k in v for k in ("configMap", "csi", "emptyDir")):
            die(f"volume {m['name']}: kind {sorted(set(v) - {'name'})} not emulated")
        if m["name"] not in hostdirs:
            die(f"volume {m['name']}: no --volume {m['name']}=HOSTDIR given")
        mounts.append({"type": "bind", "source": hostdirs[m["name"]], "target": m["mountPath"],
                       "readOnly": bool(m.get("readOnly", False)), "volume": m["name"]})
    # The kubelet's own files (a pod not on the host network gets a kubelet-managed /etc/hosts).
    if not pod["spec"].get("hostNetwork"):
        mounts.append({"type": "bind", "source": args.etc_hosts, "target": "/etc/hosts", "readOnly": False})
    mounts.append({"type": "bind", "source": args.etc_hostname, "target": "/etc/hostname", "readOnly": False})
    mounts.append({"type": "bind", "source": args.resolv_conf, "target": "/etc/resolv.conf", "readOnly": False})
    mounts.append({"type": "bind", "source": args.termination_log,
                   "target": c.get("terminationMessagePath", "/dev/termination-log"), "readOnly": False})

    spec = {
        "hostname": pod["spec"].get("hostname") or pod["name"],
        "argv": argv,
        "env": [f"{k}={v}" for k, v in env.items()],
        "cwd": c.get("workingDir") or image.get("WorkingDir") or "/",
        "uid": uid,
        "gid": gid,
        "supplementalGroups": list(psc.get("supplementalGroups", [])),
        "readOnlyRoot": bool(csc.get("readOnlyRootFilesystem", False)),
        "noNewPrivs": no_new_privs,
        "dropAllCaps": drop_all,
        "seccomp": (csc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type"),
        "mounts": mounts,
    }
    print(json.dumps(spec, indent=2))


def named_port(c: dict, name: str) -> int | None:
    for p in c.get("ports", []):
        if p.get("name") == name and p.get("protocol", "TCP") == "TCP":
            return int(p["containerPort"])
    return None


def cmd_find_port(args) -> None:
    pod = json.loads(Path(args.pod).read_text())
    if args.name.isdigit():
        print(args.name)
        return
    for c in pod["spec"].get("containers", []):
        if (p := named_port(c, args.name)) is not None:
            print(p)
            return
    # Named ports of sidecar containers (restartPolicy: Always) count as well (Kubernetes 1.29+).
    for c in pod["spec"].get("initContainers", []):
        if c.get("restartPolicy") == "Always" and (p := named_port(c, args.name)) is not None:
            print(p)
            return
    die(f"pod {pod['name']}: no container port named {args.name}")


def cmd_probe(args) -> None:
    pod = json.loads(Path(args.pod).read_text())
    c = find_container(pod, args.container)
    probe = c.get(args.kind)
    if not probe:
        die(f"{args.container}: no {args.kind}")
    get = probe.get("httpGet")
    if not get:
        die(f"{args.container}: {args.kind} is not an httpGet probe")
    port = get["port"]
    if isinstance(port, str) and not port.isdigit():
        resolved = named_port(c, port)
        if resolved is None:
            die(f"{args.container}: {args.kind} names port {port!r}, which the container does not declare")
        port = resolved
    if get.get("scheme", "HTTP") != "HTTP":
        die(f"{args.container}: {args.kind} scheme {get['scheme']} not emulated")
    print(port, get.get("path", "/"), probe.get("timeoutSeconds", 1), probe.get("periodSeconds", 10),
          probe.get("failureThreshold", 3))


def cmd_configmap_write(args) -> None:
    vol = Path(args.voldir)
    data: dict[str, str] = json.loads(Path(args.data).read_text())
    for key in data:
        if "/" in key or key.startswith("..") or not key:
            die(f"configmap key {key!r} is not a file name")
    vol.mkdir(parents=True, exist_ok=True)
    os.chmod(vol, 0o777)  # the emptyDir-backed volume directory
    current = vol / "..data"
    if current.is_symlink():
        old_dir = vol / os.readlink(current)
        old = {p.name: p.read_text() for p in old_dir.iterdir()} if old_dir.is_dir() else {}
        if old == data:
            return
    else:
        old_dir = None
    # time.Now().UTC().Format("..2006_01_02_15_04_05.") + os.MkdirTemp's random digits
    stamp = time.strftime("..%Y_%m_%d_%H_%M_%S.", time.gmtime()) + str(secrets.randbelow(10**9))
    ts_dir = vol / stamp
    ts_dir.mkdir(mode=0o755)
    os.chmod(ts_dir, 0o755)
    for key, content in data.items():
        p = ts_dir / key
        p.write_text(content)
        os.chmod(p, 0o644)  # configMap defaultMode
    tmp = vol / "..data_tmp"
    if tmp.is_symlink():
        tmp.unlink()
    os.symlink(stamp, tmp)
    os.rename(tmp, current)  # the atomic swap
    for key in data:
        link = vol / key
        if not link.is_symlink():
            os.symlink(f"..data/{key}", link)
    for p in vol.iterdir():
        if not p.name.startswith("..") and p.name not in data:
            p.unlink()
    if old_dir is not None and old_dir.is_dir():
        shutil.rmtree(old_dir)


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("pods")
    p.add_argument("injected")
    p.add_argument("outdir")
    p = sub.add_parser("container-spec")
    p.add_argument("pod")
    p.add_argument("container")
    p.add_argument("image_config")
    p.add_argument("--volume", action="append", default=[])
    p.add_argument("--etc-hosts", required=True)
    p.add_argument("--etc-hostname", required=True)
    p.add_argument("--resolv-conf", required=True)
    p.add_argument("--termination-log", required=True)
    p.add_argument("--services")
    p = sub.add_parser("find-port")
    p.add_argument("pod")
    p.add_argument("name")
    p = sub.add_parser("probe")
    p.add_argument("pod")
    p.add_argument("container")
    p.add_argument("kind", choices=["startupProbe", "readinessProbe", "livenessProbe"])
    p = sub.add_parser("configmap-write")
    p.add_argument("voldir")
    p.add_argument("data")
    args = ap.parse_args()
    {"pods": cmd_pods, "container-spec": cmd_container_spec, "find-port": cmd_find_port,
     "probe": cmd_probe, "configmap-write": cmd_configmap_write}[args.cmd](args)


if __name__ == "__main__":
    main()
