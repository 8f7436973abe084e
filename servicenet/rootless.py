"""``servicenet up --network userns``: the rootless netns mode (see docs/rootless.md).

The ``up`` process the user started becomes a small supervisor (no asyncio, no threads):

1. it starts the namespace holder (:func:`servicenet.common.userns.start_holder`);
2. it runs the cluster as ``python -m servicenet.cli up --network netns …`` through ``nsenter``
   into the holder's user, mount and pid namespaces
   (:func:`servicenet.common.userns.nsenter_argv`); there the cluster is uid 0 and the netns mode
   runs unchanged, in the host's network namespace (API server, DNS and forwarders on 127.0.0.1);
3. SIGTERM/SIGINT are passed to the cluster, which tears down; then the holder is killed, and the
   supervisor returns once the holder's pid namespace is empty (it is their subreaper).

If the supervisor is killed with SIGKILL, the kernel's parent-death signal takes the holder
with it, and the end of the holder's pid namespace takes the cluster process and every pod.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from servicenet.common.userns import (
    ENV_HOLDER,
    Holder,
    UsernsError,
    become_subreaper,
    children,
    describe_maps,
    nsenter_argv,
    pdeathsig,
    probe,
    start_holder,
    subid_maps,
)

STOP_GRACE = 30.0  # seconds the cluster gets to tear down after SIGTERM


def auto_mode() -> tuple[str, str]:
    """``--network auto`` for this process: (mode, one-line reason)."""
    if os.geteuid() == 0:
        return "netns", "running as root"
    why = probe()
    if why is None:
        return "userns", "not root; unprivileged user namespaces are available"
    return "loopback", f"not root and {why}; Service ports below 1024 are served at port+10000"


def inner_argv(argv: list[str]) -> list[str]:
    """The cluster command: the user's ``up`` arguments with the network mode set to netns."""
    return [sys.executable, "-m", "servicenet.cli", *argv, "--network", "netns"]


def supervise(argv: list[str], data_dir: Path) -> int:
    """Run ``servicenet up`` (``argv``, starting with ``up``) inside a user namespace."""
    why = probe()
    if why is not None:
        print(f"servicenet up: --network userns: {why}", file=sys.stderr)
        return 2
    state = str(Path(data_dir) / "userns")
    become_subreaper()  # so that stopping waits for the whole cluster to be gone
    maps = subid_maps()
    try:
        holder = start_holder(state, maps)
    except UsernsError as exc:
        if maps is None:
            print(f"servicenet up: {exc}", file=sys.stderr)
            return 2
        print(f"servicenet up: subordinate ids not usable ({exc}); mapping only uid {os.getuid()}", file=sys.stderr)
        maps = None
        try:
            holder = start_holder(state)
        except UsernsError as exc2:
            print(f"servicenet up: {exc2}", file=sys.stderr)
            return 2
    print(f"servicenet up: user namespace: {describe_maps(maps)}", file=sys.stderr, flush=True)
    try:
        return _run_cluster(holder, argv)
    finally:
        if not holder.stop():
            print("servicenet up: processes of the cluster still running after the holder was killed",
                  file=sys.stderr)


def _run_cluster(holder: Holder, argv: list[str]) -> int:
    env = dict(os.environ)
    env[ENV_HOLDER] = str(holder.pid)
    cwd = os.getcwd()
    stopping = False
    old = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    child: subprocess.Popen[bytes] | None = None

    cluster: list[int] = []  # nsenter's child, the cluster process (nsenter passes no signals on)

    def forward(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in cluster or (children(child.pid) if child is not None else []):
            if _running(pid):
                os.kill(pid, signal.SIGTERM)

    for s in old:
        signal.signal(s, forward)
    try:
        child = subprocess.Popen(nsenter_argv(holder.pid, cwd, inner_argv(argv)), env=env, preexec_fn=pdeathsig)
        deadline: float | None = None
        while True:
            try:
                rc = child.wait(0.5)
                break
            except subprocess.TimeoutExpired:
                pass
            cluster[:] = cluster or children(child.pid)
            if stopping and deadline is None:
                deadline = time.monotonic() + STOP_GRACE
            if (deadline is not None and time.monotonic() > deadline) or not holder.alive():
                child.kill()
        # nsenter may be gone (Ctrl-C reaches the whole process group) while the cluster still
        # tears down: give it the grace period before the holder takes everything with it
        end = time.monotonic() + STOP_GRACE
        while any(_running(p) for p in cluster) and time.monotonic() < end and holder.alive():
            time.sleep(0.1)
        return 0 if stopping and rc in (0, -signal.SIGTERM, -signal.SIGINT) else rc
    finally:
        if child is not None and child.poll() is None:
            child.kill()
            child.wait()
        for s, h in old.items():
            signal.signal(s, h)


def _running(pid: int) -> bool:
    """``pid`` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
