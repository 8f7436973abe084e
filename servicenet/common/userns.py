"""Rootless netns mode: the user-namespace holder and how processes join it.

``servicenet up --network userns`` (or ``auto`` for a non-root user whose kernel allows it)
starts one *holder*: ``unshare --user --map-root-user --mount --pid --fork --kill-child
--mount-proc`` running a tiny shell that gives ``/run/netns`` a private tmpfs (so ``ip netns``
works) and then sleeps.  The cluster process joins the holder's user, mount and pid namespaces
through ``/proc/<holder>/ns/{user,mnt,pid}`` with ``nsenter`` from util-linux (``setns`` into a
user namespace needs a single-threaded caller, and a pid namespace applies only to children:
nsenter does both, then forks and execs).  It is uid 0 there, with every capability over the
namespaces it creates, so the root netns machinery (node namespace, bridge, veths,
nftables/iptables, port 53) runs unchanged; components enter the node's network namespace
per thread with ``ctypes`` ``setns`` (:mod:`servicenet.common.netns`).  The cluster process
itself stays in the host's network namespace: the API server, DNS (127.0.0.1:1053) and the
port forwarders bind the host's 127.0.0.1 directly.

Death: the holder (``unshare``) carries ``PR_SET_PDEATHSIG=SIGKILL`` to the supervisor, its
pid-1 child carries it to ``unshare`` (``--kill-child``), and the cluster process and every pod
are members of that pid namespace: when its pid 1 dies the kernel kills them all; the mount
namespace then drops the netns bind mounts, and the network namespaces, links and nftables
tables vanish with it.

The supervisor is a child subreaper (:func:`become_subreaper`): the holder's pid 1 is reparented to
it when ``unshare`` dies, so :meth:`Holder.stop` can wait until that pid 1 is reaped, which the
kernel allows only once every other member of the pid namespace is gone. ``servicenet up``
returns when nothing of its cluster runs any more, whatever the machine's init does with orphans.
"""

from __future__ import annotations

import ctypes
import os
import pwd
import shlex
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
PROBE_ARGV = ("unshare", "--user", "--map-root-user", "--net", "--mount", "true")
ENV_HOLDER = "SERVICENET_USERNS_HOLDER"  # set in the cluster process: the holder's pid


class UsernsError(Exception):
    """The user namespace could not be created or joined."""


def probe() -> str | None:
    """``None`` when an unprivileged user namespace with its own network can be made here,
    else a one-line reason (the probe runs the real ``unshare``, so a PATH shim simulates
    a kernel without user namespaces)."""
    try:
        proc = subprocess.run(PROBE_ARGV, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot run unshare: {exc}"
    if proc.returncode != 0:
        err = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        return f"unprivileged user namespaces are not available ({' '.join(PROBE_ARGV[:-1])}: {err})"
    return None


def in_user_namespace() -> bool:
    """True when this process runs in a user namespace other than the initial one."""
    try:
        with open("/proc/self/uid_map") as f:
            fields = f.read().split()
    except OSError:
        return False
    return fields[:3] != ["0", "0", "4294967295"]


def uid_mapped(uid: int) -> bool:
    """True when ``uid`` exists in this process's user namespace (always, outside one)."""
    try:
        with open("/proc/self/uid_map") as f:
            rows = [[int(x) for x in line.split()] for line in f if line.strip()]
    except OSError:
        return True
    return any(inside <= uid < inside + count for inside, _, count in rows)


def netns_add_argv(name: str) -> list[str]:
    """argv creating the persistent network namespace ``name`` under /run/netns.

    ``ip netns add`` switches back to the caller's network namespace at its end, which a
    user-namespace root may not do (the host's belongs to the initial user namespace), so
    there ``unshare --net=<file>`` makes and bind-mounts it instead (the file must exist)."""
    if in_user_namespace():
        return ["sh", "-c", 'touch "$1" && unshare --net="$1" true || { rm -f "$1"; exit 1; }',
                "sh", f"/run/netns/{name}"]
    return ["ip", "netns", "add", name]


# -- the holder -------------------------------------------------------------------------------------

# Runs as pid 1 of the new pid namespace, root of the new user namespace. It never execs: with
# subordinate ids it started unmapped (without capabilities), and an exec after the mapping is
# written regains them, which clears the parent-death signal that --kill-child set. /run/netns gets a
# tmpfs of our own; when the host has no /run/netns (it is created by root's `ip netns`), /run
# becomes a tmpfs whose entries link to the host's /run (bind-mounted under the state dir).
HOLDER_SCRIPT = r"""
set -e
if [ -d /run/netns ]; then
  mount -t tmpfs -o mode=0755 sn-netns /run/netns
else
  mkdir -p "$1" && mount --rbind /run "$1"
  mount -t tmpfs -o mode=0755 sn-run /run
  for e in "$1"/* "$1"/.[!.]*; do [ -e "$e" ] && ln -s "$e" "/run/${e##*/}"; done
  mkdir /run/netns
fi
mount --make-shared /run/netns
echo ready
sleep 2147483647 & wait
"""


def pdeathsig() -> None:
    """(``preexec_fn``) SIGKILL this child when the thread that started it exits."""
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _subid_range(path: str, names: tuple[str, ...]) -> tuple[int, int] | None:
    try:
        with open(path) as f:
            for line in f:
                parts = line.strip().split(":")
                if len(parts) == 3 and parts[0] in names and parts[1].isdigit() and parts[2].isdigit():
                    return int(parts[1]), int(parts[2])
    except OSError:
        pass
    return None


def subid_maps(uid: int | None = None, gid: int | None = None) -> tuple[list[str], list[str]] | None:
    """``newuidmap``/``newgidmap`` arguments (after the pid) mapping us to 0 and our subordinate
    range (/etc/subuid, /etc/subgid) to 1…count, or None when the tools or the ranges are missing."""
    uid = os.getuid() if uid is None else uid
    gid = os.getgid() if gid is None else gid
    if not (shutil.which("newuidmap") and shutil.which("newgidmap")):
        return None
    try:
        names: tuple[str, ...] = (pwd.getpwuid(uid).pw_name, str(uid))
    except KeyError:
        names = (str(uid),)
    u, g = _subid_range("/etc/subuid", names), _subid_range("/etc/subgid", names)
    if u is None or g is None:
        return None
    return ([ "0", str(uid), "1", "1", str(u[0]), str(u[1])], ["0", str(gid), "1", "1", str(g[0]), str(g[1])])


def describe_maps(maps: tuple[list[str], list[str]] | None) -> str:
    if maps is None:
        return f"uid {os.getuid()} is root inside; no other user exists there (no subuid range for newuidmap)"
    u = maps[0]
    return (f"uid {u[1]} is root inside; subordinate uids {u[4]}-{int(u[4]) + int(u[5]) - 1} are 1-{u[5]} "
            "(pods may run as other users)")


@dataclass
class Holder:
    """The running holder: ``unshare`` (``proc``) and the pid of its pid-1 child (``pid``)."""

    proc: subprocess.Popen[bytes]
    pid: int

    def ns_path(self, kind: str) -> str:
        return f"/proc/{self.pid}/ns/{kind}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 15.0) -> bool:
        """Kill the holder and wait (up to ``timeout`` s) until its pid namespace is empty: True
        when it is. Needs :func:`become_subreaper` before :func:`start_holder` to see the end;
        without it this returns once ``unshare`` is gone."""
        deadline = time.monotonic() + timeout
        if self.proc.poll() is None:
            self.proc.kill()  # its pid-1 child gets SIGKILL (--kill-child), then the pid namespace
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                return False
        # pid 1 is now our child (we are its subreaper) until it is reaped; the kernel lets it
        # finish only after every other member of its namespace has been reaped, including any
        # orphan of ours (the cluster process, once nsenter is gone), so reap every child
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return True  # no child left: pid 1 was reaped, here or by another reaper
            if pid == self.pid:
                return True
            if pid == 0:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.02)


def become_subreaper() -> None:
    """Orphaned descendants of this process (the holder's pid 1 once ``unshare`` dies) become its
    children instead of init's: it can wait for them to end and reap them."""
    ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def start_holder(state_dir: str, maps: tuple[list[str], list[str]] | None = None, timeout: float = 10.0) -> Holder:
    """Start the holder; return once its namespaces are ready to join. With ``maps`` (see
    :func:`subid_maps`) the holder waits on stdin until ``newuidmap``/``newgidmap`` wrote them;
    otherwise ``--map-root-user`` maps only us."""
    os.makedirs(state_dir, exist_ok=True)
    argv = ["unshare", "--user", *([] if maps else ["--map-root-user"]), "--mount", "--propagation", "private",
            "--pid", "--fork", "--kill-child", "--mount-proc", "sh", "-c",
            ("read _ || exit 1\n" if maps else "") + HOLDER_SCRIPT, "sn-holder",
            os.path.join(os.path.abspath(state_dir), "host-run")]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE if maps else subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, preexec_fn=pdeathsig, close_fds=True)
    assert proc.stdout is not None
    if maps:
        assert proc.stdin is not None
        ok = _wait_userns(proc.pid, timeout)
        for tool, args in (("newuidmap", maps[0]), ("newgidmap", maps[1])):
            r = subprocess.run([tool, str(proc.pid), *args], capture_output=True, text=True) if ok else None
            if r is None or r.returncode != 0:
                proc.kill()
                proc.wait()
                raise UsernsError(f"{tool} {proc.pid} {' '.join(args)}: {r.stderr.strip() if r else 'no namespace'}")
        proc.stdin.write(b"go\n")
        proc.stdin.close()
    line = proc.stdout.readline()  # "ready" once the mounts are done (EOF if it failed)
    if line.strip() != b"ready":
        proc.kill()
        err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
        proc.wait()
        raise UsernsError(f"user-namespace holder failed: {err or 'no output'} ({shlex.join(argv[:10])})")
    deadline = time.monotonic() + timeout
    while True:
        kids = children(proc.pid)
        if kids:
            return Holder(proc, kids[0])
        if time.monotonic() > deadline:
            proc.kill()
            raise UsernsError("user-namespace holder: no pid-1 child appeared")
        time.sleep(0.01)


def _wait_userns(pid: int, timeout: float) -> bool:
    """Wait until ``pid`` has left our user namespace (unshare made its own)."""
    own = os.readlink("/proc/self/ns/user")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if os.readlink(f"/proc/{pid}/ns/user") != own:
                return True
        except OSError:
            return False
        time.sleep(0.005)
    return False


def nsenter_argv(pid: int, cwd: str, argv: list[str]) -> list[str]:
    """``argv`` run inside holder ``pid``'s user, mount and pid namespaces (as uid 0 there).

    ``nsenter`` (util-linux) does the ``setns`` calls in its own single-threaded process, then
    forks (a pid namespace applies to children) and execs ``argv``: the cluster process is a
    member of the pid namespace, so its threads and the pids it sees match the holder's /proc."""
    return ["nsenter", f"--target={pid}", "--user", "--mount", "--pid", "--preserve-credentials",
            f"--wd={cwd}", "--", *argv]


def children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []
