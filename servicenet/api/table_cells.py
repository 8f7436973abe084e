"""Cells and columns shared by the Table printers (:mod:`servicenet.api.tables` and
:mod:`servicenet.api.tables_workloads`)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from servicenet.api.timefmt import translate_timestamp_since
from servicenet.api.wire import meta as meta_of

Obj = Mapping[str, Any]
Cell = str | int | bool
Row = tuple[list[Cell], list[dict[str, str]] | None]  # a row's cells and its conditions


def col(name: str, type_: str = "string", fmt: str = "", desc: str = "", prio: int = 0) -> dict[str, Any]:
    return {"name": name, "type": type_, "format": fmt, "description": desc, "priority": prio}


NAME = col("Name", fmt="name", desc="Name of the object, unique within its namespace.")
AGE = col("Age", desc="Time elapsed since the object was created.")
CONTAINERS = col("Containers", desc="Container names of the pod template.", prio=1)
IMAGES = col("Images", desc="Container images of the pod template.", prio=1)


def md(o: Obj) -> Mapping[str, Any]:
    return meta_of(o)


def spec(o: Obj) -> Mapping[str, Any]:
    return o.get("spec") or {}


def status(o: Obj) -> Mapping[str, Any]:
    return o.get("status") or {}


def age(o: Obj, now: datetime) -> str:
    return translate_timestamp_since(md(o).get("creationTimestamp"), now)


def containers(pod_spec: Mapping[str, Any]) -> tuple[str, str]:
    """The container names and images of a pod spec, comma-joined."""
    cs = pod_spec.get("containers") or []
    return ",".join(c.get("name", "") for c in cs), ",".join(c.get("image", "") for c in cs)
