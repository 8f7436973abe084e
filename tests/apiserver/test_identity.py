"""Identity and access: users × verbs × resources with upstream's 401/403 answers, the review APIs
through the real kubectl (auth can-i, --list, --as, whoami, create token), escalation prevention,
aggregation, impersonation and bound-token invalidation."""

from __future__ import annotations

import base64
import ssl
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import yaml
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from servicenet.apiserver.identities import issue_client_cert, render_cert_kubeconfig
from servicenet.apiserver.sa_tokens import Bound
from servicenet.client import ApiClient, ApiError, wait_for
from servicenet.testing import RunningApi, kubectl

RBAC = "rbac.authorization.k8s.io/v1"
UNAUTHORIZED = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "Unauthorized", "reason": "Unauthorized", "code": 401}


def _ns(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


async def _setup(api: RunningApi, tmp_path: Path) -> dict[str, Any]:
    c = api.client
    for ns in ("team", "other"):
        await c.create("v1", "namespaces", None, _ns(ns))
    await c.create("v1", "serviceaccounts", "team", {"metadata": {"name": "reader"}})
    await c.create(RBAC, "roles", "team", {"metadata": {"name": "slices"}, "rules": [
        {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["get", "list", "watch"]}]})
    await c.create(RBAC, "rolebindings", "team", {
        "metadata": {"name": "slices"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                                    "name": "slices"},
        "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": "team"}]})
    await c.create(RBAC, "clusterrolebindings", None, {
        "metadata": {"name": "jane-view"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io",
                                                       "kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "User", "name": "jane", "apiGroup": "rbac.authorization.k8s.io"}]})
    for ns in ("team", "other"):
        await c.create("discovery.k8s.io/v1", "endpointslices", ns, {
            "metadata": {"name": "s1", "labels": {"kubernetes.io/service-name": "s"}}, "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.1.0.1"]}], "ports": [{"port": 80, "protocol": "TCP", "name": ""}]})
        await c.create("v1", "secrets", ns, {"metadata": {"name": "sec"}, "data": {"k": "dmFsdWU="}})
    # a pod using the SA (no node: it is never scheduled), and tokens
    await c.create("v1", "pods", "team", {"metadata": {"name": "p"}, "spec": {
        "serviceAccountName": "reader", "containers": [{"name": "c", "image": "busybox"}]}})
    pod = await c.get("v1", "pods", "team", "p")
    tok = await c.request("POST", "/api/v1/namespaces/team/serviceaccounts/reader/token",
                          body={"spec": {"expirationSeconds": 3600}})
    pod_tok = await c.request("POST", "/api/v1/namespaces/team/serviceaccounts/reader/token", body={
        "spec": {"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "p",
                                    "uid": pod["metadata"]["uid"]}}})
    signer = api.server.security.signer
    sa = await c.get("v1", "serviceaccounts", "team", "reader")
    expired, _ = signer.issue(Bound("team", "reader", sa["metadata"]["uid"]), [signer.issuer], 600,
                              now=time.time() - 3600)
    cert, key = issue_client_cert(api.server.config.data_dir / "pki", "jane", ("viewers",))
    jane_kc = tmp_path / "jane.kubeconfig"
    jane_kc.write_text(render_cert_kubeconfig(api.url, api.server.creds.ca_pem, "jane", cert, key))
    return {"sa": tok["status"]["token"], "pod": pod_tok["status"]["token"], "expired": expired,
            "jane": jane_kc, "pod_obj": pod}


async def _call(api: RunningApi, method: str, path: str, *, token: str | None = None,
                cert: tuple[Path, Path] | None = None, body: Any = None) -> tuple[int, Any]:
    ctx = ssl.create_default_context(cadata=api.server.creds.ca_pem.decode())
    if cert:
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if body is not None:
        headers["Content-Type"] = "application/json"
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx)) as s:
        async with s.request(method, api.url + path, headers=headers,
                             data=orjson.dumps(body) if body is not None else None) as r:
            raw = await r.read()
            try:
                return r.status, orjson.loads(raw)
            except orjson.JSONDecodeError:
                return r.status, raw.decode()


ES = "/apis/discovery.k8s.io/v1/namespaces/team/endpointslices"
# (verb, method, path, body)
CASES = [
    ("get es", "GET", ES + "/s1", None),
    ("list es", "GET", ES, None),
    ("watch es", "GET", ES + "?watch=1&timeoutSeconds=1", None),
    ("create es", "POST", ES, {"metadata": {"name": "s2"}, "addressType": "IPv4", "endpoints": [],
                               "ports": []}),
    ("delete es", "DELETE", ES + "/nonexistent", None),
    ("list secrets", "GET", "/api/v1/namespaces/team/secrets", None),
    ("list es other ns", "GET", "/apis/discovery.k8s.io/v1/namespaces/other/endpointslices", None),
    ("list pods all ns", "GET", "/api/v1/pods", None),
    ("discovery", "GET", "/api", None),
    ("healthz", "GET", "/healthz", None),
]
F = "forbidden"
EXPECT = {  # user -> per-case status (403s carry upstream's message, checked below)
    "admin": [200, 200, 200, 201, 404, 200, 200, 200, 200, 200],
    "view": [200, 200, 200, 403, 403, 403, 200, 200, 200, 200],
    "sa": [200, 200, 200, 403, 403, 403, 403, 403, 200, 200],
    "none": [401, 401, 401, 401, 401, 401, 401, 401, 401, 200],
    "expired": [401, 401, 401, 401, 401, 401, 401, 401, 401, 401],
    "deleted-pod": [401, 401, 401, 401, 401, 401, 401, 401, 401, 401],
}
MESSAGES = {
    ("sa", "create es"): 'endpointslices.discovery.k8s.io is forbidden: User "system:serviceaccount:team:reader" '
                         'cannot create resource "endpointslices" in API group "discovery.k8s.io" in the '
                         'namespace "team"',
    ("sa", "list secrets"): 'secrets is forbidden: User "system:serviceaccount:team:reader" cannot list resource '
                            '"secrets" in API group "" in the namespace "team"',
    ("sa", "list pods all ns"): 'pods is forbidden: User "system:serviceaccount:team:reader" cannot list '
                                'resource "pods" in API group "" at the cluster scope',
    ("view", "delete es"): 'endpointslices.discovery.k8s.io "nonexistent" is forbidden: User "jane" cannot '
                           'delete resource "endpointslices" in API group "discovery.k8s.io" in the namespace '
                           '"team"',
}


async def test_users_verbs_resources_matrix(api: RunningApi, tmp_path: Path) -> None:
    ctx = await _setup(api, tmp_path)
    # the bound pod goes away: its token must stop working
    await api.client.delete("v1", "pods", "team", "p", grace_period_seconds=0)
    await wait_for(lambda: api.server.store.get("/registry/core/pods/team/p") is None, 10)
    cert_dir = tmp_path / "jane"
    cert_dir.mkdir()
    u = yaml.safe_load(ctx["jane"].read_text())["users"][0]["user"]
    (cert_dir / "c.pem").write_bytes(base64.b64decode(u["client-certificate-data"]))
    (cert_dir / "k.pem").write_bytes(base64.b64decode(u["client-key-data"]))
    creds: dict[str, dict[str, Any]] = {
        "admin": {"token": api.server.creds.admin_token()},
        "view": {"cert": (cert_dir / "c.pem", cert_dir / "k.pem")},
        "sa": {"token": ctx["sa"]}, "none": {}, "expired": {"token": ctx["expired"]},
        "deleted-pod": {"token": ctx["pod"]},
    }
    failures = []
    for user, expected in EXPECT.items():
        for (label, method, path, body), want in zip(CASES, expected, strict=True):
            status, doc = await _call(api, method, path, body=body, **creds[user])
            if status != want:
                failures.append(f"{user} {label}: {status} (wanted {want}) {doc}")
                continue
            if status == 401:
                assert doc == UNAUTHORIZED, (user, label, doc)
            if status == 403:
                assert doc["reason"] == "Forbidden" and doc["code"] == 403
                if (user, label) in MESSAGES:
                    assert doc["message"] == MESSAGES[(user, label)]
    assert not failures, "\n".join(failures)


async def test_kubectl_auth_can_i_whoami_and_create_token(api: RunningApi, tmp_path: Path) -> None:
    ctx = await _setup(api, tmp_path)
    kc = api.kubeconfig
    _, out, _ = await kubectl(kc, "auth", "whoami")
    assert "admin" in out and "system:masters" in out
    _, out, _ = await kubectl(ctx["jane"], "auth", "whoami")
    assert "jane" in out and "viewers" in out and "system:authenticated" in out
    # can-i for another user through impersonation (admin may impersonate)
    sa = "system:serviceaccount:team:reader"
    for args, want in ((["list", "endpointslices.discovery.k8s.io", "-n", "team"], "yes"),
                       (["watch", "endpointslices.discovery.k8s.io", "-n", "team"], "yes"),
                       (["create", "endpointslices.discovery.k8s.io", "-n", "team"], "no"),
                       (["list", "secrets", "-n", "team"], "no"),
                       (["list", "endpointslices.discovery.k8s.io", "-n", "other"], "no")):
        rc, out, _ = await kubectl(kc, "auth", "can-i", *args, "--as", sa, check=False)
        assert out.strip() == want and rc == (0 if want == "yes" else 1), (args, out)
    # --list with the SA's own token
    _, out, _ = await kubectl(kc, "--token", ctx["sa"], "auth", "can-i", "--list", "-n", "team")
    rows = {line.split()[0]: line for line in out.splitlines()[1:] if line.strip() and not line.startswith(" ")}
    assert "[get list watch]" in rows["endpointslices.discovery.k8s.io"]
    assert "[create]" in rows["selfsubjectaccessreviews.authorization.k8s.io"]
    assert "secrets" not in rows and "pods" not in rows
    # a non-admin may not impersonate
    rc, _, err = await kubectl(ctx["jane"], "get", "pods", "--as", "admin", check=False)
    assert rc != 0 and 'User "jane" cannot impersonate resource "users"' in err
    # kubectl create token, then the token works and TokenReview names its user
    _, token, _ = await kubectl(kc, "create", "token", "reader", "-n", "team", "--duration", "20m")
    review = await api.client.request("POST", "/apis/authentication.k8s.io/v1/tokenreviews",
                                      body={"spec": {"token": token.strip()}})
    assert review["status"]["authenticated"] is True
    assert review["status"]["user"]["username"] == sa
    assert "system:serviceaccounts:team" in review["status"]["user"]["groups"]
    rc, _, err = await kubectl(kc, "create", "token", "reader", "-n", "team", "--duration", "1m", check=False)
    assert rc != 0 and "may not specify a duration less than 10 minutes" in err
    # the SA deleted: its tokens stop working
    await api.client.delete("v1", "serviceaccounts", "team", "reader")
    status, doc = await _call(api, "GET", ES, token=token.strip())
    assert status == 401 and doc == UNAUTHORIZED


async def test_oidc_discovery_verifies_tokens(api: RunningApi) -> None:
    cfg = await api.client.request("GET", "/.well-known/openid-configuration")
    assert cfg["issuer"] == "https://kubernetes.default.svc.cluster.local"
    jwks = await api.client.request("GET", "/openid/v1/jwks")
    key = jwks["keys"][0]
    assert key["alg"] == "ES256" and key["kty"] == "EC"
    tok = await api.client.request("POST", "/api/v1/namespaces/default/serviceaccounts/default/token",
                                   body={"spec": {"audiences": ["vault"]}})
    token = tok["status"]["token"]
    head, payload, sig = token.split(".")

    def unb(s: str) -> bytes:
        return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))

    # verify with the published JWKS only (what an external relying party does)
    pub = ec.EllipticCurvePublicNumbers(int.from_bytes(unb(key["x"]), "big"), int.from_bytes(unb(key["y"]), "big"),
                                        ec.SECP256R1()).public_key()
    raw = unb(sig)
    pub.verify(encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")),
               f"{head}.{payload}".encode(), ec.ECDSA(hashes.SHA256()))
    claims = orjson.loads(unb(payload))
    assert claims["aud"] == ["vault"] and claims["sub"] == "system:serviceaccount:default:default"
    assert claims["kubernetes.io"]["serviceaccount"]["name"] == "default"
    # a token for another audience is not accepted by the API server
    status, _ = await _call(api, "GET", "/api", token=token)
    assert status == 401


async def test_escalation_prevention_and_aggregation(api: RunningApi, tmp_path: Path) -> None:
    c = api.client
    await c.create("v1", "namespaces", None, _ns("esc"))
    # bob may manage roles and rolebindings in esc and read pods, nothing more
    await c.create(RBAC, "roles", "esc", {"metadata": {"name": "role-admin"}, "rules": [
        {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["roles", "rolebindings"],
         "verbs": ["create", "get", "list"]},
        {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]})
    await c.create(RBAC, "rolebindings", "esc", {
        "metadata": {"name": "bob"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                                                 "name": "role-admin"},
        "subjects": [{"kind": "User", "name": "bob", "apiGroup": "rbac.authorization.k8s.io"}]})
    cert, key = issue_client_cert(api.server.config.data_dir / "pki", "bob")
    kc = tmp_path / "bob.kubeconfig"
    kc.write_text(render_cert_kubeconfig(api.url, api.server.creds.ca_pem, "bob", cert, key))
    bob = ApiClient.from_kubeconfig(kc)
    try:
        await bob.create(RBAC, "roles", "esc", {"metadata": {"name": "ok"}, "rules": [
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]})
        with pytest.raises(Exception) as ei:
            await bob.create(RBAC, "roles", "esc", {"metadata": {"name": "more"}, "rules": [
                {"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "delete"]}]})
        assert ei.value.status == 403  # type: ignore[attr-defined]
        assert ei.value.message == (  # type: ignore[attr-defined]
            'roles.rbac.authorization.k8s.io "more" is forbidden: user "bob" (groups=["system:authenticated"]) '
            "is attempting to grant RBAC permissions not currently held:\n"
            '{APIGroups:[""], Resources:["pods"], Verbs:["delete"]}')
        with pytest.raises(Exception) as ei:  # binding "edit" needs its rules (or bind)
            await bob.create(RBAC, "rolebindings", "esc", {
                "metadata": {"name": "b"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io",
                                                       "kind": "ClusterRole", "name": "edit"},
                "subjects": [{"kind": "User", "name": "eve", "apiGroup": "rbac.authorization.k8s.io"}]})
        assert ei.value.status == 403  # type: ignore[attr-defined]
        # with the bind verb on that role, it is allowed
        await c.create(RBAC, "roles", "esc", {"metadata": {"name": "binder"}, "rules": [
            {"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"], "verbs": ["bind"],
             "resourceNames": ["edit"]}]})
        await c.create(RBAC, "rolebindings", "esc", {
            "metadata": {"name": "bob-binder"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io",
                                                            "kind": "Role", "name": "binder"},
            "subjects": [{"kind": "User", "name": "bob", "apiGroup": "rbac.authorization.k8s.io"}]})
        await bob.create(RBAC, "rolebindings", "esc", {
            "metadata": {"name": "b"}, "roleRef": {"apiGroup": "rbac.authorization.k8s.io",
                                                   "kind": "ClusterRole", "name": "edit"},
            "subjects": [{"kind": "User", "name": "eve", "apiGroup": "rbac.authorization.k8s.io"}]})
    finally:
        await bob.close()
    # aggregation: a labelled ClusterRole's rules flow into view, edit and admin
    await c.create(RBAC, "clusterroles", None, {
        "metadata": {"name": "widgets-view", "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}},
        "rules": [{"apiGroups": ["example.com"], "resources": ["widgets"], "verbs": ["get"]}]})

    async def aggregated() -> bool:
        roles = [await c.get(RBAC, "clusterroles", None, n) for n in ("view", "edit", "admin")]
        return all(any("widgets" in (r.get("resources") or []) for r in role["rules"]) for role in roles)

    await wait_for(aggregated, 10)


async def test_default_service_account_and_root_ca_come_back(api: RunningApi) -> None:
    c = api.client
    await c.create("v1", "namespaces", None, _ns("fresh"))
    await wait_for(lambda: api.server.store.get("/registry/core/serviceaccounts/fresh/default") is not None, 10)
    await wait_for(lambda: api.server.store.get("/registry/core/configmaps/fresh/kube-root-ca.crt") is not None, 10)
    cm = await c.get("v1", "configmaps", "fresh", "kube-root-ca.crt")
    assert cm["data"]["ca.crt"] == api.server.creds.ca_pem.decode()
    await c.delete("v1", "serviceaccounts", "fresh", "default")
    await c.delete("v1", "configmaps", "fresh", "kube-root-ca.crt")
    await wait_for(lambda: api.server.store.get("/registry/core/serviceaccounts/fresh/default") is not None, 10)
    await wait_for(lambda: api.server.store.get("/registry/core/configmaps/fresh/kube-root-ca.crt") is not None, 10)
    # a pod naming a ServiceAccount that does not exist is refused, as upstream
    with pytest.raises(ApiError) as ei:
        await c.create("v1", "pods", "fresh", {"metadata": {"name": "p"}, "spec": {
            "serviceAccountName": "ghost", "containers": [{"name": "c", "image": "busybox"}]}})
    assert ei.value.status == 403 and 'serviceaccount "ghost" not found' in ei.value.message
    # the admitted pod gets the token volume mounted in every container
    pod = await c.create("v1", "pods", "fresh", {"metadata": {"name": "q"}, "spec": {
        "containers": [{"name": "c", "image": "busybox"}, {"name": "d", "image": "busybox"}]}})
    vols = [v for v in pod["spec"]["volumes"] if v["name"].startswith("kube-api-access-")]
    assert len(vols) == 1 and pod["spec"]["serviceAccountName"] == "default"
    for ctr in pod["spec"]["containers"]:
        assert {"name": vols[0]["name"], "readOnly": True,
                "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"} in ctr["volumeMounts"]
    # an account with automountServiceAccountToken: false mounts nothing unless the pod asks for it
    await c.create("v1", "serviceaccounts", "fresh", {"metadata": {"name": "quiet"},
                                                     "automountServiceAccountToken": False})
    quiet = await c.create("v1", "pods", "fresh", {"metadata": {"name": "r"}, "spec": {
        "serviceAccountName": "quiet", "containers": [{"name": "c", "image": "busybox"}]}})
    assert not any(v["name"].startswith("kube-api-access-") for v in quiet["spec"].get("volumes") or [])
    asked = await c.create("v1", "pods", "fresh", {"metadata": {"name": "s"}, "spec": {
        "serviceAccountName": "quiet", "automountServiceAccountToken": True,
        "containers": [{"name": "c", "image": "busybox"}]}})
    assert any(v["name"].startswith("kube-api-access-") for v in asked["spec"]["volumes"])
