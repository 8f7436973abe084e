"""Pure policy tables: no sockets, a fake clock, seeded randomness."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter

import pytest

from servicenet.lb.balancer import Balancer, NoEndpoints
from servicenet.lb.hashing import KetamaRing, MaglevTable, hash64
from servicenet.lb.model import Endpoint


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def eps(n: int, **kw: object) -> list[Endpoint]:
    return [Endpoint(f"127.10.{i // 250}.{i % 250 + 1}", 80, **kw) for i in range(n)]  # type: ignore[arg-type]


def test_round_robin_is_exactly_even() -> None:
    b = Balancer("round_robin", rng=random.Random(1))
    b.update(eps(3))
    c = Counter(b.pick().key for _ in range(3000))
    assert sorted(c.values()) == [1000, 1000, 1000]


def test_weighted_round_robin_follows_weights_smoothly() -> None:
    b = Balancer("round_robin", rng=random.Random(1))
    b.update([Endpoint("127.0.0.1", 1, weight=5), Endpoint("127.0.0.2", 1, weight=1),
              Endpoint("127.0.0.3", 1, weight=1)])
    seq = [b.pick().ep.address for _ in range(70)]
    assert Counter(seq) == {"127.0.0.1": 50, "127.0.0.2": 10, "127.0.0.3": 10}
    assert "127.0.0.2" in seq[:7] and "127.0.0.3" in seq[:7]  # smooth: no long run of one host


def test_weighted_random() -> None:
    b = Balancer("random", rng=random.Random(3))
    b.update([Endpoint("127.0.0.1", 1, weight=3), Endpoint("127.0.0.2", 1, weight=1)])
    c = Counter(b.pick().ep.address for _ in range(20000))
    assert 0.72 < c["127.0.0.1"] / 20000 < 0.78


def test_p2c_prefers_the_less_loaded() -> None:
    b = Balancer("least_outstanding", rng=random.Random(7))
    b.update(eps(10))
    busy = b.members[3]
    busy.outstanding = 10  # ten requests in flight on one endpoint
    picks = Counter()
    for _ in range(5000):
        x = b.pick()
        picks[x.key] += 1
        b.done(x, True, 0.001)
    assert picks[busy.key] == 0  # every pair it is in has a less loaded partner
    assert len(picks) == 9 and min(picks.values()) > 400
    # two endpoints: always the one with fewer requests in flight
    b2 = Balancer("least_outstanding", rng=random.Random(1))
    b2.update(eps(2))
    held = [b2.pick() for _ in range(10)]
    assert Counter(h.key for h in held) == {b2.members[0].key: 5, b2.members[1].key: 5}


def test_peak_ewma_converges_after_a_latency_step() -> None:
    clock = Clock()
    tau = 10.0
    b = Balancer("peak_ewma", clock=clock, ewma_tau=tau, rng=random.Random(2))
    b.update(eps(1))
    x = b.members[0]
    for _ in range(100):  # steady 10 ms, one sample every 100 ms
        clock.t += 0.1
        b.done(b.pick(), True, 0.010)
    assert abs(x.cost - 0.010) < 1e-6
    clock.t += 0.1
    b.done(b.pick(), True, 0.100)  # step up: the peak is taken at once
    assert x.cost == pytest.approx(0.100)
    steps = 0
    while x.cost > 0.0105:  # step down: decays toward 10 ms with time constant tau
        clock.t += 0.1
        b.done(b.pick(), True, 0.010)
        steps += 1
    # e^-(t/tau) * 90 ms < 0.5 ms  =>  t ~ tau * ln(180) ~ 52 s ~ 520 samples
    assert 450 < steps < 600, steps
    assert abs(x.cost - 0.010) < 0.0006


def test_peak_ewma_avoids_a_slow_endpoint() -> None:
    clock = Clock()
    b = Balancer("peak_ewma", clock=clock, rng=random.Random(5))
    b.update(eps(10))
    slow = b.members[0].key
    c = Counter()
    for _ in range(10000):
        clock.t += 0.001
        x = b.pick()
        c[x.key] += 1
        b.done(x, True, 0.100 if x.key == slow else 0.010)
    assert c[slow] < 100, c[slow]  # round robin would send 1,000


def test_no_endpoints_is_a_clear_error() -> None:
    b = Balancer("peak_ewma")
    with pytest.raises(NoEndpoints):
        b.pick()


def _moved(cls: type, names: list[str], drop: int, keys: list[int]) -> tuple[float, float]:
    before = cls(names)
    rest = names[:drop] + names[drop + 1:]
    after = cls(rest)
    moved = sum(1 for k in keys if names[before.lookup(k)] != rest[after.lookup(k)])
    on_removed = sum(1 for k in keys if before.lookup(k) == drop)
    return moved / len(keys), on_removed / len(keys)


@pytest.mark.parametrize("n", [10, 100])
def test_ring_hash_moves_only_the_removed_endpoints_keys(n: int) -> None:
    names = [f"10.1.{i // 250}.{i % 250}:80" for i in range(n)]
    keys = [hash64(f"user-{i}") for i in range(40000)]
    moved, on_removed = _moved(KetamaRing, names, n // 2, keys)
    assert moved == on_removed  # nobody else's keys move
    assert 0.7 / n < moved < 1.3 / n


@pytest.mark.parametrize("n", [10, 100])
def test_maglev_moves_about_one_nth_and_balances_evenly(n: int) -> None:
    names = [f"10.1.{i // 250}.{i % 250}:80" for i in range(n)]
    keys = [hash64(f"user-{i}") for i in range(40000)]
    moved, on_removed = _moved(MaglevTable, names, n // 2, keys)
    # Maglev keeps most keys in place: the removed endpoint's keys plus a few more; Envoy measures
    # about twice ring hash's churn, the paper's figures show churn growing as N approaches M/100.
    assert on_removed <= moved < 2.5 / n
    counts = Counter(MaglevTable(names).table)
    assert max(counts.values()) - min(counts.values()) <= 1  # "almost perfect" balance (paper §3.4)


def test_hash_policies_are_sticky_per_key() -> None:
    for pol in ("ring_hash", "maglev"):
        b = Balancer(pol)
        b.update(eps(20))
        first = {k: b.pick(key=f"session-{k}").key for k in range(200)}
        assert all(b.pick(key=f"session-{k}").key == first[k] for k in range(200))
        assert len(set(first.values())) > 10


@pytest.mark.parametrize("policy", ["round_robin", "random", "least_outstanding", "peak_ewma", "maglev"])
def test_pick_costs_microseconds_at_1000_endpoints(policy: str) -> None:
    b = Balancer(policy)
    b.update(eps(1000))
    n = 20000
    best = float("inf")
    for _ in range(3):  # the best of three runs of CPU time: the CPU is shared with other tests
        t0 = time.thread_time()
        for _ in range(n):
            b.done(b.pick(), True, 0.001)
        best = min(best, (time.thread_time() - t0) / n)
    # A guard against an algorithmic regression (a scan of the fleet costs ~100 us at 1,000 endpoints),
    # loose enough for a loaded CI machine; the 5 us target itself is measured and printed by
    # bench/clientlb (benchmarks, not timed tests).
    assert best < 25e-6, f"{policy}: {best * 1e6:.2f} us per pick+done"


@pytest.mark.parametrize("policy", ["round_robin", "least_outstanding", "peak_ewma"])
def test_thread_safe_for_sync_users(policy: str) -> None:
    b = Balancer(policy)
    b.update(eps(10))
    n, threads = 5000, 4
    errors: list[BaseException] = []
    done = Counter()

    def work() -> None:
        try:
            for i in range(n):
                x = b.pick()
                if i % 500 == 0:
                    b.update(eps(10 if i % 1000 else 9))  # the set changes under the pickers
                b.done(x, True, 0.001)
                done[threading.get_ident()] += 1
        except BaseException as exc:  # a thread's exception would not fail the test by itself
            errors.append(exc)

    ts = [threading.Thread(target=work) for _ in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    b.update(eps(10))
    assert errors == [] and sum(done.values()) == n * threads
    assert all(m.outstanding == 0 for m in b.members)
