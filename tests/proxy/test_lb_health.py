"""LoadBalancer allocator (pure plan + API shell against a fake client) and health semantics."""

from __future__ import annotations

import json

from servicenet.proxy.health import HealthCheckService, ProxierHealth, node_eligible, service_health_response
from servicenet.proxy.lb_allocator import Assignment, LBAllocator, plan, status_patch

from . import helpers as h


def _lb(name: str, ts: str, ips: list[str] | None = None, req: str | None = None, type_: str = "LoadBalancer") -> dict:
    s = h.service("default", name, "10.96.0.5", [h.port(80)], type_=type_, lb_ips=ips)
    s["metadata"]["creationTimestamp"] = ts
    if req:
        s["spec"]["loadBalancerIP"] = req
    return s


def test_plan_keeps_assigns_honours_requests_and_clears() -> None:
    svcs = [_lb("a", "2024-01-01T00:00:01Z", ["10.255.255.1"]), _lb("b", "2024-01-01T00:00:02Z"),
            _lb("c", "2024-01-01T00:00:03Z", req="10.255.255.9"),
            _lb("d", "2024-01-01T00:00:04Z", ["10.255.255.3"], type_="ClusterIP")]
    out, starved = plan(svcs, "10.255.255.0/24")
    assert out == [Assignment("default", "d", ()), Assignment("default", "b", ("10.255.255.2",)),
                   Assignment("default", "c", ("10.255.255.9",))]
    assert starved == []
    assert status_patch(out[1]) == {"status": {"loadBalancer": {"ingress": [{"ip": "10.255.255.2", "ipMode": "VIP"}]}}}


def test_plan_exhaustion_and_duplicates() -> None:
    svcs = [_lb("a", "1", ["10.0.0.1"]), _lb("b", "2", ["10.0.0.1"]), _lb("c", "3")]
    out, starved = plan(svcs, "10.0.0.0/30")  # hosts .1 and .2
    assert out == [Assignment("default", "b", ("10.0.0.2",))]
    assert starved == [("default", "c")]


class FakeInformer:
    def __init__(self, objs: list[dict]) -> None:
        self.objs = objs

    def add_handler(self, fn: object) -> None:
        pass

    def list(self) -> list[dict]:
        return self.objs


class FakeClient:
    def __init__(self) -> None:
        self.patches: list[tuple] = []

    async def patch(self, api: str, plural: str, ns: str, name: str, body: dict, **kw: object) -> dict:
        self.patches.append((api, plural, ns, name, body, kw))
        return {}


async def test_allocator_shell_patches_status() -> None:
    client = FakeClient()
    alloc = LBAllocator(client, FakeInformer([_lb("web", "1")]), "127.98.0.0/24")
    await alloc.reconcile_once()
    assert client.patches == [("v1", "services", "default", "web",
                                {"status": {"loadBalancer": {"ingress": [{"ip": "127.98.0.1", "ipMode": "VIP"}]}}},
                                {"patch_type": "merge", "subresource": "status"})]


def test_proxier_health() -> None:
    hs = ProxierHealth(timeout=60)
    assert hs.healthy(0) and hs.response(0)[0] == 200
    hs.queued(100)
    hs.queued(130)  # the oldest pending update counts
    assert hs.healthy(159) and not hs.healthy(161)
    code, body = hs.response(161)
    assert code == 503 and json.loads(body)["lastUpdated"] == "0001-01-01 00:00:00 +0000 UTC"
    hs.updated(162)
    assert hs.healthy(1000)
    hs.node_eligible = False
    assert hs.response(1000)[0] == 503 and hs.response(1000, livez=True)[0] == 200
    assert json.loads(hs.response(1000)[1])["nodeEligible"] is False


def test_node_eligible() -> None:
    assert node_eligible(None)
    assert not node_eligible({"metadata": {"deletionTimestamp": "2024-01-01T00:00:00Z"}})
    assert not node_eligible({"metadata": {}, "spec": {"taints": [{"key": "ToBeDeletedByClusterAutoscaler"}]}})


def test_service_health_response() -> None:
    code, raw = service_health_response(HealthCheckService("ns", "web", 31000, 2), True)
    head, body = raw.split(b"\r\n\r\n")
    assert code == 200 and b"X-Load-Balancing-Endpoint-Weight: 2" in head
    assert json.loads(body) == {"service": {"namespace": "ns", "name": "web"}, "localEndpoints": 2,
                                "serviceProxyHealthy": True}
    assert service_health_response(HealthCheckService("ns", "web", 31000, 0), True)[0] == 503
    assert service_health_response(HealthCheckService("ns", "web", 31000, 3), False)[0] == 503
