"""The node agent's API is authenticated and authorized like the kubelet's, and the agent itself
runs with the node identity (system:node:<name>) restricted to its own pods' Secrets."""

from __future__ import annotations

import ssl
from pathlib import Path

import aiohttp
import pytest
from cryptography import x509

from servicenet.api import rbac_policy
from servicenet.apiserver.identities import component_kubeconfig, issue_client_cert, kubelet_client_ssl
from servicenet.client import ApiClient, ApiError, wait_for
from servicenet.node.agent import NodeAgent
from servicenet.testing import RunningApi

NODE = "node-auth"


async def test_node_agent_requires_authn_and_authz(api: RunningApi, tmp_path: Path, loop_cidr: str) -> None:
    user, groups = rbac_policy.node_identity(NODE)
    kc = component_kubeconfig(api.server.config.data_dir, api.url, "node-auth", user, groups)
    node_client = ApiClient.from_kubeconfig(kc)
    agent = NodeAgent(node_client, node_name=NODE, network="loopback", pod_cidr=loop_cidr,
                      data_dir=str(tmp_path / "node"), backoff_base=0.2, serving_cert=api.node_cert(NODE))
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
        base = f"https://127.0.0.1:{agent.port}"
        pki = api.server.config.data_dir / "pki"
        # HTTPS with a serving certificate of the cluster CA for the node's names; its key is 0600
        crt, key = tmp_path / "node" / "pki" / "kubelet.crt", tmp_path / "node" / "pki" / "kubelet.key"
        assert key.stat().st_mode & 0o777 == 0o600
        assert (tmp_path / "node" / "pki").stat().st_mode & 0o777 == 0o700
        cert = x509.load_pem_x509_certificate(crt.read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert {str(v) for v in san.get_values_for_type(x509.IPAddress)} >= {"127.0.0.1", agent.network.node_ip}
        assert NODE in san.get_values_for_type(x509.DNSName)
        verified = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        # a client certificate of the cluster CA for a user without nodes/proxy: 403
        weak_crt, weak_key = issue_client_cert(pki, "jane", ("devs",))
        (tmp_path / "jane.crt").write_bytes(weak_crt)
        (tmp_path / "jane.key").write_bytes(weak_key)
        jane = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        jane.load_cert_chain(str(tmp_path / "jane.crt"), str(tmp_path / "jane.key"))
        tok = await c.request("POST", "/api/v1/namespaces/default/serviceaccounts/default/token", body={})
        weak = tok["status"]["token"]
        paths = [("GET", "/containerLogs/default/p1/c"), ("POST", "/exec/default/p1/c?command=true"),
                 ("POST", "/portForward/default/p1?port=80"), ("GET", "/pods")]
        async with aiohttp.ClientSession() as s:
            for method, path in paths:
                async with s.request(method, base + path, ssl=verified) as r:
                    assert r.status == 401, (path, r.status)
                async with s.request(method, base + path, ssl=verified,
                                     headers={"Authorization": "Bearer nonsense"}) as r:
                    assert r.status == 401, (path, r.status)
                async with s.request(method, base + path, ssl=verified,
                                     headers={"Authorization": f"Bearer {weak}"}) as r:
                    assert r.status == 403, (path, r.status)
                    assert "subresource(s)=[proxy]" in await r.text()
                async with s.request(method, base + path, ssl=jane) as r:
                    assert r.status == 403, (path, r.status)
                    assert "user=jane" in await r.text()
            async with s.get(base + "/healthz", ssl=verified) as r:
                assert r.status == 200
            async with s.get(base + "/pods", ssl=kubelet_client_ssl(pki)) as r:  # the API server's identity
                assert r.status == 200
                assert [p["metadata"]["name"] for p in (await r.json())["items"]] == ["p1"]
            with pytest.raises(aiohttp.ClientError):  # no plain HTTP
                async with s.get(f"http://127.0.0.1:{agent.port}/healthz") as r:
                    await r.read()
            with pytest.raises(aiohttp.ClientConnectorCertificateError):  # a CA that did not sign it
                async with s.get(base + "/healthz", ssl=ssl.create_default_context()) as r:
                    await r.read()
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
