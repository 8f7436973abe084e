"""Component identities: x509 client certificates signed by the cluster CA and a kubeconfig per
component (CN = user, O = groups, as upstream's kubeadm writes ``controller-manager.conf``,
``scheduler.conf``, ``kubelet.conf``), all files 0600.
"""

from __future__ import annotations

import base64
import datetime as dt
import os
import ssl
from collections.abc import Callable
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from servicenet.common.tls import ca_issuer


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` with mode 0600 (atomically replaced)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def issue_client_cert(pki_dir: Path, user: str, groups: tuple[str, ...] = (),
                      days: int = 365) -> tuple[bytes, bytes]:
    """(cert PEM, key PEM) for a client certificate signed by the cluster CA in ``pki_dir``."""
    ca = x509.load_pem_x509_certificate((pki_dir / "ca.crt").read_bytes())
    ca_key = serialization.load_pem_private_key((pki_dir / "ca.key").read_bytes(), None)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
                     + [x509.NameAttribute(NameOID.COMMON_NAME, user)])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))  # type: ignore[arg-type]
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def node_serving_issuer(pki_dir: Path, node_name: str) -> Callable[[list[str]], tuple[bytes, bytes]]:
    """What ``servicenet up`` (and tests) hand a node agent to get its serving certificate."""
    return ca_issuer(pki_dir, node_name)


def kubelet_client_ssl(pki_dir: Path) -> ssl.SSLContext:
    """The API server's TLS towards node agents: verify them against the cluster CA and present the
    ``kube-apiserver-kubelet-client`` certificate (group ``system:masters``), as kubeadm sets up
    ``--kubelet-client-certificate``; the pair is written 0600 under ``pki_dir``."""
    crt, key = pki_dir / "apiserver-kubelet-client.crt", pki_dir / "apiserver-kubelet-client.key"
    if not (crt.exists() and key.exists()):
        cert_pem, key_pem = issue_client_cert(pki_dir, "kube-apiserver-kubelet-client", ("system:masters",))
        write_private(key, key_pem)
        write_private(crt, cert_pem)
    ctx = ssl.create_default_context(cafile=str(pki_dir / "ca.crt"))
    ctx.load_cert_chain(str(crt), str(key))
    return ctx


def render_cert_kubeconfig(server: str, ca_pem: bytes, user: str, cert: bytes, key: bytes,
                           name: str = "servicenet") -> str:
    doc = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": server,
                                                "certificate-authority-data": base64.b64encode(ca_pem).decode()}}],
        "users": [{"name": user, "user": {"client-certificate-data": base64.b64encode(cert).decode(),
                                          "client-key-data": base64.b64encode(key).decode()}}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": user, "namespace": "default"}}],
        "current-context": name, "preferences": {},
    }
    return yaml.safe_dump(doc, sort_keys=False)


def component_kubeconfig(data_dir: Path, server: str, component: str, user: str,
                         groups: tuple[str, ...] = ()) -> Path:
    """``<data_dir>/<component>.kubeconfig`` for ``user`` (re-issued when the server URL or CA changed)."""
    pki = data_dir / "pki"
    path = data_dir / f"{component}.kubeconfig"
    ca_pem = (pki / "ca.crt").read_bytes()
    if path.exists():
        doc = yaml.safe_load(path.read_text()) or {}
        cl = (doc.get("clusters") or [{}])[0].get("cluster") or {}
        if cl.get("server") == server and cl.get("certificate-authority-data") == base64.b64encode(ca_pem).decode():
            return path
    cert, key = issue_client_cert(pki, user, groups)
    write_private(path, render_cert_kubeconfig(server, ca_pem, user, cert, key).encode())
    return path
