"""Server-side apply shapes of a CRD version: ``x-kubernetes-list-type``/``-list-map-keys`` lists and
``x-kubernetes-map-type: atomic`` maps, as the path tables :mod:`servicenet.api.apply` merges by (pure)."""

from __future__ import annotations

from typing import Any

from servicenet.api.crd import schema as sch
from servicenet.api.smp import ListSpec

Path = tuple[str, ...]


def list_specs(root: sch.Schema) -> dict[Path, ListSpec]:
    """Field-name path (no indices) → how the list there merges; atomic lists are left out."""
    out: dict[Path, ListSpec] = {}
    _walk(root, (), out, None)
    return out


def atomic_maps(root: sch.Schema) -> frozenset[Path]:
    acc: set[Path] = set()
    _walk(root, (), None, acc)
    return frozenset(acc)


def _walk(s: Any, path: Path, lists: dict[Path, ListSpec] | None, maps: set[Path] | None) -> None:
    if not isinstance(s, dict) or len(path) > 64:
        return
    t = s.get("type")
    if t == "array":
        lt = s.get(sch.LIST_TYPE)
        if lists is not None and lt == "map":
            keys = tuple(k for k in s.get(sch.LIST_MAP_KEYS) or () if isinstance(k, str))
            if keys:
                lists[path] = ListSpec("merge", keys[0], "map", keys)
        elif lists is not None and lt == "set":
            lists[path] = ListSpec("merge", "", "set")
        it = sch.items(s)
        if it is not None:
            _walk(it, path, lists, maps)
        return
    if t == "object" or sch.props(s) or sch.addl(s):
        if maps is not None and (s.get(sch.MAP_TYPE) == "atomic" or s.get("x-kubernetes-map-type") == "atomic"):
            maps.add(path)
        for k, v in sch.props(s).items():
            _walk(v, (*path, k), lists, maps)
        ap = sch.addl(s)
        if ap is not None:
            _walk(ap, path, lists, maps)
