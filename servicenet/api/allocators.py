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
from typing import Generic, TypeVar

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
V = TypeVar("V")


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


class _BandAllocator(Generic[V]):
    """What both allocators share: values map to offsets in a :class:`_Band`.

    Subclasses set ``size`` and ``_band`` and say how a value maps to an offset (``_offset``,
    raising :class:`ErrNotInRange`) and back (``_value``); ``_what`` names the value in errors.
    """

    size: int
    _band: _Band
    _what = "value"

    def _offset(self, value: V) -> int:
        raise NotImplementedError

    def _value(self, off: int) -> V:
        raise NotImplementedError

    def _try_offset(self, value: V) -> int | None:
        try:
            return self._offset(value)
        except ErrNotInRange:
            return None

    def contains(self, value: V) -> bool:
        return self._try_offset(value) is not None

    def allocate(self, value: V) -> None:
        off = self._offset(value)
        if off in self._band:
            raise ErrAllocated(self._what)
        self._band.add(off)

    def allocate_next(self) -> V:
        off = self._band.next()
        if off is None:
            raise ErrFull()
        self._band.add(off)
        return self._value(off)

    def release(self, value: V) -> bool:
        """Free ``value``; returns False if it was not allocated (or not in range)."""
        off = self._try_offset(value)
        if off is None or off not in self._band:
            return False
        self._band.discard(off)
        return True

    def is_allocated(self, value: V) -> bool:
        off = self._try_offset(value)
        return off is not None and off in self._band

    def mark_allocated(self, values: Iterable[V]) -> MarkResult:
        """Bulk-restore allocations; never raises, reports duplicates and foreign values."""
        dups: list[str] = []
        out: list[str] = []
        for v in values:
            off = self._try_offset(v)
            if off is None:
                out.append(str(v))
                continue
            if off in self._band:
                dups.append(str(v))
            self._band.add(off)
        return MarkResult(tuple(dups), tuple(out))

    @property
    def used(self) -> int:
        return len(self._band)

    @property
    def free(self) -> int:
        return self.size - len(self._band)

    def allocated(self) -> list[V]:
        return [self._value(o) for o in sorted(self._band.used)]


class ServiceIPAllocator(_BandAllocator[str]):
    """Allocates addresses from one service CIDR (IPv4 or IPv6).

    Usable addresses start at network+1; for IPv4 the broadcast address is excluded too.
    Offsets below :attr:`static_size` form the static band.
    """

    _what = "IP"

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

    def _value(self, off: int) -> str:
        cls = ipaddress.IPv4Address if self.network.version == 4 else ipaddress.IPv6Address
        return str(cls(self._base + off))


class NodePortAllocator(_BandAllocator[int]):
    """Allocates ports from ``[base, base+size)`` (default 30000-32767)."""

    _what = "port"

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

    def _value(self, off: int) -> int:
        return self.base + off
