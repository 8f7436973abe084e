"""Gateway API status values (pure): conditions, and merging a computed status into the stored one.

The compile core produces conditions without ``lastTransitionTime`` (it knows no clock); ``merge``
keeps the stored time of a condition whose status did not change and stamps ``now`` on the others.
Route statuses keep the ``parents`` entries other controllers own.
"""

from __future__ import annotations

from typing import Any

from servicenet.api.views import meta as meta_of
from servicenet.api.wire import Obj

# Condition types and reasons, spelled as the Gateway API specification defines them.
ACCEPTED, PROGRAMMED, RESOLVED_REFS, CONFLICTED = "Accepted", "Programmed", "ResolvedRefs", "Conflicted"
R_ACCEPTED, R_PROGRAMMED, R_RESOLVED_REFS, R_NO_CONFLICTS = "Accepted", "Programmed", "ResolvedRefs", "NoConflicts"
R_INVALID, R_PENDING, R_LISTENERS_NOT_VALID = "Invalid", "Pending", "ListenersNotValid"
R_UNSUPPORTED_ADDRESS, R_ADDRESS_NOT_ASSIGNED = "UnsupportedAddress", "AddressNotAssigned"
R_UNSUPPORTED_PROTOCOL, R_PORT_UNAVAILABLE = "UnsupportedProtocol", "PortUnavailable"
R_HOSTNAME_CONFLICT, R_PROTOCOL_CONFLICT = "HostnameConflict", "ProtocolConflict"
R_INVALID_CERTIFICATE_REF, R_INVALID_ROUTE_KINDS = "InvalidCertificateRef", "InvalidRouteKinds"
R_REF_NOT_PERMITTED, R_BACKEND_NOT_FOUND, R_INVALID_KIND = "RefNotPermitted", "BackendNotFound", "InvalidKind"
R_NOT_ALLOWED_BY_LISTENERS, R_NO_MATCHING_LISTENER_HOSTNAME = "NotAllowedByListeners", "NoMatchingListenerHostname"
R_NO_MATCHING_PARENT, R_UNSUPPORTED_VALUE = "NoMatchingParent", "UnsupportedValue"
R_INVALID_PARAMETERS = "InvalidParameters"
OVERLAPPING_TLS, R_OVERLAPPING_HOSTNAMES = "OverlappingTLSConfig", "OverlappingHostnames"


def cond(ctype: str, ok: bool | str, reason: str, message: str, generation: int) -> Obj:
    status = ok if isinstance(ok, str) else ("True" if ok else "False")
    return {"type": ctype, "status": status, "reason": reason, "message": message[:32768],
            "observedGeneration": generation}


def generation(obj: Obj) -> int:
    return int(meta_of(obj).get("generation") or 1)


def _merge_conditions(old: list[Obj] | None, new: list[Obj], now: str) -> list[Obj]:
    prev = {c.get("type"): c for c in old or []}
    out = []
    for c in new:
        p = prev.get(c["type"])
        keep = p is not None and p.get("status") == c["status"] and p.get("lastTransitionTime")
        out.append({**c, "lastTransitionTime": p["lastTransitionTime"] if keep else now})
    return out


def _parent_key(p: Obj) -> tuple[Any, ...]:
    ref = p.get("parentRef") or {}
    return (p.get("controllerName"), ref.get("namespace"), ref.get("name"), ref.get("sectionName"), ref.get("port"))


def merge(old: Obj | None, new: Obj, now: str, controller: str) -> Obj:
    """``new`` with lastTransitionTimes carried over from ``old`` where a condition kept its status."""
    old = old or {}
    out: Obj = dict(new)
    if "conditions" in new:
        out["conditions"] = _merge_conditions(old.get("conditions"), new["conditions"], now)
    if "listeners" in new:
        prev = {listener.get("name"): listener for listener in old.get("listeners") or []}
        out["listeners"] = [{**li, "conditions": _merge_conditions((prev.get(li["name"]) or {}).get("conditions"),
                                                                   li["conditions"], now)}
                            for li in new["listeners"]]
    if "parents" in new:
        prev = {_parent_key(p): p for p in old.get("parents") or []}
        foreign = [p for p in old.get("parents") or [] if p.get("controllerName") != controller]
        out["parents"] = foreign + [{**p, "conditions": _merge_conditions((prev.get(_parent_key(p)) or {}).get(
            "conditions"), p["conditions"], now)} for p in new["parents"]]
    return out


def _strip(v: Any) -> Any:
    if isinstance(v, dict):
        return {k: _strip(x) for k, x in v.items() if k != "lastTransitionTime"}
    if isinstance(v, list):
        return [_strip(x) for x in v]
    return v


def same(a: Obj | None, b: Obj | None) -> bool:
    """Equal apart from lastTransitionTime (an update would change nothing that matters)."""
    return _strip(a or {}) == _strip(b or {})
