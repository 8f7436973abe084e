"""ingress-nginx annotations: parsed and validated into route and backend options (pure).

Each annotation is read under ``servicenet.io/`` and under its upstream name
``nginx.ingress.kubernetes.io/`` (the servicenet name wins). Every value that reaches the HAProxy
configuration is checked against a strict pattern here, so no annotation can inject configuration.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

PREFIXES = ("servicenet.io/", "nginx.ingress.kubernetes.io/")
SUPPORTED = (
    "ssl-redirect", "force-ssl-redirect", "backend-protocol", "proxy-body-size", "proxy-read-timeout",
    "proxy-send-timeout", "proxy-connect-timeout", "rewrite-target", "use-regex", "whitelist-source-range",
    "allowlist-source-range", "affinity", "session-cookie-name", "canary", "canary-weight",
    "canary-weight-total", "canary-by-header", "canary-by-header-value", "canary-by-cookie",
)
PROTOCOLS = {"HTTP": "http", "HTTPS": "https", "GRPC": "grpc", "GRPCS": "grpcs"}
TOKEN = re.compile(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,128}$")  # an HTTP header or cookie name
HEADER_VALUE = re.compile(r"^[\x21-\x7e]{1,256}$")  # visible ASCII, no CR/LF, no spaces
REWRITE = re.compile(r"^[A-Za-z0-9/$._~%!&()*+,;=:@-]*$")
SIZE = re.compile(r"^([0-9]+)([kKmMgG]?)$")
UNITS = {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3}
DEFAULT_BODY_LIMIT = 1024 * 1024  # nginx's client_max_body_size default (1m)
DEFAULT_TIMEOUT = 300


class AnnotationError(ValueError):
    pass


@dataclass(frozen=True)
class Options:
    ssl_redirect: bool = True
    force_ssl_redirect: bool = False
    protocol: str = ""  # "" : from the Service port's appProtocol
    body_limit: int | None = DEFAULT_BODY_LIMIT
    timeout_server: int = DEFAULT_TIMEOUT
    timeout_connect: int = 5
    rewrite: str = ""
    use_regex: bool = False
    allow: tuple[str, ...] = ()
    affinity_cookie: str = ""
    canary: bool = False
    canary_weight: int = 0
    canary_weight_total: int = 100
    canary_header: str = ""
    canary_header_value: str = ""
    canary_cookie: str = ""
    errors: tuple[str, ...] = field(default=(), compare=False)


def _get(ann: dict[str, str], key: str) -> str | None:
    for p in PREFIXES:
        if p + key in ann:
            return str(ann[p + key])
    return None


def _bool(v: str, key: str) -> bool:
    if v.lower() in ("true", "1", "yes"):
        return True
    if v.lower() in ("false", "0", "no"):
        return False
    raise AnnotationError(f"{key}: {v!r} is not a boolean")


def _int(v: str, key: str, lo: int = 0, hi: int = 86400 * 7) -> int:
    if not re.fullmatch(r"[0-9]{1,9}", v.strip()) or not lo <= int(v) <= hi:
        raise AnnotationError(f"{key}: {v!r} is not an integer in [{lo}, {hi}]")
    return int(v)


def parse_size(v: str) -> int | None:
    """nginx size syntax (``200m``, ``8k``, ``1g``, bytes); ``0`` means no limit."""
    m = SIZE.match(v.strip())
    if not m:
        raise AnnotationError(f"proxy-body-size: {v!r} is not a size (like 200m)")
    n = int(m.group(1)) * UNITS[m.group(2).lower()]
    return None if n == 0 else n


def parse(ann: dict[str, str] | None) -> Options:
    """Options from an Ingress's annotations; invalid values keep the default and are reported."""
    ann = ann or {}
    kw: dict[str, object] = {}
    errors: list[str] = []

    def field_(key: str, conv: object, name: str) -> None:
        v = _get(ann, key)
        if v is None:
            return
        if "\r" in v or "\n" in v:
            errors.append(f"{key}: value contains CR/LF")
            return
        try:
            kw[name] = conv(v, key)  # type: ignore[operator]
        except AnnotationError as exc:
            errors.append(str(exc))

    field_("ssl-redirect", _bool, "ssl_redirect")
    field_("force-ssl-redirect", _bool, "force_ssl_redirect")
    field_("use-regex", _bool, "use_regex")
    field_("canary", _bool, "canary")
    field_("backend-protocol", _protocol, "protocol")
    field_("proxy-body-size", lambda v, k: parse_size(v), "body_limit")
    field_("proxy-connect-timeout", lambda v, k: _int(v, k, 1, 3600), "timeout_connect")
    read = _get(ann, "proxy-read-timeout")
    send = _get(ann, "proxy-send-timeout")
    if read is not None or send is not None:
        try:
            kw["timeout_server"] = max(_int(read, "proxy-read-timeout", 1) if read is not None else 0,
                                       _int(send, "proxy-send-timeout", 1) if send is not None else 0)
        except AnnotationError as exc:
            errors.append(str(exc))
    field_("rewrite-target", _rewrite, "rewrite")
    field_("whitelist-source-range", _cidrs, "allow")
    field_("allowlist-source-range", _cidrs, "allow")
    aff = _get(ann, "affinity")
    if aff is not None:
        if aff == "cookie":
            kw["affinity_cookie"] = "INGRESSCOOKIE"
            field_("session-cookie-name", _token, "affinity_cookie")
        else:
            errors.append(f"affinity: {aff!r} is not supported (only cookie)")
    field_("canary-weight", lambda v, k: _int(v, k, 0, 1_000_000), "canary_weight")
    field_("canary-weight-total", lambda v, k: _int(v, k, 1, 1_000_000), "canary_weight_total")
    field_("canary-by-header", _token, "canary_header")
    field_("canary-by-header-value", _header_value, "canary_header_value")
    field_("canary-by-cookie", _token, "canary_cookie")
    return Options(**kw, errors=tuple(errors))  # type: ignore[arg-type]


def _protocol(v: str, key: str) -> str:
    p = PROTOCOLS.get(v.strip().upper())
    if p is None:
        raise AnnotationError(f"{key}: {v!r} is not one of {', '.join(PROTOCOLS)}")
    return p


def _rewrite(v: str, key: str) -> str:
    if not v.startswith("/") or not REWRITE.match(v):
        raise AnnotationError(f"{key}: {v!r} must be a path with only URL characters and $n groups")
    return v


def _cidrs(v: str, key: str) -> tuple[str, ...]:
    out = []
    for part in v.split(","):
        part = part.strip()
        if not part:
            continue
        try:
            out.append(str(ipaddress.ip_network(part, strict=False)))
        except ValueError:
            raise AnnotationError(f"{key}: {part!r} is not a CIDR") from None
    return tuple(out)


def _token(v: str, key: str) -> str:
    if not TOKEN.match(v):
        raise AnnotationError(f"{key}: {v!r} is not a valid header/cookie name")
    return v


def _header_value(v: str, key: str) -> str:
    if not HEADER_VALUE.match(v) or "'" in v:
        raise AnnotationError(f"{key}: {v!r} is not a valid header value (visible ASCII, no CR/LF)")
    return v
