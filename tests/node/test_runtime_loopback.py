"""Real processes in loopback mode, driven through PodRuntime with pod dicts."""

from __future__ import annotations

import asyncio
import os
import sys
import urllib.request
from typing import Any

import pytest

from servicenet.node.network import PodNetwork
from servicenet.node.runtime import PodRuntime, RuntimeConfig
from servicenet.node.status import Backoff

from .nodeutil import cond, make_pod, until

Obj = dict[str, Any]


class Recorder:
    def __init__(self) -> None:
        self.statuses: dict[str, Obj] = {}
        self.finalized: list[str] = []
        self.events: list[tuple[str, str, str]] = []

    async def write_status(self, pod: Obj, status: Obj) -> None:
        pod["status"] = status
        self.statuses[pod["metadata"]["name"]] = status

    async def finalize(self, pod: Obj) -> None:
        self.finalized.append(pod["metadata"]["name"])

    def event(self, pod: Obj, etype: str, reason: str, msg: str) -> None:
        self.events.append((pod["metadata"]["name"], reason, msg))


@pytest.fixture
async def rt(tmp_path: Any, loop_cidr: str) -> Any:
    rec = Recorder()
    runtime = PodRuntime(RuntimeConfig(node_name="n1", data_dir=str(tmp_path), cluster_dns=["127.96.0.10"],
                                       backoff=Backoff(base=0.2, cap=0.8)),
                         PodNetwork(loop_cidr), write_status=rec.write_status, finalize=rec.finalize,
                         on_event=rec.event)
    runtime.rec = rec  # type: ignore[attr-defined]
    yield runtime
    await runtime.shutdown()


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=2) as r:
        return r.read().decode()


async def test_serve_hostname_pod_becomes_ready_and_answers(rt: PodRuntime) -> None:
    pod = make_pod("web-0", [{"name": "c", "image": "registry.k8s.io/serve_hostname",
                              "ports": [{"containerPort": 9376}]}])
    rt.sync_pod(pod)
    await until(lambda: cond(pod, "Ready") == "True")
    st = pod["status"]
    assert st["phase"] == "Running"
    ip = st["podIP"]
    assert ip.startswith("127.64.")
    assert st["containerStatuses"][0]["state"].get("running")
    body = await until(lambda: _try(lambda: _get(f"http://{ip}:9376/")), timeout=5)
    assert body == "web-0"


def _try(fn: Any) -> Any:
    try:
        return fn()
    except OSError:
        return None


async def test_env_and_logs_and_crashloop(rt: PodRuntime) -> None:
    script = "echo name=$MY_NAME ip=$POD_IP x=$X; exit 3"
    pod = make_pod("crash", [{"name": "c", "image": "busybox", "command": ["sh", "-c", script],
                              "env": [{"name": "MY_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                                      {"name": "X", "value": "$(MY_NAME)-x"}]}])
    rt.sync_pod(pod)
    st = await until(lambda: _restarts(pod) >= 2 and pod["status"], timeout=10)
    cs = st["containerStatuses"][0]
    assert cs["lastState"]["terminated"]["exitCode"] == 3
    assert cs["lastState"]["terminated"]["reason"] == "Error"
    w = rt.by_name("default", "crash")
    assert w is not None
    log = open(w.runs[0].log_path).read()
    assert f"name=crash ip={w.pod_ip()} x=crash-x" in log
    await until(lambda: pod["status"]["containerStatuses"][0]["state"].get("waiting", {}).get("reason")
                == "CrashLoopBackOff", timeout=5)
    assert any(r == "BackOff" for _, r, _ in rt.rec.events)  # type: ignore[attr-defined]


def _restarts(pod: Obj) -> int:
    cs = (pod.get("status") or {}).get("containerStatuses") or []
    return cs[0]["restartCount"] if cs else 0


async def test_readiness_probe_flip_and_graceful_delete(rt: PodRuntime, tmp_path: Any) -> None:
    flag = tmp_path / "ready"
    flag.write_text("")
    probe = {"exec": {"command": ["test", "-f", str(flag)]}, "periodSeconds": 1, "failureThreshold": 1}
    pod = make_pod("probe", [{"name": "c", "image": "busybox", "command": [sys.executable, "-c",
                              "import signal,time; signal.signal(signal.SIGTERM, lambda *a: exit(0)); time.sleep(60)"],
                              "readinessProbe": probe}])
    rt.sync_pod(pod)
    await until(lambda: cond(pod, "Ready") == "True", timeout=5)
    os.unlink(flag)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await until(lambda: cond(pod, "Ready") == "False", timeout=5, interval=0.005)
    assert loop.time() - t0 <= 1.0 + 0.3
    # graceful deletion: SIGTERM -> exit 0, then finalize
    pod2 = dict(pod)
    pod2["metadata"] = {**pod["metadata"], "deletionTimestamp": "2024-01-01T00:00:00Z",
                        "deletionGracePeriodSeconds": 5}
    rt.sync_pod(pod2)
    await until(lambda: "probe" in rt.rec.finalized, timeout=5)  # type: ignore[attr-defined]
    term = pod2["status"]["containerStatuses"][0]["state"]["terminated"]
    assert term["exitCode"] == 0
    assert pod2["status"]["phase"] == "Succeeded"
    assert rt.by_name("default", "probe") is None


async def test_unknown_image_waits(rt: PodRuntime) -> None:
    pod = make_pod("odd", [{"name": "c", "image": "example.com/whatever:1"}])
    rt.sync_pod(pod)
    await until(lambda: _waiting(pod) == "ErrImageNeverPull")
    assert pod["status"]["phase"] == "Pending"
    assert any(r == "Failed" for n, r, _ in rt.rec.events if n == "odd")  # type: ignore[attr-defined]


def _waiting(pod: Obj) -> str | None:
    cs = (pod.get("status") or {}).get("containerStatuses") or []
    return cs[0]["state"].get("waiting", {}).get("reason") if cs else None
