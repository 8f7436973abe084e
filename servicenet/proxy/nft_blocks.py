"""Where the endpoints of the nftables load-balancing chains live (pure): which shared endpoint
map (``service-endpoints-<k>``) and which key range of it, and how many such maps a world needs.

Kept apart from :mod:`render_nftables`, which uses it: the state the renderer carries between
syncs (:class:`Blocks`) and the one rule for sizing it (:func:`shards_for`).
"""
from __future__ import annotations

import math
import zlib

from servicenet.proxy.model import DesiredState
from servicenet.proxy.nft_skeleton import ENDPOINT_MAP


class NeedFullSync(Exception):
    """An incremental transaction cannot express this change."""


class Blocks:
    """Where each load-balancing chain's endpoints live: shard map and key range.

    A chain with N >= 2 endpoints owns keys ``[base, base + cap)`` (one key space across
    shards), ``cap`` the power of two >= N, so most endpoint changes keep the range; freed
    ranges are reused per size. The shard is a stable hash of the chain name. The only
    mutable state of the renderer; the caller keeps one per table.
    """

    def __init__(self, shards: int = 1) -> None:
        self.shards = shards
        self._maps = tuple(f"{ENDPOINT_MAP}-{k}" for k in range(shards))
        self.owned: dict[str, tuple[int, int]] = {}  # chain -> (base, cap)
        self._free: dict[int, list[int]] = {}
        self._top = 0

    @property
    def maps(self) -> tuple[str, ...]:
        return self._maps

    def map_for(self, chain: str) -> str:
        return f"{ENDPOINT_MAP}-{zlib.crc32(chain.encode()) % self.shards}"

    def fit(self, chain: str, n: int) -> int:
        cap = 1 << max(0, n - 1).bit_length()
        cur = self.owned.get(chain)
        if cur is not None:
            if cur[1] == cap:
                return cur[0]
            self.release(chain)
        free = self._free.get(cap)
        if free:
            base = free.pop()
        else:
            base, self._top = self._top, self._top + cap
            if self._top > 0xFFFFFFFF:
                raise NeedFullSync("endpoint map key space exhausted")
        self.owned[chain] = (base, cap)
        return base

    def release(self, chain: str) -> None:
        cur = self.owned.pop(chain, None)
        if cur is not None:
            self._free.setdefault(cur[1], []).append(cur[0])

    def holds(self, chain: str, base: int) -> bool:
        cur = self.owned.get(chain)
        return cur is not None and cur[0] == base


def shards_for(state: DesiredState) -> int:
    """How many endpoint maps suit ``state``: a power of two near sqrt(2 x map elements)."""
    elems = sum(len(st.cluster) + len(st.local) for st in state.services.values()
                if st.port.affinity_timeout is None)
    want = math.isqrt(2 * elems)
    return 1 if want < 16 else 1 << (want.bit_length() - 1)
