"""Acceptance (issue 10): the everyday kubectl commands against `servicenet up`, each with upstream's effect.

One `servicenet up` (loopback network), the real kubectl, everything in namespace `acc`, which is
deleted at the end and must take every kind with it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from servicenet.client import ApiClient, ApiError
from servicenet.testing import kubectl, read_banner, tls_files, up_argv

from .cluster import ready, until

pytestmark = pytest.mark.loopback_vips  # binds the loopback plan's fixed ClusterIPs (see tests/conftest.py)
NS = "acc"
RC = """
apiVersion: v1
kind: ReplicationController
metadata: {name: rc1}
spec:
  replicas: 2
  template:
    metadata: {labels: {app: rc1}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - {name: s, image: busybox, command: [sleep, "3600"]}
"""
DS = """
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: ds1}
spec:
  selector: {matchLabels: {app: ds1}}
  template:
    metadata: {labels: {app: ds1}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - {name: d, image: busybox, command: [sleep, "3600"]}
"""
CM = """
apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {mode: "%s"}
"""


class Up:
    def __init__(self, data_dir: Path) -> None:
        self.kc = data_dir / "kubeconfig"
        self.client = ApiClient.from_kubeconfig(self.kc)

    async def k(self, *args: str, ok: bool = True, timeout: float = 90.0) -> tuple[int, str, str]:
        return await kubectl(self.kc, *args, check=ok, timeout=timeout)

    async def kn(self, *args: str, ok: bool = True, timeout: float = 90.0) -> str:
        return (await self.k("-n", NS, *args, ok=ok, timeout=timeout))[1]


@pytest.fixture
async def up(tmp_path: Path) -> AsyncIterator[Up]:
    proc = await asyncio.create_subprocess_exec(*up_argv(tmp_path, "--network", "loopback"),
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    u: Up | None = None
    try:
        await read_banner(proc, 60)
        u = Up(tmp_path)
        yield u
    finally:
        if u is not None:
            await u.client.close()
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 60)


async def _get(u: Up, api_version: str, plural: str, name: str) -> dict[str, Any]:
    return await u.client.get(api_version, plural, NS, name)


async def _ready_pods(u: Up, selector: str) -> list[dict[str, Any]]:
    items = (await u.client.list("v1", "pods", NS, label_selector=selector))["items"]
    return [p for p in items if ready(p) and not p["metadata"].get("deletionTimestamp")]


async def test_everyday_kubectl_commands(up: Up, tmp_path: Path) -> None:  # noqa: PLR0915 - one scenario
    u = up
    # -- kubectl create: namespace, configmap, secrets, serviceaccount -----------------------------
    assert (await u.k("create", "namespace", NS))[1].strip() == f"namespace/{NS} created"
    assert (await u.client.get("v1", "namespaces", None, NS))["status"]["phase"] == "Active"
    await u.kn("create", "configmap", "cm1", "--from-literal=a=b")
    assert (await _get(u, "v1", "configmaps", "cm1"))["data"] == {"a": "b"}
    await u.kn("create", "secret", "generic", "s1", "--from-literal=pw=s3cr3t")
    assert base64.b64decode(await u.kn("get", "secret", "s1", "-o", "jsonpath={.data.pw}")) == b"s3cr3t"
    crt, key = tls_files(tmp_path)
    await u.kn("create", "secret", "tls", "tls1", f"--cert={crt}", f"--key={key}")
    tls = await _get(u, "v1", "secrets", "tls1")
    assert tls["type"] == "kubernetes.io/tls" and base64.b64decode(tls["data"]["tls.crt"]) == crt.read_bytes()
    await u.kn("create", "secret", "docker-registry", "reg1", "--docker-server=registry.example",
               "--docker-username=u", "--docker-password=p")
    reg = await _get(u, "v1", "secrets", "reg1")
    assert reg["type"] == "kubernetes.io/dockerconfigjson"
    assert json.loads(base64.b64decode(reg["data"][".dockerconfigjson"]))["auths"]["registry.example"]["username"] == "u"
    assert (await u.kn("create", "serviceaccount", "robot")).strip() == "serviceaccount/robot created"
    assert (await u.kn("get", "sa", "robot", "-o", "name")).strip() == "serviceaccount/robot"

    # -- deployment, services, expose, run -----------------------------------------------------------
    await u.kn("create", "deployment", "web", "--image=registry.k8s.io/serve_hostname", "--replicas=2",
               "--port=9376")
    await until(lambda: _n(_ready_pods(u, "app=web"), 2), 60, what="2 web pods ready")
    await u.kn("create", "service", "clusterip", "c1", "--tcp=80:9376")
    await u.kn("create", "service", "nodeport", "n1", "--tcp=80:9376")
    await u.kn("create", "service", "loadbalancer", "lb1", "--tcp=80:9376")
    await u.kn("create", "service", "externalname", "e1", "--external-name=db.example.com")
    c1, n1 = await _get(u, "v1", "services", "c1"), await _get(u, "v1", "services", "n1")
    assert c1["spec"]["type"] == "ClusterIP" and c1["spec"]["clusterIP"] and c1["status"] == {"loadBalancer": {}}
    assert n1["spec"]["type"] == "NodePort" and 30000 <= n1["spec"]["ports"][0]["nodePort"] <= 32767
    assert (await _get(u, "v1", "services", "lb1"))["spec"]["type"] == "LoadBalancer"
    e1 = await _get(u, "v1", "services", "e1")
    assert e1["spec"]["type"] == "ExternalName" and e1["spec"]["externalName"] == "db.example.com"
    assert (await u.kn("expose", "deployment", "web", "--port=80", "--target-port=9376",
                       "--name=web-svc")).strip() == "service/web-svc exposed"
    assert (await _get(u, "v1", "services", "web-svc"))["spec"]["selector"] == {"app": "web"}

    async def two_endpoints() -> bool:
        # the endpoints controller writes the Endpoints a moment after the Service: NotFound is "not yet"
        rc, out, err = await u.k("-n", NS, "get", "ep", "web-svc", "-o", "jsonpath={.subsets[*].addresses[*].ip}",
                                 ok=False)
        if rc and "NotFound" not in err:
            raise AssertionError(f"kubectl get ep web-svc failed ({rc}): {err}")
        return rc == 0 and len(out.split()) == 2

    await until(two_endpoints, 30, what="web-svc endpoints")
    assert (await u.kn("run", "one", "--image=busybox", "--restart=Never", "--", "sleep", "3600")).strip() \
        == "pod/one created"
    assert (await u.kn("wait", "--for=condition=Ready", "pod/one", "--timeout=60s")).strip() \
        == "pod/one condition met"

    # -- jobs, cronjobs, ingress ---------------------------------------------------------------------
    await u.kn("create", "job", "once", "--image=busybox", "--", "sh", "-c", "echo hello")
    assert (await u.kn("wait", "--for=condition=complete", "job/once", "--timeout=60s")).strip() \
        == "job.batch/once condition met"
    assert (await u.kn("logs", "job/once")).strip() == "hello"
    await u.kn("create", "cronjob", "tick", "--image=busybox", "--schedule=*/1 * * * *", "--", "echo", "tick")
    cj = await _get(u, "batch/v1", "cronjobs", "tick")
    assert cj["spec"]["schedule"] == "*/1 * * * *" and cj["spec"]["concurrencyPolicy"] == "Allow"
    row = (await u.kn("get", "cronjob", "tick")).splitlines()
    assert re.split(r"\s{2,}", row[0].strip())[:6] == ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE",
                                                       "LAST SCHEDULE"]
    await u.kn("create", "ingress", "ing1", "--class=nginx", "--rule=foo.com/bar*=web-svc:80,tls=tls1")
    ing = await _get(u, "networking.k8s.io/v1", "ingresses", "ing1")
    path = ing["spec"]["rules"][0]["http"]["paths"][0]
    assert ing["spec"]["ingressClassName"] == "nginx" and ing["spec"]["rules"][0]["host"] == "foo.com"
    assert (path["path"], path["pathType"]) == ("/bar", "Prefix")
    assert path["backend"]["service"] == {"name": "web-svc", "port": {"number": 80}}
    assert ing["spec"]["tls"] == [{"hosts": ["foo.com"], "secretName": "tls1"}]

    # -- rollout, set image, scale, label, annotate ----------------------------------------------------
    await u.kn("set", "image", "deployment/web", "*=registry.k8s.io/serve_hostname:v2")
    assert "successfully rolled out" in await u.kn("rollout", "status", "deployment/web", "--timeout=60s")
    hist = await u.kn("rollout", "history", "deployment/web")
    assert [ln.split()[0] for ln in hist.splitlines()[2:] if ln.strip()] == ["1", "2"]
    assert (await u.kn("rollout", "undo", "deployment/web")).strip() == "deployment.apps/web rolled back"
    await u.kn("rollout", "status", "deployment/web", "--timeout=60s")
    dep = await _get(u, "apps/v1", "deployments", "web")
    assert dep["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.k8s.io/serve_hostname"
    assert (await u.kn("scale", "deployment", "web", "--replicas=3")).strip() == "deployment.apps/web scaled"
    await until(lambda: _n(_ready_pods(u, "app=web"), 3), 60, what="3 web pods ready")
    await u.kn("label", "pod", "one", "tier=db")
    await u.kn("annotate", "deployment", "web", "note=hi")
    assert (await _get(u, "v1", "pods", "one"))["metadata"]["labels"]["tier"] == "db"
    assert (await _get(u, "apps/v1", "deployments", "web"))["metadata"]["annotations"]["note"] == "hi"

    # -- exec, logs, describe, explain, diff, api-resources ---------------------------------------------
    assert await u.kn("exec", "one", "--", "sh", "-c", "echo hi-from-exec") == "hi-from-exec\n"
    pod = (await _ready_pods(u, "app=web"))[0]["metadata"]["name"]
    out = await u.kn("describe", "deployment", "web")
    assert re.search(r"^Replicas:\s+3 desired \| 3 updated \| 3 total \| 3 available", out, re.M), out
    assert "registry.k8s.io/serve_hostname" in out
    assert pod.startswith("web-")
    out = (await u.k("explain", "deployment.spec.replicas"))[1]
    assert "FIELD: replicas <integer>" in out
    out = (await u.k("explain", "cronjob.spec.schedule"))[1]
    assert "FIELD: schedule <string>" in out
    cm = tmp_path / "cm.yaml"
    cm.write_text(CM % "a")
    await u.kn("apply", "-f", str(cm))
    cm.write_text(CM % "b")
    rc, out, _ = await u.k("-n", NS, "diff", "-f", str(cm), ok=False)
    assert rc == 1 and re.search(r"^-\s+mode: a$", out, re.M) and re.search(r"^\+\s+mode: b$", out, re.M), out
    assert (await _get(u, "v1", "configmaps", "settings"))["data"] == {"mode": "a"}  # diff changes nothing
    out = (await u.k("api-resources", "-o", "wide"))[1]
    rows = {ln.split()[0]: ln.split() for ln in out.splitlines()[1:]}
    for name, short, group, kind in (("replicationcontrollers", "rc", "v1", "ReplicationController"),
                                     ("daemonsets", "ds", "apps/v1", "DaemonSet"),
                                     ("cronjobs", "cj", "batch/v1", "CronJob"),
                                     ("serviceaccounts", "sa", "v1", "ServiceAccount")):
        assert rows[name][:5] == [name, short, group, "true", kind], rows.get(name)
        assert rows[name][5] == "create,delete,deletecollection,get,list,patch,update,watch"
    assert rows["jobs"][:4] == ["jobs", "batch/v1", "true", "Job"] and rows["jobs"][5] == "all"

    # -- apply of a ReplicationController and a DaemonSet ---------------------------------------------------
    (tmp_path / "rc.yaml").write_text(RC)
    (tmp_path / "ds.yaml").write_text(DS)
    assert (await u.kn("apply", "-f", str(tmp_path / "rc.yaml"))).strip() == "replicationcontroller/rc1 created"
    assert (await u.kn("apply", "-f", str(tmp_path / "ds.yaml"))).strip() == "daemonset.apps/ds1 created"
    await until(lambda: _n(_ready_pods(u, "app=rc1"), 2), 60, what="2 rc1 pods ready")
    await until(lambda: _n(_ready_pods(u, "app=ds1"), 1), 60, what="the ds1 pod ready")
    assert "successfully rolled out" in await u.kn("rollout", "status", "ds/ds1", "--timeout=60s")
    out = await u.kn("get", "all")
    for name in ("replicationcontroller/rc1", "daemonset.apps/ds1", "deployment.apps/web", "job.batch/once",
                 "cronjob.batch/tick", "service/web-svc", "pod/one"):
        assert name in out, name

    # -- delete namespace: everything in it goes ------------------------------------------------------------
    assert (await u.k("delete", "namespace", NS, "--timeout=120s", timeout=150))[1].strip() \
        == f'namespace "{NS}" deleted'
    with pytest.raises(ApiError) as ei:
        await u.client.get("v1", "namespaces", None, NS)
    assert ei.value.status == 404
    for api_version, plural in (("v1", "replicationcontrollers"), ("apps/v1", "daemonsets"),
                                ("batch/v1", "jobs"), ("batch/v1", "cronjobs"), ("v1", "serviceaccounts"),
                                ("apps/v1", "deployments"), ("apps/v1", "controllerrevisions"), ("v1", "pods"),
                                ("v1", "services"), ("v1", "secrets"), ("networking.k8s.io/v1", "ingresses")):
        left = (await u.client.list(api_version, plural, NS))["items"]
        assert left == [], (plural, [o["metadata"]["name"] for o in left])


async def _n(pods: Any, n: int) -> bool:
    return len(await pods) == n
