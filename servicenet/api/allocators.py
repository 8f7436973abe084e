"""ClusterIP and NodePort allocators (pure, in memory).

Both split their range into a *static* lower band (meant for addresses/ports users pick by hand)
and a *dynamic* upper band. Automatic allocation starts at a random offset in the upper band and
scans linearly, then tries the lower band, then fails with :class:`ErrFull`. The API server
rebuilds them on start from the stored Services with :meth:`mark_allocated`.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterable
from dataclasses import dataclass

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class AllocationError(Exception):
    """Base class of allocator failures."""


class ErrFull(AllocationError):
    def __init__(self) -> None:
        super().__init__("range is full")


class ErrAllocated(AllocationError):
    def __init__(self, what: str = "IP") -> None:
        super().__init__(f"provided {what} is already allocated")


class ErrNotInRange(AllocationError):
    def __init__(self, message: str, valid_range: str) -> None:
        super().__init__(message)
        self.valid_range = valid_range


@dataclass(frozen=True, slots=True)
class MarkResult:
    """What :meth:`mark_allocated` found: values seen twice, and values outside the range."""

    duplicates: tuple[str, ...]
    out_of_range: tuple[str, ...]


class _Band:
    """A set of allocated offsets in ``[0, size)`` with the static/dynamic split."""

    def __init__(self, size: int, offset: int, rng: random.Random | None) -> None:
        self.size = size
        self.offset = offset
        self.used: set[int] = set()
        self._low = 0  # allocated offsets below ``offset``
        self._rng = rng or random.Random()

    def __contains__(self, off: int) -> bool:
        return off in self.used

    def __len__(self) -> int:
        return len(self.used)

    def add(self, off: int) -> None:
        if off not in self.used:
            self.used.add(off)
            if off < self.offset:
                self._low += 1

    def discard(self, off: int) -> None:
        if off in self.used:
            self.used.discard(off)
            if off < self.offset:
                self._low -= 1

    def _scan(self, lo: int, hi: int, used_here: int) -> int | None:
        width = hi - lo
        if width <= 0 or used_here >= width:
            return None
        start = self._rng.randrange(width)
        for i in range(width):
            at = lo + (start + i) % width
            if at not in self.used:
                return at
        return None

    def next(self) -> int | None:
        at = self._scan(self.offset, self.size, len(self.used) - self._low)
        if at is None:
            at = self._scan(0, self.offset, self._low)
        return at


def range_offset(size: int, minimum: int, maximum: int, step: int) -> int:
    """Size of the static band: ``min(max(minimum, size/step), maximum)``, 0 for tiny ranges."""
    if size <= minimum:
        return 0
    return min(max(minimum, size // step), maximum)


class ServiceIPAllocator:
    """Allocates addresses from one service CIDR (IPv4 or IPv6).

    Usable addresses start at network+1; for IPv4 the broadcast address is excluded too.
    Offsets below :attr:`static_size` form the static band.
    """

    def __init__(self, cidr: str, rng: random.Random | None = None) -> None:
        self.network = ipaddress.ip_network(cidr, strict=False)
        self.cidr = str(self.network)
        self.family = "IPv4" if self.network.version == 4 else "IPv6"
        total = self.network.num_addresses
        size = total - 1  # network address
        if self.network.version == 4:
            size -= 1  # broadcast
        self.size = max(size, 0)
        self.static_size = range_offset(total, 16, 256, 16)
        self._base = int(self.network.network_address) + 1
        self._band = _Band(self.size, min(self.static_size, self.size), rng)

    # -- helpers
    def index(self, n: int) -> str:
        """The ``n``-th address of the CIDR (network address + n); 1 is the ``kubernetes`` Service."""
        return str(self.network.network_address + n)

    def first(self) -> str:
        return self.index(1)

    def _offset(self, ip: str) -> int:
        try:
            addr = ipaddress.ip_address(ip)
        except ValueError as e:
            raise ErrNotInRange(self._not_in_range(ip), self.cidr) from e
        off = int(addr) - self._base
        if addr.version != self.network.version or not 0 <= off < self.size:
            raise ErrNotInRange(self._not_in_range(ip), self.cidr)
        return off

    def _not_in_range(self, ip: str) -> str:
        return (f"the provided IP ({ip}) is not in the valid range. "
                f"The range of valid IPs is {self.cidr}")

    def _ip(self, off: int) -> str:
        cls = ipaddress.IPv4Address if self.network.version == 4 else ipaddress.IPv6Address
        return str(cls(self._base + off))

    # -- API
    def contains(self, ip: str) -> bool:
        try:
            self._offset(ip)
        except ErrNotInRange:
            return False
        return True

    def allocate(self, ip: str) -> None:
        off = self._offset(ip)
        if off in self._band:
            raise ErrAllocated("IP")
        self._band.add(off)

    def allocate_next(self) -> str:
        off = self._band.next()
        if off is None:
            raise ErrFull()
        self._band.add(off)
        return self._ip(off)

    def release(self, ip: str) -> bool:
        """Free ``ip``; returns False if it was not allocated (or not in range)."""
        try:
            off = self._offset(ip)
        except ErrNotInRange:
            return False
        if off not in self._band:
            return False
        self._band.discard(off)
        return True

    def is_allocated(self, ip: str) -> bool:
        try:
            return self._offset(ip) in self._band
        except ErrNotInRange:
            return False

    def mark_allocated(self, ips: Iterable[str]) -> MarkResult:
        """Bulk-restore allocations; never raises, reports duplicates and foreign addresses."""
        dups: list[str] = []
        out: list[str] = []
        for ip in ips:
            try:
                off = self._offset(ip)
            except ErrNotInRange:
                out.append(ip)
                continue
            if off in self._band:
                dups.append(ip)
            self._band.add(off)
        return MarkResult(tuple(dups), tuple(out))

    @property
    def used(self) -> int:
        return len(self._band)

    @property
    def free(self) -> int:
        return self.size - len(self._band)

    def allocated(self) -> list[str]:
        return [self._ip(o) for o in sorted(self._band.used)]


class NodePortAllocator:
    """Allocates ports from ``[base, base+size)`` (default 30000-32767)."""

    def __init__(self, base: int = 30000, size: int = 2768, rng: random.Random | None = None) -> None:
        self.base = base
        self.size = size
        self.static_size = range_offset(size, 16, 128, 32)
        self._band = _Band(size, self.static_size, rng)

    def range_string(self) -> str:
        return f"{self.base}-{self.base + self.size - 1}"

    def _offset(self, port: int) -> int:
        off = port - self.base
        if not 0 <= off < self.size:
            raise ErrNotInRange(f"provided port is not in the valid range. The range of valid ports is "
                                f"{self.range_string()}", self.range_string())
        return off

    def contains(self, port: int) -> bool:
        return 0 <= port - self.base < self.size

    def allocate(self, port: int) -> None:
        off = self._offset(port)
        if off in self._band:
            raise ErrAllocated("port")
        self._band.add(off)

    def allocate_next(self) -> int:
        off = self._band.next()
        if off is None:
            raise ErrFull()
        self._band.add(off)
        return self.base + off

    def release(self, port: int) -> bool:
        if not self.contains(port) or (port - self.base) not in self._band:
            return False
        self._band.discard(port - self.base)
        return True

    def is_allocated(self, port: int) -> bool:
        return self.contains(port) and (port - self.base) in self._band

    def mark_allocated(self, ports: Iterable[int]) -> MarkResult:
        dups: list[str] = []
        out: list[str] = []
        for p in ports:
            if not self.contains(p):
                out.append(str(p))
                continue
            if (p - self.base) in self._band:
                dups.append(str(p))
            self._band.add(p - self.base)
        return MarkResult(tuple(dups), tuple(out))

    @property
    def used(self) -> int:
        return len(self._band)

    @property
    def free(self) -> int:
        return self.size - len(self._band)

    def allocated(self) -> list[int]:
        return [self.base + o for o in sorted(self._band.used)]
