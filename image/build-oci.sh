#!/usr/bin/env bash
# Builds the mcp-pep runtime image as an OCI image layout without a container daemon, from a
# binary built on this host: the same filesystem and config as the Dockerfile's
# distroless/cc-debian12:nonroot stage, assembled from the host's files (the distroless
# base cannot be pulled offline).
#
#   image/build-oci.sh BINARY OUTDIR
#
# OUTDIR (absent or empty) becomes an OCI image layout with one tag (IMAGE_TAG, default the
# binary's version). Copy it anywhere with skopeo, e.g.
#   skopeo copy oci:OUTDIR:0.1.0 docker-archive:mcp-pep.tar:ghcr.io/mcp-pep/mcp-pep:0.1.0
#
# Environment: IMAGE_TAG, VERSION (default: from `BINARY --version`), REVISION (default:
# git HEAD), CREATED (RFC 3339; default: SOURCE_DATE_EPOCH or now), SOURCE (repo URL),
# STRIP=0 to keep the binary's symbols. Needs root (file ownership), umoci, jq, ldd, strip.
set -euo pipefail

usage() { echo "usage: $0 BINARY OUTDIR" >&2; exit 2; }
[[ $# -eq 2 ]] || usage
binary=$1 out=$2
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

die() { echo "build-oci: $*" >&2; exit 1; }
[[ -f $binary && -x $binary ]] || die "$binary: not an executable file"
[[ $(id -u) -eq 0 ]] || die "must run as root (the layer records owners 0 and 65532)"
command -v umoci >/dev/null || die "umoci not found (apt-get install umoci)"
if [[ -e $out && -n $(ls -A "$out" 2>/dev/null) ]]; then die "$out exists and is not empty"; fi

# Keep the values below in step with the Dockerfile.
uid=65532 gid=65532
entrypoint=/usr/local/bin/mcp-pep
workdir=/home/nonroot
version=${VERSION:-$("$binary" --version | awk '{print $2}')}
[[ -n $version ]] || die "cannot read the version from $binary --version"
tag=${IMAGE_TAG:-$version}
revision=${REVISION:-$(git -C "$here/.." rev-parse HEAD 2>/dev/null || echo unknown)}
if [[ -n ${CREATED:-} ]]; then created=$CREATED
elif [[ -n ${SOURCE_DATE_EPOCH:-} ]]; then created=$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y-%m-%dT%H:%M:%SZ)
else created=$(date -u +%Y-%m-%dT%H:%M:%SZ); fi
source_url=${SOURCE:-https://github.com/mcp-pep/mcp-pep}

work=$(mktemp -d "${TMPDIR:-/tmp}/mcp-pep-oci.XXXXXX")
trap 'rm -rf "$work"' EXIT

umoci init --layout "$out"
umoci new --image "$out:$tag"
umoci unpack --image "$out:$tag" "$work/bundle" >/dev/null
root=$work/bundle/rootfs

# --- the runtime filesystem (what distroless/cc-debian12:nonroot + the COPY give) ---------
install -d -m 0755 -o 0 -g 0 "$root"/{etc,etc/ssl,etc/ssl/certs,usr,usr/local,usr/local/bin}
install -d -m 1777 -o 0 -g 0 "$root/tmp"
install -d -m 0700 -o 0 -g 0 "$root/root"
install -d -m 0755 -o 0 -g 0 "$root/home"
install -d -m 0700 -o "$uid" -g "$gid" "$root$workdir"

install -m 0755 -o 0 -g 0 "$binary" "$root$entrypoint"
if [[ ${STRIP:-1} != 0 ]]; then
  command -v strip >/dev/null || die "strip not found (binutils), or set STRIP=0"
  strip --strip-all "$root$entrypoint"
fi

# The shared libraries the dynamic loader will ask for, at the paths ldd names (symlinks
# resolved: one file per name). Nothing if the binary is static.
if ldd_out=$(ldd "$binary" 2>&1); then
  while read -r lib; do
    [[ -n $lib ]] || continue
    [[ -e $lib ]] || die "ldd names $lib, which does not exist"
    install -d -m 0755 -o 0 -g 0 "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
    chown 0:0 "$root$lib"; chmod 0755 "$root$lib"
  done < <(awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' <<<"$ldd_out" | sort -u)
elif ! grep -q "not a dynamic executable" <<<"$ldd_out"; then
  die "ldd $binary: $ldd_out"
fi

cat >"$root/etc/passwd" <<PASSWD
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:$uid:$gid:nonroot:$workdir:/sbin/nologin
PASSWD
cat >"$root/etc/group" <<GROUP
root:x:0:
nobody:x:65534:
tty:x:5:
staff:x:50:
nonroot:x:$gid:
GROUP
# glibc's built-in default is the same; written out as distroless does.
printf 'passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nprotocols: files\nservices: files\n' \
  >"$root/etc/nsswitch.conf"
ca=/etc/ssl/certs/ca-certificates.crt
[[ -s $ca ]] || die "$ca missing (apt-get install ca-certificates)"
cp -L "$ca" "$root$ca"
chown 0:0 "$root"/etc/{passwd,group,nsswitch.conf} "$root$ca"
chmod 0644 "$root"/etc/{passwd,group,nsswitch.conf} "$root$ca"

umoci repack --image "$out:$tag" \
  --history.created "$created" --history.created_by "image/build-oci.sh" \
  --history.comment "mcp-pep $version runtime filesystem (host glibc, CA bundle, nonroot user)" \
  "$work/bundle" >/dev/null

# --- the image config (the Dockerfile's USER, WORKDIR, ENTRYPOINT, LABEL; distroless ENV) --
labels=(
  "org.opencontainers.image.title=mcp-pep"
  "org.opencontainers.image.description=Policy-enforcing reverse proxy (PEP) for the Model Context Protocol"
  "org.opencontainers.image.licenses=Apache-2.0"
  "org.opencontainers.image.version=$version"
  "org.opencontainers.image.revision=$revision"
  "org.opencontainers.image.created=$created"
  "org.opencontainers.image.source=$source_url"
  "org.opencontainers.image.url=$source_url"
  "org.opencontainers.image.vendor=mcp-pep"
)
args=(--image "$out:$tag" --created "$created" --author mcp-pep
  --config.user "$uid:$gid" --config.workingdir "$workdir"
  --config.entrypoint "$entrypoint" --clear config.cmd
  --config.env "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
  --config.env "SSL_CERT_FILE=$ca"
  --history.created "$created" --history.created_by "image/build-oci.sh (config)")
for l in "${labels[@]}"; do args+=(--config.label "$l" --manifest.annotation "$l"); done
umoci config "${args[@]}"
umoci gc --layout "$out"

# --- report ---------------------------------------------------------------------------------
blob() { echo "$out/blobs/${1/://}"; }
manifest=$(jq -r --arg t "$tag" '.manifests[] | select(.annotations["org.opencontainers.image.ref.name"] == $t) | .digest' "$out/index.json")
layers=$(jq -r '[.layers[].size] | add // 0' "$(blob "$manifest")")
config_size=$(jq -r '.config.size' "$(blob "$manifest")")
manifest_size=$(stat -c %s "$(blob "$manifest")")
rootfs_bytes=$(du -sb --apparent-size "$root" | cut -f1)
bin_bytes=$(stat -c %s "$root$entrypoint")
total=$((layers + config_size + manifest_size))
echo "image $out:$tag ($manifest)"
awk -v b="$bin_bytes" -v r="$rootfs_bytes" -v l="$layers" -v t="$total" 'BEGIN {
  printf "  binary %d B, rootfs %d B uncompressed, layers %d B compressed, total %d B (%.1f MiB)\n", b, r, l, t, t / 1048576 }'
