"""Pre-exec helper that puts a container process into its pod (netns mode).

``python -m servicenet.node.podinit '<json spec>'`` joins the pod's network namespace, unshares
UTS and mount namespaces, sets the hostname, makes mounts private, bind-mounts the pod's
``/etc/resolv.conf``, ``/etc/hosts`` and volumes, then execs the container command (same pid).

Spec keys: ``netns`` (path), ``hostname``, ``mounts`` ([src, dst, read_only]), ``cwd``, ``argv``,
``user`` ([uid, gid, [groups]]: the process drops to it before the exec), ``expose``
([[closed dir, [trees]]]: the closed directory is covered by an empty tmpfs in the pod's mount
namespace and only the trees are bound back, read-only, at their paths, so the user reaches the
interpreter without seeing the rest of, say, a 0700 ``/root``).
A missing mount point is made in the pod's own mount namespace, never on the host: the deepest
directory above it that exists is covered by a tmpfs with its entries put back (directories and
files bound, symlinks recreated), and the path is made inside (:func:`shadow`). Creating it on the
host instead failed in a user namespace (``/run`` is the real root's) and let one pod's teardown
remove a path another pod had mounted (an ``rmdir`` of a mount point detaches it in every mount
namespace). Only a path right below ``/`` is still made on the host (:func:`made_on_host`).
"""

from __future__ import annotations

import ctypes
import json
import os
import sys
from typing import Any

CLONE_NEWNS = 0x00020000
CLONE_NEWUTS = 0x04000000
CLONE_NEWNET = 0x40000000
MS_RDONLY = 1
MS_REMOUNT = 32
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18

_libc = ctypes.CDLL(None, use_errno=True)


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(src: str | None, dst: str, flags: int) -> None:
    _check(_libc.mount(src.encode() if src else None, dst.encode(), None, flags, None), f"mount {dst}")


# statvfs f_flag bit -> mount(2) flag, for the per-mount flags a remount must repeat
_KEEP_FLAGS = ((os.ST_NOSUID, 2), (os.ST_NODEV, 4), (os.ST_NOEXEC, 8), (os.ST_NOATIME, 1024),
               (os.ST_NODIRATIME, 2048), (os.ST_RELATIME, 1 << 21))


def _locked_flags(path: str) -> int:
    f = os.statvfs(path).f_flag
    return sum(ms for st, ms in _KEEP_FLAGS if f & st)


def _mount_tmpfs(dst: str, mode: str) -> None:
    _check(_libc.mount(b"tmpfs", dst.encode(), b"tmpfs", 0, f"mode={mode}".encode()), f"mount tmpfs {dst}")


def expose(closed: str, trees: list[str]) -> None:
    """Cover ``closed`` with an empty tmpfs and bind ``trees`` (below it) back read-only."""
    fds = [os.open(t, os.O_PATH | os.O_DIRECTORY) for t in trees]
    try:
        st = os.stat(closed)
        _mount_tmpfs(closed, "0711")
        os.chown(closed, st.st_uid, st.st_gid)
        for t, fd in zip(trees, fds, strict=True):
            here = closed
            for part in os.path.relpath(t, closed).split(os.sep):  # the way down: searchable only
                here = os.path.join(here, part)
                os.makedirs(here, mode=0o711, exist_ok=True)
            _mount(f"/proc/self/fd/{fd}", t, MS_BIND | MS_REC)
            _mount(None, t, MS_BIND | MS_REMOUNT | MS_RDONLY | _locked_flags(t))
    finally:
        for fd in fds:
            os.close(fd)


def deepest_existing(path: str) -> str:
    """The deepest directory above ``path`` that exists (``/`` at the latest)."""
    here = os.path.dirname(path.rstrip("/")) or "/"
    while not os.path.isdir(here):
        here = os.path.dirname(here) or "/"
    return here


def made_on_host(path: str) -> bool:
    """Whether a missing mount point ``path`` is made on the host (right below ``/``, which is not
    shadowed) rather than in the pod's mount namespace; the runtime removes those when the pod goes."""
    return not os.path.lexists(path) and deepest_existing(path) == "/"


def shadow(directory: str) -> None:
    """Cover ``directory`` with a tmpfs (same mode and owner) holding what it held: each entry is
    bound back (directories recursively, with what is mounted below them) or, for a symlink,
    recreated. In the calling process's mount namespace only (after ``unshare``)."""
    st = os.stat(directory)
    kept: list[tuple[str, str, Any]] = []
    try:
        for name in os.listdir(directory):
            path = os.path.join(directory, name)
            try:
                if os.path.islink(path):
                    kept.append((name, "link", os.readlink(path)))
                else:
                    kind = "dir" if os.path.isdir(path) else "file"
                    kept.append((name, kind, os.open(path, os.O_PATH | os.O_NOFOLLOW)))
            except FileNotFoundError:  # gone meanwhile
                continue
        _mount_tmpfs(directory, oct(st.st_mode & 0o7777)[2:])
        try:
            os.chown(directory, st.st_uid, st.st_gid)
        except OSError:  # an owner this user namespace does not map (the host's root seen as nobody)
            pass
        for name, kind, what in kept:
            path = os.path.join(directory, name)
            if kind == "link":
                os.symlink(what, path)
                continue
            if kind == "dir":
                os.mkdir(path)
            else:
                open(path, "a").close()
            _mount(f"/proc/self/fd/{what}", path, MS_BIND | MS_REC)
    finally:
        for _, kind, what in kept:
            if kind != "link":
                os.close(what)


def make_mount_point(dst: str, directory: bool) -> None:
    """Make the missing mount point ``dst`` (a directory or an empty file), in the pod's mount
    namespace unless it lies right below ``/``."""
    above = deepest_existing(dst)
    if above != "/":
        shadow(above)
    if directory:
        os.makedirs(dst, exist_ok=True)
    else:
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        open(dst, "a").close()


def enter_pod(spec: dict[str, Any]) -> None:
    """Do the namespace work for ``spec`` in the calling process (single-threaded)."""
    if spec.get("netns"):
        fd = os.open(spec["netns"], os.O_RDONLY)
        try:
            _check(_libc.setns(fd, CLONE_NEWNET), "setns")
        finally:
            os.close(fd)
    _check(_libc.unshare(CLONE_NEWUTS | CLONE_NEWNS), "unshare")
    hostname = spec.get("hostname") or ""
    if hostname:
        b = hostname.encode()
        _check(_libc.sethostname(b, len(b)), "sethostname")
    _mount(None, "/", MS_REC | MS_PRIVATE)
    # the sources are held open before a closed directory is covered: the node's data dir (pod
    # resolv.conf, hosts, volumes) may lie below it, as in a checkout in a 0700 home
    mounts = [(os.open(src, os.O_PATH), src, dst, ro) for src, dst, ro in spec.get("mounts") or []]
    for closed, trees in spec.get("expose") or []:
        expose(closed, trees)
    for fd, src, dst, read_only in mounts:
        if not os.path.lexists(dst):
            make_mount_point(dst, os.path.isdir(f"/proc/self/fd/{fd}"))
        try:
            _mount(f"/proc/self/fd/{fd}", dst, MS_BIND | MS_REC)
        except OSError as e:
            raise OSError(e.errno, f"mount {src} on {dst}: {os.strerror(e.errno or 0)}") from None
        finally:
            os.close(fd)
        if read_only:  # keep the flags the mount already has (in a user namespace they are locked)
            _mount(None, dst, MS_BIND | MS_REMOUNT | MS_RDONLY | _locked_flags(dst))
    # ports below 1024 need no privilege inside a pod's own network namespace (as container runtimes)
    try:
        with open("/proc/sys/net/ipv4/ip_unprivileged_port_start", "w") as f:
            f.write("0")
    except OSError:
        pass
    cwd = spec.get("cwd")
    if cwd:
        os.chdir(cwd)
    user = spec.get("user")
    if user:  # drop to the container's user last (after the privileged namespace and mount work)
        uid, gid, groups = int(user[0]), int(user[1]), [int(g) for g in user[2]]
        try:
            os.setgroups(groups)
        except PermissionError:  # a user namespace with setgroups denied: fine if nothing would change
            if not set(groups) <= {gid, *os.getgroups()}:
                raise
        os.setgid(gid)
        os.setuid(uid)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    spec = json.loads(args[0])
    try:
        enter_pod(spec)
        os.execvp(spec["argv"][0], spec["argv"])
    except OSError as exc:
        print(f"servicenet podinit: {exc}", file=sys.stderr, flush=True)
        os._exit(127 if isinstance(exc, FileNotFoundError) else 126)


if __name__ == "__main__":
    main()
