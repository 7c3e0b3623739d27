#!/usr/bin/env python3
"""The last step of starting a container (what runc's init does after the mounts):

  launcher.py SPEC.json ROOT

chroot into ROOT, drop every capability from the bounding and ambient sets (capabilities
drop ALL), set no_new_privs (allowPrivilegeEscalation: false), set the groups, the gid and the
uid (leaving uid 0 clears the permitted and effective sets), chdir to the working directory
(as the user, so a directory it may not enter fails the start as it would in a pod), and exec
argv with exactly the spec's environment. Seccomp (RuntimeDefault) is not applied.
"""

import ctypes
import json
import os
import sys

PR_SET_NO_NEW_PRIVS = 38
PR_CAPBSET_DROP = 24
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4


def main() -> None:
    spec = json.load(open(sys.argv[1]))
    root = sys.argv[2]
    libc = ctypes.CDLL(None, use_errno=True)
    last_cap = int(open("/proc/sys/kernel/cap_last_cap").read())

    def prctl(*args: int) -> None:
        if libc.prctl(*[ctypes.c_ulong(a) for a in args]) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"prctl{args}: {os.strerror(err)}")

    os.chroot(root)
    os.chdir("/")
    if spec["dropAllCaps"]:
        if spec["uid"] == 0:
            sys.exit("launcher.py: dropping capabilities of a root container is not emulated")
        for cap in range(last_cap + 1):
            prctl(PR_CAPBSET_DROP, cap)
        prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    if spec["noNewPrivs"]:
        prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)
    os.setgroups(spec.get("supplementalGroups", []))
    os.setgid(spec["gid"])
    os.setuid(spec["uid"])
    os.chdir(spec["cwd"])
    env = dict(e.split("=", 1) for e in spec["env"])
    argv = spec["argv"]
    path = argv[0]
    if "/" not in path:
        for d in env.get("PATH", "").split(":"):
            if d and os.access(os.path.join(d, path), os.X_OK):
                path = os.path.join(d, path)
                break
    os.umask(0o022)
    os.execve(path, argv, env)


if __name__ == "__main__":
    main()
