"""The audit log records who did what at the level the policy gives, and rotates."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import orjson
import pytest

from servicenet.api.audit_policy import Policy, PolicyError
from servicenet.api.pb import wire
from servicenet.api.rbac import User, attributes_of
from servicenet.apiserver.server import ApiServer, ApiServerConfig
from servicenet.client import ApiClient, ApiError

POLICY = """
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: None
  nonResourceURLs: ["/healthz*", "/readyz*", "/livez*", "/version"]
- level: RequestResponse
  resources: [{group: "", resources: [configmaps]}]
- level: Metadata
  resources: [{group: "", resources: [secrets]}]
- level: Request
  verbs: [create, update, patch, delete]
- level: Metadata
"""


def _events(path: Path) -> list[dict]:  # type: ignore[type-arg]
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


async def test_audit_log_records_who_did_what(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    log = tmp_path / "audit" / "audit.log"
    cfg = ApiServerConfig(data_dir=tmp_path / "d", port=0, storage="memory", audit_policy_file=policy,
                          audit_log_path=log, audit_log_maxsize=1, audit_log_maxbackup=2)
    server = ApiServer(cfg)
    await server.start()
    client = ApiClient.from_kubeconfig(server.kubeconfig_path, user_agent="audit-test")
    try:
        await client.create("v1", "configmaps", "default", {"metadata": {"name": "c"}, "data": {"k": "v"}})
        # as kubectl's typed clients: a protobuf body, a protobuf answer; the audit log shows both as JSON
        pb = wire.encode({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "pb"}, "data": {"p": "b"}})
        async with client.session.post(server.url + "/api/v1/namespaces/default/configmaps", data=pb, headers={
                "Content-Type": wire.PROTOBUF, "Accept": wire.PROTOBUF + ",application/json"}) as r:
            assert r.status == 201 and r.content_type == wire.PROTOBUF
        await client.create("v1", "secrets", "default", {"metadata": {"name": "s"}, "stringData": {"k": "hidden"}})
        await client.create("v1", "services", "default", {"metadata": {"name": "svc"},
                                                          "spec": {"ports": [{"port": 80}]}})
        await client.list("v1", "pods", "default")
        async with client.session.get(server.url + "/healthz") as r:
            assert r.status == 200
        anon = ApiClient(server.url, ca_data=server.creds.ca_pem)
        with pytest.raises(ApiError):
            await anon.list("v1", "pods", "default")
        await anon.close()
        evs = _events(log)
        assert all(e["stage"] == "ResponseComplete" for e in evs)  # RequestReceived omitted by policy
        assert not any(e["requestURI"].startswith("/healthz") for e in evs)
        by = {(e["verb"], (e.get("objectRef") or {}).get("resource")): e for e in evs}
        pbev = next(e for e in evs if e["verb"] == "create" and e.get("objectRef", {}).get("name") != "c"
                    and (e.get("requestObject") or {}).get("metadata", {}).get("name") == "pb")
        assert pbev["requestObject"]["data"] == {"p": "b"} and pbev["responseObject"]["data"] == {"p": "b"}
        assert pbev["responseObject"]["metadata"]["resourceVersion"]
        cm = next(e for e in evs if e["verb"] == "create" and (e.get("requestObject") or {}).get("metadata", {})
                  .get("name") == "c")
        assert cm["level"] == "RequestResponse" and cm["user"]["username"] == "admin"
        assert cm["requestObject"]["data"] == {"k": "v"} and cm["responseObject"]["metadata"]["name"] == "c"
        assert cm["responseStatus"]["code"] == 201 and cm["userAgent"] == "audit-test"
        assert cm["annotations"]["authorization.k8s.io/decision"] == "allow"
        assert cm["objectRef"] == {"resource": "configmaps", "namespace": "default", "apiVersion": "v1"}
        sec = by[("create", "secrets")]
        assert sec["level"] == "Metadata" and "requestObject" not in sec  # never the secret's value
        assert b"hidden" not in log.read_bytes() and b"aGlkZGVu" not in log.read_bytes()
        svc = by[("create", "services")]
        assert svc["level"] == "Request" and "requestObject" in svc and "responseObject" not in svc
        lst = by[("list", "pods")]
        assert lst["level"] == "Metadata" and lst["auditID"] and lst["requestReceivedTimestamp"].endswith("Z")
        denied = [e for e in evs if e["responseStatus"]["code"] == 401]
        assert denied and denied[0]["user"]["username"] == "system:anonymous"
        assert stat.S_IMODE(os.stat(log).st_mode) == 0o600
        # rotation: past 1 MiB the log moves to audit.log.1
        for i in range(40):
            await client.create("v1", "configmaps", "default", {"metadata": {"name": f"big{i}"},
                                                                 "data": {"k": "x" * 30_000}})
        assert (log.parent / "audit.log.1").exists()
        assert log.stat().st_size < 1024 * 1024
    finally:
        await client.close()
        await server.stop()


def test_policy_first_match_and_validation() -> None:
    p = Policy({"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "rules": [
        {"level": "None", "users": ["system:kube-proxy"]},
        {"level": "RequestResponse", "resources": [{"group": "", "resources": ["pods/log"]}]},
        {"level": "Metadata", "namespaces": ["kube-system"]}]})
    proxy = User("system:kube-proxy", ("system:authenticated",))
    jane = User("jane", ("system:authenticated",))
    assert p.decide(proxy, attributes_of("GET", "/api/v1/namespaces/kube-system/pods", {})).level == "None"
    assert p.decide(jane, attributes_of("GET", "/api/v1/namespaces/a/pods/p/log", {})).level == "RequestResponse"
    assert p.decide(jane, attributes_of("GET", "/api/v1/namespaces/kube-system/pods", {})).level == "Metadata"
    assert p.decide(jane, attributes_of("GET", "/api/v1/namespaces/a/pods", {})).level == "None"  # no match
    with pytest.raises(PolicyError):
        Policy({"apiVersion": "audit.k8s.io/v1", "kind": "Policy", "rules": [{"level": "Everything"}]})
