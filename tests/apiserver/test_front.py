"""The API server's HTTP front: request metrics, path labels, the composed filter chain."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import prometheus_client
import pytest
from aiohttp.test_utils import make_mocked_request

from servicenet.api.rbac import Attributes, User
from servicenet.apiserver import front, sa_admission
from servicenet.apiserver import gc as gc_module
from servicenet.apiserver.authapi import ATTRS, Security
from servicenet.apiserver.flowcontrol import FlowControl
from servicenet.apiserver.gc import GarbageCollector
from servicenet.apiserver.handlers import ResourceHandlers
from servicenet.apiserver.registry import WriteOptions
from servicenet.apiserver.responses import metadata_view
from servicenet.client import ApiError
from servicenet.store import ADDED, MODIFIED, Event, Record
from servicenet.testing import RunningApi, running_apiserver


def _exposition(registry: prometheus_client.CollectorRegistry) -> list[str]:
    """The text exposition without the ``_created`` timestamps (they differ by construction time)."""
    text = prometheus_client.generate_latest(registry).decode()
    return [line for line in text.splitlines() if "_created{" not in line]


OBSERVATIONS = [("POST", "pods", 201, 0.0004), ("POST", "pods", 201, 0.001), ("POST", "pods", 409, 0.0031),
                ("GET", "pods", 200, 0.25), ("GET", "configmaps", 404, 61.0), ("WATCH", "pods", 200, None),
                ("PUT", "services", 200, 0.0025), ("GET", "pods", 200, 7.5)]


def test_request_metrics_expose_what_the_client_library_would() -> None:
    ours = prometheus_client.CollectorRegistry()
    metrics = front.RequestMetrics()
    ours.register(metrics)
    lib = prometheus_client.CollectorRegistry()
    counter = prometheus_client.Counter("apiserver_request_total", "API requests by verb, resource and code",
                                        ["verb", "resource", "code"], registry=lib)
    hist = prometheus_client.Histogram("apiserver_request_duration_seconds", "API request latency by verb and resource",
                                       ["verb", "resource"], registry=lib, buckets=front.LATENCY_BUCKETS)
    for verb, resource, code, seconds in OBSERVATIONS:
        metrics.record(verb, resource, code, seconds)
        counter.labels(verb, resource, str(code)).inc()
        if seconds is not None:
            hist.labels(verb, resource).observe(seconds)
    assert _exposition(ours) == _exposition(lib)
    full = prometheus_client.generate_latest(ours).decode()
    assert 'apiserver_request_created{code="201",resource="pods",verb="POST"}' in full
    assert 'apiserver_request_duration_seconds_created{resource="pods",verb="POST"}' in full


@pytest.mark.parametrize(("path", "label"), [
    ("/api/v1/namespaces/p/pods", "pods"),
    ("/api/v1/namespaces/p/pods/x-1", "pods"),
    ("/api/v1/namespaces/p/pods/x-1/status", "pods"),
    ("/api/v1/namespaces/p", "namespaces"),
    ("/api/v1/namespaces", "namespaces"),
    ("/api/v1/nodes/n1", "nodes"),
    ("/apis/apps/v1/namespaces/p/deployments/web", "deployments"),
    ("/apis/apps/v1/deployments", "deployments"),
    ("/apis/apps/v1", "v1"),
    ("/healthz", "healthz"),
    ("/", ""),
    ("/api/v1/namespaces/p/" + "x" * 60, "x" * 40),
])
def test_resource_label(path: str, label: str) -> None:
    assert front.resource_label(path) == label
    assert front.PathLabels()(path) == label


def test_path_labels_are_kept_and_bounded() -> None:
    labels = front.PathLabels(limit=3)
    for i in range(3):
        assert labels(f"/api/v1/namespaces/n{i}/pods") == "pods"
    assert len(labels._kept) == 3
    assert labels("/api/v1/namespaces/n9/services") == "services"  # over the limit: forgotten, then kept
    assert len(labels._kept) == 1
    assert labels("/api/v1/namespaces/n9/services") == "services"


def test_compose_runs_the_middlewares_outermost_first() -> None:
    seen: list[str] = []

    def mw(name: str) -> Any:
        async def m(request: Any, handler: Any) -> Any:
            seen.append(f"{name} in")
            out = await handler(request)
            seen.append(f"{name} out")
            return out
        return m

    async def handler(request: Any) -> Any:
        seen.append("handler")
        return request + 1

    chain = front.compose(handler, [mw("a"), mw("b")])
    assert asyncio.run(chain(1)) == 2
    assert seen == ["a in", "b in", "handler", "b out", "a out"]


async def test_expect_100_continue_then_create(api: RunningApi) -> None:
    url = api.url + "/api/v1/namespaces/default/configmaps"
    body = orjson.dumps({"metadata": {"name": "expecting"}, "data": {"k": "v" * 2000}})
    async with asyncio.timeout(20):
        async with api.client.session.post(url, data=body, expect100=True,
                                           headers={"Content-Type": "application/json"}) as resp:
            assert resp.status == 201, await resp.text()
    assert (await api.client.get("v1", "configmaps", "default", "expecting"))["data"]["k"] == "v" * 2000


async def test_metrics_count_requests_by_verb_resource_and_code(api: RunningApi) -> None:
    await api.client.create("v1", "configmaps", "default", {"metadata": {"name": "m1"}})
    with pytest.raises(ApiError):
        await api.client.create("v1", "configmaps", "default", {"metadata": {"name": "m1"}})
    async with api.client.session.get(api.url + "/metrics") as resp:
        text = await resp.text()
    assert 'apiserver_request_total{code="201",resource="configmaps",verb="POST"} 1.0' in text
    assert 'apiserver_request_total{code="409",resource="configmaps",verb="POST"} 1.0' in text
    assert 'apiserver_request_duration_seconds_count{resource="configmaps",verb="POST"} 2.0' in text


class _Authn:
    def authenticate(self, request: Any) -> User:
        return User("jane", ("system:authenticated",))


class _Authz:
    def __init__(self) -> None:
        self.seen: list[Attributes] = []

    def authorize(self, user: User, attrs: Attributes) -> tuple[bool, str]:
        self.seen.append(attrs)
        return True, ""


def test_security_keeps_request_attributes_per_method_path_and_query() -> None:
    authz = _Authz()
    sec = Security(None, _Authn(), authz, None)  # type: ignore[arg-type]

    async def handler(request: Any) -> Any:
        return request[ATTRS]

    async def run() -> list[Attributes]:
        out = []
        for method, url in [("GET", "/api/v1/namespaces/a/pods"), ("GET", "/api/v1/namespaces/a/pods"),
                            ("GET", "/api/v1/namespaces/a/pods?watch=1"),
                            ("GET", "/api/v1/namespaces/a/pods?fieldSelector=metadata.name%3Dweb"),
                            ("DELETE", "/api/v1/namespaces/a/pods"), ("POST", "/api/v1/namespaces/a/pods")]:
            out.append(await sec.middleware(make_mocked_request(method, url), handler))
        return out

    got = asyncio.run(run())
    assert [(a.verb, a.name) for a in got] == [("list", ""), ("list", ""), ("watch", ""), ("list", "web"),
                                               ("deletecollection", ""), ("create", "")]
    assert got[0] is got[1]  # the same request line: the kept attributes
    assert authz.seen == got
    # the identity APIs are still found (kept per method and path)
    assert sec._specials.get(("POST", "/api/v1/namespaces/a/pods")) is None
    assert sec._special("POST", "/apis/authentication.k8s.io/v1/tokenreviews") == sec._token_review


def test_flow_control_keeps_the_long_running_check_per_path_and_query() -> None:
    fc = FlowControl()
    calls: list[str] = []

    async def handler(request: Any) -> Any:
        calls.append(request.path_qs)
        return fc.pools["ro"].in_use

    async def run() -> list[int]:
        return [await fc.middleware(make_mocked_request("GET", url), handler)
                for url in ("/api/v1/pods", "/api/v1/pods?watch=1", "/api/v1/pods", "/api/v1/pods?watch=true")]

    # a seat is held by the plain LIST (no user: not exempt), never by the watches
    assert asyncio.run(run()) == [1, 0, 1, 0]
    assert fc._long.get(("/api/v1/pods", "watch=1")) is True
    assert fc._long.get(("/api/v1/pods", "")) is False


def test_token_volume_suffixes_are_drawn_in_batches() -> None:
    sa_admission._SUFFIXES.clear()
    got = [sa_admission._suffix() for _ in range(1500)]  # more than one batch
    assert all(len(s) == 5 and set(s) <= set(sa_admission._ALNUM) for s in got)
    assert len(set(got)) > 1400  # 36^5 values: repeats are rare
    pod: dict[str, Any] = {"spec": {"containers": [{"name": "a", "image": "i"}]}}
    sa_admission.mount_token(pod, None)
    vol = pod["spec"]["volumes"][0]["name"]
    assert vol.startswith("kube-api-access-") and len(vol) == len("kube-api-access-") + 5
    assert pod["spec"]["containers"][0]["volumeMounts"][0]["name"] == vol


@pytest.mark.parametrize("url", ["/api/v1/namespaces/p/pods", "/api/v1/namespaces/p/pods?",
                                 "/api/v1/namespaces/p/pods?pretty=true"])
def test_write_options_without_parameters(url: str) -> None:
    handlers = ResourceHandlers(None, None)  # type: ignore[arg-type]
    opts = handlers.write_options(make_mocked_request("POST", url, headers={"User-Agent": "kubectl/v1.32.4 (linux)"}))
    assert opts == WriteOptions(field_manager="kubectl", field_validation="Warn", dry_run=False, warnings=[])
    opts = handlers.write_options(make_mocked_request("POST", url))
    assert opts == WriteOptions(field_manager=None, field_validation="Warn", dry_run=False, warnings=[])
    with_query = handlers.write_options(make_mocked_request(
        "POST", "/api/v1/namespaces/p/pods?fieldManager=m&fieldValidation=Strict&dryRun=All"))
    assert with_query == WriteOptions(field_manager="m", field_validation="Strict", dry_run=True, warnings=[])


async def test_unknown_expectation_is_refused_before_the_filters(api: RunningApi) -> None:
    url = api.url + "/api/v1/namespaces/default/configmaps"
    async with api.client.session.post(url, data=b"{}", headers={"Expect": "something-else",
                                                                 "Content-Type": "application/json"}) as resp:
        assert resp.status == 417
    assert 'apiserver_request_total{code="500"' not in prometheus_client.generate_latest(
        api.server.metrics_registry).decode()


def test_gc_reads_a_committing_create_s_metadata_only_for_its_own_record() -> None:
    md = {"name": "a", "namespace": "p", "uid": "0b9c6c6e-8a6e-4f0e-9d55-0c4d1f2e3a4b",
          "ownerReferences": [{"uid": "owner-1", "name": "o", "kind": "ReplicaSet", "apiVersion": "apps/v1"}]}
    key = "/registry/core/pods/p/a"
    mine = Record(key, orjson.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {**md, "resourceVersion": "7"}}),
                  7, 7)
    other = Record(key, orjson.dumps({"apiVersion": "v1", "kind": "Pod",
                                      "metadata": {**md, "uid": "another", "resourceVersion": "8"}}), 8, 8)

    class _Registry:
        store = None
        committing = {key: md}

    gc_ = GarbageCollector(_Registry())  # type: ignore[arg-type]
    assert gc_._committed_metadata(Event(ADDED, mine, None)) == {"metadata": md}
    assert gc_._committed_metadata(Event(ADDED, other, None)) is None  # not this create's record
    assert gc_._committed_metadata(Event(MODIFIED, mine, mine)) is None
    _Registry.committing = {}
    assert gc_._committed_metadata(Event(ADDED, mine, None)) is None
    gc_._on_event(Event(ADDED, mine, None))  # decoded from the record: the same bookkeeping
    assert gc_.uid_key[md["uid"]] == key and gc_.owner_refs[key] == ["owner-1"]


async def test_creates_on_sqlite_are_tracked_by_the_gc_mostly_without_decoding(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    decoded: list[str] = []

    def counting(rec: Record) -> dict[str, Any]:
        decoded.append(rec.key)
        return metadata_view(rec)

    monkeypatch.setattr(gc_module, "metadata_view", counting)
    async with running_apiserver(tmp_path, storage="sqlite") as api:
        names = [f"cm-{i}" for i in range(40)]
        made = await asyncio.gather(*(api.client.create("v1", "configmaps", "default", {"metadata": {"name": n}})
                                      for n in names))
        assert api.server.gc is not None and not api.server.registry.committing
        deadline = asyncio.get_running_loop().time() + 10
        while not all(m["metadata"]["uid"] in api.server.gc.uid_key for m in made):
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.02)
        mine = [k for k in decoded if k.startswith("/registry/core/configmaps/default/cm-")]
        assert len(mine) < len(names)  # the committing creates' metadata was read, not decoded
