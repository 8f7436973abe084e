"""The CRD versions being served right now, by (group, version, plural).

Set by the API server's CRD controller whenever CRDs change (beside ``resources.set_dynamic``);
read where a request for a custom resource needs its schema, columns or versions.
"""

from __future__ import annotations

from servicenet.api.crd.structural import CrdVersion
from servicenet.api.resources import ResourceInfo

_VERSIONS: dict[tuple[str, str, str], CrdVersion] = {}


def set_versions(versions: dict[tuple[str, str, str], CrdVersion]) -> None:
    global _VERSIONS
    _VERSIONS = dict(versions)


def version(info: ResourceInfo) -> CrdVersion | None:
    """The served CRD version behind ``info``; None for built-in kinds."""
    return _VERSIONS.get(info.gvr) if _VERSIONS else None
