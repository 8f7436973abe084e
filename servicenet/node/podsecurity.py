"""Pod security defaults for netns-mode containers (pure decisions + a permission walk).

A container runs as the user its ``securityContext`` names (container over pod:
``runAsUser``, ``runAsGroup``, ``supplementalGroups``, ``fsGroup``; ``privileged`` means root);
without one it runs as the node's default user, the unprivileged ``nobody`` (65534). Root must be
asked for (``runAsUser: 0``). ``runAsNonRoot: true`` refuses to start a container that would run
as root, as the kubelet does.

Images that need root only to listen on a port below 1024 (nginx on 80) do not need it here: each
pod's network namespace sets ``net.ipv4.ip_unprivileged_port_start=0``, as container runtimes do.

The node's Python interpreter and servicenet's package may live under a directory other users
cannot search (a pyenv interpreter under a 0700 ``/root``). :func:`exposures` names, per closed
directory, the trees a container user needs from it; ``podinit`` hides that directory behind an
empty tmpfs in the pod's own mount namespace and binds only those trees back, read-only, at the
same paths. The container then really runs as its user, and sees nothing else of the closed
directory. The default falls back to root (with a warning) only when a file itself is unreadable.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from typing import Any

from servicenet.api.wire import Obj
from servicenet.api.wire import meta as meta_of
from servicenet.common.userns import uid_mapped

NOBODY = 65534


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
                               f'"{meta_of(pod).get("name", "")}", container: {container.get("name")})')
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


def _blocker(path: str, uid: int, gid: int) -> str | None:
    """The first ancestor directory of ``path`` that ``uid`` cannot search, or None."""
    cur = os.sep
    for p in path.split(os.sep)[1:-1]:
        cur = os.path.join(cur, p)
        try:
            if not _allows(os.stat(cur), uid, gid, 1):
                return cur
        except OSError:
            return None
    return None


def exposures(trees: list[str], uid: int, gid: int) -> list[tuple[str, list[str]]]:
    """[(closed directory, [trees under it to bind back])] so that ``uid`` reaches every tree.

    Trees already reachable need nothing. Paths are resolved (symlinks) first."""
    out: dict[str, list[str]] = {}
    if uid == 0:
        return []
    for t in trees:
        real = os.path.realpath(t)
        b = _blocker(real, uid, gid)
        if b is not None and real not in out.setdefault(b, []):
            out[b].append(real)
    return [(b, sorted(ts)) for b, ts in sorted(out.items())]


def reachable_with_exposures(path: str, uid: int, gid: int, want: int = 5) -> bool:
    """Is ``path`` usable by ``uid`` once its closed ancestor is replaced as :func:`exposures` does?"""
    real = os.path.realpath(path)
    b = _blocker(real, uid, gid)
    if b is None:
        return reachable_by(real, uid, gid, want)
    try:
        st = os.stat(real)
    except OSError:
        return False
    cur = b  # below the closed directory the tree itself must be open to the user
    for p in os.path.relpath(real, b).split(os.sep)[:-1]:
        cur = os.path.join(cur, p)
        if not _allows(os.stat(cur), uid, gid, 1):
            return False
    return _allows(st, uid, gid, want if not stat.S_ISDIR(st.st_mode) else want | 1)


def runtime_trees(python: str, prefixes: list[str], package_dir: str) -> list[str]:
    """The trees a built-in image needs: the interpreter's installation, the venv, the package."""
    real_py = os.path.realpath(python)
    home = os.path.dirname(os.path.dirname(real_py))  # <prefix>/bin/python3.x -> <prefix>
    return list(dict.fromkeys([home, *prefixes, package_dir]))


def default_user(python: str, package_dir: str) -> tuple[int, str]:
    """(uid, reason) for containers without a runAsUser: nobody, unless nobody cannot run them even
    with the closed directories on the way replaced (see :func:`exposures`)."""
    if not uid_mapped(NOBODY):
        return 0, f"uid {NOBODY} is not mapped in this user namespace (one-uid mapping; see docs/rootless.md)"
    for what in (python, package_dir):
        if not reachable_with_exposures(what, NOBODY, NOBODY):
            return 0, f"{what} is not readable by uid {NOBODY}"
    return NOBODY, ""
