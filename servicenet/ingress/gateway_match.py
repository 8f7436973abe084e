"""The meaning of a Gateway API plan as a function (pure): what a request to a listener port gets.

The HAProxy rendering (:mod:`servicenet.ingress.render_gateway`) must behave exactly like this;
tests run the same cases through both.
"""

from __future__ import annotations

from servicenet.ingress.gateway_compile import Frontend, Listener, Plan
from servicenet.ingress.gateway_core import host_rank
from servicenet.ingress.match import route_for
from servicenet.ingress.model import Route


def listener_for(fe: Frontend, name: str) -> Listener | None:
    """The listener a hostname (Host header or SNI) selects: the most specific that matches."""
    name = name.split(":", 1)[0].lower()
    for li in fe.listeners:  # already most specific first
        h = li.hostname
        if not h or h == name or (h.startswith("*.") and name.endswith(h[1:])):
            return li
    return None


def sni_mode(plan: Plan, port: int, sni: str) -> str | None:
    """On a port with TLS listeners: the mode (``https`` or ``tls``) of the listener the SNI selects
    among all of the port's listeners, most specific hostname first."""
    lis = sorted(((li, fe.mode) for fe in plan.frontends if fe.port == port and fe.mode != "http"
                  for li in fe.listeners), key=lambda lm: host_rank(lm[0].hostname))
    for li, mode in lis:
        if not li.hostname or li.hostname == sni or (li.hostname.startswith("*.") and sni.endswith(li.hostname[1:])):
            return mode
    return None


def answer(plan: Plan, port: int, host: str, path: str, method: str = "GET", headers: dict[str, str] | None = None,
           query: dict[str, str] | None = None, sni: str | None = None) -> Route | int | None:
    """The route that serves the request; 404 when none matches; 421 when the Host header selects
    another listener than the SNI of an HTTPS connection did; None when nothing listens there (or
    the SNI selects a TLS passthrough listener of the port)."""
    fe = next((f for f in plan.frontends if f.port == port and f.mode != "tls"), None)
    if fe is None or (fe.mode == "https" and sni_mode(plan, port, sni or "") == "tls"):
        return None
    if fe.mode == "https" and sni is not None:
        by_sni, by_host = listener_for(fe, sni), listener_for(fe, host)
        if by_host is None or by_sni is None or by_sni.lid != by_host.lid:
            return 421
    r = route_for(fe.table, host, path, method, headers, query)
    return 404 if r is None else r


def passthrough_for(plan: Plan, port: int, sni: str) -> str | None:
    """The source route ("ns/name") a TLS passthrough connection with this SNI goes to."""
    fe = next((f for f in plan.frontends if f.port == port and f.mode == "tls"), None)
    if fe is None or sni_mode(plan, port, sni) != "tls":
        return None
    for p in fe.passthrough:
        if not p.host or p.host == sni or (p.host.startswith("*.") and sni.endswith(p.host[1:])):
            return p.source
    return None
