"""Metrics, in-cluster configuration, active checks, sync users (background sources), the CLI."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import prometheus_client as prom
import pytest
import requests

from servicenet.client import ApiError, wait_for
from servicenet.lb import (
    ApiSource,
    BackgroundSources,
    Balancer,
    Endpoint,
    RequestPolicy,
    RetryBudget,
    call_sync,
)
from servicenet.lb.adapters.requests import LBAdapter
from servicenet.lb.health import ActiveChecker, CheckConfig
from servicenet.lb.incluster import InClusterClient, InClusterError, config, load_incluster
from servicenet.lb.metrics import LbMetrics, PrometheusObserver
from servicenet.lb.outlier import OutlierConfig
from servicenet.testing import running_apiserver

from .backends import backends

ROOT = Path(__file__).resolve().parents[2]


def test_metrics_count_picks_outcomes_ejections_and_budget() -> None:
    reg = prom.CollectorRegistry()
    m = LbMetrics(reg)
    lb = Balancer("round_robin", name="db", outlier=OutlierConfig(consecutive_failures=2))
    budget = RetryBudget(percent=0.5, min_per_sec=0)
    PrometheusObserver(lb, m, budget)
    PrometheusObserver(Balancer("random", name="other"), m)  # a second balancer on the same registry
    lb.update([Endpoint("127.0.0.1", 1), Endpoint("127.0.0.2", 1)])
    policy = RequestPolicy(retries=1, budget=budget, idempotent=True, failed=lambda r: r == "bad")
    for _ in range(4):
        call_sync(lb, lambda b, t: "bad" if b.ep.address == "127.0.0.1" else "ok", policy=policy)
    def v(name: str, **labels: str) -> float:
        return reg.get_sample_value(name, {"balancer": "db", **labels}) or 0.0

    a, b = "127.0.0.1:1", "127.0.0.2:1"
    assert v("servicenet_lb_ejections_total", endpoint=a) == 1.0  # two failures in a row
    assert v("servicenet_lb_results_total", endpoint=a, outcome="failure") == 2.0
    assert v("servicenet_lb_picks_total", endpoint=a) == 2.0
    retries = v("servicenet_lb_retries")
    assert retries >= 1 and v("servicenet_lb_picks_total", endpoint=b) == 2.0 + retries
    assert v("servicenet_lb_results_total", endpoint=b, outcome="success") == 2.0 + retries
    assert v("servicenet_lb_latency_seconds_count", endpoint=b) == 2.0 + retries
    assert v("servicenet_lb_retries_refused") == 2.0 - retries
    assert "servicenet_lb_retry_budget_balance" in prom.generate_latest(reg).decode()


def test_incluster_config_follows_the_standard_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sa = tmp_path / "sa"
    sa.mkdir()
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(InClusterError, match="KUBERNETES_SERVICE_HOST"):
        load_incluster(sa)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "fd00::1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    with pytest.raises(InClusterError, match="token"):
        load_incluster(sa)
    (sa / "token").write_text("tok\n")
    (sa / "ca.crt").write_bytes(b"PEM")
    (sa / "namespace").write_text("awx")
    cfg = load_incluster(sa)
    assert (cfg.server, cfg.token, cfg.ca_data, cfg.namespace) == ("https://[fd00::1]:443", "tok", b"PEM", "awx")
    assert config(sa_dir=sa).server == "https://[fd00::1]:443"  # no kubeconfig given: in-cluster


async def test_api_source_with_incluster_config_against_a_real_server(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The in-cluster path end to end from the test process (a pod's view is in test_in_pod)."""
    async with running_apiserver(tmp_path / "api") as api:
        kc = api.client.config
        sa = tmp_path / "sa"
        sa.mkdir()
        (sa / "token").write_text(kc.token or "")
        (sa / "ca.crt").write_bytes(kc.ca_data or b"")
        (sa / "namespace").write_text("default")
        host, _, port = kc.server.removeprefix("https://").rpartition(":")
        monkeypatch.setenv("KUBERNETES_SERVICE_HOST", host)
        monkeypatch.setenv("KUBERNETES_SERVICE_PORT", port)
        await api.client.create("v1", "services", "default", {
            "metadata": {"name": "db"}, "spec": {"clusterIP": "None", "ports": [{"port": 5432}]}})
        await api.client.create("discovery.k8s.io/v1", "endpointslices", "default", {
            "metadata": {"name": "db-1", "labels": {"kubernetes.io/service-name": "db"}},
            "addressType": "IPv4", "ports": [{"port": 5432}],
            "endpoints": [{"addresses": ["127.0.0.9"], "hostname": "db-0"}]})
        lb = Balancer()
        src = ApiSource("db", client=None, in_cluster=True, sa_dir=sa)
        src.subscribe(lb)
        src.token_check = 0.05
        async with src:
            assert src.namespace == "default"
            assert [b.key for b in lb.eligible] == ["127.0.0.9:5432"]
            assert isinstance(src.client, InClusterClient)
            # the node rotates the token: the client follows the file
            (sa / "token").write_text("rotated-but-bogus")
            await wait_for(lambda: src.client.token == "rotated-but-bogus", 5)
            with pytest.raises(ApiError) as err:
                await src.client.get("v1", "services", "default", "db")
            assert err.value.status == 401
            (sa / "token").write_text(kc.token or "")
            await wait_for(lambda: src.client.token == kc.token, 5)
            await api.client.patch("discovery.k8s.io/v1", "endpointslices", "default", "db-1",
                                   {"endpoints": [{"addresses": ["127.0.0.9"]}, {"addresses": ["127.0.0.10"]}]},
                                   patch_type="merge")
            await wait_for(lambda: len(lb.eligible) == 2, 10)


async def test_active_checks_take_a_dead_endpoint_out() -> None:
    with backends(("a", 200, 0), ("a2", 200, 0), ("b", 500, 0)) as bs:
        lb = Balancer("round_robin")
        lb.update([b.endpoint for b in bs] + [Endpoint("127.0.0.1", 9)])
        chk = ActiveChecker(lb, CheckConfig(unhealthy=1, http_path="/"))
        await chk.check_once()  # the 500 and the closed port fail: 2 of 4 left (not below panic's 50 %)
        assert sorted(b.ep.port for b in lb.eligible) == sorted([bs[0].port, bs[1].port]) and not lb.panic
        tcp = ActiveChecker(lb, CheckConfig(unhealthy=1))
        await tcp.check_once()  # a TCP probe only needs the port to accept
        assert sorted(b.ep.port for b in lb.eligible) == sorted(b.port for b in bs)
        bs[0].status = bs[1].status = 503
        await chk.check_once()  # three of four fail: panic mode spreads over all of them
        assert lb.panic and len(lb.eligible) == 4


async def test_background_sources_serve_a_sync_program(tmp_path: Path) -> None:
    with backends(("a", 200, 0), ("b", 200, 0)) as bs:
        async with running_apiserver(tmp_path / "api") as api:
            await api.client.create("v1", "services", "default", {
                "metadata": {"name": "web"}, "spec": {"clusterIP": "None", "ports": [{"port": 80}]}})
            await api.client.create("discovery.k8s.io/v1", "endpointslices", "default", {
                "metadata": {"name": "web-1", "labels": {"kubernetes.io/service-name": "web"}},
                "addressType": "IPv4", "ports": [{"port": bs[0].port}],
                "endpoints": [{"addresses": ["127.0.0.1"]}]})
            lb = Balancer("round_robin")
            result: dict[str, object] = {}

            def sync_program() -> None:  # a plain thread: requests + a source on a background loop
                src = ApiSource("web", "default", kubeconfig=str(api.kubeconfig))
                src.subscribe(lb)
                with BackgroundSources(src):
                    s = requests.Session()
                    s.mount("http://web", LBAdapter(lb))
                    result["answers"] = Counter(s.get("http://web/", timeout=5).text for _ in range(4))

            t = threading.Thread(target=sync_program)
            t.start()
            while t.is_alive():
                await asyncio.sleep(0.05)
            assert result["answers"] == {"a": 4}


async def test_endpoints_command_prints_the_live_set(tmp_path: Path) -> None:
    async with running_apiserver(tmp_path / "api") as api:
        await api.client.create("v1", "services", "default", {
            "metadata": {"name": "web"}, "spec": {"clusterIP": "None", "ports": [{"name": "http", "port": 80}],
                                                  "trafficDistribution": "PreferClose"}})
        await api.client.create("discovery.k8s.io/v1", "endpointslices", "default", {
            "metadata": {"name": "web-1", "labels": {"kubernetes.io/service-name": "web"}},
            "addressType": "IPv4", "ports": [{"name": "http", "port": 8080}],
            "endpoints": [{"addresses": ["127.0.0.5"], "zone": "a", "hints": {"forZones": [{"name": "a"}]},
                           "targetRef": {"kind": "Pod", "name": "web-0"}},
                          {"addresses": ["127.0.0.6"], "conditions": {"ready": False, "serving": True,
                                                                      "terminating": True}}]})
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        base = [sys.executable, "-m", "servicenet.cli", "endpoints", "web", "--kubeconfig", str(api.kubeconfig)]
        proc = await asyncio.create_subprocess_exec(*base, "-o", "json", "--zone", "a", env=env,
                                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()
        doc = json.loads(out.decode().splitlines()[0])
        rows = {r["endpoint"]: r for r in doc["endpoints"]}
        assert rows["127.0.0.5:8080"]["used"] and rows["127.0.0.5:8080"]["hints"] == "a"
        assert rows["127.0.0.5:8080"]["name"] == "web-0"
        assert rows["127.0.0.6:8080"]["conditions"] == "serving,terminating" and not rows["127.0.0.6:8080"]["used"]
        proc = await asyncio.create_subprocess_exec(*base, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        out, _ = await proc.communicate()
        assert "127.0.0.5:8080" in out.decode() and "CONDITIONS" in out.decode()
        proc = await asyncio.create_subprocess_exec(*base[:-2], "--kubeconfig", str(tmp_path / "nope"), env=env,
                                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _, err = await proc.communicate()
        assert proc.returncode == 1 and "kubeconfig not found" in err.decode()
