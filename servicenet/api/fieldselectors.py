"""Field selectors: parsing and matching (pure).

Grammar and error texts follow upstream ``apimachinery/pkg/fields``: ``=``, ``==``, ``!=`` joined
by commas, with ``\\``-escaping of ``\\``, ``,`` and ``=`` in values. Parse errors raise a 400
BadRequest ``ApiStatusError``. Re-exported by :mod:`servicenet.api.selectors`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from servicenet.api.errors import bad_request
from servicenet.api.wire import meta as meta_of

__all__ = ["FieldSelector", "FieldTerm", "field_set", "supported_field_labels"]

# ---------------------------------------------------------------------------------------------
# field selectors


@dataclass(frozen=True, slots=True)
class FieldTerm:
    field: str
    op: str  # "=" or "!="  ("==" is normalised to "=")
    value: str

    def __str__(self) -> str:
        return f"{self.field}{self.op}{_escape_field_value(self.value)}"


def _escape_field_value(v: str) -> str:
    return v.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


def _split_terms(s: str) -> list[str]:
    terms: list[str] = []
    start = 0
    escaped = False
    for i, c in enumerate(s):
        if escaped:
            escaped = False
        elif c == "\\":
            escaped = True
        elif c == ",":
            terms.append(s[start:i])
            start = i + 1
    terms.append(s[start:])
    return terms


def _split_term(term: str) -> tuple[str, str, str] | None:
    for i in range(len(term)):
        for op in ("!=", "==", "="):
            if term.startswith(op, i):
                return term[:i], op, term[i + len(op):]
    return None


def _unescape(v: str) -> str:
    out: list[str] = []
    in_slash = False
    for c in v:
        if in_slash:
            if c in "\\,=":
                out.append(c)
            else:
                raise bad_request(f"invalid field selector: invalid escape sequence: \\{c}")
            in_slash = False
            continue
        if c == "\\":
            in_slash = True
        elif c in ",=":
            raise bad_request(f"invalid field selector: unescaped character in value: {c}")
        else:
            out.append(c)
    if in_slash:
        raise bad_request("invalid field selector: invalid escape sequence: \\")
    return "".join(out)


def _bool(v: Any) -> str:
    return "true" if v else "false"


def _pod_fields(o: Mapping[str, Any]) -> dict[str, str]:
    spec = o.get("spec") or {}
    st = o.get("status") or {}
    ips = st.get("podIPs") or []
    pod_ip = (ips[0].get("ip") or "") if ips else (st.get("podIP") or "")
    return {
        "spec.nodeName": spec.get("nodeName") or "",
        "spec.restartPolicy": spec.get("restartPolicy") or "",
        "spec.schedulerName": spec.get("schedulerName") or "",
        "spec.serviceAccountName": spec.get("serviceAccountName") or "",
        "spec.hostNetwork": _bool(spec.get("hostNetwork")),
        "status.phase": st.get("phase") or "",
        "status.podIP": pod_ip,
        "status.nominatedNodeName": st.get("nominatedNodeName") or "",
    }


def _event_fields(o: Mapping[str, Any]) -> dict[str, str]:
    io = o.get("involvedObject") or {}
    src = (o.get("source") or {}).get("component") or o.get("reportingComponent") or ""
    out = {f"involvedObject.{k}": str(io.get(k) or "") for k in
           ("kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath")}
    out.update({"reason": o.get("reason") or "", "reportingComponent": o.get("reportingComponent") or "",
                "source": src, "type": o.get("type") or ""})
    return out


_KIND_FIELDS: dict[str, Callable[[Mapping[str, Any]], dict[str, str]]] = {
    "Pod": _pod_fields,
    "Event": _event_fields,
    "Node": lambda o: {"spec.unschedulable": _bool((o.get("spec") or {}).get("unschedulable"))},
    "Secret": lambda o: {"type": o.get("type") or ""},
    "Namespace": lambda o: {"status.phase": (o.get("status") or {}).get("phase") or ""},
    "ReplicaSet": lambda o: {"status.replicas": str((o.get("status") or {}).get("replicas") or 0)},
}

_KIND_LABELS: dict[str, frozenset[str]] = {
    "Pod": frozenset(["spec.nodeName", "spec.restartPolicy", "spec.schedulerName", "spec.serviceAccountName",
                      "spec.hostNetwork", "status.phase", "status.podIP", "status.nominatedNodeName"]),
    "Event": frozenset([f"involvedObject.{k}" for k in ("kind", "namespace", "name", "uid", "apiVersion",
                                                          "resourceVersion", "fieldPath")]
                       + ["reason", "reportingComponent", "source", "type"]),
    "Node": frozenset(["spec.unschedulable"]),
    "Secret": frozenset(["type"]),
    "Namespace": frozenset(["status.phase"]),
    "ReplicaSet": frozenset(["status.replicas"]),
}


def register_kind_fields(kind: str, labels: frozenset[str],
                         fn: Callable[[Mapping[str, Any]], dict[str, str]]) -> None:
    """Selectable fields of a custom kind (a CRD's ``selectableFields``); built-in kinds are kept."""
    if kind in _KIND_LABELS and kind not in _CUSTOM_KINDS:
        return
    _CUSTOM_KINDS.add(kind)
    _KIND_LABELS[kind] = labels
    _KIND_FIELDS[kind] = fn


_CUSTOM_KINDS: set[str] = set()


def supported_field_labels(kind: str) -> frozenset[str]:
    return frozenset(["metadata.name", "metadata.namespace"]) | _KIND_LABELS.get(kind, frozenset())


def field_set(kind: str, obj: Mapping[str, Any]) -> dict[str, str]:
    """The selectable fields of ``obj`` (upstream ``ToSelectableFields``)."""
    md = meta_of(obj)
    out = {"metadata.name": md.get("name") or "", "metadata.namespace": md.get("namespace") or ""}
    fn = _KIND_FIELDS.get(kind)
    if fn is not None:
        out.update(fn(obj))
    return out


@dataclass(frozen=True, slots=True)
class FieldSelector:
    kind: str
    terms: tuple[FieldTerm, ...] = ()

    @staticmethod
    def parse(s: str | None, kind: str) -> FieldSelector:
        if s is None or not s.strip():
            return FieldSelector(kind)
        parts = sorted(_split_terms(s))
        terms: list[FieldTerm] = []
        allowed = supported_field_labels(kind)
        for part in parts:
            if part == "":
                continue
            split = _split_term(part)
            if split is None:
                raise bad_request(f"invalid selector: '{s}'; can't understand '{part}'")
            lhs, op, rhs = split
            value = _unescape(rhs)
            terms.append(FieldTerm(lhs, "!=" if op == "!=" else "=", value))
        for t in terms:
            if t.field not in allowed:
                raise bad_request(f"field label not supported: {t.field}")
        return FieldSelector(kind, tuple(terms))

    @property
    def empty(self) -> bool:
        return not self.terms

    def matches(self, obj: Mapping[str, Any]) -> bool:
        if not self.terms:
            return True
        fs = field_set(self.kind, obj)
        for t in self.terms:
            have = fs.get(t.field, "")
            if (have == t.value) != (t.op == "="):
                return False
        return True

    def requires_exact(self, field: str) -> str | None:
        """The value ``field`` must equal (``metadata.name=x`` → ``"x"``), for index lookups."""
        for t in self.terms:
            if t.field == field and t.op == "=":
                return t.value
        return None

    def __str__(self) -> str:
        return ",".join(str(t) for t in self.terms)
