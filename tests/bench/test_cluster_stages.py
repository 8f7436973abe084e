"""Pure parts of the cluster bench's stage split and CPU accounting."""

from __future__ import annotations

from bench.cluster.scale import cpu_split
from bench.cluster.stages import split


def test_split_takes_the_first_matching_event_per_server_and_stage() -> None:
    flips = [(10.0, "probe-0", "10.0.0.5", False), (20.0, "probe-0", "10.0.0.5", True)]
    events = [
        (9.0, 0, "pod", "probe-0", False),  # before the flip: not counted
        (10.010, 0, "pod", "probe-0", False),
        (10.008, 1, "pod", "probe-0", False),
        (10.030, 1, "slice", "probe", ["10.0.0.5"]),  # still ready: not the change
        (10.040, 1, "slice", "probe", []),
        (20.020, 0, "pod", "probe-0", True),
        (20.050, 1, "slice", "probe", ["10.0.0.5"]),
    ]
    out = split(flips, events, servers=2)
    assert out["pod seen on server 0"] == {"n": 2, "p50_ms": 10.0, "p99_ms": 20.0}
    assert out["pod seen on server 1"]["n"] == 1
    assert out["probe slice seen on server 1"] == {"n": 2, "p50_ms": 40.0, "p99_ms": 50.0}
    assert "probe-h slice seen on server 0" not in out


def test_cpu_split_subtracts_the_background_rate() -> None:
    out = cpu_split({"api": 0.5}, 5.0, {"api": 1.2}, 10.0, 40)
    assert out == {"api": {"idle_cores": 0.1, "flip_ms": 5.0}}
