"""Validation of built-in kinds with upstream's field paths and messages.

``validate_create(info, obj)`` / ``validate_update(info, new, old)`` return ``FieldError``s; the
API server turns a non-empty list into ``errors.invalid_object(kind, group, name, errs)`` (422).
Objects are expected to be defaulted (``defaults.apply_defaults``) before validation.

Layout (no circles): ``_validation_base`` (string checks, metadata, selectors) <- ``_validation_net``
(EndpointSlice, Endpoints, ConfigMap, Secret, Ingress, Namespace, Node) <- ``_validation_kinds``
(Service, Pod, workloads, and the per-kind dispatch), ``_validation_workloads`` (ReplicationController,
DaemonSet, Job, CronJob, ServiceAccount) <- this facade.
"""

from __future__ import annotations

from servicenet.api import _validation_kinds as _kinds
from servicenet.api import _validation_workloads as _more
from servicenet.api._validation_base import (
    Errs,
    Obj,
    is_config_map_key,
    is_dns1035_label,
    is_dns1123_label,
    is_dns1123_subdomain,
    is_qualified_name,
    is_valid_label_value,
    is_valid_port_name,
    is_valid_port_num,
    validate_object_meta_update,
)
from servicenet.api.resources import ResourceInfo

__all__ = [
    "is_config_map_key", "is_dns1035_label", "is_dns1123_label", "is_dns1123_subdomain", "is_qualified_name",
    "is_valid_label_value", "is_valid_port_name", "is_valid_port_num", "validate_create", "validate_update",
]


def validate_create(info: ResourceInfo, obj: Obj, *, allow_loopback_endpoints: bool = True) -> Errs:
    """All errors for creating ``obj`` (already defaulted) of resource ``info``."""
    errs = _more.validate(info, obj, None)
    return _kinds.validate(info, obj, None, allow_loopback_endpoints) if errs is None else errs


def validate_update(info: ResourceInfo, new: Obj, old: Obj, *, allow_loopback_endpoints: bool = True) -> Errs:
    """All errors for replacing ``old`` by ``new`` (metadata immutability, per-kind update rules)."""
    errs = _more.validate(info, new, old)
    if errs is None:
        errs = _kinds.validate(info, new, old, allow_loopback_endpoints)
    return validate_object_meta_update(new, old) + errs
