"""Write a state.db holding many pods and services with the store's own API (no HTTP).

The templates are objects the API server stored (defaulted, with managedFields), so the preloaded
data is what the server would have written; only name, namespace, uid and cluster IPs vary.
Runs in a helper process; the API server is then started on the directory.
"""

from __future__ import annotations

import asyncio
import copy
import ipaddress
import time
import uuid
from typing import Any

from servicenet.store import SQLiteStore

Obj = dict[str, Any]


def _strip(o: Obj) -> Obj:
    o = copy.deepcopy(o)
    o["metadata"].pop("resourceVersion", None)
    return o


def _namespace_obj(name: str, template_ns: Obj) -> Obj:
    o = _strip(template_ns)
    o["metadata"]["name"] = name
    o["metadata"]["uid"] = str(uuid.uuid4())
    o["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = name
    return o


def preload(db_path: str, pod_tpl: Obj, svc_tpl: Obj, ns_tpl: Obj, pods: int, services: int,
            pods_per_ns: int = 10_000, first_ip: str = "10.100.0.1", writers: int = 200) -> dict[str, Any]:
    """Fill ``db_path``; returns counts, the namespaces used and the time it took."""
    return asyncio.run(_preload(db_path, _strip(pod_tpl), _strip(svc_tpl), ns_tpl, pods, services,
                                pods_per_ns, first_ip, writers))


async def _preload(db_path: str, pod_tpl: Obj, svc_tpl: Obj, ns_tpl: Obj, pods: int, services: int,
                   pods_per_ns: int, first_ip: str, writers: int) -> dict[str, Any]:
    t0 = time.monotonic()
    store = SQLiteStore(db_path, compact_interval=0)
    await store.open()
    n_ns = max(1, -(-pods // pods_per_ns))
    namespaces = [f"load-{k}" for k in range(n_ns)]
    svc_ns = "load-svc"
    for ns in [*namespaces, svc_ns]:
        await store.create(f"/registry/core/namespaces/{ns}", _namespace_obj(ns, ns_tpl))
    ip0 = int(ipaddress.ip_address(first_ip))
    pod_md = pod_tpl["metadata"]
    svc_md = svc_tpl["metadata"]

    def pod_obj(i: int) -> tuple[str, Obj]:
        ns = namespaces[i // pods_per_ns]
        name = f"pod-{i:06d}"
        md = {**pod_md, "name": name, "namespace": ns, "uid": str(uuid.uuid4())}
        return f"/registry/core/pods/{ns}/{name}", {**pod_tpl, "metadata": md}

    def svc_obj(i: int) -> tuple[str, Obj]:
        name = f"svc-{i:05d}"
        ip = str(ipaddress.ip_address(ip0 + i))
        md = {**svc_md, "name": name, "namespace": svc_ns, "uid": str(uuid.uuid4())}
        spec = {**svc_tpl["spec"], "clusterIP": ip, "clusterIPs": [ip]}
        return f"/registry/core/services/{svc_ns}/{name}", {**svc_tpl, "metadata": md, "spec": spec}

    work: list[tuple[Any, int]] = [(pod_obj, i) for i in range(pods)] + [(svc_obj, i) for i in range(services)]
    it = iter(work)

    async def writer() -> None:
        for fn, i in it:
            key, obj = fn(i)
            await store.create(key, obj)

    await asyncio.gather(*(writer() for _ in range(writers)))
    await store.close()
    return {"pods": pods, "services": services, "namespaces": namespaces, "service_namespace": svc_ns,
            "seconds": time.monotonic() - t0}
