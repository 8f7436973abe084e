"""Pod security in netns mode: containers run as the unprivileged default user unless their
securityContext asks otherwise, may still listen on port 80, and runAsNonRoot is enforced."""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from servicenet.node import podsecurity as ps
from servicenet.node import projected
from servicenet.node.network import NetnsNetwork
from servicenet.node.runtime import PodRuntime

from .nodeutil import cond, make_pod, netns_runtime, until

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


def test_default_user_needs_a_readable_interpreter() -> None:
    with tempfile.TemporaryDirectory(dir="/tmp") as d:  # /tmp itself is open to everyone
        base = Path(d)
        base.chmod(0o755)
        closed = base / "home"
        closed.mkdir(mode=0o700)
        inst = closed / "py"
        (inst / "bin").mkdir(parents=True)
        inst.chmod(0o755)
        py = inst / "bin" / "python"
        py.write_text("")
        py.chmod(0o700)  # the file itself is closed: nothing can expose it
        assert ps.default_user(str(py), str(base))[0] == 0
        py.chmod(0o755)  # only a directory on the way is closed: podinit exposes the tree
        assert ps.default_user(str(py), str(base)) == (ps.NOBODY, "")
        assert ps.exposures([str(inst), str(base)], ps.NOBODY, ps.NOBODY) == [(str(closed), [str(inst)])]
        assert ps.exposures([str(inst)], 0, 0) == []
        closed.chmod(0o755)
        assert ps.exposures([str(inst)], ps.NOBODY, ps.NOBODY) == []


@pytest.fixture
async def nrt(tmp_path: Any) -> Any:
    os.chmod(tmp_path, 0o755)
    async with netns_runtime(tmp_path, "10.244.9.0/24", default_user=ps.NOBODY) as rt:
        yield rt


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


VENV_PY = sys.executable  # servicenet's own interpreter (on the dev machine under a 0700 /root)


@pytest.mark.root
async def test_default_user_runs_the_node_interpreter_as_itself(nrt: PodRuntime) -> None:
    """The pod really runs as nobody with the node's own interpreter, even when that interpreter
    lives under a directory nobody cannot search; the closed directory shows nothing else."""
    script = ("import os, sys; print('uid', os.getuid(), 'listing', sorted(os.listdir('/root')) "
              "if os.path.isdir('/root') and os.access('/root', os.R_OK) else None, flush=True)\n" + SERVER)
    pod = make_pod("venv-py", [{"name": "c", "image": "x", "command": [VENV_PY, "-c", script]}])
    nrt.sync_pod(pod)
    await until(lambda: cond(pod, "Ready") == "True", timeout=20)
    net = nrt.network
    assert isinstance(net, NetnsNetwork)
    assert await _get(net, pod["status"]["podIP"]) == b"uid=65534"
    w = nrt.by_name("default", "venv-py")
    assert w is not None
    proc = await asyncio.create_subprocess_exec(*w.exec_argv(w.runs[0], ["id", "-u"]), stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    assert out.decode().strip() == "65534"
    home = os.path.realpath(os.path.expanduser("~root"))
    if not ps.reachable_by(home, ps.NOBODY, ps.NOBODY, 1):  # the closed home shows only the runtime trees
        proc = await asyncio.create_subprocess_exec(*w.exec_argv(w.runs[0], ["ls", "-A", home]),
                                                    stdout=asyncio.subprocess.PIPE)
        out, _ = await proc.communicate()
        runtime_tops = {os.path.relpath(t, home).split(os.sep)[0] for t in ps.runtime_trees(
            VENV_PY, [sys.prefix, sys.base_prefix], "/") if t.startswith(home + os.sep)}
        assert set(out.decode().split()) <= runtime_tops


def test_token_file_is_private_to_the_pod_user(tmp_path: Any) -> None:
    who = ps.NOBODY if os.getuid() == 0 else os.getuid()
    vol = {"name": "kube-api-access", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}},
                                                                 {"downwardAPI": {"items": []}}]}}
    assert projected.token_paths(vol) == {"token"}
    projected.write_atomic(str(tmp_path), {"token": b"t", "namespace": b"default"}, 0o644,
                           ({"token"}, who, who if os.getuid() == 0 else os.getgid()))
    st = os.stat(tmp_path / "token")
    assert (st.st_mode & 0o777, st.st_uid) == (0o600, who)
    assert os.stat(tmp_path / "namespace").st_mode & 0o777 == 0o644
