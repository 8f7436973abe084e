"""Kubernetes ``Status`` errors, shaped exactly like the upstream API server's.

``details.kind`` is the resource plural for NotFound/AlreadyExists/Conflict but the Kind for
Invalid; messages name the qualified resource (``pods``, ``deployments.apps``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class FieldError:
    """One validation failure. ``kind`` is the cause reason suffix (``Invalid``, ``Required``…)."""

    kind: str  # Invalid | Required | Duplicate | NotSupported | Forbidden | TooLong | TooMany
    field: str
    detail: str = ""
    value: Any = None
    has_value: bool = False

    @property
    def reason(self) -> str:
        return "FieldValue" + self.kind

    def message(self) -> str:
        """The per-cause message, as upstream's ``field.Error.ErrorBody``."""
        if self.kind in ("Invalid", "TypeInvalid"):
            s = f"Invalid value: {_render(self.value)}"
        elif self.kind == "Required":
            s = "Required value"
        elif self.kind == "Duplicate":
            s = f"Duplicate value: {_render(self.value)}"
        elif self.kind == "NotSupported":
            s = f"Unsupported value: {_render(self.value)}"
        elif self.kind == "Forbidden":
            s = "Forbidden"
        elif self.kind == "TooLong":
            s = "Too long"
        elif self.kind == "TooMany":
            s = "Too many"
        else:
            s = self.kind
        if self.detail:
            s += ": " + self.detail
        return s

    def full(self) -> str:
        return f"{self.field}: {self.message()}"


def invalid(field_: str, value: Any, detail: str) -> FieldError:
    return FieldError("Invalid", field_, detail, value, True)


def required(field_: str, detail: str = "") -> FieldError:
    return FieldError("Required", field_, detail)


def forbidden(field_: str, detail: str) -> FieldError:
    return FieldError("Forbidden", field_, detail)


def duplicate(field_: str, value: Any) -> FieldError:
    return FieldError("Duplicate", field_, "", value, True)


def not_supported(field_: str, value: Any, valid: list[str]) -> FieldError:
    detail = "supported values: " + ", ".join(f'"{v}"' for v in valid) if valid else ""
    return FieldError("NotSupported", field_, detail, value, True)


def _render(v: Any) -> str:
    """Go's ``%#v``-ish rendering upstream uses for values in messages."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, int | float):
        return str(v)
    if v is None:
        return "null"
    if isinstance(v, list):
        return "[" + ",".join(_render(x) for x in v) + "]"  # upstream prints []string as ["a","b"]
    if isinstance(v, dict):
        return "{" + ",".join(f"{_render(k)}:{_render(x)}" for k, x in v.items()) + "}"
    return str(v)


@dataclass
class ApiStatusError(Exception):
    """An error the API server answers with a ``Status`` object."""

    code: int
    reason: str
    message: str
    details: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)

    def __str__(self) -> str:
        return f"{self.code} {self.reason}: {self.message}"

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
        }
        if self.details is not None:
            body["details"] = self.details
        body["code"] = self.code
        return body


def _qualified(resource: str, group: str) -> str:
    return f"{resource}.{group}" if group else resource


def _details(name: str, group: str, kind: str) -> dict[str, Any]:
    d: dict[str, Any] = {}
    if name:
        d["name"] = name
    if group:
        d["group"] = group
    d["kind"] = kind
    return d


def not_found(resource: str, group: str, name: str) -> ApiStatusError:
    return ApiStatusError(404, "NotFound", f'{_qualified(resource, group)} "{name}" not found',
                          _details(name, group, resource))


def already_exists(resource: str, group: str, name: str) -> ApiStatusError:
    return ApiStatusError(409, "AlreadyExists", f'{_qualified(resource, group)} "{name}" already exists',
                          _details(name, group, resource))


def conflict(resource: str, group: str, name: str, why: str | None = None) -> ApiStatusError:
    why = why or "the object has been modified; please apply your changes to the latest version and try again"
    return ApiStatusError(409, "Conflict",
                          f'Operation cannot be fulfilled on {_qualified(resource, group)} "{name}": {why}',
                          _details(name, group, resource))


def invalid_object(kind: str, group: str, name: str, errors: list[FieldError]) -> ApiStatusError:
    """422 Invalid, message ``Kind "name" is invalid: <errors>`` as upstream's NewInvalid."""
    causes = [{"reason": e.reason, "message": e.message(), "field": e.field} for e in errors]
    if len(errors) == 1:
        agg = errors[0].full()
    else:
        agg = "[" + ", ".join(e.full() for e in errors) + "]"
    qkind = f"{kind}.{group}" if group else kind
    d = _details(name, group, kind)
    d["causes"] = causes
    return ApiStatusError(422, "Invalid", f'{qkind} "{name}" is invalid: {agg}', d)


def bad_request(message: str) -> ApiStatusError:
    return ApiStatusError(400, "BadRequest", message)


def unauthorized(message: str = "Unauthorized") -> ApiStatusError:
    return ApiStatusError(401, "Unauthorized", message)


def forbidden_error(message: str, resource: str = "", group: str = "", name: str = "") -> ApiStatusError:
    return ApiStatusError(403, "Forbidden", message,
                          _details(name, group, resource) if resource else None)


def method_not_allowed(message: str) -> ApiStatusError:
    return ApiStatusError(405, "MethodNotAllowed", message)


def not_acceptable(message: str) -> ApiStatusError:
    return ApiStatusError(406, "NotAcceptable", message)


def unsupported_media_type(content_type: str) -> ApiStatusError:
    return ApiStatusError(415, "UnsupportedMediaType", "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml, application/strategic-merge-patch+json" if content_type.startswith("application/") and "patch" in content_type else f'unsupported media type "{content_type}"')


def expired(message: str) -> ApiStatusError:
    return ApiStatusError(410, "Expired", message)


def gone(message: str) -> ApiStatusError:
    return ApiStatusError(410, "Gone", message)


def internal(message: str) -> ApiStatusError:
    return ApiStatusError(500, "InternalError", f"Internal error occurred: {message}")


def unserved() -> ApiStatusError:
    """A path or kind this server does not serve (upstream's generic 404, with empty details)."""
    return ApiStatusError(404, "NotFound", "the server could not find the requested resource", {})
