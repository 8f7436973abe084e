"""Pure tables: endpoint selection (drain, topology, subsetting), outlier ejection, retry budget."""

from __future__ import annotations

import random
from collections import Counter

from servicenet.lb.balancer import Balancer
from servicenet.lb.budget import RetryBudget
from servicenet.lb.model import Endpoint, Topology, role_of, subset, usable
from servicenet.lb.outlier import OutlierConfig
from servicenet.lb.roles import RoleRouter
from servicenet.lb.sources import dns_endpoints, service_topology, slice_endpoints


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def E(addr: str, **kw: object) -> Endpoint:  # noqa: N802
    return Endpoint(addr, 80, **kw)  # type: ignore[arg-type]


def addrs(eps: list[Endpoint]) -> list[str]:
    return sorted(e.address for e in eps)


def test_ready_first_then_serving_terminating_as_upstream_drain() -> None:
    a = E("127.0.0.1")
    draining = E("127.0.0.2", ready=False, serving=True, terminating=True)
    gone = E("127.0.0.3", ready=False, serving=False, terminating=True)
    unready = E("127.0.0.4", ready=False, serving=False)
    assert addrs(usable([a, draining, gone, unready])) == ["127.0.0.1"]
    assert addrs(usable([draining, gone, unready])) == ["127.0.0.2"]  # only when nothing else is left
    assert usable([gone, unready]) == []


def test_topology_hints_node_then_zone_else_all() -> None:
    z = [E("127.0.0.1", zone="a", zone_hints=("a",), node="n1", node_hints=("n1",)),
         E("127.0.0.2", zone="a", zone_hints=("a",), node="n2", node_hints=("n2",)),
         E("127.0.0.3", zone="b", zone_hints=("b",), node="n3", node_hints=("n3",))]
    assert addrs(usable(z, Topology(zone="a", node="n2"))) == ["127.0.0.2"]
    assert addrs(usable(z, Topology(zone="a", node="n9"))) == ["127.0.0.1", "127.0.0.2"]
    assert addrs(usable(z, Topology(zone="c"))) == ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
    partial = z[:2] + [E("127.0.0.3", zone="b")]  # one ready endpoint without hints: ignore hints
    assert len(usable(partial, Topology(zone="a"))) == 3
    nohints = [E("127.0.0.1", zone="a"), E("127.0.0.2", zone="b")]
    assert addrs(usable(nohints, Topology(zone="a", prefer_close=True))) == ["127.0.0.1"]
    assert len(usable(nohints, Topology(zone="a"))) == 2


def test_deterministic_subsetting_is_stable_and_even() -> None:
    fleet = [E(f"127.1.0.{i}") for i in range(1, 101)]
    assert subset(fleet, 7, 10) == subset(list(reversed(fleet)), 7, 10)
    load = Counter(e.key for c in range(200) for e in subset(fleet, c, 10))
    assert len(load) == 100 and set(load.values()) == {20}  # every backend serves 20 of 200 clients
    assert len(subset(fleet, 3, 500)) == 100


def test_slice_conversion_conditions_hints_and_ports() -> None:
    sl = {"addressType": "IPv4", "ports": [{"name": "web", "port": 8080}, {"name": "m", "port": 9100}],
          "endpoints": [
              {"addresses": ["10.0.0.1"], "conditions": {"ready": True}, "hostname": "web-0",
               "targetRef": {"kind": "Pod", "name": "web-0"}, "zone": "a", "nodeName": "n1",
               "hints": {"forZones": [{"name": "a"}]}},
              {"addresses": ["10.0.0.2"], "conditions": {"ready": False, "serving": True, "terminating": True}},
              {"addresses": ["10.0.0.3"], "conditions": {}}]}
    old = {"addressType": "IPv4", "ports": [{"name": "web", "port": 8080}],
           "endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": False}}]}
    got = slice_endpoints([old, sl], "web", {"web-0": {"role": "primary"}})
    assert [(e.key, e.ready, e.serving, e.terminating) for e in got] == [
        ("10.0.0.1:8080", True, True, False), ("10.0.0.2:8080", False, True, True),
        ("10.0.0.3:8080", True, True, False)]
    assert got[0].zone_hints == ("a",) and got[0].ordinal == 0 and got[0].label("role") == "primary"
    assert [e.port for e in slice_endpoints([sl], 9100)] == [9100] * 3
    assert [e.port for e in slice_endpoints([sl])] == [8080] * 3
    assert slice_endpoints([sl], "nope") == []
    svc = {"spec": {"trafficDistribution": "PreferClose"}}
    assert service_topology(svc, Topology(zone="a")).prefer_close
    assert not service_topology({"spec": {}}, Topology()).prefer_close


def test_srv_records_carry_weight_and_hostname() -> None:
    got = dns_endpoints([], 80, [("web-1.web-headless.awx.svc.cluster.local.", 8080, 10, ["10.0.0.2"])])
    assert got[0].key == "10.0.0.2:8080" and got[0].weight == 10 and got[0].ordinal == 1


def test_consecutive_failures_eject_with_exponential_backoff() -> None:
    clock = Clock()
    b = Balancer("round_robin", clock=clock, rng=random.Random(1),
                 outlier=OutlierConfig(consecutive_failures=5, base_ejection=30, max_ejection=300))
    b.update([E(f"127.0.0.{i}") for i in range(1, 11)])
    bad = b.members[0]
    for _ in range(4):
        b.done(bad, False)
    assert bad in b.eligible
    b.done(bad, False)
    assert bad not in b.eligible and len(b.eligible) == 9
    clock.t += 29.9
    b.pick()
    assert bad not in b.eligible
    clock.t += 0.2
    b.pick()
    assert bad in b.eligible  # back after 30 s
    for _ in range(5):
        b.done(bad, False)
    clock.t += 59.0
    b.pick()
    assert bad not in b.eligible  # second ejection lasts 60 s
    clock.t += 1.1
    b.pick()
    assert bad in b.eligible


def test_max_ejection_percent_and_panic_threshold() -> None:
    clock = Clock()
    b = Balancer("round_robin", clock=clock, outlier=OutlierConfig(consecutive_failures=1))
    b.update([E(f"127.0.0.{i}") for i in range(1, 11)])
    for m in b.members[:3]:
        b.done(m, False)
    assert len(b.eligible) == 9  # at most 10 % ejected (one host)
    wide = Balancer("round_robin", clock=clock,
                    outlier=OutlierConfig(consecutive_failures=1, max_ejection_percent=100, panic_threshold=50))
    wide.update([E(f"127.0.0.{i}") for i in range(1, 11)])
    for m in wide.members[:5]:
        wide.done(m, False)
    assert len(wide.eligible) == 5 and not wide.panic
    wide.done(wide.members[5], False)
    assert wide.panic and len(wide.eligible) == 10  # under 50 % healthy: spread over everything


def test_failure_rate_ejection_per_interval() -> None:
    clock = Clock()
    cfg = OutlierConfig(consecutive_failures=1000, interval=10, failure_percentage_threshold=50,
                        failure_percentage_request_volume=20, failure_percentage_min_hosts=5)
    b = Balancer("round_robin", clock=clock, outlier=cfg)
    b.update([E(f"127.0.0.{i}") for i in range(1, 7)])
    b.pick()
    for _ in range(30):
        for i, m in enumerate(b.members):
            b.done(m, not (i == 2 and _ % 3))  # endpoint 2 fails two of three
    assert len(b.eligible) == 6
    clock.t += 10.1
    b.pick()
    assert b.members[2] not in b.eligible and len(b.eligible) == 5


def test_retry_budget_percent_and_window() -> None:
    clock = Clock()
    budget = RetryBudget(percent=0.2, min_per_sec=0, ttl=10, clock=clock)
    for _ in range(100):
        budget.deposit()
    assert sum(budget.try_withdraw() for _ in range(30)) == 20
    clock.t += 10.5  # the window moved past every deposit
    assert not budget.try_withdraw()
    floor = RetryBudget(percent=0.0, min_per_sec=1, ttl=10, clock=clock)
    assert sum(floor.try_withdraw() for _ in range(15)) == 10


def test_read_your_writes_roles() -> None:
    clock = Clock()
    r = RoleRouter(clock=clock, ryw_window=2.0)
    r.update([Endpoint(f"127.0.0.{i}", 80, hostname=f"db-{i}") for i in range(3)])
    assert role_of(r.primary.eligible[0].ep) == "primary"
    s = r.session()
    assert s.for_read() is r.replicas
    assert s.for_write().pick().ep.hostname == "db-0"
    assert s.for_read() is r.primary  # read your write
    clock.t += 2.1
    assert {s.for_read().pick().ep.hostname for _ in range(4)} == {"db-1", "db-2"}
    by_label = RoleRouter(label="role")
    by_label.update([Endpoint("127.0.0.1", 1, labels=(("role", "primary"),)), Endpoint("127.0.0.2", 1)])
    assert by_label.primary.pick().ep.address == "127.0.0.1"
