#!/usr/bin/env bash
# The container runtime's part of starting one container, as runc does it: run by run.sh as
#   ip netns exec POD_NETNS unshare --mount --pid --uts --ipc --fork --propagation private \
#     --kill-child=SIGTERM bash container.sh SPEC.json ROOTFS MNT
# i.e. in the pod's network namespace, in mount, PID, UTS and IPC namespaces of its own (this
# script is PID 1 there and execs into the container process, which stays PID 1; the hostname
# is the pod's).
#
# SPEC.json is `kubelet.py container-spec` output. ROOTFS is the unpacked image (umoci unpack);
# MNT an empty directory. The root filesystem is a bind mount of ROOTFS (read-only when
# readOnlyRootFilesystem), mount points are created in it first (runc creates them in the
# container's writable layer), then /proc, /dev, /sys, the volumes and the kubelet's files are
# mounted, and launcher.py chroots, drops to the container's user and capabilities and execs.
set -euo pipefail
spec=$1 rootfs=$2 mnt=$3
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

hostname "$(jq -r .hostname "$spec")"
mount --bind "$rootfs" "$mnt"

# Mount points (a file for a file source, else a directory), while the root is still writable.
while IFS=$'\t' read -r type source target; do
  [[ $target == /dev/* ]] && continue   # inside the /dev tmpfs, made below
  if [[ $type == bind && -f $source ]]; then
    mkdir -p "$mnt$(dirname "$target")"; [[ -e $mnt$target ]] || : >"$mnt$target"
  else
    mkdir -p "$mnt$target"
  fi
done < <(jq -r '.mounts[] | [.type, (.source // "-"), .target] | @tsv' "$spec")

while IFS=$'\t' read -r type source target ro; do
  t=$mnt$target
  case $type in
    proc) mount -t proc -o nosuid,nodev,noexec proc "$t" ;;
    dev)
      mount -t tmpfs -o nosuid,mode=755,size=65536k tmpfs "$t"
      for d in null zero full random urandom tty; do : >"$t/$d"; mount --bind "/dev/$d" "$t/$d"; done
      mkdir -p "$t/pts" "$t/shm" "$t/mqueue"
      mount -t tmpfs -o nosuid,nodev,noexec,mode=1777,size=65536k shm "$t/shm"
      ln -s /proc/self/fd "$t/fd"; ln -s /proc/self/fd/0 "$t/stdin"
      ln -s /proc/self/fd/1 "$t/stdout"; ln -s /proc/self/fd/2 "$t/stderr"
      ;;
    sysfs) mount --bind /sys "$t"; mount -o remount,bind,ro,nosuid,nodev,noexec "$t" ;;
    bind)
      if [[ $target == /dev/* ]]; then : >"$t"; fi
      mount --bind "$source" "$t"
      if [[ $ro == true ]]; then mount -o remount,bind,ro "$t"; fi
      ;;
    *) echo "container.sh: mount type $type not emulated" >&2; exit 1 ;;
  esac
done < <(jq -r '.mounts[] | [.type, (.source // "-"), .target, (.readOnly // false | tostring)] | @tsv' "$spec")

if [[ $(jq -r .readOnlyRoot "$spec") == true ]]; then
  mount -o remount,bind,ro "$mnt"
fi

exec /usr/bin/python3 -I "$here/launcher.py" "$spec" "$mnt"
