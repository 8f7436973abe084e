"""Acceptance: the real kubectl against the servicenet API server (issue: API server)."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from servicenet.testing import RunningApi

MANIFESTS = Path(__file__).parent / "manifests"


def header(out: str) -> list[str]:
    return [re.split(r"\s{2,}", line.strip()) for line in out.splitlines() if line.startswith("NAME")][0]


async def test_apply_walkthrough_manifests_and_get_wide(api: RunningApi) -> None:
    for m in ("web-sts.yaml", "hostnames.yaml", "nodeport.yaml", "selectorless.yaml"):
        rc, out, err = await api.kubectl("apply", "-f", str(MANIFESTS / m))
        assert "created" in out, out + err
    # a second apply changes nothing
    _, out, _ = await api.kubectl("apply", "-f", str(MANIFESTS / "hostnames.yaml"))
    assert out.splitlines() == ["deployment.apps/hostnames unchanged", "service/hostnames unchanged"]

    _, out, _ = await api.kubectl("get", "svc", "-o", "wide")
    assert header(out) == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", "SELECTOR"]
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert rows["nginx"][1:3] == ["ClusterIP", "None"]
    assert rows["my-nodeport"][1] == "NodePort" and rows["my-nodeport"][4] == "80:30007/TCP"
    assert rows["hostnames"][4] == "80/TCP" and rows["hostnames"][6] == "app=hostnames"
    assert rows["my-external-db"][6] == "<none>"
    assert rows["kubernetes"][2] == "10.96.0.1"

    _, out, _ = await api.kubectl("get", "ep", "my-external-db")
    assert header(out) == ["NAME", "ENDPOINTS", "AGE"]
    assert "127.0.0.50:5432,127.0.0.51:5432" in out

    _, out, _ = await api.kubectl("get", "deploy", "-o", "wide")
    assert header(out) == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"]
    _, out, _ = await api.kubectl("get", "sts", "-o", "wide")
    assert header(out) == ["NAME", "READY", "AGE", "CONTAINERS", "IMAGES"]

    # the combined form prints one table per kind, each with its upstream header
    await api.client.create("apps/v1", "replicasets", "default", {
        "metadata": {"name": "rs1"}, "spec": {"replicas": 1, "selector": {"matchLabels": {"a": "b"}},
                                              "template": {"metadata": {"labels": {"a": "b"}},
                                                           "spec": {"containers": [{"name": "c", "image": "i"}]}}}})
    _, out, _ = await api.kubectl("get", "svc,ep,endpointslices,pods,deploy,sts,rs", "-o", "wide")
    headers = [re.split(r"\s{2,}", line.strip()) for line in out.splitlines() if line.startswith("NAME")]
    assert ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE", "SELECTOR"] in headers
    assert ["NAME", "ENDPOINTS", "AGE"] in headers
    assert ["NAME", "DESIRED", "CURRENT", "READY", "AGE", "CONTAINERS", "IMAGES", "SELECTOR"] in headers
    assert "replicaset.apps/rs1" in out and "statefulset.apps/web" in out

    _, out, _ = await api.kubectl("describe", "svc", "hostnames")
    assert re.search(r"^Name:\s+hostnames$", out, re.M), out
    assert re.search(r"^Selector:\s+app=hostnames$", out, re.M), out
    assert re.search(r"^TargetPort:\s+9376/TCP$", out, re.M), out


async def test_get_all_lists_workloads_and_services(api: RunningApi) -> None:
    await api.kubectl("apply", "-f", str(MANIFESTS / "hostnames.yaml"))
    _, out, _ = await api.kubectl("get", "all")
    assert "service/hostnames" in out
    assert "deployment.apps/hostnames" in out


async def test_endpointslice_and_pod_columns(api: RunningApi) -> None:
    slice_ = {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "web-abc", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [{"addresses": ["10.244.0.5"], "conditions": {"ready": True}}],
    }
    await api.client.create("discovery.k8s.io/v1", "endpointslices", "default", slice_)
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p1"},
           "spec": {"containers": [{"name": "c", "image": "busybox"}]}}
    await api.client.create("v1", "pods", "default", pod)
    _, out, _ = await api.kubectl("get", "endpointslices")
    assert header(out) == ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"]
    assert out.splitlines()[1].split()[:4] == ["web-abc", "IPv4", "8080", "10.244.0.5"]
    _, out, _ = await api.kubectl("get", "pods", "-o", "wide")
    assert header(out) == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE", "NOMINATED NODE",
                           "READINESS GATES"]
    assert out.splitlines()[1].split()[:3] == ["p1", "0/1", "Pending"]


async def test_server_side_apply_patch_scale(api: RunningApi, tmp_path: Path) -> None:
    await api.kubectl("apply", "-f", str(MANIFESTS / "hostnames.yaml"))
    svc = tmp_path / "ssa.yaml"
    svc.write_text("apiVersion: v1\nkind: Service\nmetadata:\n  name: ssa\nspec:\n  selector:\n    app: x\n"
                   "  ports:\n  - port: 80\n    targetPort: 8080\n")
    _, out, _ = await api.kubectl("apply", "--server-side", "-f", str(svc))
    assert out.strip() == "service/ssa serverside-applied"
    got = await api.client.get("v1", "services", "default", "ssa")
    assert any(m["manager"] == "kubectl" and m["operation"] == "Apply" for m in got["metadata"]["managedFields"])

    await api.kubectl("patch", "svc", "ssa", "--type=merge", "-p", '{"metadata":{"labels":{"a":"b"}}}')
    await api.kubectl("patch", "svc", "ssa", "--type=json",
                      "-p", '[{"op":"add","path":"/metadata/labels/c","value":"d"}]')
    await api.kubectl("patch", "svc", "ssa", "-p", '{"spec":{"ports":[{"port":80,"targetPort":9090}]}}')
    got = await api.client.get("v1", "services", "default", "ssa")
    assert got["metadata"]["labels"] == {"a": "b", "c": "d"}
    assert got["spec"]["ports"][0]["targetPort"] == 9090

    _, out, _ = await api.kubectl("scale", "deployment", "hostnames", "--replicas=5")
    assert out.strip() == "deployment.apps/hostnames scaled"
    got = await api.client.get("apps/v1", "deployments", "default", "hostnames")
    assert got["spec"]["replicas"] == 5


async def test_get_watch_sees_later_changes_and_delete_waits(api: RunningApi) -> None:
    from servicenet.testing import kubectl_path

    env_kc = str(api.kubeconfig)
    proc = await asyncio.create_subprocess_exec(
        kubectl_path(), "--kubeconfig", env_kc, "get", "svc", "-w", "--request-timeout=0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        assert line.split()[0] == b"NAME"
        await api.client.create("v1", "services", "default", {
            "metadata": {"name": "later"}, "spec": {"ports": [{"port": 81}], "selector": {"a": "b"}}})
        seen = b""
        while b"later" not in seen:
            seen = await asyncio.wait_for(proc.stdout.readline(), 20)
        assert seen.split()[1] == b"ClusterIP"
    finally:
        proc.kill()
        await proc.wait()
    _, out, _ = await api.kubectl("delete", "svc", "later")
    assert out.strip() == 'service "later" deleted'
    rc, _, err = await api.kubectl("get", "svc", "later", check=False)
    assert rc != 0 and 'services "later" not found' in err


@pytest.mark.parametrize("case", ["twice", "bad-port-name", "none-nodeport", "change-ip", "unknown-field",
                                  "stale", "missing"])
async def test_upstream_identical_errors(api: RunningApi, tmp_path: Path, case: str) -> None:
    f = tmp_path / "svc.yaml"
    base = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  selector:\n    app: web\n"
    if case == "twice":
        f.write_text(base + "  ports:\n  - port: 80\n")
        await api.kubectl("create", "-f", str(f))
        rc, _, err = await api.kubectl("create", "-f", str(f), check=False)
        assert err.strip() == f'Error from server (AlreadyExists): error when creating "{f}": services "web" already exists'
    elif case == "bad-port-name":
        f.write_text(base + "  ports:\n  - port: 80\n    name: Bad_Name\n")
        rc, _, err = await api.kubectl("create", "-f", str(f), check=False)
        assert rc == 1
        assert err.startswith('The Service "web" is invalid: spec.ports[0].name: Invalid value: "Bad_Name": '
                              "a lowercase RFC 1123 label must consist of"), err
    elif case == "none-nodeport":
        f.write_text(base + "  type: NodePort\n  clusterIP: None\n  ports:\n  - port: 80\n")
        rc, _, err = await api.kubectl("create", "-f", str(f), check=False)
        assert 'The Service "web" is invalid: spec.clusterIPs[0]: Invalid value: "None": may not be set to ' \
               "'None' for NodePort services" in err, err
    elif case == "change-ip":
        f.write_text(base + "  ports:\n  - port: 80\n")
        await api.kubectl("create", "-f", str(f))
        rc, _, err = await api.kubectl("patch", "svc", "web", "--type=merge", "-p",
                                       '{"spec":{"clusterIP":"10.96.100.100","clusterIPs":["10.96.100.100"]}}',
                                       check=False)
        assert rc == 1 and 'The Service "web" is invalid: ' in err and "may not change once set" in err, err
    elif case == "unknown-field":
        f.write_text(base + "  bogus: 1\n  ports:\n  - port: 80\n")
        rc, _, err = await api.kubectl("create", "-f", str(f), check=False)
        assert err.strip() == (f'Error from server (BadRequest): error when creating "{f}": Service in version "v1" '
                               'cannot be handled as a Service: strict decoding error: unknown field "spec.bogus"')
    elif case == "stale":
        f.write_text(base + "  ports:\n  - port: 80\n")
        await api.kubectl("create", "-f", str(f))
        got = await api.client.get("v1", "services", "default", "web")
        rv = got["metadata"]["resourceVersion"]
        await api.kubectl("label", "svc", "web", "x=y")
        f.write_text(base.replace("  name: web\n", f"  name: web\n  resourceVersion: \"{rv}\"\n")
                     + f"  clusterIP: {got['spec']['clusterIP']}\n  ports:\n  - port: 80\n")
        rc, _, err = await api.kubectl("replace", "-f", str(f), check=False)
        assert err.strip() == (f'Error from server (Conflict): error when replacing "{f}": Operation cannot be '
                               'fulfilled on services "web": the object has been modified; please apply your '
                               "changes to the latest version and try again")
    elif case == "missing":
        rc, _, err = await api.kubectl("get", "svc", "nope", check=False)
        assert err.strip() == 'Error from server (NotFound): services "nope" not found'


async def test_request_without_token_is_unauthorized(api: RunningApi, tmp_path: Path) -> None:
    import ssl

    import aiohttp
    import yaml

    from servicenet.testing import kubectl

    # no Authorization header at all: the upstream Status body
    ctx = ssl.create_default_context(cafile=str(api.server.creds.ca_cert))
    async with aiohttp.ClientSession() as s, s.get(api.url + "/api/v1/namespaces/default/services", ssl=ctx) as r:
        assert r.status == 401
        assert await r.json() == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                  "message": "Unauthorized", "reason": "Unauthorized", "code": 401}
    # kubectl with a token the server does not know prints what it prints against kube-apiserver
    doc = yaml.safe_load(api.kubeconfig.read_text())
    doc["users"][0]["user"] = {"token": "not-a-valid-token"}
    kc = tmp_path / "badtoken"
    kc.write_text(yaml.safe_dump(doc))
    rc, _, err = await kubectl(kc, "get", "svc", check=False)
    assert rc == 1
    assert err.splitlines()[-1] == ("error: You must be logged in to the server (the server has asked for the client "
                                    "to provide credentials)")
