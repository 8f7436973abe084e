"""Consistent hashing for key affinity: a Ketama ring and a Maglev lookup table (pure).

Both are built once per endpoint-set change and looked up in O(log n) (ring) or O(1) (Maglev).
Removing one endpoint of N moves about 1/N of keys on the ring; Maglev trades a few more moved
keys (Envoy measures about twice as many) for a flat, fast table (Eisenbud et al., NSDI 2016).
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Sequence

MAGLEV_TABLE_SIZE = 65537  # prime, as Envoy's default


def hash64(data: bytes | str) -> int:
    if isinstance(data, str):
        data = data.encode()
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


class KetamaRing:
    """Points per endpoint proportional to weight; a key goes to the first point clockwise."""

    def __init__(self, names: Sequence[str], weights: Sequence[int] | None = None,
                 points_per_weight: int = 160) -> None:
        weights = weights or [1] * len(names)
        pts: list[tuple[int, int]] = []
        for idx, (name, w) in enumerate(zip(names, weights, strict=True)):
            n = max(1, int(points_per_weight * w))
            for i in range((n + 3) // 4):
                d = hashlib.md5(f"{name}-{i}".encode()).digest()
                for j in range(4):  # four 32-bit points per digest, as libketama
                    pts.append((int.from_bytes(d[4 * j:4 * j + 4], "little"), idx))
        pts.sort()
        self._hashes = [h for h, _ in pts]
        self._owners = [i for _, i in pts]

    def lookup(self, key_hash: int) -> int:
        if not self._hashes:
            raise LookupError("empty ring")
        i = bisect.bisect(self._hashes, key_hash & 0xFFFFFFFF)
        return self._owners[i if i < len(self._owners) else 0]


class MaglevTable:
    """Maglev's permutation-filled lookup table (paper §3.4, with weights as Envoy's variant)."""

    def __init__(self, names: Sequence[str], weights: Sequence[int] | None = None,
                 size: int = MAGLEV_TABLE_SIZE) -> None:
        n = len(names)
        self.size = size
        self.table: list[int] = []
        if n == 0:
            return
        weights = weights or [1] * n
        wmax = max(weights)
        offsets, skips = [], []
        for name in names:
            h = hashlib.blake2b(name.encode(), digest_size=16).digest()
            offsets.append(int.from_bytes(h[:8], "big") % size)
            skips.append(int.from_bytes(h[8:], "big") % (size - 1) + 1)
        nxt = [0] * n
        table = [-1] * size
        credit = [0.0] * n
        filled = 0
        while True:
            for i in range(n):
                credit[i] += weights[i] / wmax
                if credit[i] < 1.0:
                    continue
                credit[i] -= 1.0
                off, skip = offsets[i], skips[i]
                c = (off + nxt[i] * skip) % size
                while table[c] >= 0:
                    nxt[i] += 1
                    c = (off + nxt[i] * skip) % size
                table[c] = i
                nxt[i] += 1
                filled += 1
                if filled == size:
                    self.table = table
                    return

    def lookup(self, key_hash: int) -> int:
        if not self.table:
            raise LookupError("empty table")
        return self.table[key_hash % self.size]
