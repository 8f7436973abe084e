"""Acceptance: kill -9 of the API server loses no acknowledged write and never reuses a ClusterIP."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

from servicenet.client import ApiClient, ApiError, wait_for


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def start_server(data_dir: Path, port: int) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "servicenet.cli", "apiserver", "--data-dir", str(data_dir),
        "--api-listen", f"127.0.0.1:{port}", stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL)
    _procs.append(proc)
    kc = data_dir / "kubeconfig"

    async def up() -> bool:
        if not kc.exists():
            return False
        c = ApiClient.from_kubeconfig(kc)
        try:
            await c.get("v1", "namespaces", None, "default")
            return True
        except Exception:
            return False
        finally:
            await c.close()

    await wait_for(up, 30, 0.1)
    return proc


async def test_kill9_keeps_every_acknowledged_create(tmp_path: Path) -> None:
    port = free_port()
    proc = await start_server(tmp_path, port)
    try:
        await _kill9_scenario(tmp_path, port, proc)
    finally:
        for p in _procs:
            if p.returncode is None:
                p.kill()
                await p.wait()


_procs: list[asyncio.subprocess.Process] = []


async def _kill9_scenario(tmp_path: Path, port: int, proc: asyncio.subprocess.Process) -> None:
    client = ApiClient.from_kubeconfig(tmp_path / "kubeconfig")
    acked: dict[str, str] = {}  # name → resourceVersion
    stop = asyncio.Event()
    errors: list[BaseException] = []

    async def writer(w: int) -> None:
        i = 0
        while not stop.is_set():
            name = f"s{w}-{i}"
            i += 1
            try:
                o = await client.create("v1", "services", "default", {
                    "metadata": {"name": name}, "spec": {"ports": [{"port": 80}], "selector": {"a": name}}})
            except Exception as exc:
                errors.append(exc)
                return
            acked[name] = o["metadata"]["resourceVersion"]

    tasks = [asyncio.create_task(writer(w)) for w in range(8)]
    await wait_for(lambda: len(acked) >= 300 or len(errors) == 8, 60)
    assert len(acked) >= 300, f"writers failed before the kill: {errors[:3]}"
    os.kill(proc.pid, signal.SIGKILL)
    await proc.wait()
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    await client.close()
    max_rv = max(int(v) for v in acked.values())

    proc = await start_server(tmp_path, port)
    client = ApiClient.from_kubeconfig(tmp_path / "kubeconfig")
    try:
        items = (await client.list_all("v1", "services", "default"))["items"]
        present = {o["metadata"]["name"]: o for o in items}
        missing = [n for n in acked if n not in present]
        assert not missing, f"{len(missing)} acknowledged creates lost, e.g. {missing[:5]}"
        for n, rv in acked.items():
            assert present[n]["metadata"]["resourceVersion"] == rv
        # revisions keep increasing after the restart
        o = await client.create("v1", "services", "default", {
            "metadata": {"name": "after"}, "spec": {"ports": [{"port": 80}], "selector": {"a": "b"}}})
        assert int(o["metadata"]["resourceVersion"]) > max_rv
        for i in range(50):
            await client.create("v1", "services", "default", {
                "metadata": {"name": f"more-{i}"}, "spec": {"ports": [{"port": 80}], "selector": {"a": "b"}}})
        items = (await client.list_all("v1", "services", None))["items"]
        ips = [o["spec"]["clusterIP"] for o in items if o["spec"].get("clusterIP") not in (None, "None")]
        assert len(ips) == len(set(ips)), "a ClusterIP was allocated twice"
        try:
            await client.create("v1", "services", "default", {
                "metadata": {"name": "dup"}, "spec": {"clusterIP": ips[0], "ports": [{"port": 80}]}})
            raise AssertionError("a taken ClusterIP was accepted")
        except ApiError as exc:
            assert exc.status == 422 and "provided IP is already allocated" in exc.message
    finally:
        await client.close()
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 20)
