"""ValidatingAdmissionPolicy + binding (admissionregistration.k8s.io/v1) in the API server (issue 10)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from servicenet.client.rest import ApiError
from servicenet.testing import RunningApi

AR = "admissionregistration.k8s.io/v1"


def deployment(name: str, replicas: int, ns: str = "default") -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}


def vap(name: str, validations: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": AR, "kind": "ValidatingAdmissionPolicy", "metadata": {"name": name},
            "spec": {"failurePolicy": "Fail",
                     "matchConstraints": {"resourceRules": [{"apiGroups": ["apps"], "apiVersions": ["v1"],
                                                             "operations": ["CREATE", "UPDATE"],
                                                             "resources": ["deployments"]}]},
                     "validations": validations, **spec}}


def binding(name: str, policy: str, actions: list[str], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": AR, "kind": "ValidatingAdmissionPolicyBinding", "metadata": {"name": name},
            "spec": {"policyName": policy, "validationActions": actions, **spec}}


async def eventually_raises(fn: Callable[[], Awaitable[Any]], cleanup: Callable[[], Awaitable[Any]] | None = None
                            ) -> ApiError:
    """Policies take effect once the server has seen them: retry the write until it is refused."""
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        try:
            await fn()
        except ApiError as exc:
            return exc
        if cleanup is not None:
            await cleanup()
        assert asyncio.get_running_loop().time() < deadline, "the policy never took effect"
        await asyncio.sleep(0.05)


async def test_deny_with_params_variables_and_message_expression(api: RunningApi) -> None:
    c = api.client
    await c.create("v1", "configmaps", "default", {"metadata": {"name": "limits"}, "data": {"max": "3"}})
    await c.create(AR, "validatingadmissionpolicies", None, vap(
        "max-replicas",
        [{"expression": "object.spec.replicas <= variables.max",
          "messageExpression": "'replicas ' + string(object.spec.replicas) + ' exceed ' + string(variables.max)",
          "reason": "Forbidden"}],
        paramKind={"apiVersion": "v1", "kind": "ConfigMap"},
        variables=[{"name": "max", "expression": "int(params.data.max)"}]))
    await c.create(AR, "validatingadmissionpolicybindings", None, binding(
        "max-replicas", "max-replicas", ["Deny"], paramRef={"name": "limits", "namespace": "default",
                                                           "parameterNotFoundAction": "Deny"}))

    async def drop() -> None:
        await c.delete("apps/v1", "deployments", "default", "big")

    err = await eventually_raises(lambda: c.create("apps/v1", "deployments", "default", deployment("big", 5)), drop)
    assert err.status == 403 and err.reason == "Forbidden"
    assert err.message == ("ValidatingAdmissionPolicy 'max-replicas' with binding 'max-replicas' denied request: "
                           "replicas 5 exceed 3")
    await c.create("apps/v1", "deployments", "default", deployment("small", 2))
    with pytest.raises(ApiError) as ei:  # UPDATE is judged too
        await c.patch("apps/v1", "deployments", "default", "small", {"spec": {"replicas": 4}})
    assert ei.value.status == 403
    # the same rule through kubectl
    rc, _, stderr = await api.kubectl("scale", "deployment/small", "--replicas=9", check=False)
    assert rc == 1 and "denied request: replicas 9 exceed 3" in stderr, stderr
    # params gone: parameterNotFoundAction Deny refuses
    await c.delete("v1", "configmaps", "default", "limits")
    with pytest.raises(ApiError) as ei:
        await c.create("apps/v1", "deployments", "default", deployment("other", 1))
    assert "no params found for policy binding with `Deny` parameterNotFoundAction" in ei.value.message


async def test_warn_audit_and_failure_policy(api: RunningApi) -> None:
    c = api.client
    await c.create(AR, "validatingadmissionpolicies", None, vap(
        "labelled", [{"expression": "has(object.metadata.labels) && 'team' in object.metadata.labels",
                      "message": "every deployment needs a team label"}]))
    await c.create(AR, "validatingadmissionpolicybindings", None, binding("labelled", "labelled", ["Warn",
                                                                                                     "Audit"]))
    await asyncio.sleep(0)
    deadline = asyncio.get_running_loop().time() + 10
    i = 0
    while True:  # until the binding is in effect, kubectl prints no warning
        i += 1
        manifest = (f"apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: w{i}}}\nspec:\n  replicas: 1\n"
                    f"  selector: {{matchLabels: {{app: w}}}}\n  template:\n    metadata: {{labels: {{app: w}}}}\n"
                    "    spec: {containers: [{name: c, image: busybox}]}\n")
        rc, out, stderr = await api.kubectl("apply", "-f", "-", input=manifest.encode())
        if "Warning" in stderr:
            break
        assert asyncio.get_running_loop().time() < deadline
        await asyncio.sleep(0.05)
    assert f"deployment.apps/w{i} created" in out  # Warn and Audit let the write through
    assert ("Warning: Validation failed for ValidatingAdmissionPolicy 'labelled' with binding 'labelled': every "
            "deployment needs a team label") in stderr, stderr

    # an expression that errors at runtime: failurePolicy Fail denies, Ignore lets through
    await c.create(AR, "validatingadmissionpolicies", None, vap(
        "broken", [{"expression": "object.spec.template.spec.nodeName == 'x'"}]))
    await c.create(AR, "validatingadmissionpolicybindings", None, binding("broken", "broken", ["Deny"]))

    async def drop() -> None:
        await c.delete("apps/v1", "deployments", "default", "e1")

    err = await eventually_raises(lambda: c.create("apps/v1", "deployments", "default", deployment("e1", 1)), drop)
    assert err.status == 422
    assert err.message.startswith("ValidatingAdmissionPolicy 'broken' with binding 'broken' denied request: "
                                  "expression 'object.spec.template.spec.nodeName == 'x'' resulted in error"), \
        err.message
    await c.patch(AR, "validatingadmissionpolicies", None, "broken", {"spec": {"failurePolicy": "Ignore"}})
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        try:
            await c.create("apps/v1", "deployments", "default", deployment("e2", 1))
            break
        except ApiError:
            assert asyncio.get_running_loop().time() < deadline
            await asyncio.sleep(0.05)


async def test_match_constraints_namespace_selector_and_delete(api: RunningApi) -> None:
    c = api.client
    await c.create("v1", "namespaces", None, {"metadata": {"name": "prod", "labels": {"env": "prod"}}})
    await c.create(AR, "validatingadmissionpolicies", None, {
        "apiVersion": AR, "kind": "ValidatingAdmissionPolicy", "metadata": {"name": "no-delete"},
        "spec": {"matchConstraints": {
            "namespaceSelector": {"matchLabels": {"env": "prod"}},
            "resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["DELETE"],
                               "resources": ["configmaps"]}]},
            "validations": [{"expression": "request.operation != 'DELETE' || object == null && "
                                           "oldObject.metadata.name != 'keep'",
                             "message": "keep stays"}]}})
    await c.create(AR, "validatingadmissionpolicybindings", None, binding("no-delete", "no-delete", ["Deny"]))
    for ns in ("default", "prod"):
        for n in ("keep", "tmp"):
            await c.create("v1", "configmaps", ns, {"metadata": {"name": n}})

    async def recreate() -> None:
        await c.create("v1", "configmaps", "prod", {"metadata": {"name": "keep"}})

    err = await eventually_raises(lambda: c.delete("v1", "configmaps", "prod", "keep"), recreate)
    assert err.message.endswith("denied request: keep stays")
    await c.delete("v1", "configmaps", "prod", "tmp")  # another name passes
    await c.delete("v1", "configmaps", "default", "keep")  # another namespace is not selected


async def test_invalid_policies_are_rejected(api: RunningApi) -> None:
    with pytest.raises(ApiError) as ei:
        await api.client.create(AR, "validatingadmissionpolicies", None, vap("bad", [{"expression": "object.spec +"}]))
    assert ei.value.status == 422
    assert ei.value.body["details"]["causes"][0]["field"] == "spec.validations[0].expression"
    with pytest.raises(ApiError) as ei:
        await api.client.create(AR, "validatingadmissionpolicybindings", None, binding("b", "p", ["Deny", "Warn"]))
    assert ei.value.status == 422 and "must not contain both Deny and Warn" in ei.value.message
