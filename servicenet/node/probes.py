"""Readiness, liveness and startup probes.

:class:`ProbeTracker` is the pure state machine (time is passed in); :func:`run_probe` performs
one httpGet / tcpSocket / exec check through injected I/O (so netns mode can dial from the node
namespace).  The runtime loops ``due -> run_probe -> observe``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from servicenet.node.podspec import resolve_port

__all__ = ["Connect", "ExecFn", "ProbeKind", "ProbeSpec", "ProbeTracker", "run_probe"]

Obj = dict[str, Any]
Connect = Callable[[str, int], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]
ExecFn = Callable[[list[str], float], Awaitable[int]]


class ProbeKind(Enum):
    READINESS = "readinessProbe"
    LIVENESS = "livenessProbe"
    STARTUP = "startupProbe"


@dataclass(frozen=True, slots=True)
class ProbeSpec:
    kind: ProbeKind
    handler: Obj
    initial_delay: float = 0.0
    period: float = 10.0
    timeout: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3

    @classmethod
    def from_container(cls, container: Obj, kind: ProbeKind) -> ProbeSpec | None:
        p = container.get(kind.value)
        if not p:
            return None
        handler = {k: p[k] for k in ("httpGet", "tcpSocket", "exec", "grpc") if k in p}
        return cls(kind=kind, handler=handler,
                   initial_delay=float(p.get("initialDelaySeconds") or 0),
                   period=float(p.get("periodSeconds") or 10),
                   timeout=float(p.get("timeoutSeconds") or 1),
                   success_threshold=int(p.get("successThreshold") or 1),
                   failure_threshold=int(p.get("failureThreshold") or 3))


class ProbeTracker:
    """Consecutive-result thresholds and scheduling for one probe of one container run.

    ``result`` starts as the kind's initial value (readiness/startup: False, liveness: True) and
    flips only after ``success_threshold`` consecutive successes / ``failure_threshold``
    consecutive failures.
    """

    def __init__(self, spec: ProbeSpec, started_at: float) -> None:
        self.spec = spec
        self.result: bool = spec.kind is ProbeKind.LIVENESS
        self._last: bool | None = None
        self._run = 0
        self._due = started_at + spec.initial_delay

    def due(self) -> float:
        return self._due

    def observe(self, ok: bool, now: float) -> bool | None:
        """Record one probe outcome at ``now``; return the new result if it flipped."""
        self._due = max(self._due + self.spec.period, now)
        if self._last is ok:
            self._run += 1
        else:
            self._last, self._run = ok, 1
        needed = self.spec.success_threshold if ok else self.spec.failure_threshold
        if self._run < needed or self.result is ok:
            return None
        self.result = ok
        return ok


async def _http_get(h: Obj, host: str, port: int, connect: Connect) -> tuple[bool, str]:
    scheme = (h.get("scheme") or "HTTP").upper()
    if scheme != "HTTP":
        return False, f"scheme {scheme} not supported"
    path = h.get("path") or "/"
    if not path.startswith("/"):
        path = "/" + path
    target_host = h.get("host") or host
    headers = {"Host": f"{target_host}:{port}", "User-Agent": "kube-probe/1.32", "Accept": "*/*",
               "Connection": "close"}
    for hh in h.get("httpHeaders") or []:
        headers[hh["name"]] = hh["value"]
    reader, writer = await connect(target_host, port)
    try:
        req = f"GET {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        writer.write(req.encode())
        await writer.drain()
        line = await reader.readline()
        parts = line.decode(errors="replace").split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            return False, f"bad response {line[:60]!r}"
        code = int(parts[1])
        if 200 <= code < 400:
            return True, ""
        return False, f"HTTP probe failed with statuscode: {code}"
    finally:
        writer.close()


async def run_probe(spec: ProbeSpec, container: Obj, host: str, connect: Connect, exec_fn: ExecFn) -> tuple[bool, str]:
    """Run one check with the probe's timeout; ``(ok, failure message)``."""
    h = spec.handler
    try:
        async with asyncio.timeout(spec.timeout):
            if "httpGet" in h:
                port = resolve_port(container, h["httpGet"].get("port", 80))
                return await _http_get(h["httpGet"], host, port, connect)
            if "tcpSocket" in h:
                t = h["tcpSocket"]
                port = resolve_port(container, t.get("port", 0))
                _, writer = await connect(t.get("host") or host, port)
                writer.close()
                return True, ""
            if "exec" in h:
                code = await exec_fn(list(h["exec"].get("command") or []), spec.timeout)
                return code == 0, "" if code == 0 else f"command exited with {code}"
            return False, "probe has no supported handler"
    except TimeoutError:
        return False, f"probe timed out after {spec.timeout:g}s"
    except (OSError, ValueError) as exc:
        return False, str(exc)
