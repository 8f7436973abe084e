"""Where a Service is reachable from the host when the cluster cannot use the host's ports as is
(pure: Service objects in, forwards and annotation texts out).

* **userns mode** (rootless netns): the node's addresses live in a namespace the host cannot
  route to, so every NodePort (of NodePort and LoadBalancer Services) is published on the host's
  ``127.0.0.1:<nodePort>`` and forwarded to ``<node IP>:<nodePort>`` inside.  Annotation
  :data:`HOST_PORTS` lists them (Kubernetes has no Service field for a host-side address).
* **loopback mode without root**: a Service port below 1024 cannot be bound, so the userspace
  proxy serves it on the same ClusterIP at ``port +`` :data:`LOW_PORT_OFFSET`; annotation
  :data:`LOOPBACK_PORTS` says so (``kubectl describe svc`` shows it).
"""

from __future__ import annotations

from dataclasses import dataclass

from servicenet.api.wire import Obj
from servicenet.api.wire import meta as meta_of

HOST_PORTS = "servicenet.dev/host-ports"
LOOPBACK_PORTS = "servicenet.dev/loopback-ports"
LOW_PORT_OFFSET = 10000
PRIVILEGED_BELOW = 1024



@dataclass(frozen=True, slots=True)
class Forward:
    """Host ``127.0.0.1:host_port`` (TCP) → ``target_ip:target_port`` in the node namespace."""

    host_port: int
    target_ip: str
    target_port: int
    owner: str  # "namespace/name:port-name" (or a fixed name such as "ingress-http")


def offset_port(port: int, offset: int = LOW_PORT_OFFSET, below: int = PRIVILEGED_BELOW) -> int:
    """The port a loopback-mode Service port is served on by an unprivileged proxy (``below``:
    the first port it may bind, ``net.ipv4.ip_unprivileged_port_start``)."""
    return port + offset if port < below else port


def _ports(svc: Obj) -> list[Obj]:
    return list((svc.get("spec") or {}).get("ports") or [])


def _key(svc: Obj, port: Obj) -> str:
    meta = meta_of(svc)
    return f"{meta.get('namespace', 'default')}/{meta.get('name', '')}:{port.get('name') or port.get('port')}"


def service_forwards(svc: Obj, node_ip: str) -> list[Forward]:
    """The host forwards of one Service: each TCP port with a nodePort."""
    if (svc.get("spec") or {}).get("type") not in ("NodePort", "LoadBalancer"):
        return []
    out = []
    for p in _ports(svc):
        np = p.get("nodePort")
        if np and (p.get("protocol") or "TCP") == "TCP":
            out.append(Forward(int(np), node_ip, int(np), _key(svc, p)))
    return out


def desired_forwards(services: list[Obj], node_ip: str, fixed: tuple[Forward, ...] = ()) -> dict[int, Forward]:
    """Every forward by host port; ``fixed`` ones (e.g. the ingress) win a clash."""
    out: dict[int, Forward] = {}
    for svc in sorted(services, key=lambda s: _key(s, {})):
        for f in service_forwards(svc, node_ip):
            out.setdefault(f.host_port, f)
    for f in fixed:
        out[f.host_port] = f
    return out


def host_ports_annotation(svc: Obj, node_ip: str, host: str = "127.0.0.1") -> str | None:
    """``HOST_PORTS`` text for ``svc`` (None: nothing published)."""
    fw = service_forwards(svc, node_ip)
    if not fw:
        return None
    return ", ".join(f"{f.owner.rsplit(':', 1)[1]} {host}:{f.host_port} -> {f.target_ip}:{f.target_port}"
                     for f in fw)


def loopback_ports_annotation(svc: Obj, offset: int = LOW_PORT_OFFSET, below: int = PRIVILEGED_BELOW) -> str | None:
    """``LOOPBACK_PORTS`` text for ``svc``: its ports below 1024 and where they are served."""
    ip = (svc.get("spec") or {}).get("clusterIP") or ""
    parts = []
    for p in _ports(svc):
        port = int(p.get("port") or 0)
        if 0 < port < below:
            served = offset_port(port, offset, below)
            where = f"{ip}:{served}" if ip and ip != "None" else str(served)
            parts.append(f"{port}/{p.get('protocol') or 'TCP'} served at {where}")
    return ", ".join(parts) or None


def annotation_patch(svc: Obj, key: str, value: str | None) -> Obj | None:
    """A merge patch setting (or removing) annotation ``key``; None when already so."""
    cur = (meta_of(svc).get("annotations") or {}).get(key)
    if cur == value:
        return None
    return {"metadata": {"annotations": {key: value}}}
