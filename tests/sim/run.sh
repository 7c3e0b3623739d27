#!/usr/bin/env bash
# "The pod really starts": the injected pods of tests/sim/workloads.yaml run as a node would run
# them, without a cluster or a container engine.
#
#   tests/sim/run.sh MCP_PEP_BIN        (as root; ends with "sim: N passed, M failed")
#
# The image is built from MCP_PEP_BIN (image/build-oci.sh) and unpacked (umoci); each pod gets
# a network namespace (its own loopback, eth0 on a bridge in a "node" namespace, which also
# does kube-proxy's Service DNAT and runs the kubelet's probes); each sidecar is run exactly as
# the injected initContainers[0] says (entrypoint + args, env, securityContext, volumeMounts)
# in a mount and PID namespace of its own, chrooted into the read-only root, as UID 65532
# without capabilities; the policy ConfigMap is a kubelet-style `..data` directory (data from
# the rendered chart); the CSI volume holds a tests/e2e/workload_api.py socket serving the
# pod's SVID. See README.md.
set -uo pipefail

usage() { echo "usage: $0 MCP_PEP_BIN" >&2; exit 2; }
[[ $# -eq 1 ]] || usage
[[ -x $1 ]] || { echo "sim: $1 is not an executable" >&2; exit 2; }
bin=$(realpath "$1")
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
[[ $(id -u) -eq 0 ]] || { echo "sim: must run as root (network namespaces, mounts, chroot)" >&2; exit 2; }
t_start=$SECONDS

# --- tools ------------------------------------------------------------------------------------
need=()
for pair in ip:iproute2 unshare:util-linux umoci:umoci jq:jq curl:curl iptables:iptables strip:binutils; do
  command -v "${pair%%:*}" >/dev/null || need+=("${pair#*:}")
done
if ((${#need[@]})); then
  echo "sim: installing ${need[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null \
    || { echo "sim: apt-get install ${need[*]} failed" >&2; exit 2; }
fi
E2E_PY=$repo/tests/e2e/.venv/bin/python
if ! "$E2E_PY" -c 'import mcp, spiffe, grpc, httpx2' 2>/dev/null; then
  echo "sim: tests/e2e/.venv incomplete; running tests/e2e/setup.sh"
  bash "$repo/tests/e2e/setup.sh" >/dev/null || { echo "sim: tests/e2e/setup.sh failed" >&2; exit 2; }
fi
K8S_PY=$repo/tests/k8s/.venv/bin/python
# The agents' MCP revision (the SDK's `mode`): SIM_MCP_MODE, else chosen once the demo server
# runs: `auto` (2026-07-28) when its 2026-07-28 tools/list carries resultType (which the Python
# SDK 2.3 requires), else `legacy` (2025-11-25) with a note (see README.md).
MCP_MODE=${SIM_MCP_MODE:-}
# SIM_IPV6=0 leaves out the IPv6 pod addresses and their checks; SIM_NO_CHART=1 takes the
# policy ConfigMap data from policies/ instead of the rendered chart.
SIM_IPV6=${SIM_IPV6:-1}
# PyYAML, to read the injected manifests: the chart tests' venv has it, else Debian's.
YAML_PY=
for py in "$K8S_PY" /usr/bin/python3; do
  [[ -x $py ]] && "$py" -c 'import yaml' 2>/dev/null && { YAML_PY=$py; break; }
done
if [[ -z $YAML_PY ]]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-yaml >/dev/null \
    && YAML_PY=/usr/bin/python3 || { echo "sim: no Python with PyYAML" >&2; exit 2; }
fi

# --- bookkeeping ------------------------------------------------------------------------------
work=$(mktemp -d "${TMPDIR:-/tmp}/mcp-sim.XXXXXX")
logs=$work/logs; mkdir -p "$logs"
run_id=$(basename "$work" | tr -dc 'A-Za-z0-9' | tail -c 6)
node_ns=mcpsim-$run_id-node
netns_list=() pgids=()
passed=0 failed=0 failed_names=() notes=()

ok()  { passed=$((passed + 1)); echo "ok   $1"; }
bad() { failed=$((failed + 1)); failed_names+=("$1"); echo "FAIL $1"; [[ -n ${2:-} ]] && sed 's/^/       /' <<<"$2" | head -20; return 0; }
check() { local name=$1; shift; local out; if out=$("$@" 2>&1); then ok "$name"; else bad "$name" "$out"; fi; }
note() { notes+=("$1"); echo "note $1"; }
fatal() { bad "$1" "${2:-}"; echo "sim: cannot go on"; finish; }

cleanup() {
  local pg i alive
  for pg in "${pgids[@]}"; do kill -TERM -- "-$pg" 2>/dev/null; done
  for ((i = 0; i < 50; i++)); do
    alive=0
    for pg in "${pgids[@]}"; do kill -0 -- "-$pg" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.1
  done
  for pg in "${pgids[@]}"; do kill -KILL -- "-$pg" 2>/dev/null; done
  pgids=()
  for ns in "${netns_list[@]}"; do ip netns del "$ns" 2>/dev/null; done
  netns_list=()
  # The mounts lived in the containers' own mount namespaces and went with them; the big files go.
  rm -rf "$work/image" "$work/bundle" "$work/pods"/*/mnt 2>/dev/null
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

finish() {
  cleanup
  echo "sim: logs in $logs (runtime $((SECONDS - t_start)) s)"
  for n in "${notes[@]}"; do echo "sim: note: $n"; done
  ((failed)) && printf 'sim: failed: %s\n' "${failed_names[@]}"
  echo "sim: $passed passed, $failed failed"
  exit $((failed > 0))
}

# bg NAME CMD...: a process group of its own (setsid does not fork here: $! is the leader).
bg() { local name=$1; shift; setsid "$@" >>"$logs/$name.log" 2>&1 </dev/null & pgids+=("$!"); last_pid=$!; }

in_node() { ip netns exec "$node_ns" "$@"; }
# kubelet-style HTTP GET from the node: status code (000 when nothing answered).
http_code() { in_node curl -s -o /dev/null -w '%{http_code}' --max-time "${3:-1}" "http://$1$2" 2>/dev/null || true; }

since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN {printf "%.1f", b - a}'; }
metric() { in_node curl -s --max-time 2 "http://$1:9090/metrics" | awk -v m="$2" '$1 == m {print $2}'; }

# --- 1. the image -----------------------------------------------------------------------------
version=$("$bin" --version | awk '{print $2}')
echo "== image (mcp-pep $version)"
if out=$(IMAGE_TAG=sim bash "$repo/image/build-oci.sh" "$bin" "$work/image" 2>&1); then
  ok "image/build-oci.sh builds the image"
else fatal "image/build-oci.sh builds the image" "$out"; fi
if out=$(umoci unpack --image "$work/image:sim" "$work/bundle" 2>&1); then ok "umoci unpack"
else fatal "umoci unpack" "$out"; fi
rootfs=$work/bundle/rootfs
manifest=$(jq -r '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == "sim") | .digest' "$work/image/index.json")
config_digest=$(jq -r .config.digest "$work/image/blobs/${manifest/://}")
cp "$work/image/blobs/${config_digest/://}" "$work/image-config.json"

# --- 2. injection -----------------------------------------------------------------------------
echo "== inject"
injected=$work/injected.yaml
if "$bin" inject "$here/workloads.yaml" >"$injected" 2>"$logs/inject.report"; then
  ok "mcp-pep inject tests/sim/workloads.yaml"
else fatal "mcp-pep inject tests/sim/workloads.yaml" "$(cat "$logs/inject.report")"; fi
check "inject reports 4 deployments injected" test "$(grep -c '^deployment/.* injected$' "$logs/inject.report")" = 4
"$bin" inject "$injected" >"$work/reinjected.yaml" 2>/dev/null
check "inject is idempotent on its own output" cmp -s "$injected" "$work/reinjected.yaml"
"$YAML_PY" "$here/kubelet.py" pods "$injected" "$work/podspecs" || fatal "kubelet.py pods"
pods=(tool-server trusted-agent semi-trusted-agent untrusted-agent)
agents=(trusted-agent semi-trusted-agent untrusted-agent)
tool_pod=tool-server
pj() { echo "$work/podspecs/$1.json"; }
for p in "${pods[@]}"; do [[ -f $(pj "$p") ]] || fatal "injected pod $p present"; done
for p in "${pods[@]}"; do
  check "$p: initContainers[0] is mcp-pep, restartPolicy Always" \
    test "$(jq -r '.spec.initContainers[0] | .name + " " + .restartPolicy' "$(pj "$p")")" = "mcp-pep Always"
done
img_ref=$(jq -r '.spec.initContainers[0].image' "$(pj "$tool_pod")")
check "sidecar image $img_ref is this build's version ($version)" test "${img_ref##*:}" = "$version"

# --- 3. the policy ConfigMaps (rendered chart, else policies/) --------------------------------
echo "== policies"
namespaces=($(for p in "${pods[@]}"; do jq -r .namespace "$(pj "$p")"; done | sort -u))
render() {  # render OUT [--identity ID=LEVEL] [--categories LEVEL=...]
  local out=$1; shift
  local py=$K8S_PY extra=()
  if [[ ${SIM_NO_CHART:-0} == 1 ]] || ! { [[ -x $py ]] && "$py" -c 'import helm_python' 2>/dev/null; }; then
    py=$E2E_PY extra=(--no-chart)
  fi
  "$py" "$here/chart_policies.py" "$out" --chart "$repo/charts/mcp-pep" --policies "$repo/policies" \
    $(printf -- '--namespace %s ' "${namespaces[@]}") "${extra[@]}" "$@" 2>>"$logs/chart.log"
}
render "$work/policies-v1.json" || fatal "policy ConfigMap data" "$(cat "$logs/chart.log")"
policy_source=$(jq -r .source "$work/policies-v1.json")
echo "   ConfigMap data from: $policy_source"
[[ $policy_source == chart* ]] || note "the policy ConfigMap data is not the rendered chart's: $policy_source"

# --- 4. SPIFFE material -----------------------------------------------------------------------
echo "== SVIDs"
svid_args=()
for p in "${pods[@]}"; do
  ns=$(jq -r .namespace "$(pj "$p")") sa=$(jq -r .serviceAccount "$(pj "$p")")
  svid_args+=("$p=spiffe://mcp-identity.local/ns/$ns/sa/$sa")
done
"$E2E_PY" "$here/sim_pki.py" "$work/pki" "${svid_args[@]}" >"$logs/pki.log" 2>&1 || fatal "sim_pki.py" "$(cat "$logs/pki.log")"
ok "PKI and one X.509-SVID per pod (ns/<namespace>/sa/<service account>)"

# --- 5. the node: bridge, pods' network namespaces, Services ----------------------------------
echo "== network"
subnet=10.244.77 gw=10.244.77.1 subnet6=fd00:10:244:77: gw6=fd00:10:244:77::1
ip netns add "$node_ns" && netns_list+=("$node_ns") || fatal "ip netns add $node_ns"
in_node ip link set lo up
in_node ip link add cbr0 type bridge
in_node ip addr add "$gw/24" dev cbr0
((SIM_IPV6)) && in_node ip -6 addr add "$gw6/64" dev cbr0 nodad
in_node ip link set cbr0 up
in_node sysctl -qw net.ipv4.ip_forward=1 net.bridge.bridge-nf-call-iptables=1
declare -A pod_ip pod_ip6 pod_ns
i=10
for p in "${pods[@]}"; do
  ns=mcpsim-$run_id-$p
  ip netns add "$ns" && netns_list+=("$ns") || fatal "ip netns add $ns"
  pod_ns[$p]=$ns pod_ip[$p]=$subnet.$i pod_ip6[$p]=$subnet6:$i
  in_node ip link add "veth$i" type veth peer name eth0 netns "$ns"
  in_node ip link set "veth$i" master cbr0 up
  ip -n "$ns" link set lo up
  ip -n "$ns" addr add "${pod_ip[$p]}/24" dev eth0
  # Dual-stack: an IPv6 address too (the pod IP the kubelet probes in IPv6 and IPv6-primary clusters).
  ((SIM_IPV6)) && ip -n "$ns" -6 addr add "${pod_ip6[$p]}/64" dev eth0 nodad
  ip -n "$ns" link set eth0 up
  ip -n "$ns" route add default via "$gw"
  i=$((i + 1))
done
# kube-proxy: each Service gets a ClusterIP; its ports DNAT to the selected pod's targetPort
# (a named targetPort resolved as the Endpoints controller does, sidecar ports included).
declare -A svc_hosts
# Service links (env) per namespace; the API server's own Service is in every pod's env.
echo '[{"name": "kubernetes", "clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443}]}]' >"$work/services-all.json"
nsvc=$(jq length "$work/podspecs/services.json")
for ((s = 0; s < nsvc; s++)); do
  svc=$(jq -c ".[$s]" "$work/podspecs/services.json")
  sname=$(jq -r .metadata.name <<<"$svc") sns=$(jq -r '.metadata.namespace // "default"' <<<"$svc")
  cip=10.96.77.$((10 + s))
  target=""
  for p in "${pods[@]}"; do
    jq -e --argjson sel "$(jq -c .spec.selector <<<"$svc")" --arg ns "$sns" \
      '.namespace == $ns and (.labels as $l | $sel | to_entries | all(.value == $l[.key]))' "$(pj "$p")" >/dev/null && target=$p
  done
  [[ -n $target ]] || fatal "Service $sns/$sname selects a pod"
  while read -r port tport; do
    if cport=$("$E2E_PY" "$here/kubelet.py" find-port "$(pj "$target")" "$tport" 2>&1); then
      ok "Service $sns/$sname port $port: targetPort $tport is pod $target's port $cport"
      in_node iptables -t nat -A PREROUTING -d "$cip" -p tcp --dport "$port" -j DNAT --to-destination "${pod_ip[$target]}:$cport"
    else bad "Service $sns/$sname port $port: targetPort $tport resolves" "$cport"; fi
  done < <(jq -r '.spec.ports[] | "\(.port) \(.targetPort // .port)"' <<<"$svc")
  svc_hosts[$cip]="$sname.$sns.svc $sname.$sns.svc.cluster.local"
  jq --arg n "$sname" --arg ns "$sns" --arg ip "$cip" --argjson ports "$(jq -c '.spec.ports' <<<"$svc")" \
    '. + [{name: $n, namespace: $ns, clusterIP: $ip, ports: $ports}]' "$work/services-all.json" >"$work/services-all.json.new" \
    && mv "$work/services-all.json.new" "$work/services-all.json"
done

# --- 6. volumes, kubelet files, Workload API per pod ------------------------------------------
echo "== volumes"
sock_name=spire-agent.sock   # where the SPIFFE CSI driver (SPIRE's chart default) puts the agent socket
# One pod's SVID is issued only after its sidecar started (SPIRE has not synced the entry yet):
# its Workload API answers bundles but PERMISSION_DENIED for the SVID until then.
late_pod=semi-trusted-agent
late_wl=$work/pki/wl-pending-$late_pod
mkdir -p "$late_wl"
cp "$work/pki/wl-$late_pod"/{bundle.pem,jwt_bundle.json,generation} "$late_wl/"
echo mcp-identity.local >"$late_wl/trust_domain"
declare -A cm_dir
for p in "${pods[@]}"; do
  d=$work/pods/$p; mkdir -p "$d/etc" "$d/mnt" "$d/csi"
  ns=$(jq -r .namespace "$(pj "$p")")
  {
    echo "# Kubernetes-managed hosts file."
    printf '127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\n'
    printf '%s\t%s\n' "${pod_ip[$p]}" "$p"
    echo "# Stands for cluster DNS (CoreDNS): the Services' names."
    for cip in "${!svc_hosts[@]}"; do printf '%s\t%s\n' "$cip" "${svc_hosts[$cip]}"; done
  } >"$d/etc/hosts"
  echo "$p" >"$d/etc/hostname"
  printf 'search %s.svc.cluster.local svc.cluster.local cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n' "$ns" >"$d/etc/resolv.conf"
  : >"$d/termination-log"; chmod 0666 "$d/termination-log"
  chmod 0644 "$d"/etc/*
  # The ConfigMap volume (the pod's own namespace, the name the pod's volume asks for).
  vol_args=()
  while IFS=$'\t' read -r vname kind ref; do
    case $kind in
      configMap)
        jq -e --arg ns "$ns" --arg n "$ref" '.configmaps[$ns][$n]' "$work/policies-v1.json" >"$d/cm-$vname.json" \
          || { bad "$p: ConfigMap $ref exists in namespace $ns ($policy_source)"; continue; }
        "$E2E_PY" "$here/kubelet.py" configmap-write "$d/volumes/$vname" "$d/cm-$vname.json" || fatal "configmap-write"
        cm_dir[$p]=$d/volumes/$vname
        vol_args+=(--volume "$vname=$d/volumes/$vname") ;;
      csi)
        mkdir -p "$d/volumes/$vname"; chmod 0755 "$d/volumes/$vname"
        vol_args+=(--volume "$vname=$d/volumes/$vname")
        # SPIRE's agent socket is world-writable (umask 0 here), so a non-root workload can connect.
        bg "workload-api-$p" bash -c 'umask 000; exec "$@"' _ "$E2E_PY" "$repo/tests/e2e/workload_api.py" \
          --socket "$d/volumes/$vname/$sock_name" --dir "$([[ $p == "$late_pod" ]] && echo "$late_wl" || echo "$work/pki/wl-$p")" ;;
      *) bad "$p: volume $vname of kind $kind is not emulated" ;;
    esac
  done < <(jq -r '.spec.volumes[] | [.name, (if .configMap then "configMap" elif .csi then "csi" else (keys - ["name"])[0] end), (.configMap.name // .csi.driver // "")] | @tsv' "$(pj "$p")")
  jq --arg ns "$ns" '[.[] | select(.namespace == null or .namespace == $ns)]' "$work/services-all.json" >"$d/services.json"
  "$E2E_PY" "$here/kubelet.py" container-spec "$(pj "$p")" mcp-pep "$work/image-config.json" "${vol_args[@]}" \
    --services "$d/services.json" \
    --etc-hosts "$d/etc/hosts" --etc-hostname "$d/etc/hostname" --resolv-conf "$d/etc/resolv.conf" \
    --termination-log "$d/termination-log" >"$d/sidecar-spec.json" 2>"$logs/spec-$p.log" \
    || fatal "$p: the kubelet accepts the sidecar container" "$(cat "$logs/spec-$p.log")"
done
for p in "${pods[@]}"; do
  s=$work/pods/$p/volumes/mcp-pep-spiffe/$sock_name
  for _ in $(seq 100); do [[ -S $s ]] && break; sleep 0.1; done
  check "$p: Workload API socket in the CSI volume" test -S "$s"
  want="unix:///spiffe-workload-api/$sock_name"
  got=$(jq -r '.spec.initContainers[0].env[] | select(.name == "SPIFFE_ENDPOINT_SOCKET") | .value' "$(pj "$p")")
  mp=$(jq -r '.spec.initContainers[0].volumeMounts[] | select(.name == "mcp-pep-spiffe") | .mountPath' "$(pj "$p")")
  check "$p: SPIFFE_ENDPOINT_SOCKET ($got) names the socket at the CSI mountPath ($mp)" test "$got" = "unix://$mp/$sock_name"
done

# --- 7. start the sidecars (initContainers[0]) ------------------------------------------------
echo "== sidecars"
declare -A side_leader side_pid side_t0
for p in "${pods[@]}"; do
  side_t0[$p]=$(date +%s.%N)
  d=$work/pods/$p
  bg "sidecar-$p" ip netns exec "${pod_ns[$p]}" unshare --mount --pid --uts --ipc --fork --propagation private \
    --kill-child=SIGTERM bash "$here/container.sh" "$d/sidecar-spec.json" "$rootfs" "$d/mnt"
  side_leader[$p]=$last_pid
done
# The container process: the child unshare forked (PID 1 of the pod's PID namespace).
container_pid() {
  local leader=$1 c
  for _ in $(seq 100); do
    c=$(cat "/proc/$leader/task/$leader/children" 2>/dev/null | awk '{print $1}')
    [[ -n $c && $(cat "/proc/$c/comm" 2>/dev/null) == mcp-pep ]] && { echo "$c"; return 0; }
    kill -0 "$leader" 2>/dev/null || return 1
    sleep 0.05
  done
  return 1
}
for p in "${pods[@]}"; do
  if c=$(container_pid "${side_leader[$p]}"); then side_pid[$p]=$c; ok "$p: sidecar process started (host pid $c)"
  else fatal "$p: sidecar process started" "$(tail -20 "$logs/sidecar-$p.log")"; fi
done

# The kubelet's startupProbes, from the node to the pod IPs, all pods at once (polled every
# 0.2 s here instead of periodSeconds, within failureThreshold x periodSeconds, at most 30 s).
# The pod whose SVID is not issued yet must fail its probe and keep running; its SVID is
# issued 2 s after its start.
declare -A ready_at probe_of last_code
limit=30
for p in "${pods[@]}"; do
  read -r port path timeout period threshold < <("$E2E_PY" "$here/kubelet.py" probe "$(pj "$p")" mcp-pep startupProbe)
  probe_of[$p]="$port $path $timeout"
  ((period * threshold < limit)) && limit=$((period * threshold))
done
late_codes="" svid_issued=""
t_probe=$SECONDS
while :; do
  pending=0
  for p in "${pods[@]}"; do
    [[ -n ${ready_at[$p]:-} ]] && continue
    read -r port path timeout <<<"${probe_of[$p]}"
    code=$(http_code "${pod_ip[$p]}:$port" "$path" "$timeout")
    last_code[$p]=$code
    if [[ $code =~ ^[23] ]]; then ready_at[$p]=$(date +%s.%N); else pending=1; fi
    [[ $p == "$late_pod" && -z $svid_issued ]] && late_codes+="$code "
  done
  if [[ -z $svid_issued ]] && awk -v a="${side_t0[$late_pod]}" -v b="$(date +%s.%N)" 'BEGIN {exit !(b - a >= 2)}'; then
    check "$late_pod: without its SVID the startupProbe fails (${late_codes% }) and the sidecar keeps running" \
      bash -c '[[ -n $1 && ! $1 =~ (^| )[23] ]] && kill -0 "$2"' _ "$late_codes" "${side_pid[$late_pod]}"
    "$E2E_PY" "$repo/tests/e2e/pki.py" workload-dir "$work/pki" "$late_wl" "pod-$late_pod"
    svid_issued=$(date +%s.%N)
  fi
  ((pending)) || [[ -z $svid_issued ]] || break
  ((SECONDS - t_probe > limit)) && break
  sleep 0.2
done
for p in "${pods[@]}"; do
  read -r port path _ <<<"${probe_of[$p]}"
  if [[ -n ${ready_at[$p]:-} ]]; then
    extra=""
    [[ $p == "$late_pod" ]] && extra=", $(awk -v a="$svid_issued" -v b="${ready_at[$p]}" 'BEGIN {printf "%.1f", b - a}') s after its SVID was issued"
    ok "$p: startupProbe GET :$port$path passes ($(awk -v a="${side_t0[$p]}" -v b="${ready_at[$p]}" 'BEGIN {printf "%.1f", b - a}') s after the start$extra)"
  else bad "$p: startupProbe GET :$port$path passes (last ${last_code[$p]})" "$(tail -15 "$logs/sidecar-$p.log")"; fi
done

# What the process is: the pod's securityContext, as the kernel sees it.
for p in "${pods[@]}"; do
  c=${side_pid[$p]} st=/proc/${side_pid[$p]}/status
  [[ -r $st ]] || { bad "$p: sidecar still running"; continue; }
  check "$p: sidecar runs as uid/gid 65532" test "$(awk '/^Uid:|^Gid:/ {print $2}' "$st" | tr '\n' ' ')" = "65532 65532 "
  check "$p: no capabilities (CapEff, CapPrm, CapBnd all 0)" \
    test "$(awk '/^Cap(Eff|Prm|Bnd):/ {print $2}' "$st" | sort -u)" = 0000000000000000
  check "$p: no_new_privs set (allowPrivilegeEscalation: false)" test "$(awk '/^NoNewPrivs:/ {print $2}' "$st")" = 1
  check "$p: PID 1 of its PID namespace" test "$(awk '/^NSpid:/ {print $NF}' "$st")" = 1
  check "$p: hostname is the pod's" test "$(nsenter -t "$c" -u hostname)" = "$p"
  check "$p: root filesystem mounted read-only" \
    bash -c 'awk '\''$5 == "/" {print $6}'\'' "/proc/$1/mountinfo" | tail -1 | grep -qE "(^|,)ro(,|$)"' _ "$c"
  check "$p: policy volume mounted read-only at /etc/mcp-pep/policies" \
    bash -c 'awk '\''$5 == "/etc/mcp-pep/policies" {print $6}'\'' "/proc/$1/mountinfo" | grep -qE "(^|,)ro(,|$)"' _ "$c"
done

# --- 8. the app containers, once the sidecar has started -------------------------------------
echo "== app containers"
# The tool server: containers[0]'s args, with this build's demo server standing in for its image.
mapfile -t tool_args < <(jq -r '.spec.containers[0].args[]' "$(pj "$tool_pod")")
bg "app-$tool_pod" ip netns exec "${pod_ns[$tool_pod]}" "$bin" "${tool_args[@]}"
tool_app_pid=$last_pid
up=$(jq -r '.spec.initContainers[0].env[] | select(.name == "MCP_PEP_CONFIG_YAML") | .value | fromjson | .upstream.url' "$(pj "$tool_pod")")
for _ in $(seq 50); do ip netns exec "${pod_ns[$tool_pod]}" curl -s -o /dev/null --max-time 1 "$up" && break; sleep 0.1; done
check "tool-server: demo server answers at the sidecar's upstream $up" \
  ip netns exec "${pod_ns[$tool_pod]}" curl -s -o /dev/null --max-time 1 "$up"

if [[ -z $MCP_MODE ]]; then
  if ip netns exec "${pod_ns[$tool_pod]}" curl -s --max-time 2 "$up" -H 'content-type: application/json' \
       -H 'accept: application/json, text/event-stream' -H 'mcp-protocol-version: 2026-07-28' -H 'mcp-method: tools/list' \
       -d '{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}' \
       | jq -e '.result.resultType' >/dev/null 2>&1; then
    MCP_MODE=auto
  else
    MCP_MODE=legacy
    note "the demo server's 2026-07-28 tools/list has no resultType (the Python SDK 2.3 refuses it): agents use 2025-11-25"
  fi
fi
echo "   agents' MCP mode: $MCP_MODE"
until_mode=$MCP_MODE; [[ $until_mode == auto ]] && until_mode=2026-07-28

# An agent container: containers[0]'s env (the injected MCP_SERVER_URL) and nothing else.
agent_run() {  # agent_run POD sim_client.py-args...
  local p=$1; shift
  local envs=()
  mapfile -t envs < <(jq -r '.spec.containers[0].env // [] | .[] | "\(.name)=\(.value)"' "$(pj "$p")")
  ip netns exec "${pod_ns[$p]}" env -i PATH=/usr/bin:/bin HOME=/tmp "${envs[@]}" \
    "$E2E_PY" "$here/sim_client.py" "$@"
}
for p in "${agents[@]}"; do
  u=$(jq -r '.spec.containers[0].env // [] | .[] | select(.name == "MCP_SERVER_URL") | .value' "$(pj "$p")")
  lp=$(jq -r '.spec.initContainers[0].ports[] | select(.name == "mcp") | .containerPort' "$(pj "$p")")
  check "$p: agent's MCP_SERVER_URL ($u) is the sidecar's mcp port" test "$u" = "http://127.0.0.1:$lp/mcp"
done

# Pod Ready needs the sidecar's readinessProbe; the livenessProbe must hold.
for p in "${pods[@]}"; do
  for kind in readinessProbe livenessProbe; do
    read -r port path timeout _ < <("$E2E_PY" "$here/kubelet.py" probe "$(pj "$p")" mcp-pep "$kind")
    code=$(http_code "${pod_ip[$p]}:$port" "$path" "$timeout")
    check "$p: $kind GET :$port$path answers $code" bash -c '[[ $1 =~ ^[23] ]]' _ "$code"
  done
  sport=$(jq -r '.annotations["prometheus.io/port"]' "$(pj "$p")") spath=$(jq -r '.annotations["prometheus.io/path"]' "$(pj "$p")")
  check "$p: Prometheus scrape of :$sport$spath has mcp_pep_ series" \
    bash -c 'ip netns exec "$1" curl -s --max-time 2 "http://$2" | grep -q "^mcp_pep_"' _ "$node_ns" "${pod_ip[$p]}:$sport$spath"
done

# IPv6 (an IPv6-only cluster, or dual-stack with IPv6 first): the kubelet probes the IPv6 pod IP
# and the Service sends the tool server's traffic there.
if ((SIM_IPV6)); then
  # The IPv6 path itself works: a listener on [::] in the tool pod answers the node.
  ctl_port=18099
  bg ipv6-control ip netns exec "${pod_ns[$tool_pod]}" /usr/bin/python3 -m http.server --bind :: "$ctl_port"
  ctl_pid=$last_pid
  for _ in $(seq 30); do [[ $(http_code "[${pod_ip6[$tool_pod]}]:$ctl_port" /) == 200 ]] && break; sleep 0.1; done
  check "IPv6 pod network works (a [::] listener in the tool pod answers the node)" \
    test "$(http_code "[${pod_ip6[$tool_pod]}]:$ctl_port" /)" = 200
  kill -TERM -- "-$ctl_pid" 2>/dev/null
  for p in "${pods[@]}"; do
    read -r port path timeout _ < <("$E2E_PY" "$here/kubelet.py" probe "$(pj "$p")" mcp-pep startupProbe)
    code=$(http_code "[${pod_ip6[$p]}]:$port" "$path" "$timeout")
    check "$p: startupProbe on the IPv6 pod IP [${pod_ip6[$p]}]:$port$path answers (IPv6-only / IPv6-first clusters; got $code)" \
      bash -c '[[ $1 =~ ^[23] ]]' _ "$code"
  done
  mcp_port=$(jq -r '.spec.initContainers[0].ports[] | select(.name == "mcp") | .containerPort' "$(pj "$tool_pod")")
  rc=0; out=$(ip netns exec "${pod_ns[untrusted-agent]}" curl -sSk --max-time 3 -o /dev/null "https://[${pod_ip6[$tool_pod]}]:$mcp_port/mcp" 2>&1) || rc=$?
  check "tool-server: its mcp port on the IPv6 pod IP accepts connections (curl rc $rc: $out)" \
    bash -c '[[ $1 != 7 && $1 != 28 ]]' _ "$rc"
fi

# --- 9. the trust matrix, agent → egress sidecar → mTLS → ingress sidecar → tool server -------
echo "== trust matrix"
all_tools=(read_file write_file query_database call_api execute_command fetch_url)
declare -A allow
allow[trusted-agent]="read_file write_file query_database call_api execute_command fetch_url"
allow[semi-trusted-agent]="read_file query_database call_api"
allow[untrusted-agent]="read_file"
for p in "${agents[@]}"; do
  if ! res=$(agent_run "$p" matrix --mode "$MCP_MODE" 2>"$logs/client-$p.err"); then
    bad "$p: the agent connects through both sidecars" "$(cat "$logs/client-$p.err")"; continue
  fi
  echo "$res" >"$logs/matrix-$p.json"
  ok "$p: the agent connects through both sidecars (protocol $(jq -r .version <<<"$res"))"
  want=$(tr ' ' '\n' <<<"${allow[$p]}" | LC_ALL=C sort | paste -sd, -)
  got=$(jq -r '.tools | join(",")' <<<"$res")
  check "$p: tools/list is exactly [$want]" test "$got" = "$want"
  for t in "${all_tools[@]}"; do
    exp=denied; [[ " ${allow[$p]} " == *" $t "* ]] && exp=allowed
    o=$(jq -r --arg t "$t" '.calls[$t].outcome' <<<"$res")
    check "$p: $t $exp" bash -c '[[ $1 == "$2" ]] || { echo "got $1: $3"; exit 1; }' _ "$o" "$exp" \
      "$(jq -r --arg t "$t" '.calls[$t] | "\(.code) \(.text)"' <<<"$res")"
  done
done
sleep 0.3
# The ingress sidecar decided on the agents' mTLS identity (the egress sidecar's SVID = the agent pod's).
ilog=$logs/sidecar-$tool_pod.log
for p in "${agents[@]}"; do
  id="spiffe://mcp-identity.local/ns/mcp-agents/sa/$p"
  check "tool-server sidecar decided calls of $id proven by mtls" \
    bash -c 'grep -F "mcp_pep::decision" "$2" | grep -F "\"spiffe_id\":\"$1\"" | grep -qF "\"identity_source\":\"mtls\""' _ "$id" "$ilog"
done
# The egress sidecar decided too, on the loopback identity the injector configured.
for p in "${agents[@]}"; do
  id="spiffe://mcp-identity.local/ns/mcp-agents/sa/$p"
  check "$p sidecar decided its agent's calls as $id (loopback)" \
    bash -c 'grep -F "mcp_pep::decision" "$2" | grep -F "\"spiffe_id\":\"$1\"" | grep -qF "\"identity_source\":\"local\""' _ "$id" "$logs/sidecar-$p.log"
done

# --- 10. what the network lets through ----------------------------------------------------------
echo "== network paths"
svc_url=$(jq -r '.spec.initContainers[0].env[] | select(.name == "MCP_PEP_CONFIG_YAML") | .value | fromjson | .upstream.url' "$(pj untrusted-agent)")
# curl exit codes: 7 connection refused, 35 TLS handshake failed, 56 TLS alert while receiving.
curl_rc() { local ns=$1; shift; ip netns exec "$ns" curl -sS --max-time 3 -o /dev/null "$@" 2>&1; echo "rc=$?"; }
# (curl in the pod's netns reads the node's /etc/hosts: the pod's own answer for the name is passed.)
svc_hostport=${svc_url#https://}; svc_hostport=${svc_hostport%%/*}
svc_ip=$(awk -v h="${svc_hostport%:*}" '{for (i = 2; i <= NF; i++) if ($i == h) print $1}' "$work/pods/untrusted-agent/etc/hosts" | head -1)
nocert='mcp_pep_tls_handshakes_total{result="no_client_certificate"}'
n0=$(metric "${pod_ip[$tool_pod]}" "$nocert")
out=$(curl_rc "${pod_ns[untrusted-agent]}" -k --resolve "$svc_hostport:$svc_ip" -X POST "$svc_url")
sleep 0.2
n1=$(metric "${pod_ip[$tool_pod]}" "$nocert")
check "untrusted-agent pod: $svc_url without a client certificate is refused in the TLS handshake ($nocert ${n0:-0} -> ${n1:-0})" \
  bash -c '[[ $1 =~ rc=(35|55|56)$ ]] && (( ${3:-0} > ${2:-0} )) || { echo "$1"; exit 1; }' _ "$out" "$n0" "$n1"
app_port=${up##*:}; app_port=${app_port%%/*}
out=$(curl_rc "${pod_ns[untrusted-agent]}" "http://${pod_ip[$tool_pod]}:$app_port/mcp")
check "untrusted-agent pod: the tool server's app port $app_port is refused from another pod (loopback only)" \
  bash -c '[[ $1 =~ rc=7$ ]] || { echo "$1"; exit 1; }' _ "$out"
eport=$(jq -r '.spec.initContainers[0].ports[] | select(.name == "mcp") | .containerPort' "$(pj untrusted-agent)")
out=$(curl_rc "${pod_ns[$tool_pod]}" "http://${pod_ip[untrusted-agent]}:$eport/mcp")
check "tool-server pod: an agent's egress port $eport is refused from another pod (loopback only)" \
  bash -c '[[ $1 =~ rc=7$ ]] || { echo "$1"; exit 1; }' _ "$out"
pk=$(in_node iptables -t nat -L PREROUTING -v -n -x | awk '/DNAT/ && /8443/ {print $1}' | head -1)
check "the egress sidecars reached the tool server through the Service's ClusterIP ($pk packets DNATed)" test "${pk:-0}" -gt 0
hs=$(metric "${pod_ip[$tool_pod]}" 'mcp_pep_tls_handshakes_total{result="ok"}')
check "tool-server sidecar: mutual TLS handshakes with client SVIDs succeeded (${hs:-0})" test "${hs:-0}" -ge 3

# --- 11. ConfigMap updates, picked up by the running sidecars ----------------------------------
echo "== ConfigMap updates"
reload_metric='mcp_pep_policy_reloads_total{result="ok"}'
declare -A reloads0
for p in "${pods[@]}"; do reloads0[$p]=$(metric "${pod_ip[$p]}" "$reload_metric"); done
# (a) Only the tool server's namespace: untrusted agents may use no category there. The egress
#     sidecar still allows read_file; the ingress sidecar must now refuse it.
tns=$(jq -r .namespace "$(pj "$tool_pod")")
if render "$work/policies-v2.json" --categories untrusted= ; then
  jq --arg ns "$tns" '.configmaps[$ns]["mcp-pep-policies"]' "$work/policies-v2.json" >"$work/cm-v2.json"
  swapped=$(date +%s.%N)
  "$E2E_PY" "$here/kubelet.py" configmap-write "${cm_dir[$tool_pod]}" "$work/cm-v2.json"
  check "ConfigMap swap: ..data points at a new timestamped directory" \
    bash -c '[[ $(readlink "$1/..data") == ..[0-9]* && $(ls -A "$1" | grep -c "^\.\.[0-9]") == 1 ]]' _ "${cm_dir[$tool_pod]}"
  if r=$(agent_run untrusted-agent until read_file denied --timeout 12 --mode "$until_mode"); then
    ok "untrusted-agent: read_file denied by the tool server's sidecar $(since "$swapped") s after its ConfigMap's swap"
  else bad "untrusted-agent: read_file denied after the tool server's ConfigMap changed" "$r"; fi
  check "tool-server sidecar's decision log names untrusted-agent's denial (mtls)" \
    bash -c 'grep -F "mcp_pep::decision" "$1" | grep -F "/sa/untrusted-agent\"" | grep -F "\"identity_source\":\"mtls\"" | grep -q "may not use filesystem"' _ "$ilog"
  r=$(agent_run trusted-agent until read_file allowed --timeout 3 --mode "$until_mode")
  check "trusted-agent: read_file still allowed" bash -c '(($1 == 0)) || { echo "$2"; exit 1; }' _ $? "$r"
else bad "render the changed policies (a)" "$(tail -5 "$logs/chart.log")"; fi
# (b) A helm upgrade: untrusted-agent becomes trusted, in every namespace's ConfigMap.
if render "$work/policies-v3.json" --identity "spiffe://mcp-identity.local/ns/mcp-agents/sa/untrusted-agent=trusted"; then
  for p in "${pods[@]}"; do
    ns=$(jq -r .namespace "$(pj "$p")")
    jq --arg ns "$ns" '.configmaps[$ns]["mcp-pep-policies"]' "$work/policies-v3.json" >"$work/cm-v3-$p.json"
    "$E2E_PY" "$here/kubelet.py" configmap-write "${cm_dir[$p]}" "$work/cm-v3-$p.json"
  done
  swapped=$(date +%s.%N)
  if r=$(agent_run untrusted-agent until execute_command allowed --timeout 12 --mode "$until_mode"); then
    ok "untrusted-agent: execute_command allowed end to end $(since "$swapped") s after the upgrade's swaps"
  else bad "untrusted-agent: execute_command allowed after the upgrade" "$r"; fi
  if res=$(agent_run untrusted-agent matrix --mode "$MCP_MODE" 2>&1); then
    check "untrusted-agent (now trusted): tools/list lists all six tools" \
      test "$(jq -r '.tools | length' <<<"$res")" = 6
    check "untrusted-agent (now trusted): every tool allowed" \
      test "$(jq -r '[.calls[].outcome] | unique | join(",")' <<<"$res")" = allowed
  else bad "untrusted-agent matrix after the upgrade" "$res"; fi
  r=$(agent_run semi-trusted-agent until execute_command denied --timeout 3 --mode "$until_mode")
  check "semi-trusted-agent: execute_command still denied" bash -c '(($1 == 0)) || { echo "$2"; exit 1; }' _ $? "$r"
  sleep 1.2
  for p in "${pods[@]}"; do
    n=$(metric "${pod_ip[$p]}" "$reload_metric")
    check "$p: $reload_metric went up (${reloads0[$p]:-0} -> ${n:-none})" \
      awk -v a="${reloads0[$p]:-0}" -v b="${n:-0}" 'BEGIN {exit !(b > a)}'
  done
else bad "render the changed policies (b)" "$(tail -5 "$logs/chart.log")"; fi

# --- 12. termination: app containers first, then the sidecars (SIGTERM to PID 1) ---------------
echo "== termination"
for p in "${pods[@]}"; do
  hwm=$(awk '/^VmHWM:/ {print $2}' "/proc/${side_pid[$p]}/status" 2>/dev/null)
  lim=$(jq -r '.spec.initContainers[0].resources.limits.memory' "$(pj "$p")")
  lim_kib=$(numfmt --from=iec-i "$lim" 2>/dev/null | awk '{print int($1 / 1024)}')
  check "$p: peak RSS ${hwm:-?} KiB within the memory limit $lim" test "${hwm:-999999999}" -lt "${lim_kib:-0}"
done
kill -TERM -- "-$tool_app_pid" 2>/dev/null
for p in "${pods[@]}"; do kill -TERM "${side_pid[$p]}" 2>/dev/null; done
for p in "${pods[@]}"; do
  t0=$SECONDS rc=timeout
  for _ in $(seq 120); do kill -0 "${side_leader[$p]}" 2>/dev/null || break; sleep 0.1; done
  if ! kill -0 "${side_leader[$p]}" 2>/dev/null; then wait "${side_leader[$p]}"; rc=$?; fi
  check "$p: sidecar exits 0 on SIGTERM as PID 1 within 12 s (got $rc)" test "$rc" = 0
done
# The container log (stdout and stderr, as the kubelet keeps them) with log.format json.
line=$(grep -hv '^{' "$logs/sidecar-$tool_pod.log" | head -1)
[[ -n $line ]] && note "log.format json, yet each sidecar's log has a plain-text line: $line"
for p in "${pods[@]}"; do
  check "$p: sidecar logged no errors" bash -c '! grep -E "\"level\":\"(ERROR)\"" "$1"' _ "$logs/sidecar-$p.log"
done
finish
