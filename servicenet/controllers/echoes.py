"""Own-write echoes that overtake the write's response (pure bookkeeping, no I/O).

The API server sends a write's watch event to its watchers before it answers the write, so the
controller manager usually sees the EndpointSlice or Endpoints it just wrote come back before it
knows the resourceVersion it wrote, cannot tell it from someone else's change, and syncs the
Service once more for nothing. An event on an object a controller writes, arriving while that
controller is syncing the same key, is therefore held until the sync ends: it wakes the key
again only if it is not the echo of a write the sync made.
"""

from __future__ import annotations

from collections.abc import Mapping

__all__ = ["OWN_WRITES", "EchoHold"]

# resource plural -> (the controller that writes it, the prefix of its keys in the own-writes map)
OWN_WRITES = {"endpointslices": ("endpointslice", ""), "endpoints": ("endpoints", "ep:")}


class EchoHold:
    def __init__(self) -> None:
        self._held: dict[tuple[str, str], list[tuple[str, int]]] = {}

    def hold(self, plural: str, controller: str, key: str, obj_key: str, rv: int, in_flight: bool) -> bool:
        """Hold the event (True) when ``controller`` writes ``plural`` and is syncing ``key``."""
        own = OWN_WRITES.get(plural)
        if own is None or own[0] != controller or not in_flight:
            return False
        self._held.setdefault((controller, key), []).append((own[1] + obj_key, rv))
        return True

    def release(self, controller: str, key: str, own_rv: Mapping[str, int]) -> bool:
        """At the end of ``controller``'s sync of ``key``: True when a held event was not the
        echo of a write of ours (the key needs another sync)."""
        held = self._held.pop((controller, key), None)
        return bool(held) and any(own_rv.get(k) != rv for k, rv in held or ())
