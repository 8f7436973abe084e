"""Standard cron schedules, as upstream's CronJob controller parses them (robfig/cron ``ParseStandard``).

Five fields (minute, hour, day of month, month, day of week) or a descriptor (``@hourly``,
``@daily``/``@midnight``, ``@weekly``, ``@monthly``, ``@yearly``/``@annually``, ``@every <dur>``).
Fields take ``*``/``?``, numbers, names (``JAN``, ``MON``), ranges, lists and ``/step``. As in
cron, when both day fields are restricted a day matches if either does.

Pure: :func:`parse` returns a frozen :class:`Schedule` or raises :class:`CronError` with the
parser's message (the API shows it as ``spec.schedule``'s error).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta

__all__ = ["CronError", "Schedule", "parse"]


class CronError(ValueError):
    pass


_MONTHS = {m: i + 1 for i, m in enumerate(("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct",
                                             "nov", "dec"))}
_DAYS = {d: i for i, d in enumerate(("sun", "mon", "tue", "wed", "thu", "fri", "sat"))}
# (low, high, names) per field
_BOUNDS: tuple[tuple[int, int, dict[str, int]], ...] = (
    (0, 59, {}), (0, 23, {}), (1, 31, {}), (1, 12, _MONTHS), (0, 6, _DAYS))
_DESCRIPTORS = {
    "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *", "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *", "@midnight": "0 0 * * *", "@hourly": "0 * * * *",
}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s|us|µs|ns)")
_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


@dataclass(frozen=True, slots=True)
class Schedule:
    minutes: frozenset[int] = frozenset()
    hours: frozenset[int] = frozenset()
    dom: frozenset[int] = frozenset()
    months: frozenset[int] = frozenset()
    dow: frozenset[int] = frozenset()
    dom_star: bool = True
    dow_star: bool = True
    every: float = 0.0  # seconds, for ``@every``

    def _day_matches(self, t: datetime) -> bool:
        d = t.day in self.dom
        w = (t.isoweekday() % 7) in self.dow
        if self.dom_star or self.dow_star:
            return d and w
        return d or w

    def next(self, after: datetime) -> datetime | None:
        """The first activation strictly after ``after`` (seconds dropped); None if none in 5 years."""
        if self.every:
            step = max(1.0, float(int(self.every)))
            return after.replace(microsecond=0) + timedelta(seconds=step)
        t = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
        limit = t + timedelta(days=366 * 5)
        while t < limit:
            if t.month not in self.months:
                t = (t.replace(day=1, hour=0, minute=0) + timedelta(days=32)).replace(day=1)
                continue
            if not self._day_matches(t):
                t = t.replace(hour=0, minute=0) + timedelta(days=1)
                continue
            if t.hour not in self.hours:
                t = t.replace(minute=0) + timedelta(hours=1)
                continue
            if t.minute not in self.minutes:
                t += timedelta(minutes=1)
                continue
            return t
        return None


def _parse_duration(s: str) -> float:
    pos, total = 0, 0.0
    if not s:
        raise CronError(f"failed to parse duration @every {s}: time: invalid duration \"{s}\"")
    for m in _DURATION.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT[m.group(2)]
        pos = m.end()
    if pos != len(s):
        raise CronError(f"failed to parse duration @every {s}: time: invalid duration \"{s}\"")
    return total


def _value(tok: str, names: dict[str, int]) -> int:
    low = tok.lower()
    if low in names:
        return names[low]
    if not tok.isdigit():
        raise CronError(f"failed to parse int from {tok}: strconv.Atoi: parsing \"{tok}\": invalid syntax")
    return int(tok)


def _field(expr: str, idx: int) -> tuple[frozenset[int], bool]:
    low, high, names = _BOUNDS[idx]
    out: set[int] = set()
    star = False
    for part in expr.split(","):
        rng, _, step_s = part.partition("/")
        if "/" in part and not step_s:
            raise CronError("failed to parse int from : strconv.Atoi: parsing \"\": invalid syntax")
        lo_s, dash, hi_s = rng.partition("-")
        whole = rng in ("*", "?")
        if whole:
            lo, hi = low, high
        else:
            lo = _value(lo_s, names)
            hi = _value(hi_s, names) if dash else lo
            if step_s and not dash:
                hi = high
        step = _value(step_s, {}) if step_s else 1
        star = star or (whole and step <= 1)
        if lo < low:
            raise CronError(f"beginning of range ({lo}) below minimum ({low}): {part}")
        if hi > high:
            raise CronError(f"end of range ({hi}) above maximum ({high}): {part}")
        if lo > hi:
            raise CronError(f"beginning of range ({lo}) beyond end of range ({hi}): {part}")
        if step == 0:
            raise CronError(f"step of range should be a positive number: {part}")
        out.update(range(lo, hi + 1, step))
    return frozenset(out), star


def parse(spec: str) -> Schedule:
    s = spec.strip()
    if not s:
        raise CronError("empty spec string")
    if s.startswith(("TZ=", "CRON_TZ=")):
        s = s.split(None, 1)[1] if " " in s else ""
    if s.startswith("@every "):
        return Schedule(every=_parse_duration(s[len("@every "):].strip()))
    if s.startswith("@"):
        if s not in _DESCRIPTORS:
            raise CronError(f"unrecognized descriptor: {s}")
        s = _DESCRIPTORS[s]
    fields = s.split()
    if len(fields) != 5:
        raise CronError(f"expected exactly 5 fields, found {len(fields)}: [{' '.join(fields)}]")
    parsed = [_field(f, i) for i, f in enumerate(fields)]
    return Schedule(minutes=parsed[0][0], hours=parsed[1][0], dom=parsed[2][0], months=parsed[3][0],
                    dow=parsed[4][0], dom_star=parsed[2][1], dow_star=parsed[4][1])
