"""Pod security defaults for netns-mode containers (pure decisions + a permission walk).

A container runs as the user its ``securityContext`` names (container over pod:
``runAsUser``, ``runAsGroup``, ``supplementalGroups``, ``fsGroup``; ``privileged`` means root);
without one it runs as the node's default user, the unprivileged ``nobody`` (65534). Root must be
asked for (``runAsUser: 0``). ``runAsNonRoot: true`` refuses to start a container that would run
as root, as the kubelet does.

Images that need root only to listen on a port below 1024 (nginx on 80) do not need it here: each
pod's network namespace sets ``net.ipv4.ip_unprivileged_port_start=0``, as container runtimes do.

The default falls back to root, with a warning from the agent, when the unprivileged user could not
even start the node's built-in images (the Python interpreter or servicenet's package directory
are not reachable by that user, e.g. under a 0700 home directory).
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import Any

from servicenet.common.userns import uid_mapped

NOBODY = 65534
Obj = dict[str, Any]


class PodSecurityError(Exception):
    """The container's security context cannot be honoured (it stays waiting)."""


@dataclass(frozen=True, slots=True)
class RunAs:
    uid: int
    gid: int
    groups: tuple[int, ...] = ()

    @property
    def root(self) -> bool:
        return self.uid == 0


def run_as(pod: Obj, container: Obj, default_uid: int) -> RunAs:
    psc = (pod.get("spec") or {}).get("securityContext") or {}
    csc = container.get("securityContext") or {}

    def pick(key: str) -> Any:
        return csc[key] if csc.get(key) is not None else psc.get(key)

    uid = pick("runAsUser")
    if uid is None:
        uid = 0 if csc.get("privileged") else default_uid
    uid = int(uid)
    gid = pick("runAsGroup")
    gid = int(gid) if gid is not None else (NOBODY if uid == NOBODY else uid if uid == 0 else uid)
    groups = [int(g) for g in psc.get("supplementalGroups") or []]
    if psc.get("fsGroup") is not None:
        groups.append(int(psc["fsGroup"]))
    if pick("runAsNonRoot") and uid == 0:
        raise PodSecurityError(f"container has runAsNonRoot and image will run as root (pod: "
                               f'"{(pod.get("metadata") or {}).get("name", "")}", container: {container.get("name")})')
    return RunAs(uid, gid, tuple(dict.fromkeys(groups)))


def _allows(st: os.stat_result, uid: int, gid: int, want: int) -> bool:
    """``want`` is a combination of 4 (r), 2 (w), 1 (x), checked like the kernel's DAC."""
    if uid == 0:
        return True
    mode = st.st_mode
    if st.st_uid == uid:
        bits = (mode >> 6) & 7
    elif st.st_gid == gid:
        bits = (mode >> 3) & 7
    else:
        bits = mode & 7
    return bits & want == want


def reachable_by(path: str, uid: int, gid: int, want: int = 5) -> bool:
    """Can ``uid``/``gid`` reach ``path`` (search every directory) and open it with ``want``?"""
    path = os.path.realpath(path)
    parts = path.split(os.sep)
    cur = os.sep
    try:
        for p in parts[1:-1]:
            cur = os.path.join(cur, p)
            if not _allows(os.stat(cur), uid, gid, 1):
                return False
        st = os.stat(path)
    except OSError:
        return False
    return _allows(st, uid, gid, want if not stat.S_ISDIR(st.st_mode) else want | 1)


def default_user(python: str, package_dir: str) -> tuple[int, str]:
    """(uid, reason) for containers without a runAsUser: nobody, unless nobody cannot run them."""
    if not uid_mapped(NOBODY):
        return 0, f"uid {NOBODY} is not mapped in this user namespace (one-uid mapping; see docs/rootless.md)"
    for what in (python, package_dir):
        if not reachable_by(what, NOBODY, NOBODY):
            return 0, f"{what} is not readable by uid {NOBODY}"
    return NOBODY, ""
