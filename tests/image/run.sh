#!/usr/bin/env bash
# Image tests without a container daemon: builds the runtime image as an OCI layout
# (image/build-oci.sh), checks its config against the Dockerfile's, unpacks it and runs the
# binary from the unpacked root filesystem as UID 65532 (chroot), as a kubelet would run
# the sidecar: --version, check-config, and `run` on a read-only root with /readyz probed.
#
#   bash tests/image/run.sh [BINARY]     (default target/release/mcp-pep, else target/debug)
#
# Needs root (chroot, file owners, a read-only bind mount). Installs umoci, skopeo, jq,
# curl and binutils with apt-get when missing. Binds 127.0.0.1 only, on free ports.
set -uo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo"

if [[ $# -ge 1 ]]; then binary=$1
elif [[ -x target/release/mcp-pep ]]; then binary=target/release/mcp-pep
else binary=target/debug/mcp-pep; fi
binary=$(readlink -f "$binary")

pass=0 fail=0 skip=0
ok()   { printf 'ok    %s\n' "$1"; pass=$((pass + 1)); }
bad()  { printf 'FAIL  %s\n' "$1"; [[ -n ${2:-} ]] && printf '      %s\n' "$2"; fail=$((fail + 1)); }
skip() { printf 'skip  %s (%s)\n' "$1" "$2"; skip=$((skip + 1)); }
check() { local name=$1; shift; if "$@"; then ok "$name"; else bad "$name"; fi; }
finish() {
  [[ $skip -gt 0 ]] && echo "($skip skipped)"
  echo "image: $pass passed, $fail failed"
  [[ $fail -eq 0 ]]; exit
}

if [[ $(id -u) -ne 0 ]]; then bad "running as root (chroot and file owners need it)"; finish; fi
if [[ ! -x $binary ]]; then bad "binary $binary exists (cargo build --release --locked --bin mcp-pep)"; finish; fi

# --- tools ----------------------------------------------------------------------------------
need=()
command -v umoci  >/dev/null || need+=(umoci)
command -v skopeo >/dev/null || need+=(skopeo)
command -v jq     >/dev/null || need+=(jq)
command -v curl   >/dev/null || need+=(curl)
command -v strip  >/dev/null && command -v readelf >/dev/null || need+=(binutils)
if [[ ${#need[@]} -gt 0 ]]; then
  echo "installing ${need[*]}"
  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"; } >/dev/null; then
    bad "apt-get install ${need[*]}"; finish
  fi
fi

# --- scratch space and cleanup --------------------------------------------------------------
tmp=$(mktemp -d "${TMPDIR:-/tmp}/mcp-pep-image-test.XXXXXX")
pids=() mounted=()
cleanup() {
  local p m
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  for m in "${mounted[@]}"; do umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null; done
  rm -rf --one-file-system "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  if command -v python3 >/dev/null; then
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
  else
    local p
    while :; do
      p=$((20000 + RANDOM % 40000))
      (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null || { echo "$p"; return; }
    done
  fi
}

version=$("$binary" --version | awk '{print $2}')
unstripped=$(stat -c %s "$binary")

# --- build ----------------------------------------------------------------------------------
layout=$tmp/oci
if out=$(IMAGE_TAG=test image/build-oci.sh "$binary" "$layout" 2>&1); then
  ok "image/build-oci.sh builds an OCI layout"; printf '%s\n' "$out" | sed 's/^/      /'
else
  bad "image/build-oci.sh builds an OCI layout" "$out"; finish
fi
img=$layout:test
blob() { echo "$layout/blobs/${1/://}"; }
manifest_digest=$(jq -r '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == "test") | .digest' "$layout/index.json")
manifest=$(blob "$manifest_digest")
config=$(blob "$(jq -r .config.digest "$manifest")")
check "oci-layout is version 1.0.0" test "$(jq -r .imageLayoutVersion "$layout/oci-layout")" = 1.0.0
check "index names an OCI manifest" \
  test "$(jq -r --arg d "$manifest_digest" '.manifests[] | select(.digest == $d) | .mediaType' "$layout/index.json")" \
       = application/vnd.oci.image.manifest.v1+json
check "manifest: schema 2, OCI config, one gzip layer" \
  test "$(jq -r '[.schemaVersion, .config.mediaType, (.layers | length), .layers[0].mediaType] | join(" ")' "$manifest")" \
       = "2 application/vnd.oci.image.config.v1+json 1 application/vnd.oci.image.layer.v1.tar+gzip"
check "umoci stat reads the image" bash -c 'umoci stat --json --image "$1" | jq -e ".history | length >= 1" >/dev/null' _ "$img"

# --- config ---------------------------------------------------------------------------------
cfg() { jq -c "$1" "$config"; }
check "config user is 65532:65532"                   test "$(cfg .config.User)" = '"65532:65532"'
check "config entrypoint is [/usr/local/bin/mcp-pep]" test "$(cfg .config.Entrypoint)" = '["/usr/local/bin/mcp-pep"]'
check "config has no cmd"                             test "$(cfg .config.Cmd)" = null
check "config workdir is /home/nonroot"               test "$(cfg .config.WorkingDir)" = '"/home/nonroot"'
check "config env sets PATH and SSL_CERT_FILE" \
  test "$(cfg '[.config.Env[] | select(startswith("PATH=") or . == "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt")] | length')" = 2
check "config os/arch linux/$(dpkg --print-architecture 2>/dev/null || echo amd64)" \
  test "$(cfg '.os + "/" + .architecture')" = "\"linux/$(dpkg --print-architecture 2>/dev/null || echo amd64)\""
check "labels: title mcp-pep, version $version, license Apache-2.0" \
  test "$(cfg '.config.Labels | [."org.opencontainers.image.title", ."org.opencontainers.image.version", ."org.opencontainers.image.licenses"]')" \
       = "[\"mcp-pep\",\"$version\",\"Apache-2.0\"]"
check "labels: revision, created, source set" \
  jq -e '.config.Labels | [."org.opencontainers.image.revision", ."org.opencontainers.image.created", ."org.opencontainers.image.source"] | all(. != null and . != "")' "$config" >/dev/null
if sk=$(skopeo inspect --config "oci:$img" 2>&1); then
  check "skopeo reads the same user and entrypoint" \
    test "$(jq -c '[.config.User, .config.Entrypoint]' <<<"$sk")" = '["65532:65532",["/usr/local/bin/mcp-pep"]]'
else
  bad "skopeo reads the layout" "$sk"
fi

# The Dockerfile must say the same (the daemonless build stands in for it here).
df=$repo/Dockerfile
check "Dockerfile: runtime stage is distroless/cc-debian12:nonroot" \
  grep -qE '^ARG RUNTIME_IMAGE=gcr\.io/distroless/cc-debian12:nonroot$' "$df"
check "Dockerfile: USER 65532:65532"  grep -qxF 'USER 65532:65532' "$df"
check "Dockerfile: WORKDIR /home/nonroot" grep -qxF 'WORKDIR /home/nonroot' "$df"
check "Dockerfile: ENTRYPOINT [\"/usr/local/bin/mcp-pep\"]" grep -qxF 'ENTRYPOINT ["/usr/local/bin/mcp-pep"]' "$df"
df_labels=$(grep -oE 'org\.opencontainers\.image\.[a-z.]+=' "$df" | tr -d = | grep -vx 'org.opencontainers.image.base.name' | sort -u)
img_labels=$(jq -r '.config.Labels | keys[]' "$config" | sort -u)
check "Dockerfile and image carry the same label keys" test "$df_labels" = "$img_labels"

# --- the unpacked root filesystem -----------------------------------------------------------
bundle=$tmp/bundle
if out=$(umoci unpack --image "$img" "$bundle" 2>&1); then ok "umoci unpack"; else bad "umoci unpack" "$out"; finish; fi
rootfs=$bundle/rootfs
shells=$(find "$rootfs" \( -name sh -o -name bash -o -name dash -o -name ash -o -name busybox \) -printf '/%P\n')
check "no shell in the image" test -z "$shells"
writable=$(find "$rootfs" -mindepth 1 \( -uid 65532 -o -gid 65532 -o -perm -o+w \) ! -type l -printf '/%P\n' | sort | tr '\n' ' ')
check "only /home/nonroot and /tmp writable by 65532 (got: $writable)" test "$writable" = "/home/nonroot /tmp "
check "/tmp is 1777" test "$(stat -c %a "$rootfs/tmp")" = 1777
check "/etc/passwd names nonroot 65532" grep -qx 'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' "$rootfs/etc/passwd"
check "/etc/group names nonroot 65532"  grep -qx 'nonroot:x:65532:' "$rootfs/etc/group"
check "CA bundle present" test -s "$rootfs/etc/ssl/certs/ca-certificates.crt"
bin=$rootfs/usr/local/bin/mcp-pep
check "binary is root-owned 0755" test "$(stat -c '%u:%g %a' "$bin")" = "0:0 755"
# (.debug_gdb_scripts is an allocated 34-byte section rustc adds; strip keeps it.)
check "binary is stripped (no .symtab, no DWARF)" \
  bash -c '! readelf -S --wide "$1" | grep -qE "\.symtab|\.debug_(info|line|str|abbrev|ranges|rnglists|loc)"' _ "$bin"
stripped=$(stat -c %s "$bin")

as_nonroot() { local r=$1; shift; chroot --userspec=65532:65532 "$r" "$@"; }
v=$(as_nonroot "$rootfs" /usr/local/bin/mcp-pep --version 2>&1)
check "--version as 65532 in the rootfs: $v" test "$v" = "mcp-pep $version"

# A config and the shipped policies where the pod mounts them.
install -d "$rootfs/etc/mcp-pep"
cp -r "$repo/policies" "$rootfs/etc/mcp-pep/policies"
printf 'upstream: {url: "http://127.0.0.1:1/mcp"}\npolicy: {dir: /etc/mcp-pep/policies}\n' >"$rootfs/etc/mcp-pep/config.yaml"
printf 'upstream: {url: "http://127.0.0.1:1/mcp"}\npolicy: {dir: /etc/mcp-pep/policies}\nno_such_key: 1\n' >"$rootfs/etc/mcp-pep/bad.yaml"
out=$(as_nonroot "$rootfs" /usr/local/bin/mcp-pep check-config --config /etc/mcp-pep/config.yaml 2>&1); rc=$?
if [[ $rc -eq 0 && $out == "configuration ok"* ]]; then ok "check-config accepts the config and loads the policies"
else bad "check-config accepts the config and loads the policies" "rc=$rc $out"; fi
as_nonroot "$rootfs" /usr/local/bin/mcp-pep check-config --config /etc/mcp-pep/bad.yaml >/dev/null 2>&1; rc=$?
check "check-config refuses an unknown key with status 2 (got $rc)" test "$rc" = 2
# MCP_PEP_CONFIG_YAML: how the injector hands the sidecar its generated config.
out=$(MCP_PEP_CONFIG_YAML=$(cat "$rootfs/etc/mcp-pep/config.yaml") \
      as_nonroot "$rootfs" /usr/local/bin/mcp-pep check-config 2>&1); rc=$?
check "check-config reads MCP_PEP_CONFIG_YAML (rc=$rc)" test "$rc" = 0

# --- the sidecar, run from a read-only root (readOnlyRootFilesystem) ------------------------
ro=$tmp/ro
mkdir -p "$ro"
runroot=$rootfs
if mount --bind "$rootfs" "$ro" 2>/dev/null; then
  mounted+=("$ro")
  if mount -o remount,bind,ro "$ro" 2>/dev/null && ! touch "$ro/tmp/.w" 2>/dev/null; then
    runroot=$ro; ok "read-only bind mount of the rootfs"
  else
    skip "read-only bind mount of the rootfs" "remount ro failed; running on a writable root"
  fi
else
  skip "read-only bind mount of the rootfs" "mount --bind not permitted; running on a writable root"
fi

port=$(free_port) admin=$(free_port)
while [[ $admin == "$port" ]]; do admin=$(free_port); done
log=$tmp/sidecar.log
chroot --userspec=65532:65532 "$runroot" /usr/local/bin/mcp-pep run \
  --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin" \
  --upstream http://127.0.0.1:1/mcp --policy-dir /etc/mcp-pep/policies >"$log" 2>&1 &
pid=$!; pids+=("$pid")
code=000
for _ in $(seq 100); do
  code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$admin/readyz") && [[ $code == 200 ]] && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.1
done
if [[ $code == 200 ]]; then ok "sidecar /readyz answers 200"
else bad "sidecar /readyz answers 200 (got $code)" "$(tail -5 "$log")"; fi
check "sidecar runs as uid/gid 65532" \
  test "$(awk '/^Uid:|^Gid:/ {print $2}' "/proc/$pid/status" 2>/dev/null | tr '\n' ' ')" = "65532 65532 "
check "sidecar /healthz answers 200" \
  test "$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$admin/healthz")" = 200
check "sidecar /metrics has mcp_pep_ series" \
  bash -c 'curl -s --max-time 2 "$1" | grep -q "^mcp_pep_"' _ "http://127.0.0.1:$admin/metrics"
# A real MCP message: the policies decide it (no SPIFFE identity here) and the answer is JSON-RPC.
body=$(curl -s --max-time 5 -X POST "http://127.0.0.1:$port/mcp" \
  -H 'content-type: application/json' -H 'accept: application/json, text/event-stream' \
  -d '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"image-test","version":"1"}}}')
check "sidecar answers an MCP initialize with JSON-RPC (policy evaluated)" \
  bash -c 'jq -e ".jsonrpc == \"2.0\" and .id == 1 and (has(\"result\") or has(\"error\"))" <<<"$1" >/dev/null 2>&1' _ "$body"
kill -TERM "$pid" 2>/dev/null
for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$pid" 2>/dev/null; then bad "sidecar exits on SIGTERM within 5 s"
else wait "$pid"; rc=$?; check "sidecar exits 0 on SIGTERM (got $rc)" test "$rc" = 0; fi

layers=$(jq '[.layers[].size] | add' "$manifest")
total=$((layers + $(jq .config.size "$manifest") + $(stat -c %s "$manifest")))
printf 'sizes: binary %s B unstripped, %s B stripped; image layer %s B (gzip); image total %s B (%s)\n' \
  "$unstripped" "$stripped" "$layers" "$total" "$(numfmt --to=iec-i --suffix=B "$total" 2>/dev/null || echo "$total B")"
finish
