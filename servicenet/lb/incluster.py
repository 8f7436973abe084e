"""API client configuration: in-cluster (ServiceAccount) inside a pod, else the kubeconfig.

The in-cluster rule is the official client's ``load_incluster_config``: the API is at
``https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT``, authenticated with the bearer token
from the ServiceAccount directory and verified with its ``ca.crt``; the pod's namespace is in
``namespace`` there.
"""

from __future__ import annotations

import os
from pathlib import Path

from servicenet.client import ApiClient, ClusterConfig, load

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class InClusterError(Exception):
    pass


def in_cluster_available(sa_dir: Path = SA_DIR) -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and (sa_dir / "token").is_file()


def load_incluster(sa_dir: Path = SA_DIR) -> ClusterConfig:
    host = os.environ.get("KUBERNETES_SERVICE_HOST", "")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "")
    if not host or not port:
        raise InClusterError("not in a cluster: KUBERNETES_SERVICE_HOST/KUBERNETES_SERVICE_PORT are unset")
    token_file = sa_dir / "token"
    try:
        token = token_file.read_text().strip()
    except OSError as exc:
        raise InClusterError(f"no ServiceAccount token at {token_file}: {exc}") from exc
    if not token:
        raise InClusterError(f"the ServiceAccount token at {token_file} is empty")
    ca_file = sa_dir / "ca.crt"
    try:
        ca = ca_file.read_bytes()
    except OSError as exc:
        raise InClusterError(f"no cluster CA at {ca_file}: {exc}") from exc
    try:
        namespace = (sa_dir / "namespace").read_text().strip() or "default"
    except OSError:
        namespace = "default"
    h = f"[{host}]" if ":" in host else host
    return ClusterConfig(server=f"https://{h}:{port}", token=token, ca_data=ca, namespace=namespace)


def config(kubeconfig: str | os.PathLike[str] | None = None, context: str | None = None,
           in_cluster: bool | None = None, sa_dir: Path = SA_DIR) -> ClusterConfig:
    """In-cluster when asked (or when no kubeconfig is given and a token is mounted), else kubeconfig."""
    if in_cluster or (in_cluster is None and kubeconfig is None and in_cluster_available(sa_dir)):
        return load_incluster(sa_dir)
    return load(kubeconfig, context)


class InClusterClient(ApiClient):
    """An API client on the ServiceAccount token that follows the token file as the node rotates it
    (the official client re-reads it every minute too)."""

    def __init__(self, cfg: ClusterConfig, sa_dir: Path = SA_DIR, user_agent: str = "servicenet-lb") -> None:
        super().__init__(cfg.server, config=cfg, user_agent=user_agent)
        self.token_file = sa_dir / "token"
        self.token = cfg.token or ""

    def token_changed(self) -> bool:
        """Re-read the token; True (and new requests carry it) when it changed."""
        try:
            tok = self.token_file.read_text().strip()
        except OSError:
            return False
        if not tok or tok == self.token:
            return False
        self.token = tok
        self._headers["Authorization"] = f"Bearer {tok}"
        return True

    async def refresh(self) -> bool:
        """Pick up a rotated token: reconnect (watches resume from their resourceVersion)."""
        if self.token_changed():
            await self.close()
            return True
        return False


def api_client(kubeconfig: str | os.PathLike[str] | None = None, context: str | None = None,
               in_cluster: bool | None = None, sa_dir: Path = SA_DIR,
               user_agent: str = "servicenet-lb") -> ApiClient:
    cfg = config(kubeconfig, context, in_cluster, sa_dir)
    if cfg.token and (in_cluster or (in_cluster is None and kubeconfig is None and in_cluster_available(sa_dir))):
        return InClusterClient(cfg, sa_dir, user_agent)
    return ApiClient(cfg.server, config=cfg, user_agent=user_agent)
