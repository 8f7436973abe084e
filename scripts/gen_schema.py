#!/usr/bin/env python3
"""Generate ``servicenet/api/schema.json`` from the official ``kubernetes`` Python client.

The client's generated model classes know, for every API type, the JSON field names
(``attribute_map``), the field types (``openapi_types``), which fields are required
(pydantic ``model_fields``) and a description. We walk the types reachable from the kinds
servicenet serves and write them as OpenAPI-style definitions keyed by upstream's
definition names (``io.k8s.api.core.v1.Service``). The runtime only reads the JSON.

Run:  .venv/bin/python scripts/gen_schema.py  [--descriptions]
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import typing
from pathlib import Path
from typing import Any

import kubernetes
import kubernetes.client as kc

OUT = Path(__file__).resolve().parent.parent / "servicenet" / "api" / "schema.json"

# (group, version, kind, client class name) for every top-level kind we describe.
ROOTS: list[tuple[str, str, str, str]] = [
    ("", "v1", "Namespace", "V1Namespace"),
    ("", "v1", "Pod", "V1Pod"),
    ("", "v1", "Service", "V1Service"),
    ("", "v1", "Endpoints", "V1Endpoints"),
    ("", "v1", "Node", "V1Node"),
    ("", "v1", "Secret", "V1Secret"),
    ("", "v1", "ConfigMap", "V1ConfigMap"),
    ("", "v1", "Event", "CoreV1Event"),
    ("", "v1", "Binding", "V1Binding"),
    ("", "v1", "ReplicationController", "V1ReplicationController"),
    ("discovery.k8s.io", "v1", "EndpointSlice", "V1EndpointSlice"),
    ("coordination.k8s.io", "v1", "Lease", "V1Lease"),
    ("apps", "v1", "Deployment", "V1Deployment"),
    ("apps", "v1", "ReplicaSet", "V1ReplicaSet"),
    ("apps", "v1", "StatefulSet", "V1StatefulSet"),
    ("apps", "v1", "ControllerRevision", "V1ControllerRevision"),
    ("apps", "v1", "DaemonSet", "V1DaemonSet"),
    ("batch", "v1", "Job", "V1Job"),
    ("batch", "v1", "CronJob", "V1CronJob"),
    ("networking.k8s.io", "v1", "Ingress", "V1Ingress"),
    ("networking.k8s.io", "v1", "IngressClass", "V1IngressClass"),
    ("autoscaling", "v1", "Scale", "V1Scale"),
    ("policy", "v1", "Eviction", "V1Eviction"),
    ("apiextensions.k8s.io", "v1", "CustomResourceDefinition", "V1CustomResourceDefinition"),
    ("admissionregistration.k8s.io", "v1", "ValidatingAdmissionPolicy", "V1ValidatingAdmissionPolicy"),
    ("admissionregistration.k8s.io", "v1", "ValidatingAdmissionPolicyBinding", "V1ValidatingAdmissionPolicyBinding"),
    ("", "v1", "ServiceAccount", "V1ServiceAccount"),
    ("rbac.authorization.k8s.io", "v1", "Role", "V1Role"),
    ("rbac.authorization.k8s.io", "v1", "ClusterRole", "V1ClusterRole"),
    ("rbac.authorization.k8s.io", "v1", "RoleBinding", "V1RoleBinding"),
    ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "V1ClusterRoleBinding"),
    ("authentication.k8s.io", "v1", "TokenRequest", "AuthenticationV1TokenRequest"),
    ("authentication.k8s.io", "v1", "TokenReview", "V1TokenReview"),
    ("authentication.k8s.io", "v1", "SelfSubjectReview", "V1SelfSubjectReview"),
    ("authorization.k8s.io", "v1", "SubjectAccessReview", "V1SubjectAccessReview"),
    ("authorization.k8s.io", "v1", "SelfSubjectAccessReview", "V1SelfSubjectAccessReview"),
    ("authorization.k8s.io", "v1", "LocalSubjectAccessReview", "V1LocalSubjectAccessReview"),
    ("authorization.k8s.io", "v1", "SelfSubjectRulesReview", "V1SelfSubjectRulesReview"),
]
LISTS: dict[str, str] = {  # client class of each kind's List
    "V1Namespace": "V1NamespaceList", "V1Pod": "V1PodList", "V1Service": "V1ServiceList",
    "V1Endpoints": "V1EndpointsList", "V1Node": "V1NodeList", "V1Secret": "V1SecretList",
    "V1ConfigMap": "V1ConfigMapList", "CoreV1Event": "CoreV1EventList",
    "V1EndpointSlice": "V1EndpointSliceList", "V1Deployment": "V1DeploymentList",
    "V1ReplicaSet": "V1ReplicaSetList", "V1StatefulSet": "V1StatefulSetList",
    "V1ControllerRevision": "V1ControllerRevisionList", "V1Ingress": "V1IngressList",
    "V1CustomResourceDefinition": "V1CustomResourceDefinitionList",
    "V1ValidatingAdmissionPolicy": "V1ValidatingAdmissionPolicyList",
    "V1ValidatingAdmissionPolicyBinding": "V1ValidatingAdmissionPolicyBindingList",
    "V1IngressClass": "V1IngressClassList", "V1ServiceAccount": "V1ServiceAccountList",
    "V1Role": "V1RoleList", "V1ClusterRole": "V1ClusterRoleList", "V1RoleBinding": "V1RoleBindingList",
    "V1ClusterRoleBinding": "V1ClusterRoleBindingList", "V1Lease": "V1LeaseList",
    "V1ReplicationController": "V1ReplicationControllerList",
    "V1DaemonSet": "V1DaemonSetList", "V1Job": "V1JobList", "V1CronJob": "V1CronJobList",
}
META_PKG = "io.k8s.apimachinery.pkg.apis.meta.v1"
META = {
    "V1ObjectMeta", "V1ListMeta", "V1LabelSelector", "V1LabelSelectorRequirement", "V1OwnerReference",
    "V1ManagedFieldsEntry", "V1Status", "V1StatusDetails", "V1StatusCause", "V1DeleteOptions",
    "V1Preconditions", "V1WatchEvent", "V1Condition",
}
EXTRA_META = ["V1Status", "V1DeleteOptions", "V1WatchEvent"]
GROUP_PKG = {
    "": "io.k8s.api.core.v1", "apps": "io.k8s.api.apps.v1", "discovery.k8s.io": "io.k8s.api.discovery.v1",
    "networking.k8s.io": "io.k8s.api.networking.v1", "autoscaling": "io.k8s.api.autoscaling.v1",
    "apiextensions.k8s.io": "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1",
    "admissionregistration.k8s.io": "io.k8s.api.admissionregistration.v1",
    "policy": "io.k8s.api.policy.v1", "rbac.authorization.k8s.io": "io.k8s.api.rbac.v1",
    "authentication.k8s.io": "io.k8s.api.authentication.v1", "authorization.k8s.io": "io.k8s.api.authorization.v1",
    "batch": "io.k8s.api.batch.v1", "coordination.k8s.io": "io.k8s.api.coordination.v1",
}
_PREFIX = re.compile(r"^[A-Z][a-z]*V\d+(?:(?:alpha|beta)\d+)?(?=[A-Z])|^V\d+(?:(?:alpha|beta)\d+)?(?=[A-Z])")
_MODEL_RE = re.compile(r"^(?:[A-Z][a-z]*)?V\d\w*$")


def go_name(cls_name: str) -> str:
    return _PREFIX.sub("", cls_name)


def _is_int_or_string(annotation: Any) -> bool:
    args = set()
    for a in typing.get_args(annotation):
        base = typing.get_args(a)[0] if typing.get_origin(a) is typing.Annotated else a
        args.add(base)
    return int in args and str in args


def _type_schema(t: str, annotation: Any, refs: list[str]) -> dict[str, Any]:
    t = t.strip()
    m = re.fullmatch(r"List\[(.*)\]", t)
    if m:
        return {"type": "array", "items": _type_schema(m.group(1), None, refs)}
    m = re.fullmatch(r"Dict\[str, (.*)\]", t)
    if m:
        return {"type": "object", "additionalProperties": _type_schema(m.group(1), None, refs)}
    simple = {"str": {"type": "string"}, "int": {"type": "integer"}, "bool": {"type": "boolean"},
              "float": {"type": "number"}, "datetime": {"type": "string", "format": "date-time"},
              "bytes": {"type": "string", "format": "byte"}}
    if t in simple:
        return dict(simple[t])
    if t == "object":
        if annotation is not None and _is_int_or_string(annotation):
            return {"$ref": "io.k8s.apimachinery.pkg.util.intstr.IntOrString"}
        return {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    if _MODEL_RE.match(t):
        refs.append(t)
        return {"$ref": t}
    raise ValueError(f"unknown client type {t!r}")


def _rank(pkg: str) -> int:
    return 0 if pkg in (GROUP_PKG[""], META_PKG) else 1


def build(descriptions: bool) -> dict[str, Any]:
    pkg_of: dict[str, str] = {}
    queue: list[tuple[str, str]] = []
    for group, _v, _k, cls in ROOTS:
        queue.append((cls, GROUP_PKG[group]))
        if cls in LISTS:
            queue.append((LISTS[cls], GROUP_PKG[group]))
    queue += [(c, META_PKG) for c in EXTRA_META]
    # Core types that are shared by other groups: walk them as core first.
    queue += [(c, GROUP_PKG[""]) for c in ("V1PodTemplate", "V1PersistentVolumeClaim")]
    # Core kinds first so shared core types (PodTemplateSpec…) land in core.
    queue.sort(key=lambda x: _rank(x[1]))
    raw: dict[str, dict[str, Any]] = {}
    while queue:
        cls_name, pkg = queue.pop(0)
        if queue and _rank(pkg) > _rank(queue[0][1]):
            queue.append((cls_name, pkg))  # finish core/meta types before other groups
            queue.sort(key=lambda x: _rank(x[1]))
            continue
        if cls_name in raw:
            continue
        cls = getattr(kc, cls_name)
        pkg = META_PKG if cls_name in META else pkg
        pkg_of[cls_name] = pkg
        props: dict[str, Any] = {}
        required: list[str] = []
        refs: list[str] = []
        fields = cls.model_fields
        for attr, typ in cls.openapi_types.items():
            json_name = cls.attribute_map[attr]
            f = fields.get(attr)
            sch = _type_schema(typ, f.annotation if f is not None else None, refs)
            if descriptions and f is not None and f.description:
                sch = {"description": f.description, **sch} if "$ref" not in sch else \
                    {"description": f.description, "allOf": [sch]}
            props[json_name] = sch
            if f is not None and f.is_required():
                required.append(json_name)
        d: dict[str, Any] = {"type": "object", "properties": props}
        if required:
            d["required"] = required
        doc = (cls.__doc__ or "").split("Attributes:")[0].strip()
        if descriptions and doc:
            d = {"description": " ".join(doc.split()), **d}
        raw[cls_name] = d
        for r in refs:
            queue.append((r, pkg))
    # rename client classes to upstream definition names
    names = {c: f"{pkg_of[c]}.{go_name(c)}" for c in raw}

    def fix(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: (names.get(v, v) if k == "$ref" and isinstance(v, str) else fix(v)) for k, v in node.items()}
        if isinstance(node, list):
            return [fix(x) for x in node]
        return node

    defs = {names[c]: fix(d) for c, d in raw.items()}
    defs["io.k8s.apimachinery.pkg.util.intstr.IntOrString"] = {"type": "string", "format": "int-or-string"}
    kinds: dict[str, str] = {}
    for group, version, kind, cls in ROOTS:
        api_version = f"{group}/{version}" if group else version
        kinds[f"{api_version}/{kind}"] = names[cls]
        defs[names[cls]]["x-kubernetes-group-version-kind"] = [{"group": group, "version": version, "kind": kind}]
        if cls in LISTS:
            kinds[f"{api_version}/{kind}List"] = names[LISTS[cls]]
            defs[names[LISTS[cls]]]["x-kubernetes-group-version-kind"] = [
                {"group": group, "version": version, "kind": kind + "List"}]
    return {
        "generator": f"scripts/gen_schema.py from kubernetes python client {kubernetes.__version__}",
        "kinds": dict(sorted(kinds.items())),
        "definitions": dict(sorted(defs.items())),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--descriptions", action="store_true",
                    help="include the client's field descriptions (upstream text; not shipped)")
    ap.add_argument("-o", "--output", type=Path, default=OUT)
    args = ap.parse_args(argv)
    data = build(descriptions=args.descriptions)
    args.output.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
    print(f"wrote {args.output}: {len(data['definitions'])} definitions, {len(data['kinds'])} kinds")
    return 0


if __name__ == "__main__":
    sys.exit(main())
