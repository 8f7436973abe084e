"""Pod security in netns mode: containers run as the unprivileged default user unless their
securityContext asks otherwise, may still listen on port 80, and runAsNonRoot is enforced."""

from __future__ import annotations

import asyncio
import os
import secrets
import tempfile
from pathlib import Path
from typing import Any

import pytest

from servicenet.common.netns import list_netns
from servicenet.node import podsecurity as ps
from servicenet.node.network import NetnsNetwork
from servicenet.node.runtime import PodRuntime, RuntimeConfig

from .nodeutil import cond, make_pod, require_root, until

PY = "/usr/bin/python3"  # a system interpreter every user can run
SERVER = ("import os, socket; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); "
          "s.bind(('0.0.0.0', 80)); s.listen(); print('uid', os.getuid(), 'gid', os.getgid(), flush=True)\n"
          "while True:\n c, _ = s.accept(); c.sendall(b'uid=%d' % os.getuid()); c.close()")


def test_run_as_rules() -> None:
    pod = make_pod("p", [{"name": "c"}])
    assert ps.run_as(pod, {"name": "c"}, ps.NOBODY) == ps.RunAs(65534, 65534)
    assert ps.run_as(pod, {"name": "c", "securityContext": {"privileged": True}}, ps.NOBODY).root
    pod["spec"]["securityContext"] = {"runAsUser": 1000, "runAsGroup": 2000, "fsGroup": 3000,
                                      "supplementalGroups": [4000]}
    assert ps.run_as(pod, {"name": "c"}, ps.NOBODY) == ps.RunAs(1000, 2000, (4000, 3000))
    assert ps.run_as(pod, {"name": "c", "securityContext": {"runAsUser": 0}}, ps.NOBODY).uid == 0
    with pytest.raises(ps.PodSecurityError, match="runAsNonRoot"):
        ps.run_as(make_pod("q", []), {"name": "c", "securityContext": {"runAsNonRoot": True}}, 0)


def test_default_user_needs_a_reachable_interpreter() -> None:
    with tempfile.TemporaryDirectory(dir="/tmp") as d:  # /tmp itself is open to everyone
        base = Path(d)
        base.chmod(0o755)
        closed = base / "home"
        closed.mkdir(mode=0o700)
        (closed / "python").write_text("")
        (closed / "python").chmod(0o755)
        assert ps.default_user(str(closed / "python"), str(base))[0] == 0
        closed.chmod(0o755)
        assert ps.default_user(str(closed / "python"), str(base)) == (ps.NOBODY, "")


@pytest.fixture
async def nrt(tmp_path: Any) -> Any:
    require_root()
    net = NetnsNetwork("10.244.9.0/24", secrets.token_hex(2))
    await net.setup()
    os.chmod(tmp_path, 0o755)
    rt = PodRuntime(RuntimeConfig(node_name="n1", data_dir=str(tmp_path), default_user=ps.NOBODY), net)
    try:
        yield rt
    finally:
        await rt.shutdown()
        await net.teardown()
        assert [n for n in list_netns() if n.startswith(net.prefix)] == []


async def _get(net: NetnsNetwork, ip: str) -> bytes:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while True:
        try:
            reader, writer = await net.connect(ip, 80)
            data = await reader.read()
            writer.close()
            return data
        except OSError:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.05)


@pytest.mark.root
async def test_netns_pods_run_unprivileged_and_still_serve_port_80(nrt: PodRuntime) -> None:
    net = nrt.network
    assert isinstance(net, NetnsNetwork)
    default = make_pod("default-user", [{"name": "c", "image": "x", "command": [PY, "-c", SERVER]}])
    root = make_pod("asks-root", [{"name": "c", "image": "x", "command": [PY, "-c", SERVER],
                                   "securityContext": {"runAsUser": 0}}])
    nonroot = make_pod("nonroot", [{"name": "c", "image": "x", "command": [PY, "-c", SERVER],
                                    "securityContext": {"runAsNonRoot": True, "runAsUser": 0}}])
    for p in (default, root, nonroot):
        nrt.sync_pod(p)
    await until(lambda: cond(default, "Ready") == "True" and cond(root, "Ready") == "True", timeout=15)
    assert await _get(net, default["status"]["podIP"]) == b"uid=65534"
    assert await _get(net, root["status"]["podIP"]) == b"uid=0"
    await until(lambda: any((cs.get("state") or {}).get("waiting", {}).get("reason") == "CreateContainerConfigError"
                            for cs in (nonroot.get("status") or {}).get("containerStatuses") or []), timeout=10)
    # exec runs as the container's user too
    w = nrt.by_name("default", "default-user")
    assert w is not None
    proc = await asyncio.create_subprocess_exec(*w.exec_argv(w.runs[0], ["id", "-u"]),
                                                stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    assert out.decode().strip() == "65534"
