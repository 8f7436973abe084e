"""PATCH bodies: JSON patch (RFC 6902), JSON merge patch (RFC 7386), strategic merge patch.

``apply_patch(kind_info, original, patch_bytes, content_type)`` returns the patched object; it
does not validate, default or touch ``resourceVersion`` — the caller does that as for a PUT.
Server-side apply (``application/apply-patch+yaml``) lives in ``apply.py``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

import jsonpatch
import jsonpointer

from servicenet.api.errors import ApiStatusError, bad_request
from servicenet.api.smp import strategic_merge_patch

__all__ = [
    "APPLY_PATCH",
    "JSON_PATCH",
    "MERGE_PATCH",
    "PATCH_CONTENT_TYPES",
    "STRATEGIC_PATCH",
    "apply_patch",
    "json_merge_patch",
    "kind_of",
    "media_type",
]

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"
PATCH_CONTENT_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH, APPLY_PATCH)

_BUILTIN_KINDS = frozenset([
    "Pod", "Service", "Endpoints", "EndpointSlice", "Deployment", "ReplicaSet", "StatefulSet", "DaemonSet",
    "Namespace", "Node", "ConfigMap", "Secret", "Event", "Ingress", "IngressClass", "ServiceAccount",
    "PodTemplate", "Job", "CronJob", "Lease", "ControllerRevision", "ServiceCIDR", "IPAddress", "Binding",
])


def kind_of(kind_info: Any) -> str:
    """Accept a bare kind string or any object with a ``kind`` attribute / key."""
    if isinstance(kind_info, str):
        return kind_info
    if isinstance(kind_info, Mapping):
        return str(kind_info.get("kind", ""))
    return str(getattr(kind_info, "kind", ""))


def _is_builtin(kind_info: Any) -> bool:
    for attr in ("builtin", "is_builtin"):
        v = getattr(kind_info, attr, None)
        if isinstance(v, bool):
            return v
    if getattr(kind_info, "crd", False):
        return False
    return kind_of(kind_info) in _BUILTIN_KINDS or not isinstance(kind_info, str)


def media_type(content_type: str | None) -> str:
    """``application/merge-patch+json; charset=utf-8`` → ``application/merge-patch+json``."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def _unsupported(content_type: str) -> ApiStatusError:
    return ApiStatusError(415, "UnsupportedMediaType",
                          f"the body of the request was in an unknown format - accepted media types include: "
                          f"{', '.join(PATCH_CONTENT_TYPES)}")


def _decode(patch_bytes: bytes) -> Any:
    try:
        return json.loads(patch_bytes)
    except (ValueError, UnicodeDecodeError) as e:
        raise bad_request(f"error decoding patch: {e}") from None


def json_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, ``null`` removes, everything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = json_merge_patch(out.get(k), v)
    return out


def apply_patch(kind_info: Any, original: Mapping[str, Any], patch_bytes: bytes,
                content_type: str) -> dict[str, Any]:
    """Apply a PATCH body to ``original`` (never mutated); raises ``ApiStatusError``.

    Errors: undecodable body → 400 BadRequest; a JSON patch op that cannot apply → 422 Invalid;
    unknown content type → 415 UnsupportedMediaType; strategic merge on a non-built-in kind → 415.
    """
    ct = media_type(content_type)
    if ct == JSON_PATCH:
        ops = _decode(patch_bytes)
        if not isinstance(ops, list):
            raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
        try:
            p = jsonpatch.JsonPatch(ops)
            result = p.apply(copy.deepcopy(dict(original)))
        except jsonpatch.InvalidJsonPatch as e:
            raise bad_request(str(e)) from None
        except (jsonpatch.JsonPatchConflict, jsonpatch.JsonPatchTestFailed, jsonpointer.JsonPointerException,
                KeyError, IndexError, TypeError) as e:
            raise ApiStatusError(422, "Invalid", str(e)) from None
        if not isinstance(result, dict):
            raise bad_request("json patch result is not an object")
        return result
    if ct == MERGE_PATCH:
        patch = _decode(patch_bytes)
        if not isinstance(patch, dict):
            raise bad_request("json: cannot unmarshal patch into Go value of type map[string]interface {}")
        return json_merge_patch(copy.deepcopy(dict(original)), patch)
    if ct == STRATEGIC_PATCH:
        if not _is_builtin(kind_info):
            raise ApiStatusError(415, "UnsupportedMediaType",
                                 "the body of the request was in an unknown format - accepted media types "
                                 "include: application/json-patch+json, application/merge-patch+json, "
                                 "application/apply-patch+yaml")
        return strategic_merge_patch(kind_of(kind_info), original, _decode(patch_bytes))
    raise _unsupported(ct)
