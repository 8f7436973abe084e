"""ValidatingAdmissionPolicy and ValidatingAdmissionPolicyBinding (``admissionregistration.k8s.io/v1``),
evaluated with the CEL engine of :mod:`.celrules` (pure: objects in, decisions out).

A request is judged by every binding whose policy exists; a binding applies when both the policy's
``matchConstraints`` and the binding's ``matchResources`` match and every ``matchCondition`` holds.
Each failing validation yields a :class:`Decision` carrying the binding's ``validationActions``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from servicenet.api import errors
from servicenet.api.crd.celrules import CelCompileError, compile_expr
from servicenet.api.errors import ApiStatusError, FieldError
from servicenet.api.selectors import label_selector_from_dict
from servicenet.api.wire import meta as meta_of

_REASON_CODES = {"Unauthorized": 401, "Forbidden": 403, "Invalid": 422, "RequestEntityTooLarge": 413}
_ACTIONS = ("Deny", "Warn", "Audit")


@dataclass(frozen=True)
class Attributes:
    """What is being done: the admission request as policies see it."""

    operation: str  # CREATE | UPDATE | DELETE | CONNECT
    group: str
    version: str
    resource: str
    subresource: str
    kind: str
    namespace: str
    name: str
    obj: Any
    old: Any
    user: Mapping[str, Any] = field(default_factory=dict)
    dry_run: bool = False

    def request(self) -> dict[str, Any]:
        gvk = {"group": self.group, "version": self.version, "kind": self.kind}
        gvr = {"group": self.group, "version": self.version, "resource": self.resource}
        return {"kind": gvk, "resource": gvr, "subResource": self.subresource, "requestKind": gvk,
                "requestResource": gvr, "requestSubResource": self.subresource, "name": self.name,
                "namespace": self.namespace, "operation": self.operation, "userInfo": dict(self.user),
                "dryRun": self.dry_run}


@dataclass(frozen=True)
class Decision:
    action: str  # Deny | Warn | Audit
    policy: str
    binding: str
    message: str
    reason: str = "Invalid"


# ---------------------------------------------------------------- validation of the policy objects


def validate_policy(vap: dict[str, Any]) -> list[FieldError]:
    out: list[FieldError] = []
    spec = vap.get("spec")
    if not isinstance(spec, dict):
        return [errors.required("spec", "")]
    fp = spec.get("failurePolicy", "Fail")
    if fp not in ("Fail", "Ignore"):
        out.append(errors.not_supported("spec.failurePolicy", fp, ["Fail", "Ignore"]))
    if not isinstance(spec.get("matchConstraints"), dict):
        out.append(errors.required("spec.matchConstraints", ""))
    vals = spec.get("validations") or []
    if not vals and not spec.get("auditAnnotations"):
        out.append(errors.required("spec.validations", "validations or auditAnnotations must contain at least one "
                                   "item"))
    for i, v in enumerate(vals):
        p = f"spec.validations[{i}]"
        expr = v.get("expression") if isinstance(v, dict) else None
        if not isinstance(expr, str) or not expr.strip():
            out.append(errors.required(f"{p}.expression", ""))
            continue
        out += _compiles(expr, f"{p}.expression")
        if isinstance(v.get("messageExpression"), str):
            out += _compiles(v["messageExpression"], f"{p}.messageExpression")
        r = v.get("reason")
        if r is not None and r not in _REASON_CODES:
            out.append(errors.not_supported(f"{p}.reason", r, sorted(_REASON_CODES)))
    for i, v in enumerate(spec.get("variables") or []):
        p = f"spec.variables[{i}]"
        if not isinstance(v, dict) or not v.get("name"):
            out.append(errors.required(f"{p}.name", ""))
        elif isinstance(v.get("expression"), str):
            out += _compiles(v["expression"], f"{p}.expression")
    for i, v in enumerate(spec.get("matchConditions") or []):
        if isinstance(v, dict) and isinstance(v.get("expression"), str):
            out += _compiles(v["expression"], f"spec.matchConditions[{i}].expression")
    return out


def validate_binding(b: dict[str, Any]) -> list[FieldError]:
    out: list[FieldError] = []
    spec = b.get("spec")
    if not isinstance(spec, dict):
        return [errors.required("spec", "")]
    if not spec.get("policyName"):
        out.append(errors.required("spec.policyName", ""))
    acts = spec.get("validationActions")
    if not acts:
        out.append(errors.required("spec.validationActions", "at least one validation action is required"))
    else:
        for i, a in enumerate(acts):
            if a not in _ACTIONS:
                out.append(errors.not_supported(f"spec.validationActions[{i}]", a, list(_ACTIONS)))
        if "Deny" in acts and "Warn" in acts:
            out.append(errors.invalid("spec.validationActions", acts, "must not contain both Deny and Warn "
                                      "(repeating the same validation failure information in the API response "
                                      "and headers serves no purpose)"))
    return out


def _compiles(expr: str, path: str) -> list[FieldError]:
    try:
        compile_expr(expr)
    except CelCompileError as exc:
        return [errors.invalid(path, expr, f"compilation failed: {exc}")]
    return []


# ---------------------------------------------------------------- matching


def _in(values: Any, v: str) -> bool:
    return isinstance(values, list) and ("*" in values or v in values)


def _resource_match(rule_resources: Any, resource: str, sub: str) -> bool:
    if not isinstance(rule_resources, list):
        return False
    want = f"{resource}/{sub}" if sub else resource
    for r in rule_resources:
        if r == "*/*" or r == want:
            return True
        if r == "*" and not sub:
            return True
        if "/" in r:
            a, b = r.split("/", 1)
            if (a == "*" and b == sub and sub) or (a == resource and b == "*" and sub):
                return True
    return False


def _rule_match(rule: Mapping[str, Any], a: Attributes) -> bool:
    ops = rule.get("operations") or ["*"]
    if not (_in(ops, a.operation)):
        return False
    if not _in(rule.get("apiGroups"), a.group) or not _in(rule.get("apiVersions"), a.version):
        return False
    if not _resource_match(rule.get("resources"), a.resource, a.subresource):
        return False
    names = rule.get("resourceNames")
    if names and a.name not in names:
        return False
    scope = rule.get("scope", "*")
    return not (scope == "Namespaced" and not a.namespace or scope == "Cluster" and a.namespace)


def _selector_match(sel: Any, labels: Mapping[str, str]) -> bool:
    if not isinstance(sel, dict) or not sel:
        return True
    try:
        return bool(label_selector_from_dict(sel).matches(dict(labels)))
    except (ValueError, ApiStatusError):
        return False


def _labels(o: Any) -> dict[str, str]:
    if not isinstance(o, dict):
        return {}
    return dict((meta_of(o).get("labels")) or {})


def resources_match(mr: Any, a: Attributes, ns_labels: Callable[[str], Mapping[str, str] | None]) -> bool:
    if not isinstance(mr, dict):
        return False
    rules = mr.get("resourceRules")
    if rules is not None and not any(_rule_match(r, a) for r in rules if isinstance(r, dict)):
        return False
    if any(_rule_match(r, a) for r in mr.get("excludeResourceRules") or [] if isinstance(r, dict)):
        return False
    osel = mr.get("objectSelector")
    if osel and not (_selector_match(osel, _labels(a.obj)) or _selector_match(osel, _labels(a.old))):
        return False
    nsel = mr.get("namespaceSelector")
    if nsel and a.namespace:
        labels = ns_labels(a.namespace)
        if not _selector_match(nsel, labels or {}):
            return False
    return True


# ---------------------------------------------------------------- evaluation


class _EvalError(Exception):
    pass


def _run(expr: str, env: dict[str, Any]) -> Any:
    try:
        return compile_expr(expr).run(env)
    except CelCompileError as exc:
        raise _EvalError(f"compilation error: {exc}") from None
    except Exception as exc:
        text = str(exc).strip().splitlines()
        raise _EvalError(text[0] if text else type(exc).__name__) from None


def evaluate(policy: dict[str, Any], binding: dict[str, Any], a: Attributes,
             ns_labels: Callable[[str], Mapping[str, str] | None],
             get_params: Callable[[dict[str, Any], dict[str, Any], str], list[Any] | None]) -> list[Decision]:
    """The decisions one (policy, binding) pair makes about request ``a`` (empty: allowed)."""
    spec = policy.get("spec") or {}
    bspec = binding.get("spec") or {}
    pname = meta_of(policy).get("name", "")
    bname = meta_of(binding).get("name", "")
    if not resources_match(spec.get("matchConstraints"), a, ns_labels):
        return []
    if bspec.get("matchResources") and not resources_match(bspec["matchResources"], a, ns_labels):
        return []
    actions = [x for x in bspec.get("validationActions") or [] if x in _ACTIONS]
    fail = spec.get("failurePolicy", "Fail") != "Ignore"

    def failure(msg: str) -> list[Decision]:
        return [Decision(act, pname, bname, msg, "Invalid") for act in actions] if fail else []

    params_list: list[Any] = [None]
    if spec.get("paramKind"):
        ref = bspec.get("paramRef")
        if not isinstance(ref, dict):
            return failure("failed to configure binding: paramRef is required when paramKind is set")
        found = get_params(spec["paramKind"], ref, a.namespace)
        if not found:
            if ref.get("parameterNotFoundAction") == "Allow":
                return []
            return failure("failed to configure binding: no params found for policy binding with `Deny` "
                           "parameterNotFoundAction")
        params_list = found
    out: list[Decision] = []
    for params in params_list:
        env: dict[str, Any] = {"object": a.obj, "oldObject": a.old, "request": a.request(), "params": params,
                               "namespaceObject": None, "authorizer": None}
        try:
            if not _conditions_hold(spec.get("matchConditions") or [], env):
                continue
            env["variables"] = _variables(spec.get("variables") or [], env)
        except _EvalError as exc:
            out += failure(f"expression resulted in error: {exc}")
            continue
        for v in spec.get("validations") or []:
            expr = str(v.get("expression", ""))
            try:
                ok = _run(expr, env)
            except _EvalError as exc:
                out += failure(f"expression '{expr.strip()}' resulted in error: {exc}")
                continue
            if ok is True:
                continue
            msg = _message(v, env) or (v.get("message") or f"failed expression: {expr.strip()}")
            out += [Decision(act, pname, bname, msg, v.get("reason") or "Invalid") for act in actions]
    return out


def _conditions_hold(conds: list[Any], env: dict[str, Any]) -> bool:
    for c in conds:
        if isinstance(c, dict) and isinstance(c.get("expression"), str) and _run(c["expression"], env) is not True:
            return False
    return True


def _variables(defs: list[Any], env: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for d in defs:
        if not isinstance(d, dict) or not d.get("name"):
            continue
        env["variables"] = out
        out[d["name"]] = _run(str(d.get("expression", "")), env)
    return out


def _message(v: dict[str, Any], env: dict[str, Any]) -> str | None:
    me = v.get("messageExpression")
    if not isinstance(me, str) or not me:
        return None
    try:
        m = _run(me, env)
    except _EvalError:
        return None
    if not isinstance(m, str) or not m.strip() or "\n" in m:
        return None
    return m


def deny_error(d: Decision) -> ApiStatusError:
    msg = f"ValidatingAdmissionPolicy '{d.policy}' with binding '{d.binding}' denied request: {d.message}"
    return ApiStatusError(_REASON_CODES.get(d.reason, 422), d.reason, msg)


def warning_text(d: Decision) -> str:
    return f"Validation failed for ValidatingAdmissionPolicy '{d.policy}' with binding '{d.binding}': {d.message}"
