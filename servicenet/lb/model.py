"""Endpoint values and the pure selection rules applied before any policy runs.

An :class:`Endpoint` is a frozen value as a source reports it (EndpointSlice conditions, hints,
DNS SRV weight). :func:`usable` applies upstream's order: ready endpoints, narrowed by topology
(node hints, then zone hints) when every ready endpoint carries them and one matches; when no
endpoint is ready, the serving-and-terminating ones (graceful drain, KEP-1669).
:func:`subset` is the deterministic subsetting of the Google SRE book (chapter 20).
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

_ORDINAL = re.compile(r"-(\d+)$")


@dataclass(frozen=True, slots=True)
class Endpoint:
    address: str
    port: int
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    weight: int = 1
    zone: str = ""
    node: str = ""
    hostname: str = ""
    pod: str = ""
    zone_hints: tuple[str, ...] = ()
    node_hints: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    key: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.key:
            object.__setattr__(self, "key", join_hostport(self.address, self.port))

    @property
    def name(self) -> str:
        """The pod (or hostname) when known, else ``address:port``."""
        return self.pod or self.hostname or self.key

    @property
    def ordinal(self) -> int | None:
        """The StatefulSet ordinal taken from the hostname or pod name (``web-2`` -> 2)."""
        m = _ORDINAL.search(self.hostname or self.pod)
        return int(m.group(1)) if m else None

    def label(self, name: str) -> str | None:
        for k, v in self.labels:
            if k == name:
                return v
        return None

    def conditions(self) -> str:
        return ",".join(n for n, on in (("ready", self.ready), ("serving", self.serving),
                                         ("terminating", self.terminating)) if on) or "-"


def join_hostport(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


@dataclass(frozen=True, slots=True)
class Topology:
    """Where the client runs, and whether the Service asked for topology-aware routing."""

    zone: str = ""
    node: str = ""
    prefer_close: bool = False  # trafficDistribution PreferClose / PreferSameZone / PreferSameNode


def usable(endpoints: Iterable[Endpoint], topo: Topology = Topology()) -> list[Endpoint]:
    """The endpoints new requests may go to, in upstream kube-proxy's order of preference."""
    eps = list(endpoints)
    ready = [e for e in eps if e.ready]
    if not ready:
        return [e for e in eps if e.serving and e.terminating]
    if topo.node and all(e.node_hints for e in ready):
        local = [e for e in ready if topo.node in e.node_hints]
        if local:
            return local
    if topo.zone and all(e.zone_hints for e in ready):
        local = [e for e in ready if topo.zone in e.zone_hints]
        if local:
            return local
    if topo.prefer_close and topo.zone and not any(e.zone_hints for e in ready):
        # No controller wrote hints (e.g. DNS or static sources): prefer the client's own zone.
        local = [e for e in ready if e.zone == topo.zone]
        if local:
            return local
    return ready


def subset(endpoints: Sequence[Endpoint], client_id: int, size: int) -> list[Endpoint]:
    """Deterministic subsetting: a stable ``size``-endpoint subset for client ``client_id``.

    Clients are grouped in rounds; each round shuffles the (sorted) fleet with the round number as
    seed and hands consecutive slices to its clients, so every endpoint gets an even share of clients.
    """
    if size <= 0 or size >= len(endpoints):
        return list(endpoints)
    ordered = sorted(endpoints, key=lambda e: e.key)
    count = len(ordered) // size
    rnd = client_id // count
    random.Random(rnd).shuffle(ordered)
    start = (client_id % count) * size
    return ordered[start:start + size]


def role_of(ep: Endpoint, label: str | None = None, primary_ordinal: int = 0) -> str:
    """``primary`` or ``replica``: by pod label when ``label`` is given, else by StatefulSet ordinal."""
    if label:
        return ep.label(label) or "replica"
    return "primary" if ep.ordinal == primary_ordinal else "replica"
