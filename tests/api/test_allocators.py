from __future__ import annotations

import ipaddress
import random

import pytest

from servicenet.api.allocators import (
    ErrAllocated,
    ErrFull,
    ErrNotInRange,
    NodePortAllocator,
    ServiceIPAllocator,
    range_offset,
)


@pytest.mark.parametrize("size,expected", [(16, 0), (8, 0), (17, 16), (256, 16), (4096, 256), (2**20, 256), (1024, 64)])
def test_ip_static_band_size(size: int, expected: int) -> None:
    assert range_offset(size, 16, 256, 16) == expected


def test_static_band_for_common_cidrs() -> None:
    assert ServiceIPAllocator("10.96.0.0/12").static_size == 256
    assert ServiceIPAllocator("10.0.0.0/24").static_size == 16
    assert ServiceIPAllocator("10.0.0.0/28").static_size == 0
    assert NodePortAllocator().static_size == 86
    assert NodePortAllocator(30000, 100).static_size == 16


def test_ipv4_index_and_bounds() -> None:
    a = ServiceIPAllocator("10.96.0.0/12")
    assert a.first() == "10.96.0.1"
    assert a.index(10) == "10.96.0.10"
    assert a.size == 2**20 - 2
    a.allocate("10.96.0.1")
    with pytest.raises(ErrAllocated, match="^provided IP is already allocated$"):
        a.allocate("10.96.0.1")
    with pytest.raises(ErrNotInRange) as ei:
        a.allocate("10.96.0.0")
    assert str(ei.value) == ("the provided IP (10.96.0.0) is not in the valid range. "
                             "The range of valid IPs is 10.96.0.0/12")
    with pytest.raises(ErrNotInRange):
        a.allocate("10.111.255.255")  # broadcast
    a.allocate("10.111.255.254")
    with pytest.raises(ErrNotInRange):
        a.allocate("10.112.0.1")
    with pytest.raises(ErrNotInRange):
        a.allocate("fd00::1")
    with pytest.raises(ErrNotInRange):
        a.allocate("not-an-ip")


def test_dynamic_allocations_land_in_upper_band() -> None:
    a = ServiceIPAllocator("10.0.0.0/24", rng=random.Random(7))
    assert a.static_size == 16
    upper = 254 - 16
    got = [a.allocate_next() for _ in range(upper)]
    assert len(set(got)) == upper
    offsets = sorted(int(ipaddress.ip_address(ip)) - int(ipaddress.ip_address("10.0.0.1")) for ip in got)
    assert offsets == list(range(16, 254))
    # upper band exhausted: falls back to the static band
    nxt = a.allocate_next()
    assert ipaddress.ip_address("10.0.0.1") <= ipaddress.ip_address(nxt) <= ipaddress.ip_address("10.0.0.16")
    for _ in range(15):
        a.allocate_next()
    with pytest.raises(ErrFull, match="^range is full$"):
        a.allocate_next()
    assert a.free == 0
    assert a.release("10.0.0.200") is True
    assert a.release("10.0.0.200") is False
    assert a.allocate_next() == "10.0.0.200"


def test_random_start_spreads() -> None:
    a = ServiceIPAllocator("10.96.0.0/12", rng=random.Random(1))
    got = {a.allocate_next() for _ in range(50)}
    assert len(got) == 50
    assert all(int(ipaddress.ip_address(ip)) > int(ipaddress.ip_address("10.96.1.0")) for ip in got)


def test_ipv6() -> None:
    a = ServiceIPAllocator("fd00:10:96::/112", rng=random.Random(3))
    assert a.family == "IPv6"
    assert a.first() == "fd00:10:96::1"
    assert a.size == 65535  # network address excluded, last address usable
    assert a.static_size == 256
    a.allocate("fd00:10:96::ffff")
    ip = a.allocate_next()
    assert ipaddress.ip_address(ip) in ipaddress.ip_network("fd00:10:96::/112")
    assert int(ipaddress.ip_address(ip)) - int(ipaddress.ip_address("fd00:10:96::1")) >= 256
    with pytest.raises(ErrNotInRange):
        a.allocate("fd00:10:96::")
    with pytest.raises(ErrNotInRange):
        a.allocate("10.0.0.1")
    big = ServiceIPAllocator("fd00::/64")
    assert big.static_size == 256
    assert big.allocate_next() != big.allocate_next()


def test_mark_allocated_reports_duplicates() -> None:
    a = ServiceIPAllocator("10.0.0.0/24")
    r = a.mark_allocated(["10.0.0.1", "10.0.0.10", "10.0.0.1", "192.168.0.1"])
    assert r.duplicates == ("10.0.0.1",)
    assert r.out_of_range == ("192.168.0.1",)
    assert a.allocated() == ["10.0.0.1", "10.0.0.10"]
    assert a.is_allocated("10.0.0.10")


def test_tiny_range_has_no_static_band() -> None:
    a = ServiceIPAllocator("10.0.0.0/29", rng=random.Random(0))
    assert a.size == 6
    assert sorted(a.allocate_next() for _ in range(6)) == [f"10.0.0.{i}" for i in range(1, 7)]
    with pytest.raises(ErrFull):
        a.allocate_next()


def test_nodeport() -> None:
    p = NodePortAllocator(rng=random.Random(5))
    assert p.range_string() == "30000-32767"
    p.allocate(30000)
    with pytest.raises(ErrAllocated, match="^provided port is already allocated$"):
        p.allocate(30000)
    with pytest.raises(ErrNotInRange) as ei:
        p.allocate(32768)
    assert str(ei.value) == ("provided port is not in the valid range. "
                             "The range of valid ports is 30000-32767")
    got = [p.allocate_next() for _ in range(200)]
    assert all(30086 <= x <= 32767 for x in got)
    assert len(set(got)) == 200
    assert p.release(got[0]) and not p.release(got[0])
    assert p.mark_allocated([30001, 30001, 29999]).duplicates == ("30001",)


def test_nodeport_exhaustion() -> None:
    p = NodePortAllocator(30000, 40, rng=random.Random(2))
    assert p.static_size == 16
    got = [p.allocate_next() for _ in range(40)]
    assert got[:24] and all(x >= 30016 for x in got[:24])
    assert sorted(got) == list(range(30000, 30040))
    with pytest.raises(ErrFull):
        p.allocate_next()
