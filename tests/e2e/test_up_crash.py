"""A crash at any moment leaks nothing, tried as a user would (issue 13): `servicenet up` in netns
mode with the hostnames Deployment running is killed with SIGKILL, restarted with the same data
dir and sent SIGTERM as soon as /readyz answers. No pod process and no namespace of ours is left."""

from __future__ import annotations

import asyncio
import contextlib
import glob
import json
import os
import signal
import socket
import ssl
import urllib.request
from pathlib import Path

import pytest

from servicenet.common.netns import list_netns
from servicenet.node.process import proc_start_ticks
from servicenet.testing import kubectl, read_banner, up_argv

from .cluster import until

MANIFESTS = Path(__file__).parent.parent / "apiserver" / "manifests"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pod_processes(data_dir: Path) -> set[tuple[int, int | None]]:
    out = set()
    for f in glob.glob(str(data_dir / "node" / "pods" / "*" / "state.json")):
        with open(f) as fh:
            st = json.load(fh)
        out |= {(c["pid"], c.get("start_ticks")) for c in (st.get("containers") or {}).values()}
    return out


def _describe(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode()
        with open(f"/proc/{pid}/stat", "rb") as f:
            ppid = f.read().rsplit(b")", 1)[1].split()[1].decode()
        return f"{cmd} (ppid {ppid}, net {os.readlink(f'/proc/{pid}/ns/net')})"
    except OSError as exc:
        return repr(exc)


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0].decode()
    except OSError:
        return ""


def _ready(url: str) -> bool:
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url + "/readyz", context=ctx, timeout=1) as r:
            return bool(r.status == 200)
    except OSError:
        return False


@pytest.mark.root
async def test_kill_9_restart_sigterm_at_readyz_leaks_nothing(tmp_path: Path) -> None:
    port = _free_port()
    before = set(list_netns())

    async def up() -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            *up_argv(tmp_path, "--network", "netns", "--ingress-http-port", str(_free_port()),
                     "--ingress-https-port", str(_free_port()), api_listen=f"127.0.0.1:{port}"),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)

    proc = await up()
    assert proc.stdout is not None
    procs: set[tuple[int, int | None]] = set()
    prefix = "sn-?-"  # this cluster's namespaces (others may run at the same time)
    try:
        await read_banner(proc, 90)
        kc = tmp_path / "kubeconfig"
        await kubectl(kc, "apply", "-f", str(MANIFESTS / "hostnames.yaml"))

        async def three_running() -> bool:
            procs.update(_pod_processes(tmp_path))
            return len([p for p in _pod_processes(tmp_path) if proc_start_ticks(p[0]) == p[1]]) == 3

        await until(three_running, 90, what="3 hostnames pod processes")
        with open(tmp_path / "node" / "agent.json") as f:
            prefix = f"sn-{json.load(f)['net_id']}-"
        ours = {n for n in set(list_netns()) - before if n.startswith(prefix)}
        assert len(ours) == 4, ours  # the node's and 3 pods'
        proc.kill()
        await proc.wait()
        assert all(proc_start_ticks(p) == t for p, t in _pod_processes(tmp_path))  # the crash left them

        proc = await up()  # same data dir; SIGTERM as soon as /readyz answers
        url = f"https://127.0.0.1:{port}"
        await until(lambda: asyncio.to_thread(_ready, url), 90, what="/readyz")
        procs |= _pod_processes(tmp_path)
        proc.send_signal(signal.SIGTERM)
        rc = await asyncio.wait_for(proc.wait(), 90)
        assert rc == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        def alive() -> list[int]:  # a zombie waiting for init to reap it is dead already
            return [p for p, t in procs if proc_start_ticks(p) == t and _state(p) != "Z"]

        with contextlib.suppress(AssertionError):
            await until(lambda: not alive(), 5, what="pod processes gone")
        left_procs = alive()
        left_ns = sorted(n for n in set(list_netns()) - before if n.startswith(prefix))
        detail = {p: _describe(p) for p in left_procs}
        for p in left_procs:  # never leave them to the next test
            os.kill(p, signal.SIGKILL)
        for n in left_ns:
            await (await asyncio.create_subprocess_exec("ip", "netns", "del", n)).wait()
    assert (left_procs, left_ns) == ([], []), detail
