"""The writes a pure controller core asks for, and the small helpers every core shares.

Cores return lists of :class:`Action`; the manager performs them with the API client.
Objects are plain Kubernetes wire dicts (see docs/contracts.md).
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

# re-exported: the cores read objects through these (one definition, in servicenet.api.views)
from servicenet.api.views import Obj as Obj
from servicenet.api.views import annotations_of as annotations_of
from servicenet.api.views import labels_of as labels_of
from servicenet.api.views import meta as meta
from servicenet.api.views import name_of as name_of
from servicenet.api.views import ns_of as ns_of
from servicenet.api.views import uid_of as uid_of

Verb = Literal["create", "update", "update_status", "delete", "patch", "patch_status"]


@dataclass(frozen=True, slots=True)
class EventIntent:
    """An Event to record once the action succeeded. ``{name}`` in the message is replaced
    by the name of the object the action returned (for generateName creates)."""

    reason: str
    message: str
    type: str = "Normal"
    # Which object the event is about: "owner" (the reconciled object) or "result".
    about: Literal["owner", "result"] = "owner"


@dataclass(frozen=True, slots=True)
class Action:
    verb: Verb
    api_version: str
    plural: str
    namespace: str
    name: str
    body: Obj | None = None
    patch_type: str = "merge"
    event: EventIntent | None = None

    def describe(self) -> str:
        nm = self.name or ((self.body or {}).get("metadata", {}).get("generateName", "") + "*")
        return f"{self.verb} {self.plural} {self.namespace}/{nm}"


@dataclass(frozen=True, slots=True)
class Event:
    """An Event not tied to a write (e.g. FailedScheduling)."""

    involved: Obj
    reason: str
    message: str
    type: str = "Normal"


@dataclass(frozen=True, slots=True)
class Result:
    actions: tuple[Action, ...] = ()
    events: tuple[Event, ...] = ()
    # Ask the manager to look at this key again after this many seconds (None = no requeue).
    requeue_after: float | None = None
    errors: tuple[str, ...] = field(default=())


# ---------------------------------------------------------------------------------------------
# object helpers


def tolerates(taint: Obj, tolerations: list[Obj]) -> bool:
    """Whether one of ``tolerations`` tolerates ``taint`` (an empty key with Exists matches all)."""
    for t in tolerations:
        if t.get("effect") and t["effect"] != taint.get("effect"):
            continue
        if t.get("operator") == "Exists" and (not t.get("key") or t["key"] == taint.get("key")):
            return True
        if t.get("key") == taint.get("key") and (t.get("value") or "") == (taint.get("value") or ""):
            return True
    return False


def controller_ref(owner: Obj, api_version: str, kind: str) -> Obj:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": name_of(owner),
        "uid": uid_of(owner),
        "controller": True,
        "blockOwnerDeletion": True,
    }


def controller_of(o: Obj) -> Obj | None:
    for ref in meta(o).get("ownerReferences") or []:
        if ref.get("controller"):
            return ref
    return None


def is_controlled_by(o: Obj, owner: Obj) -> bool:
    ref = controller_of(o)
    return ref is not None and ref.get("uid") == uid_of(owner) and bool(uid_of(owner))


# ---------------------------------------------------------------------------------------------
# pods


def get_condition(o: Obj, ctype: str) -> Obj | None:
    for c in (o.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return c
    return None


def is_pod_ready(pod: Obj) -> bool:
    c = get_condition(pod, "Ready")
    return c is not None and c.get("status") == "True"


def is_pod_available(pod: Obj, min_ready_seconds: int, now: datetime) -> bool:
    if not is_pod_ready(pod):
        return False
    if min_ready_seconds <= 0:
        return True
    c = get_condition(pod, "Ready") or {}
    t = parse_time(c.get("lastTransitionTime"))
    return t is None or (now - t).total_seconds() >= min_ready_seconds


def is_terminal(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def is_terminating(o: Obj) -> bool:
    return bool(meta(o).get("deletionTimestamp"))


def is_active(pod: Obj) -> bool:
    return not is_terminal(pod) and not is_terminating(pod)


def pod_ips(pod: Obj) -> list[str]:
    st = pod.get("status") or {}
    ips = [p.get("ip", "") for p in st.get("podIPs") or [] if p.get("ip")]
    if not ips and st.get("podIP"):
        ips = [st["podIP"]]
    return ips


@functools.lru_cache(maxsize=16384)  # asked for every pod of a Service on each of its syncs
def is_ipv6(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).version == 6
    except ValueError:
        return ":" in ip


def find_port(pod: Obj, service_port: Obj) -> int | None:
    """The container port a Service port's targetPort resolves to on this pod."""
    target = service_port.get("targetPort")
    if target is None or target == "" or target == 0:
        return int(service_port.get("port", 0)) or None
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    proto = service_port.get("protocol") or "TCP"
    for c in (pod.get("spec") or {}).get("containers") or []:
        for p in c.get("ports") or []:
            if p.get("name") == target and (p.get("protocol") or "TCP") == proto:
                return int(p.get("containerPort", 0)) or None
    return None


def is_service_ip_set(svc: Obj) -> bool:
    ip = (svc.get("spec") or {}).get("clusterIP") or ""
    return ip not in ("", "None")


def should_set_hostname(pod: Obj, svc: Obj) -> bool:
    spec = pod.get("spec") or {}
    return bool(spec.get("hostname")) and spec.get("subdomain") == name_of(svc) and ns_of(pod) == ns_of(svc)


# ---------------------------------------------------------------------------------------------
# time


def fmt_time(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def fmt_time_nano(t: datetime) -> str:
    t = t.astimezone(UTC)
    frac = f"{t.microsecond:06d}000".rstrip("0")
    return t.strftime("%Y-%m-%dT%H:%M:%S") + ("." + frac if frac else "") + "Z"


def parse_time(s: str | None) -> datetime | None:
    if not s:
        return None
    try:
        return datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError:
        return None


def rv_int(o: Obj | None) -> int:
    try:
        return int(meta(o or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0
