"""``servicenet store migrate``: a SQLite data dir into etcd and back, every object's content kept."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import grpc
from aetcd import rpc

from servicenet.store.etcdlaunch import Cluster
from servicenet.testing import running_apiserver


async def _cli(*args: str) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "servicenet.cli", "store", "migrate", *args,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                                                env=env)
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    return out.decode()


def _ours(store) -> dict[str, dict]:  # type: ignore[no-untyped-def]
    """The test's objects (controllers may add their own), without resourceVersion."""
    out = {}
    for rec in store.list("/")[0]:
        if "/default/c" in rec.key or rec.key.endswith(("/secrets/default/s", "/services/default/web")):
            obj = rec.obj()
            obj["metadata"].pop("resourceVersion", None)
            out[rec.key] = obj
    return out


async def _raw_etcd_value(endpoint: str, key: str) -> bytes:
    async with grpc.aio.insecure_channel(endpoint.removeprefix("http://")) as ch:
        resp = await rpc.KVStub(ch).Range(rpc.RangeRequest(key=key.encode()))
        return bytes(resp.kvs[0].value)


async def test_sqlite_to_etcd_and_back(tmp_path: Path, etcd_cluster: Cluster) -> None:
    a = tmp_path / "a"
    async with running_apiserver(a, storage="sqlite") as api:
        for i in range(30):
            await api.client.create("v1", "configmaps", "default",
                                    {"metadata": {"name": f"c{i}"}, "data": {"i": str(i)}})
        await api.client.create("v1", "secrets", "default",
                                {"metadata": {"name": "s"}, "stringData": {"pw": "hunter2"}})
        await api.client.create("v1", "services", "default", {"metadata": {"name": "web"}, "spec": {
            "type": "NodePort", "ports": [{"port": 80}]}})
        before = _ours(api.server.store)
    assert len(before) == 32
    prefix = f"/mig-{tmp_path.name}"
    urls = ",".join(etcd_cluster.endpoints)
    out = await _cli("--from", f"sqlite:{a}", "--to", f"etcd:{urls}", "--etcd-prefix", prefix)
    assert out.startswith("copied ")
    # at rest in etcd the Secret is ciphertext under the same key as in the SQLite file
    raw = await _raw_etcd_value(etcd_cluster.endpoints[0], prefix + "/registry/core/secrets/default/s")
    assert raw.startswith(b"k8s:enc:") and b"hunter2" not in raw
    # an API server on etcd with the same config dir (same encryption key) serves every object unchanged
    async with running_apiserver(a, storage="etcd", etcd_servers=etcd_cluster.endpoints, etcd_prefix=prefix) as api:
        on_etcd = _ours(api.server.store)
        secret = await api.client.get("v1", "secrets", "default", "s")
        assert secret["data"]["pw"] == "aHVudGVyMg=="
    assert on_etcd == before

    b = tmp_path / "b"
    await _cli("--from", f"etcd:{urls}", "--etcd-prefix", prefix, "--to", f"sqlite:{b}",
               "--encryption-provider-config", str(a / "encryption-config.yaml"))
    async with running_apiserver(b, storage="sqlite") as api:
        back = _ours(api.server.store)
        secret = await api.client.get("v1", "secrets", "default", "s")
        assert secret["data"]["pw"] == "aHVudGVyMg=="
    assert back == before
