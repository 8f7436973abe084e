"""A pod in netns mode uses the official Python client's ``load_incluster_config()``: the mounted
ServiceAccount token, ``ca.crt`` and ``KUBERNETES_SERVICE_HOST`` reach the API through the
``kubernetes`` Service's ClusterIP. RBAC decides what it may read until a RoleBinding grants more."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path

import pytest

from servicenet.testing import kubectl, read_banner, up_argv

from .cluster import until

PY = sys.executable
SCRIPT = r'''
import json, sys
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException
config.load_incluster_config()
ns = open("/var/run/secrets/kubernetes.io/serviceaccount/namespace").read().strip()
out = {"namespace": ns, "host": client.Configuration.get_default_copy().host}
d, core = client.DiscoveryV1Api(), client.CoreV1Api()
def attempt(name, fn):
    try:
        out[name] = fn()
    except ApiException as e:
        out[name] = e.status
        out[name + "_msg"] = json.loads(e.body).get("message") if e.body else ""
attempt("list", lambda: sorted(s.metadata.name for s in d.list_namespaced_endpoint_slice(ns).items))
def first_event():
    for ev in watch.Watch().stream(d.list_namespaced_endpoint_slice, ns, timeout_seconds=10):
        return [ev["type"], ev["object"].metadata.name]
attempt("watch", first_event)
attempt("secrets", lambda: sorted(s.metadata.name for s in core.list_namespaced_secret(ns).items))
attempt("other", lambda: len(d.list_namespaced_endpoint_slice("default").items))
print(json.dumps(out))
'''

MANIFEST = f"""
apiVersion: v1
kind: Namespace
metadata: {{name: lb}}
---
apiVersion: v1
kind: ServiceAccount
metadata: {{name: balancer, namespace: lb}}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {{name: slices, namespace: lb}}
rules:
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {{name: slices, namespace: lb}}
roleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: slices}}
subjects:
- {{kind: ServiceAccount, name: balancer, namespace: lb}}
---
apiVersion: v1
kind: Secret
metadata: {{name: s, namespace: lb}}
stringData: {{k: v}}
---
apiVersion: v1
kind: Service
metadata: {{name: web, namespace: lb}}
spec:
  clusterIP: None
  ports: [{{port: 80}}]
---
apiVersion: v1
kind: Endpoints
metadata: {{name: web, namespace: lb}}
subsets: [{{addresses: [{{ip: 10.244.0.200}}], ports: [{{port: 80}}]}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: client, namespace: lb}}
spec:
  serviceAccountName: balancer
  containers:
  - name: c
    image: busybox
    command: ["{PY}", "-c", "import time; time.sleep(100000)"]
---
apiVersion: v1
kind: Pod
metadata: {{name: no-token, namespace: lb}}
spec:
  automountServiceAccountToken: false
  containers:
  - name: c
    image: busybox
    command: ["{PY}", "-c", "import time; time.sleep(100000)"]
"""

GRANT = """
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: secrets, namespace: lb}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: edit}
subjects:
- {kind: ServiceAccount, name: balancer, namespace: lb}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: lb-reads-default, namespace: default}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: view}
subjects:
- {kind: ServiceAccount, name: balancer, namespace: lb}
"""


@pytest.mark.root
async def test_load_incluster_config_in_a_netns_pod(tmp_path: Path) -> None:
    proc = await asyncio.create_subprocess_exec(*up_argv(tmp_path, "--network", "netns"),
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    kc = tmp_path / "kubeconfig"
    try:
        await read_banner(proc, 60)
        await kubectl(kc, "apply", "-f", "-", input=MANIFEST.encode())

        async def running() -> bool:
            _, out, _ = await kubectl(kc, "get", "pods", "-n", "lb", "-o", "jsonpath={.items[*].status.phase}",
                                      check=False)
            return out.split() == ["Running", "Running"]

        await until(running, 60, what="both pods running")

        async def run_script() -> dict:  # type: ignore[type-arg]
            _, out, _ = await kubectl(kc, "exec", "-i", "-n", "lb", "client", "--", PY, "-", input=SCRIPT.encode(),
                                      timeout=60)
            return json.loads(out.strip().splitlines()[-1])  # type: ignore[no-any-return]

        # the pod really runs as the unprivileged default user (the interpreter lives under a 0700
        # /root on the dev machine), and its token is readable by that user only
        _, out, _ = await kubectl(kc, "exec", "-n", "lb", "client", "--", "id", "-u")
        assert out.strip() == "65534"
        _, out, _ = await kubectl(kc, "exec", "-n", "lb", "client", "--", "stat", "-L", "-c", "%a %u",
                                  "/var/run/secrets/kubernetes.io/serviceaccount/token")
        assert out.split() == ["600", "65534"]
        got = await run_script()
        assert got["host"] == "https://10.96.0.1:443"  # the kubernetes Service's ClusterIP, from the env
        assert got["namespace"] == "lb"
        assert len(got["list"]) == 1 and got["list"][0].startswith("web")  # the mirrored slice
        assert got["watch"][0] == "ADDED" and got["watch"][1].startswith("web")
        assert got["secrets"] == 403
        assert got["secrets_msg"] == ('secrets is forbidden: User "system:serviceaccount:lb:balancer" cannot list '
                                      'resource "secrets" in API group "" in the namespace "lb"')
        assert got["other"] == 403
        # automountServiceAccountToken: false -> nothing mounted
        rc, _, _ = await kubectl(kc, "exec", "-n", "lb", "no-token", "--", "test", "-e",
                                 "/var/run/secrets/kubernetes.io/serviceaccount/token", check=False)
        assert rc != 0
        # grant: the same pod, same token, now may read Secrets and the other namespace
        await kubectl(kc, "apply", "-f", "-", input=GRANT.encode())
        got = await run_script()
        assert got["secrets"] == ["s"] and isinstance(got["other"], int)
    finally:
        proc.send_signal(signal.SIGTERM)
        rc = await asyncio.wait_for(proc.wait(), 60)
    assert rc == 0
