"""Helpers of bench/dns/programming.py (the at-scale programming-latency benchmark)."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "dns" / "programming.py"


def _load():
    spec = importlib.util.spec_from_file_location("bench_dns_programming", BENCH)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(mod)
    return mod


P = _load()


def test_percentile_nearest_rank() -> None:
    vals = [float(v) for v in range(1, 201)]  # 1..200
    assert P.percentile(vals, 50) == 100.0
    assert P.percentile(vals, 90) == 180.0
    assert P.percentile(vals, 99) == 198.0
    assert P.percentile(vals, 100) == 200.0
    assert P.percentile([7.0], 99) == 7.0
    assert math.isnan(P.percentile([], 50))


def test_summarize_counts_unseen_as_infinite() -> None:
    s = P.summarize([3.0, 1.0, 2.0, float("inf")])
    assert s == {"n": 4, "p50_ms": 2.0, "p90_ms": float("inf"), "p99_ms": float("inf"), "max_ms": float("inf")}


def test_coredns_formula_and_verdict() -> None:
    assert P.coredns_memory_mb(100_000, 10_000) == 164.0
    assert P.coredns_memory_mb(0, 0) == 54.0
    assert P.verdict(50.0, 50.0) == "PASS"
    assert P.verdict(50.1, 50.0) == "MISS"
    assert P.verdict(float("nan"), 50.0) == "MISS"
    assert P.verdict(float("inf"), 50.0) == "MISS"


def test_plan_mixes_clusterip_and_headless() -> None:
    plans = P.plan(8, 3)
    assert [p.headless for p in plans] == [False, True] * 4
    assert [p.hostnames for p in plans] == [False, False, False, True] * 2
    assert plans[4].namespace == "ns1" and plans[4].fqdn == "svc4.ns1.svc.cluster.local."
    assert P.service_body(plans[1])["spec"]["clusterIP"] == "None"
    assert "clusterIP" not in P.service_body(plans[0])["spec"]  # the API server allocates it


def test_endpoints_are_unique_and_expected_answer_follows_readiness() -> None:
    a, b = P.plan(4, 1)[1], P.plan(4, 1)[3]
    ea, eb = P.endpoints(a, 3), P.endpoints(b, 3)
    assert [e["addresses"][0] for e in ea] == ["10.128.0.4", "10.128.0.5", "10.128.0.6"]
    assert [e["addresses"][0] for e in eb] == ["10.128.0.10", "10.128.0.11", "10.128.0.12"]
    assert [e.get("hostname") for e in eb] == ["web-0", "web-1", "web-2"]
    ea[1] = {**ea[1], "conditions": {"ready": False}}
    assert P.expected_a(a, ea, None) == {"10.128.0.4", "10.128.0.6"}
    assert P.expected_a(P.plan(1, 1)[0], [], "10.96.0.7") == {"10.96.0.7"}
    body = P.slice_body(a, ea)
    assert body["metadata"]["labels"]["kubernetes.io/service-name"] == "svc1"
    assert body["metadata"]["name"] == "svc1-ep"


def test_next_change_rotates_kinds_and_changes_the_answer() -> None:
    st = P.State(P.plan(10, 2), 4)
    for p in st.plans:
        st.eps[p.index] = P.endpoints(p, 4)
    headless = [p for p in st.plans if p.headless]
    changes = [P.next_change(i, st, headless, 2) for i in range(6)]
    assert [c.kind for c in changes] == ["slice-address", "slice-ready", "service-create"] * 2
    for c in changes:
        if c.eps is None:
            assert c.want is None and not c.svc.headless and c.svc.name.startswith("prog")
            assert c.seen((0, {"10.96.1.1"})) and not c.seen((3, set()))
            continue
        before = P.expected_a(c.svc, st.eps[c.svc.index], None)
        assert c.want != before
        assert not c.seen((0, before)) and c.seen((0, set(c.want)))
    assert changes[0].want is not None and "10.200.0.1" in changes[0].want
    assert changes[1].want is not None and len(changes[1].want) == 3


def test_histogram_delta() -> None:
    before = {'x_bucket{le="0.005"}': 10.0, 'x_bucket{le="+Inf"}': 12.0, "x_count": 12.0}
    after = {'x_bucket{le="0.005"}': 15.0, 'x_bucket{le="+Inf"}': 20.0, "x_count": 20.0}
    assert P.histogram_delta(before, after) == {"0.005": 5, "+Inf": 8}


@pytest.mark.slow
def test_small_run_end_to_end(tmp_path: Path) -> None:
    """The whole harness at toy scale: real apiserver and dns processes, answers verified."""
    out = tmp_path / "r.json"
    res = P.main(["--services", "20", "--samples", "6", "--budget", "90", "--out", str(out)])
    assert json.loads(out.read_text())["programming"]["n"] == 6
    assert res["verify"] == {**res["verify"], "checked": 20, "wrong": 0}
    assert res["programming"]["not_seen_within_bound"] == 0
    assert res["load"]["objects"] == 20 + 20 + 100
    assert res["dns_rss_warm_mib"] > 0
