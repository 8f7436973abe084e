"""Acceptance: upstream's Gateway API standard channel (CRDs + ValidatingAdmissionPolicy) with the real
kubectl, and a CRD through the official Python client's dynamic client (issue 10)."""

from __future__ import annotations

import asyncio
import re
import threading
from pathlib import Path

from servicenet.testing import RunningApi

BUNDLE = Path(__file__).resolve().parents[1] / "third_party" / "gateway-api" / "standard-install.yaml"

GATEWAY = b"""
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: sn}
spec: {controllerName: servicenet.io/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  gatewayClassName: sn
  listeners:
  - {name: http, protocol: HTTP, port: 80}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web}
spec:
  parentRefs: [{name: gw}]
  hostnames: [example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /app}}]
    backendRefs: [{name: web, port: 80}]
"""


def header(out: str) -> list[list[str]]:
    return [re.split(r"\s{2,}", line.strip()) for line in out.splitlines() if line.startswith("NAME")]


async def install(api: RunningApi) -> None:
    _, out, _ = await api.kubectl("apply", "--server-side", "-f", str(BUNDLE))
    assert out.count("serverside-applied") == 12, out  # 10 CRDs, the policy and its binding
    await api.kubectl("wait", "--for", "condition=established", "--timeout=30s",
                      "crd/gateways.gateway.networking.k8s.io", "crd/httproutes.gateway.networking.k8s.io",
                      "crd/gatewayclasses.gateway.networking.k8s.io")


async def test_gateway_api_bundle_applies_and_serves(api: RunningApi) -> None:
    assert b"bundle-version: v1.6.1" in BUNDLE.read_bytes()
    await install(api)
    # the same bundle again: nothing changes, nothing conflicts
    _, out, _ = await api.kubectl("apply", "--server-side", "-f", str(BUNDLE))
    assert out.count("serverside-applied") == 12, out

    _, out, _ = await api.kubectl("get", "crd", "httproutes.gateway.networking.k8s.io", "-o",
                                  "jsonpath={.status.conditions[?(@.type==\"NamesAccepted\")].status},"
                                  "{.status.acceptedNames.kind},{.status.storedVersions}")
    assert out == 'True,HTTPRoute,["v1"]', out
    _, out, _ = await api.kubectl("api-resources", "--api-group=gateway.networking.k8s.io")
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert rows["gateways"][1:] == ["gtw", "gateway.networking.k8s.io/v1", "true", "Gateway"]
    assert rows["gatewayclasses"][1:] == ["gc", "gateway.networking.k8s.io/v1", "false", "GatewayClass"]

    _, out, _ = await api.kubectl("apply", "-f", "-", input=GATEWAY)
    assert "httproute.gateway.networking.k8s.io/web created" in out, out
    _, out, _ = await api.kubectl("get", "gateway,httproute")
    assert header(out) == [["NAME", "CLASS", "ADDRESS", "PROGRAMMED", "AGE"], ["NAME", "HOSTNAMES", "AGE"]], out
    assert re.search(r"^gateway\.gateway\.networking\.k8s\.io/gw\s+sn\s+Unknown\s+\d+s$", out, re.M), out
    assert re.search(r'^httproute\.gateway\.networking\.k8s\.io/web\s+\["example\.com"\]\s+\d+s$', out, re.M), out
    _, out, _ = await api.kubectl("get", "gc")  # short name; status defaults from the schema
    assert header(out) == [["NAME", "CONTROLLER", "ACCEPTED", "AGE"]]
    assert re.search(r"^sn\s+servicenet\.io/gateway-controller\s+Unknown\s+\d+s$", out, re.M), out

    # schema defaults were applied (parentRefs group/kind, backendRef weight)
    route = await api.client.get("gateway.networking.k8s.io/v1", "httproutes", "default", "web")
    assert route["spec"]["parentRefs"][0] == {"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                              "name": "gw"}
    assert route["spec"]["rules"][0]["backendRefs"][0]["weight"] == 1

    # kubectl explain reads the CRD's OpenAPI v3 model
    _, out, _ = await api.kubectl("explain", "httproute.spec.rules.matches.path.type")
    assert "KIND:       HTTPRoute" in out and "VERSION:    v1" in out
    assert "FIELD: type <string>" in out and re.search(r"ENUM:\s+Exact\s+PathPrefix\s+RegularExpression", out), out


async def test_gateway_api_cel_rules_reject_with_upstream_messages(api: RunningApi) -> None:
    await install(api)
    bad_path = b"""
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: bad}
spec:
  rules:
  - matches: [{path: {type: PathPrefix, value: "no-slash"}}]
"""
    rc, _, err = await api.kubectl("apply", "-f", "-", input=bad_path, check=False)
    assert rc == 1
    assert ('The HTTPRoute "bad" is invalid: spec.rules[0].matches[0].path: Invalid value: "object": value must '
            "be an absolute path and start with '/' when type one of ['Exact', 'PathPrefix']") in err, err
    # rules on lists (all/exists_one), a rule using ext.Strings split(), and a schema pattern, in one 422
    long_prefix = "a" * 250 + ".io/key"
    bad_gw = f"""
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: bad}}
spec:
  gatewayClassName: sn
  infrastructure:
    annotations: {{"{long_prefix}": "v"}}
  listeners:
  - {{name: a, protocol: HTTP, port: 80, tls: {{mode: Terminate, certificateRefs: [{{name: c}}]}}}}
  - {{name: b, protocol: HTTP, port: 80, hostname: "-bad-"}}
  - {{name: c, protocol: HTTP, port: 80, hostname: "-bad-"}}
""".encode()
    rc, _, err = await api.kubectl("apply", "-f", "-", input=bad_gw, check=False)
    assert rc == 1
    assert err.startswith('The Gateway "bad" is invalid: '), err
    assert "spec.listeners: Invalid value: \"array\": tls must not be specified for protocols ['HTTP', 'TCP', " \
        "'UDP']" in err, err
    assert "spec.listeners: Invalid value: \"array\": Combination of port, protocol and hostname must be unique " \
        "for each listener" in err, err
    assert "spec.infrastructure.annotations: Invalid value: \"object\": If specified, the annotation key's prefix " \
        "must be a DNS subdomain not longer than 253 characters in total." in err, err
    assert "spec.listeners[1].hostname: Invalid value: \"-bad-\": spec.listeners[1].hostname in body should " \
        "match" in err, err
    # a transition rule: GatewayClass controllerName is immutable
    await api.kubectl("apply", "-f", "-", input=GATEWAY)
    rc, _, err = await api.kubectl("patch", "gatewayclass", "sn", "--type=merge", "-p",
                                   '{"spec":{"controllerName":"other.io/x"}}', check=False)
    assert rc == 1 and "spec.controllerName: Invalid value: \"string\": Value is immutable" in err, err
    # schema errors come back as one 422 Status listing every cause
    rc, _, err = await api.kubectl("apply", "-f", "-", check=False, input=b"""
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: ports}
spec:
  gatewayClassName: sn
  listeners:
  - {name: a, protocol: HTTP, port: 70000}
""")
    assert rc == 1 and "spec.listeners[0].port: Invalid value: 70000: spec.listeners[0].port in body should be " \
        "less than or equal to 65535" in err, err


async def test_gateway_api_validating_admission_policy_blocks_old_bundle(api: RunningApi) -> None:
    await install(api)
    text = BUNDLE.read_text()
    start = text.index("# config/crd/standard/gateway.networking.k8s.io_referencegrants.yaml")
    doc = text[start:text.index("\n---", start)]
    # re-applying the same CRD with an older bundle version is refused by upstream's policy
    old = doc.replace("bundle-version: v1.6.1", "bundle-version: v1.4.0")
    rc, _, err = await api.kubectl("apply", "--server-side", "-f", "-", input=old.encode(), check=False)
    assert rc == 1
    assert ("ValidatingAdmissionPolicy 'safe-upgrades.gateway.networking.k8s.io' with binding "
            "'safe-upgrades.gateway.networking.k8s.io' denied request: Installing CRDs with version before "
            "v1.5.0 is prohibited by default.") in err, err
    # experimental CRDs on top of standard ones are refused too
    exp = doc.replace("channel: standard", "channel: experimental")
    rc, _, err = await api.kubectl("apply", "--server-side", "-f", "-", input=exp.encode(), check=False)
    assert rc == 1 and "Installing experimental CRDs on top of standard channel CRDs is prohibited" in err, err
    # without the binding the same write goes through
    await api.kubectl("delete", "validatingadmissionpolicybinding", "safe-upgrades.gateway.networking.k8s.io")
    deadline = asyncio.get_running_loop().time() + 10
    while True:
        rc, out, err = await api.kubectl("apply", "--server-side", "-f", "-", input=old.encode(), check=False)
        if rc == 0 or asyncio.get_running_loop().time() > deadline:
            break
        await asyncio.sleep(0.1)
    assert rc == 0, err


def _dynamic(kc_path: str) -> dict[str, object]:
    from kubernetes import config, dynamic, watch

    dc = dynamic.DynamicClient(config.new_client_from_config(kc_path))
    routes = dc.resources.get(api_version="gateway.networking.k8s.io/v1", kind="HTTPRoute")
    out: dict[str, object] = {}
    events: list[tuple[str, str]] = []
    ready = threading.Event()

    def watcher() -> None:
        lst = routes.get(namespace="default")
        ready.set()
        for ev in routes.watch(namespace="default", resource_version=lst.metadata.resourceVersion,
                               timeout=15, watcher=(w := watch.Watch())):
            events.append((ev["type"], ev["object"].metadata.name))
            if ev["type"] == "DELETED":
                w.stop()

    t = threading.Thread(target=watcher)
    t.start()
    ready.wait(10)
    body = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "dyn"},
            "spec": {"hostnames": ["dyn.example"], "rules": [{"backendRefs": [{"name": "web", "port": 80}]}]}}
    created = routes.create(body=body, namespace="default")
    out["created_uid"] = created.metadata.uid
    got = routes.get(name="dyn", namespace="default")
    out["hostnames"] = list(got.spec.hostnames)
    out["default_path"] = got.spec.rules[0].matches[0].path.value
    patched = routes.patch(name="dyn", namespace="default", body={"spec": {"hostnames": ["b.example"]}},
                           content_type="application/merge-patch+json")
    out["patched"] = list(patched.spec.hostnames)
    out["listed"] = [i.metadata.name for i in routes.get(namespace="default").items]
    routes.delete(name="dyn", namespace="default")
    t.join(20)
    out["events"] = events
    return out


async def test_python_dynamic_client_creates_reads_and_watches(api: RunningApi) -> None:
    await install(api)
    res = await asyncio.to_thread(_dynamic, str(api.kubeconfig))
    assert res["created_uid"]
    assert res["hostnames"] == ["dyn.example"]
    assert res["default_path"] == "/"
    assert res["patched"] == ["b.example"]
    assert res["listed"] == ["dyn"]
    assert res["events"] == [("ADDED", "dyn"), ("MODIFIED", "dyn"), ("DELETED", "dyn")], res["events"]
