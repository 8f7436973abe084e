"""Table rows of stored records, kept between requests.

``kubectl get`` asks for Tables, page after page; decoding every object of a page again for each
request is most of the cost. A row depends on the stored bytes (``(key, mod_revision)``) and, through
its Age column, on the clock: rows whose only clock-dependent cell is Age are kept (cells, creation
time, metadata JSON) and their Age recomputed; others (``RESTARTS`` with "(5m ago)", Events' last-seen)
are rendered afresh every time.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson

from servicenet.api import tables
from servicenet.api.timefmt import translate_timestamp_since
from servicenet.api.wire import meta as meta_of
from servicenet.apiserver.responses import view_obj
from servicenet.store import Record

# a clock far enough ahead that every relative time printed changes
_LATER = dt.timedelta(days=400, hours=1, minutes=1, seconds=1)
_PARTIAL = "PartialObjectMetadata"
# (mod_revision, cells, age index, creationTimestamp, row conditions, metadata JSON,
#  the row's JSON before the Age cell, and from after it up to the object)
_Entry = tuple[int, list[Any], int, Any, Any, bytes, bytes, bytes]


def _row_json(cells: list[Any], age: int, conds: Any) -> tuple[bytes, bytes]:
    """A kept row's JSON around its Age cell: ``head + age + tail + object + b"}"`` is what
    ``orjson.dumps({"cells": cells, "conditions": conds, "object": object})`` writes."""
    before = orjson.dumps(cells[:age])
    after = orjson.dumps(cells[age + 1:])
    head = b'{"cells":' + (before[:-1] + b"," if age else b"[")
    tail = (b"," + after[1:] if len(after) > 2 else b"]")
    if conds:
        tail += b',"conditions":' + orjson.dumps(conds)
    return head, tail + b',"object":'


def _row(kind: str, obj: dict[str, Any], now: dt.datetime) -> tuple[list[Any], Any]:
    """One object's cells and row conditions, as ``tables.to_table`` prints them."""
    row = tables.to_table(kind, [obj], now=now, include_object="None")["rows"][0]
    return row["cells"], row.get("conditions")


def _fresh_row(cells: list[Any], conds: Any, obj: dict[str, Any], group_version: str) -> dict[str, Any]:
    """A row that is not kept (a cell besides Age moves with the clock), as ``tables.to_table`` writes it."""
    row: dict[str, Any] = {"cells": cells}
    if conds:
        row["conditions"] = conds
    row["object"] = tables.partial_object_metadata(obj, group_version)
    return row


class TableRows:
    def __init__(self, limit: int = 20_000) -> None:
        self.limit = limit
        self._rows: dict[str, _Entry | None] = {}

    def __len__(self) -> int:
        return len(self._rows)

    def _entry(self, kind: str, rec: Record, now: dt.datetime, group_version: str) -> tuple[_Entry | None, Any]:
        """The row of ``rec`` computed now: its kept entry, or (None, the row rendered afresh) when it
        cannot be kept."""
        obj = view_obj(rec)
        cells, conds = _row(kind, obj, now)
        names = [c["name"] for c in tables.column_definitions(kind)]
        age = names.index("Age") if "Age" in names else None
        entry: _Entry | None = None
        if age is not None:
            later, _ = _row(kind, obj, now + _LATER)
            created = meta_of(obj).get("creationTimestamp")
            if cells[age] == translate_timestamp_since(created, now) and all(
                    a == b for i, (a, b) in enumerate(zip(cells, later, strict=True)) if i != age):
                head, tail = _row_json(cells, age, conds)
                entry = (rec.mod_revision, cells, age, created, conds, orjson.dumps(meta_of(obj)),
                         head, tail)
        if len(self._rows) >= self.limit:
            self._rows.clear()
        self._rows[rec.key] = entry
        return entry, (None if entry is not None else _fresh_row(cells, conds, obj, group_version))

    def table(self, kind: str, recs: list[Record], *, now: dt.datetime, resource_version: str,
              continue_token: str | None, group_version: str = "meta.k8s.io/v1") -> dict[str, Any]:
        """``tables.to_table(kind, [view_obj(r) for r in recs], include_object="Metadata", …)``."""
        rows: list[dict[str, Any]] = []
        for rec in recs:
            hit = self._rows.get(rec.key)
            if hit is not None and hit[0] == rec.mod_revision:
                entry: _Entry | None = hit
                cells = list(hit[1])
                cells[hit[2]] = translate_timestamp_since(hit[3], now)
            else:
                entry, fresh = self._entry(kind, rec, now, group_version)
                if entry is None:  # rendered afresh, not kept
                    rows.append(fresh)
                    continue
                cells = list(entry[1])
            row: dict[str, Any] = {"cells": cells}
            if entry[4]:
                row["conditions"] = entry[4]
            row["object"] = {"kind": _PARTIAL, "apiVersion": group_version, "metadata": orjson.Fragment(entry[5])}
            rows.append(row)
        meta: dict[str, Any] = {"resourceVersion": resource_version} if resource_version else {}
        if continue_token:
            meta["continue"] = continue_token
        return {"kind": "Table", "apiVersion": group_version, "metadata": meta,
                "columnDefinitions": tables.column_definitions(kind), "rows": rows}

    def table_json(self, kind: str, recs: list[Record], *, now: dt.datetime, resource_version: str,
                   continue_token: str | None, group_version: str = "meta.k8s.io/v1") -> bytes:
        """``orjson.dumps(self.table(…))``, written from the kept rows' JSON: a page of ``kubectl get``
        is mostly copying bytes, and rows created in the same second share their Age text."""
        gv = orjson.dumps(group_version)
        obj_head = b'{"kind":"' + _PARTIAL.encode() + b'","apiVersion":' + gv + b',"metadata":'
        ages: dict[Any, bytes] = {}
        parts: list[bytes] = []
        append = parts.append
        for rec in recs:
            if parts:
                append(b",")
            hit = self._rows.get(rec.key)
            if hit is None or hit[0] != rec.mod_revision:
                entry, fresh = self._entry(kind, rec, now, group_version)
                if entry is None:  # rendered afresh, not kept
                    append(orjson.dumps(fresh))
                    continue
                hit = entry
            created = hit[3]
            age = ages.get(created)
            if age is None:
                age = ages[created] = orjson.dumps(translate_timestamp_since(created, now))
            parts += (hit[6], age, hit[7], obj_head, hit[5], b"}}")
        meta: dict[str, Any] = {"resourceVersion": resource_version} if resource_version else {}
        if continue_token:
            meta["continue"] = continue_token
        return b"".join((b'{"kind":"Table","apiVersion":', gv, b',"metadata":', orjson.dumps(meta),
                         b',"columnDefinitions":', orjson.dumps(tables.column_definitions(kind)), b',"rows":[',
                         *parts, b"]}"))
