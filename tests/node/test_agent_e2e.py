"""The node agent against the in-process API server: registration, pods, kubectl logs/exec, delete, adoption."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import Any

from servicenet.node.process import proc_start_ticks
from servicenet.testing import RunningApi

from .nodeutil import until

Obj = dict[str, Any]


def _ready(pod: Obj) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in (pod.get("status") or {}).get("conditions") or [])


async def wait_pod(api: RunningApi, name: str, pred: Any, timeout: float = 10.0) -> Obj:
    async def check() -> Obj | None:
        pod = await api.client.get("v1", "pods", "default", name)
        return pod if pred(pod) else None
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        got = await check()
        if got is not None:
            return got
        if loop.time() > deadline:
            raise AssertionError(f"pod {name} did not reach the state in time")
        await asyncio.sleep(0.05)


def pod_body(name: str, node: str, command: list[str]) -> Obj:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"nodeName": node, "terminationGracePeriodSeconds": 5,
                     "containers": [{"name": "c", "image": "busybox", "command": command}]}}


async def test_agent_runs_pods_and_serves_kubectl(api: RunningApi, tmp_path: Path, loop_cidr: str, node_agent: Any) -> None:
    agent = await node_agent("node-e2e")
    node = await api.client.get("v1", "nodes", None, "node-e2e")
    assert node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"] == agent.port
    assert {"type": "InternalIP", "address": "127.0.0.1"} in node["status"]["addresses"]
    assert node["spec"]["podCIDR"] == loop_cidr
    assert node["status"]["capacity"]["pods"] == "110"
    assert [c["status"] for c in node["status"]["conditions"] if c["type"] == "Ready"] == ["True"]
    svc = await api.client.create("v1", "services", "default", {
        "metadata": {"name": "web"}, "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]}})
    script = 'echo hello-log; echo WEB=$WEB_SERVICE_HOST; exec sleep 600'
    await api.client.create("v1", "pods", "default", pod_body("p1", "node-e2e", ["sh", "-c", script]))
    pod = await wait_pod(api, "p1", _ready)
    assert pod["status"]["phase"] == "Running"
    assert pod["status"]["podIP"].startswith(loop_cidr.rsplit(".", 2)[0])
    cid = pod["status"]["containerStatuses"][0]["containerID"]
    _, out, _ = await api.kubectl("logs", "p1")
    assert "hello-log" in out and f"WEB={svc['spec']['clusterIP']}" in out
    rc, out, err = await api.kubectl("exec", "p1", "--", "sh", "-c", "echo out; echo err >&2; exit 3",
                                     check=False)
    assert (rc, out, err.splitlines()[0]) == (3, "out\n", "err")
    rc, out, _ = await api.kubectl("exec", "-i", "p1", "--", "cat", input=b"via-stdin\n", check=False)
    assert (rc, out) == (0, "via-stdin\n")
    pid = int(cid.rsplit("/", 1)[1])
    await api.kubectl("delete", "pod", "p1", "--wait=true", "--timeout=20s")
    assert proc_start_ticks(pid) is None or not os.path.exists(f"/proc/{pid}")
    assert agent.runtime.workers == {}


async def test_agent_adopts_pods_after_kill_9(api: RunningApi, tmp_path: Path, loop_cidr: str) -> None:
    data = tmp_path / "node"
    argv = [sys.executable, "-m", "servicenet.node.agent", "--kubeconfig", str(api.kubeconfig),
            "--node-name", "node-adopt", "--network", "loopback", "--pod-cidr", loop_cidr,
            "--data-dir", str(data), "--port", "0", "--log-level", "warning"]

    async def spawn() -> asyncio.subprocess.Process:
        proc = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE)
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        assert b"node-adopt" in line
        return proc

    agent = await spawn()
    try:
        await api.client.create("v1", "pods", "default", pod_body("keep", "node-adopt", ["sleep", "600"]))
        pod = await wait_pod(api, "keep", _ready)
        cid = pod["status"]["containerStatuses"][0]["containerID"]
        pid = int(cid.rsplit("/", 1)[1])
        agent.kill()  # SIGKILL: no cleanup at all
        await agent.wait()
        assert proc_start_ticks(pid) is not None
        await api.client.create("v1", "pods", "default", pod_body("new", "node-adopt", ["sleep", "600"]))
        agent = await spawn()
        pod = await wait_pod(api, "new", _ready)
        kept = await api.client.get("v1", "pods", "default", "keep")
        assert _ready(kept)
        assert kept["status"]["containerStatuses"][0]["containerID"] == cid  # re-attached, not restarted
        assert kept["status"]["containerStatuses"][0]["restartCount"] == 0
        assert kept["status"]["podIP"] != pod["status"]["podIP"]
        await api.client.delete("v1", "pods", "default", "keep")
        await until(lambda: proc_start_ticks(pid) is None, timeout=10)
        new_pid = int(pod["status"]["containerStatuses"][0]["containerID"].rsplit("/", 1)[1])
    finally:
        agent.send_signal(signal.SIGTERM)
        await asyncio.wait_for(agent.wait(), 20)
    assert proc_start_ticks(new_pid) is None  # stop() kills its pods
    assert not any((data / "pods").iterdir())
