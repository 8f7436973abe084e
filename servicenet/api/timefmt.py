"""Time helpers: RFC 3339 parsing/formatting and upstream's human-readable durations.

``human_duration``/``short_human_duration`` reproduce ``apimachinery/pkg/util/duration``
(what ``kubectl get`` shows in AGE columns).  ``translate_timestamp_since`` is the printers'
helper: ``<unknown>`` for a missing timestamp.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

__all__ = [
    "format_rfc3339",
    "human_duration",
    "parse_rfc3339",
    "short_human_duration",
    "translate_timestamp_since",
]

_US = 1_000_000


def _micros(d: timedelta) -> int:
    return (d.days * 86400 + d.seconds) * _US + d.microseconds


def _trunc_div(a: int, b: int) -> int:
    """Go-style integer division (truncates toward zero)."""
    q = abs(a) // b
    return q if a >= 0 else -q


def short_human_duration(d: timedelta) -> str:
    us = _micros(d)
    seconds = _trunc_div(us, _US)
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 60:
        return f"{seconds}s"
    minutes = us // (60 * _US)
    if minutes < 60:
        return f"{minutes}m"
    hours = us // (3600 * _US)
    if hours < 24:
        return f"{hours}h"
    if hours < 24 * 365:
        return f"{hours // 24}d"
    return f"{hours // 24 // 365}y"


def human_duration(d: timedelta) -> str:
    """~2–3 significant figures: ``45s``, ``3m20s``, ``15m``, ``4h5m``, ``30h``, ``3d4h``, ``40d``, ``2y5d``."""
    us = _micros(d)
    seconds = _trunc_div(us, _US)
    if seconds < -1:
        return "<invalid>"
    if seconds < 0:
        return "0s"
    if seconds < 60 * 2:
        return f"{seconds}s"
    minutes = us // (60 * _US)
    if minutes < 10:
        s = (us // _US) % 60
        return f"{minutes}m" if s == 0 else f"{minutes}m{s}s"
    if minutes < 60 * 3:
        return f"{minutes}m"
    hours = us // (3600 * _US)
    if hours < 8:
        m = minutes % 60
        return f"{hours}h" if m == 0 else f"{hours}h{m}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        h = hours % 24
        return f"{hours // 24}d" if h == 0 else f"{hours // 24}d{h}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if dy == 0 else f"{hours // 24 // 365}y{dy}d"
    return f"{hours // 24 // 365}y"


def parse_rfc3339(s: str | None) -> datetime | None:
    """Parse ``2024-01-02T03:04:05Z`` / ``…​.123456789Z`` / ``+01:00`` forms; ``None`` if empty/invalid."""
    if not s:
        return None
    t = s.strip()
    if t.endswith(("Z", "z")):
        t = t[:-1] + "+00:00"
    # Python accepts at most 6 fractional digits: trim nanoseconds
    if "." in t:
        head, _, rest = t.partition(".")
        i = 0
        while i < len(rest) and rest[i].isdigit():
            i += 1
        frac, tz = rest[:i], rest[i:]
        t = head + ("." + frac[:6].ljust(6, "0") if frac else "") + tz
    try:
        dt = datetime.fromisoformat(t)
    except ValueError:
        return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt


def format_rfc3339(dt: datetime) -> str:
    """Seconds precision, UTC, ``Z`` suffix (``metav1.Time`` JSON form)."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def translate_timestamp_since(ts: str | None, now: datetime) -> str:
    dt = parse_rfc3339(ts)
    if dt is None:
        return "<unknown>"
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    return human_duration(now - dt)
