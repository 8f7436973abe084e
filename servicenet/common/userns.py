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
"""

from __future__ import annotations

import ctypes
import os
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass

PR_SET_PDEATHSIG = 1
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

# Runs as pid 1 of the new pid namespace, root of the new user namespace. /run/netns gets a
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
exec sleep 2147483647
"""


def pdeathsig() -> None:
    """(``preexec_fn``) SIGKILL this child when the thread that started it exits."""
    ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


@dataclass
class Holder:
    """The running holder: ``unshare`` (``proc``) and the pid of its pid-1 child (``pid``)."""

    proc: subprocess.Popen[bytes]
    pid: int

    def ns_path(self, kind: str) -> str:
        return f"/proc/{self.pid}/ns/{kind}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        if self.proc.poll() is None:
            self.proc.kill()  # its pid-1 child gets SIGKILL (--kill-child), then the pid namespace
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                pass


def start_holder(state_dir: str, timeout: float = 10.0) -> Holder:
    """Start the holder; return once its namespaces are ready to join."""
    os.makedirs(state_dir, exist_ok=True)
    argv = ["unshare", "--user", "--map-root-user", "--mount", "--propagation", "private",
            "--pid", "--fork", "--kill-child", "--mount-proc", "sh", "-c", HOLDER_SCRIPT, "sn-holder",
            os.path.join(os.path.abspath(state_dir), "host-run")]
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=pdeathsig, close_fds=True)
    assert proc.stdout is not None
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
