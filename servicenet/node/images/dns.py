"""``servicenet/dns``: the cluster DNS as a pod (the CoreDNS of ``servicenet up --nodes``).

It reads the in-cluster configuration as client-go's ``rest.InClusterConfig`` does: the API at
``$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT``, the ServiceAccount token and CA under
``/var/run/secrets/kubernetes.io/serviceaccount``. It writes them as a kubeconfig (0600, in a
private temporary directory) and becomes ``servicenet dns`` with it. Without arguments it serves
``0.0.0.0:53`` (UDP and TCP), health and metrics on ``:9153`` (``/healthz``, ``/readyz``, ``/metrics``: the kube-dns Service's ``metrics`` port),
answers pod records (``pods insecure``), does not forward (the nodes of this topology have no
upstream resolver) and stays in its pod's namespace (``--no-node-netns``: no listener in a node's
namespace, as ``servicenet dns`` on a node has); arguments replace those defaults.
"""

from __future__ import annotations

import os
import sys
import tempfile

SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"
DEFAULT_ARGS = ["--dns-listen", "0.0.0.0:53", "--health-listen", "0.0.0.0:9153", "--pods", "insecure",
                "--no-forward", "--no-node-netns"]


def in_cluster_kubeconfig(env: dict[str, str], sa_dir: str = SA_DIR) -> str:
    """The kubeconfig text for the pod's ServiceAccount (pure but for reading nothing: paths only)."""
    host, port = env.get("KUBERNETES_SERVICE_HOST", ""), env.get("KUBERNETES_SERVICE_PORT", "")
    if not host or not port:
        raise SystemExit("servicenet/dns: not in a cluster (KUBERNETES_SERVICE_HOST/PORT unset)")
    server = f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"
    return ("apiVersion: v1\nkind: Config\ncurrent-context: in-cluster\n"
            f"clusters:\n- name: in-cluster\n  cluster:\n    server: {server}\n"
            f"    certificate-authority: {sa_dir}/ca.crt\n"
            f"users:\n- name: sa\n  user:\n    tokenFile: {sa_dir}/token\n"
            "contexts:\n- name: in-cluster\n  context:\n    cluster: in-cluster\n    user: sa\n")


def main(argv: list[str]) -> None:
    text = in_cluster_kubeconfig(dict(os.environ))
    d = tempfile.mkdtemp(prefix="servicenet-dns-")  # 0700
    path = os.path.join(d, "kubeconfig")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    args = argv or DEFAULT_ARGS
    os.execv(sys.executable, [sys.executable, "-m", "servicenet.cli", "dns", "--kubeconfig", path, *args])


if __name__ == "__main__":
    main(sys.argv[1:])
