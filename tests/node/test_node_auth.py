"""The node agent's API is authenticated and authorized like the kubelet's, and the agent itself
runs with the node identity (system:node:<name>) restricted to its own pods' Secrets."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from servicenet.api import rbac_policy
from servicenet.apiserver.identities import component_kubeconfig
from servicenet.client import ApiClient, ApiError, wait_for
from servicenet.node.agent import NodeAgent
from servicenet.testing import RunningApi

NODE = "node-auth"


async def test_node_agent_requires_authn_and_authz(api: RunningApi, tmp_path: Path, loop_cidr: str) -> None:
    user, groups = rbac_policy.node_identity(NODE)
    kc = component_kubeconfig(api.server.config.data_dir, api.url, "node-auth", user, groups)
    node_client = ApiClient.from_kubeconfig(kc)
    agent = NodeAgent(node_client, node_name=NODE, network="loopback", pod_cidr=loop_cidr,
                      data_dir=str(tmp_path / "node"), backoff_base=0.2)
    await agent.start()
    try:
        c = api.client
        await c.create("v1", "secrets", "default", {"metadata": {"name": "mine"}, "stringData": {"k": "v"}})
        await c.create("v1", "secrets", "default", {"metadata": {"name": "not-mine"}, "stringData": {"k": "v"}})
        await c.create("v1", "pods", "default", {"metadata": {"name": "p1"}, "spec": {
            "nodeName": NODE, "containers": [{"name": "c", "image": "busybox",
                                              "command": ["sh", "-c", "echo hi; exec sleep 600"],
                                              "env": [{"name": "S", "valueFrom": {"secretKeyRef": {
                                                  "name": "mine", "key": "k"}}}]}]}})

        async def running() -> bool:
            pod = await c.get("v1", "pods", "default", "p1")
            return (pod.get("status") or {}).get("phase") == "Running"

        await wait_for(running, 20)
        base = f"http://127.0.0.1:{agent.port}"
        tok = await c.request("POST", "/api/v1/namespaces/default/serviceaccounts/default/token", body={})
        weak = tok["status"]["token"]
        paths = [("GET", "/containerLogs/default/p1/c"), ("POST", "/exec/default/p1/c?command=true"),
                 ("POST", "/portForward/default/p1?port=80"), ("GET", "/pods")]
        async with aiohttp.ClientSession() as s:
            for method, path in paths:
                async with s.request(method, base + path) as r:
                    assert r.status == 401, (path, r.status)
                async with s.request(method, base + path, headers={"Authorization": "Bearer nonsense"}) as r:
                    assert r.status == 401, (path, r.status)
                async with s.request(method, base + path, headers={"Authorization": f"Bearer {weak}"}) as r:
                    assert r.status == 403, (path, r.status)
                    assert "subresource(s)=[proxy]" in await r.text()
            async with s.get(base + "/healthz") as r:
                assert r.status == 200
        # through the API server (its own identity) logs and exec still work
        _, out, _ = await api.kubectl("logs", "p1")
        assert out.strip() == "hi"
        _, out, _ = await api.kubectl("exec", "p1", "--", "echo", "exec-ok")
        assert out.strip() == "exec-ok"
        # node restriction: the node reads only what its pods reference, and cannot list
        got = await node_client.get("v1", "secrets", "default", "mine")
        assert got["metadata"]["name"] == "mine"
        for call in (node_client.get("v1", "secrets", "default", "not-mine"),
                     node_client.list("v1", "secrets", "default")):
            with pytest.raises(ApiError) as ei:
                await call
            assert ei.value.status == 403
        with pytest.raises(ApiError) as ei:  # nor write other objects
            await node_client.create("v1", "services", "default", {"metadata": {"name": "x"},
                                                                    "spec": {"ports": [{"port": 1}]}})
        assert ei.value.status == 403
    finally:
        await agent.stop()
        await node_client.close()
