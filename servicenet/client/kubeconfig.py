"""Kubeconfig loading: server URL, CA, bearer token (pure parsing + file reads)."""

from __future__ import annotations

import base64
import os
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

FAILOVER_EXTENSION = "servicenet.io/failover"


class KubeconfigError(Exception):
    pass


def _failover(cluster: dict[str, Any]) -> tuple[str, ...]:
    """The other servers a cluster entry lists under its ``servicenet.io/failover`` extension."""
    for ext in cluster.get("extensions") or []:
        if isinstance(ext, dict) and ext.get("name") == FAILOVER_EXTENSION:
            servers = (ext.get("extension") or {}).get("servers") or []
            return tuple(str(s).rstrip("/") for s in servers if s)
    return ()


@dataclass(frozen=True, slots=True)
class ClusterConfig:
    server: str
    token: str | None = None
    ca_data: bytes | None = None
    insecure: bool = False
    client_cert: bytes | None = None
    client_key: bytes | None = None
    namespace: str = "default"
    # further API servers of the same cluster, tried in turn when ``server`` cannot be reached
    # (kubeconfig: the cluster's extension named FAILOVER_EXTENSION, ``{servers: [URL, ...]}``)
    failover: tuple[str, ...] = ()
    token_file: str | None = None  # re-read when it changes (a rotated ServiceAccount token), as client-go

    def ssl_context(self) -> ssl.SSLContext | bool:
        if not self.server.startswith("https"):
            return False
        if self.insecure:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            return ctx
        ctx = ssl.create_default_context(cadata=self.ca_data.decode() if self.ca_data else None)
        if self.client_cert and self.client_key:
            with tempfile.TemporaryDirectory() as d:
                c, k = Path(d, "c.pem"), Path(d, "k.pem")
                c.write_bytes(self.client_cert)
                k.write_bytes(self.client_key)
                ctx.load_cert_chain(str(c), str(k))
        return ctx


def _data_or_file(section: dict[str, Any], key: str, base: Path) -> bytes | None:
    data = section.get(f"{key}-data")
    if data:
        return base64.b64decode(data)
    path = section.get(key)
    if path:
        p = Path(path)
        if not p.is_absolute():
            p = base / p
        return p.read_bytes()
    return None


def load(path: str | os.PathLike[str] | None = None, context: str | None = None) -> ClusterConfig:
    """Load a kubeconfig (default: $KUBECONFIG or ~/.kube/config)."""
    if path is None:
        path = os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or str(Path.home() / ".kube" / "config")
    p = Path(path)
    try:
        doc = yaml.safe_load(p.read_text()) or {}
    except FileNotFoundError as exc:
        raise KubeconfigError(f"kubeconfig not found: {p}") from exc
    ctx_name = context or doc.get("current-context")
    contexts = {c["name"]: c.get("context", {}) for c in doc.get("contexts") or []}
    if ctx_name not in contexts:
        raise KubeconfigError(f"context {ctx_name!r} not found in {p}")
    ctx = contexts[ctx_name]
    clusters = {c["name"]: c.get("cluster", {}) for c in doc.get("clusters") or []}
    users = {u["name"]: u.get("user", {}) or {} for u in doc.get("users") or []}
    cluster = clusters.get(ctx.get("cluster"))
    if cluster is None:
        raise KubeconfigError(f"cluster {ctx.get('cluster')!r} not found in {p}")
    user = users.get(ctx.get("user"), {})
    token = user.get("token")
    if not token and user.get("tokenFile"):
        token = Path(user["tokenFile"]).read_text().strip()
    return ClusterConfig(
        server=cluster["server"].rstrip("/"),
        token=token,
        ca_data=_data_or_file(cluster, "certificate-authority", p.parent),
        insecure=bool(cluster.get("insecure-skip-tls-verify")),
        client_cert=_data_or_file(user, "client-certificate", p.parent),
        client_key=_data_or_file(user, "client-key", p.parent),
        namespace=ctx.get("namespace") or "default",
        failover=_failover(cluster),
        token_file=str(user["tokenFile"]) if not user.get("token") and user.get("tokenFile") else None,
    )


def render(server: str, token: str, ca_pem: bytes, name: str = "servicenet") -> str:
    """A kubeconfig document carrying the CA data, server URL and bearer token."""
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {
            "server": server,
            "certificate-authority-data": base64.b64encode(ca_pem).decode(),
        }}],
        "users": [{"name": f"{name}-admin", "user": {"token": token}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": f"{name}-admin",
                                                "namespace": "default"}}],
        "current-context": name,
        "preferences": {},
    }
    return yaml.safe_dump(doc, sort_keys=False)


def with_failover(text: str, servers: list[str]) -> str:
    """``text`` (a kubeconfig) with every cluster's ``server`` set to ``servers[0]`` and the others
    listed as its failover servers (an extension kubectl ignores, as it does minikube's)."""
    doc = yaml.safe_load(text) or {}
    for c in doc.get("clusters") or []:
        cluster = c.setdefault("cluster", {})
        cluster["server"] = servers[0]
        exts = [e for e in cluster.get("extensions") or [] if e.get("name") != FAILOVER_EXTENSION]
        if servers[1:]:
            exts.append({"name": FAILOVER_EXTENSION, "extension": {"servers": list(servers[1:])}})
        if exts:
            cluster["extensions"] = exts
        else:
            cluster.pop("extensions", None)
    return yaml.safe_dump(doc, sort_keys=False)
