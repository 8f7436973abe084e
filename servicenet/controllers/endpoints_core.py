"""Endpoints controller core: a Service and its pods -> the v1 Endpoints write (if any).

Follows upstream: one single-address subset per (pod, port), then repacked so that addresses
sharing the same ports share a subset; truncated to 1000 addresses with the over-capacity
annotation; the write is skipped when nothing that matters changed.
"""

from __future__ import annotations

import math
from typing import Any

import orjson

from servicenet.api import wellknown as wk

from .actions import (
    Action,
    Obj,
    Result,
    annotations_of,
    find_port,
    is_ipv6,
    is_pod_ready,
    is_service_ip_set,
    labels_of,
    meta,
    name_of,
    ns_of,
    pod_ips,
    should_set_hostname,
    uid_of,
)
from .endpointslice_core import HEADLESS_LABEL, TRIGGER_TIME_ANNOTATION, should_pod_be_in_endpoints

MAX_CAPACITY = 1000
OVER_CAPACITY_ANNOTATION = wk.OVER_CAPACITY_ANNOTATION


def _service_family(svc: Obj) -> str | None:
    spec = svc.get("spec") or {}
    fams = spec.get("ipFamilies") or []
    if fams:
        return str(fams[0])
    if is_service_ip_set(svc):
        return "IPv6" if is_ipv6(spec["clusterIP"]) else "IPv4"
    return None


def pod_address(svc: Obj, pod: Obj) -> Obj | None:
    ips = pod_ips(pod)
    fam = _service_family(svc)
    if fam is None:  # headless without families: the pod's primary IP
        ip = ips[0] if ips else None
    else:
        ip = next((i for i in ips if is_ipv6(i) == (fam == "IPv6")), None)
    if ip is None:
        return None
    addr: Obj = {"ip": ip}
    if should_set_hostname(pod, svc):
        addr["hostname"] = pod["spec"]["hostname"]
    node = (pod.get("spec") or {}).get("nodeName")
    if node:
        addr["nodeName"] = node
    addr["targetRef"] = {"kind": "Pod", "namespace": ns_of(pod), "name": name_of(pod), "uid": uid_of(pod)}
    return addr


def desired_subsets(svc: Obj, pods: list[Obj]) -> list[Obj]:
    spec = svc.get("spec") or {}
    publish = bool(spec.get("publishNotReadyAddresses"))
    raw: list[tuple[Obj, Obj | None, bool]] = []  # (address, port, ready)
    for pod in pods:
        if not should_pod_be_in_endpoints(pod, publish):
            continue
        addr = pod_address(svc, pod)
        if addr is None:
            continue
        ready = publish or is_pod_ready(pod)
        if not spec.get("ports"):
            if spec.get("clusterIP") == "None":
                raw.append((addr, None, ready))
            continue
        for sp in spec["ports"]:
            num = find_port(pod, sp)
            if num is None:
                continue
            port: Obj = {"name": sp.get("name") or "", "port": num, "protocol": sp.get("protocol") or "TCP"}
            if sp.get("appProtocol"):
                port["appProtocol"] = sp["appProtocol"]
            raw.append((addr, port, ready))
    return repack(raw)


def _canon(o: Any) -> bytes:
    """A canonical encoding (sorted keys) to group, sort and compare by. orjson's compact form
    orders ASCII content as ``json.dumps(sort_keys=True)``'s spaced one does (a separator's space
    never is the first difference) at a fifth of the cost."""
    return orjson.dumps(o, option=orjson.OPT_SORT_KEYS)


def _port_id(p: Obj | None) -> bytes:
    return b"" if p is None else _canon(p)


def _addr_id(a: Obj) -> tuple[str, str]:
    return (a["ip"], (a.get("targetRef") or {}).get("uid", ""))


def repack(raw: list[tuple[Obj, Obj | None, bool]]) -> list[Obj]:
    """Group addresses by the exact set of ports they serve (upstream ``RepackSubsets``)."""
    addrs: dict[tuple[str, str], Obj] = {}
    ports: dict[bytes, Obj | None] = {}
    port_addrs: dict[bytes, dict[tuple[str, str], bool]] = {}
    for addr, port, ready in raw:
        aid = _addr_id(addr)
        addrs.setdefault(aid, addr)
        pid = _port_id(port)
        ports[pid] = port
        seen = port_addrs.setdefault(pid, {})
        if aid not in seen or not seen[aid]:
            seen[aid] = ready
    groups: dict[bytes, tuple[dict[tuple[str, str], bool], list[Obj]]] = {}
    for pid, amap in port_addrs.items():
        key = _canon(sorted([list(k) + [v] for k, v in amap.items()]))
        entry = groups.setdefault(key, (amap, []))
        p = ports[pid]
        if p is not None:
            entry[1].append(p)
    subsets: list[Obj] = []
    for amap, plist in groups.values():
        ready = sorted((addrs[a] for a, r in amap.items() if r), key=_addr_id)
        not_ready = sorted((addrs[a] for a, r in amap.items() if not r), key=_addr_id)
        sub: Obj = {}
        if ready:
            sub["addresses"] = ready
        if not_ready:
            sub["notReadyAddresses"] = not_ready
        if plist:
            sub["ports"] = sorted(plist, key=lambda p: (p["name"], p["port"], p["protocol"]))
        subsets.append(sub)
    subsets.sort(key=_canon)
    return subsets


def truncate(subsets: list[Obj], max_capacity: int = MAX_CAPACITY) -> tuple[list[Obj], bool]:
    """Keep at most ``max_capacity`` addresses, ready ones first, proportionally per subset."""
    total_ready = sum(len(s.get("addresses") or []) for s in subsets)
    total_not_ready = sum(len(s.get("notReadyAddresses") or []) for s in subsets)
    if total_ready + total_not_ready <= max_capacity:
        return subsets, False
    truncate_ready = total_ready > max_capacity
    limit = max_capacity if truncate_ready else max_capacity - total_ready
    num_total = total_ready if truncate_ready else total_not_ready
    can_add = limit
    out: list[Obj] = []
    for s in subsets:
        s = dict(s)
        field = "addresses" if truncate_ready else "notReadyAddresses"
        n = len(s.get(field) or [])
        take = min(math.ceil(n / num_total * limit) if num_total else 0, can_add)
        s[field] = (s.get(field) or [])[:take]
        if truncate_ready:
            s.pop("notReadyAddresses", None)
        can_add -= len(s[field])
        if not s[field]:
            s.pop(field)
        out.append(s)
    return out, True


def _norm_subsets(subsets: list[Obj]) -> bytes:
    def norm_addr(a: Obj) -> Obj:
        ref = {k: v for k, v in (a.get("targetRef") or {}).items() if k != "resourceVersion" and v}
        return {k: v for k, v in {**a, "targetRef": ref}.items() if v}

    norm = []
    for s in subsets:
        norm.append(
            {
                "addresses": sorted((norm_addr(a) for a in s.get("addresses") or []), key=_canon),
                "notReadyAddresses": sorted(
                    (norm_addr(a) for a in s.get("notReadyAddresses") or []), key=_canon
                ),
                "ports": sorted(
                    ({"protocol": "TCP", **{k: v for k, v in p.items() if v not in (None, "")}} for p in s.get("ports") or []),
                    key=_canon,
                ),
            }
        )
    return _canon(sorted(norm, key=_canon))


def reconcile(svc: Obj, pods: list[Obj], current: Obj | None, *, trigger_time: str | None = None) -> Result:
    """The write (if any) that makes the Endpoints named after ``svc`` match its pods."""
    spec = svc.get("spec") or {}
    if spec.get("type") == "ExternalName" or not spec.get("selector"):
        return Result()
    subsets, truncated = truncate(desired_subsets(svc, pods))
    labels = dict(labels_of(svc))
    if is_service_ip_set(svc):
        labels.pop(HEADLESS_LABEL, None)
    else:
        labels[HEADLESS_LABEL] = ""
    if current is not None:
        ann = annotations_of(current)
        if (
            _norm_subsets(current.get("subsets") or []) == _norm_subsets(subsets)
            and labels_of(current) == labels
            and (OVER_CAPACITY_ANNOTATION in ann) == truncated
        ):
            return Result()
    annotations = dict(annotations_of(current)) if current is not None else {}
    if trigger_time:
        annotations[TRIGGER_TIME_ANNOTATION] = trigger_time
    else:
        annotations.pop(TRIGGER_TIME_ANNOTATION, None)
    if truncated:
        annotations[OVER_CAPACITY_ANNOTATION] = "truncated"
    else:
        annotations.pop(OVER_CAPACITY_ANNOTATION, None)
    md: Obj = dict(meta(current)) if current is not None else {"name": name_of(svc), "namespace": ns_of(svc)}
    md["labels"] = labels
    md["annotations"] = annotations
    body: Obj = {"apiVersion": "v1", "kind": "Endpoints", "metadata": md, "subsets": subsets}
    verb = "create" if current is None else "update"
    return Result(actions=(Action(verb, "v1", "endpoints", ns_of(svc), name_of(svc), body),))
