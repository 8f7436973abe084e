"""WorkQueue semantics and the Event recorder's aggregation (against a fake client)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from servicenet.controllers.events import EventRecorder
from servicenet.controllers.workqueue import WorkQueue


async def test_dedup_and_no_concurrent_processing() -> None:
    q = WorkQueue("t")
    q.add("a")
    q.add("a")
    q.add("b")
    assert len(q) == 2
    k = await q.get()
    assert k == "a"
    q.add("a")  # while processing: deferred, not handed to another worker
    assert await q.get() == "b"
    assert len(q) == 0
    q.done("a")
    assert len(q) == 1 and await q.get() == "a"


async def test_rate_limited_backoff_grows_and_forget_resets() -> None:
    q = WorkQueue("t", base_delay=0.01, max_delay=1.0)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    q.add_rate_limited("k")
    assert await asyncio.wait_for(q.get(), 1) == "k"
    q.done("k")
    first = loop.time() - t0
    t1 = loop.time()
    q.add_rate_limited("k")
    q.add_rate_limited("k")  # third failure: 40 ms, but the 20 ms timer already pending wins
    assert await asyncio.wait_for(q.get(), 1) == "k"
    second = loop.time() - t1
    assert first >= 0.009 and second >= 0.019
    assert q.failures("k") == 3
    q.forget("k")
    assert q.failures("k") == 0


class FakeClient:
    def __init__(self) -> None:
        self.created: list[dict[str, Any]] = []
        self.patched: list[tuple[str, dict[str, Any]]] = []

    async def create(self, api_version: str, plural: str, ns: str, body: dict[str, Any]) -> dict[str, Any]:
        self.created.append(body)
        return body

    async def patch(self, api_version: str, plural: str, ns: str, name: str, patch: dict[str, Any], **kw: Any) -> dict[str, Any]:
        self.patched.append((name, patch))
        return {}


async def test_recorder_creates_then_aggregates() -> None:
    client = FakeClient()
    rec = EventRecorder(client, "controller-manager")
    await rec.start()
    pod = {"kind": "Pod", "apiVersion": "v1", "metadata": {"name": "p", "namespace": "ns1", "uid": "u1"}}
    node = {"kind": "Node", "apiVersion": "v1", "metadata": {"name": "n1", "uid": "u2"}}
    rec.record(pod, "Warning", "FailedScheduling", "0/1 nodes are available.")
    rec.record(pod, "Warning", "FailedScheduling", "0/1 nodes are available.")
    rec.record(node, "Normal", "NodeNotReady", "Node n1 status is now: NodeNotReady")
    await rec.flush()
    await asyncio.sleep(0.05)
    await rec.stop()
    assert len(client.created) == 2
    ev = client.created[0]
    assert ev["involvedObject"] == {"kind": "Pod", "name": "p", "uid": "u1", "apiVersion": "v1", "resourceVersion": "", "namespace": "ns1"}
    assert (ev["type"], ev["reason"], ev["count"], ev["source"], ev["reportingComponent"]) == (
        "Warning", "FailedScheduling", 1, {"component": "controller-manager"}, "controller-manager")
    assert ev["metadata"]["namespace"] == "ns1" and ev["metadata"]["name"].startswith("p.")
    assert client.created[1]["metadata"]["namespace"] == "default"  # cluster-scoped objects
    (name, patch), = client.patched
    assert name == ev["metadata"]["name"] and patch["count"] == 2 and "lastTimestamp" in patch


async def test_finished_waits_while_a_worker_processes_the_key() -> None:
    q = WorkQueue("t")
    await asyncio.wait_for(q.finished("a"), 1)  # not processed: at once
    q.add("a")
    await asyncio.wait_for(q.finished("a"), 1)  # only queued (maybe behind a backlog): at once
    assert await q.get() == "a"
    waiter = asyncio.create_task(q.finished("a"))
    await asyncio.sleep(0)
    assert not waiter.done()
    q.add("a")  # changed again while processed: queued for another pass, the waiter still goes
    q.done("a")
    await asyncio.wait_for(waiter, 1)
    assert await q.get() == "a"
    other = asyncio.create_task(q.finished("a"))
    await asyncio.sleep(0)
    q.shutdown()  # a closing queue releases its waiters
    await asyncio.wait_for(other, 1)


async def test_finished_cancelled_leaves_no_waiter() -> None:
    q = WorkQueue("t")
    q.add("a")
    assert await q.get() == "a"
    waiter = asyncio.create_task(q.finished("a"))
    await asyncio.sleep(0)
    waiter.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await waiter
    assert q._settle == {}
