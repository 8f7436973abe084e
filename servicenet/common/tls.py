"""The node agent's HTTPS: its serving certificate and who a client certificate says it is.

Like the kubelet, the agent serves TLS on its API port. Its serving certificate is issued at every
start for the node's names (node IP, 127.0.0.1, node name) by an *issuer* it is given: under
``servicenet up`` the cluster CA (the API server then verifies the agent against that CA, as
kube-apiserver does with ``--kubelet-certificate-authority``); ``servicenet node`` takes the
kubelet's ``--tls-cert-file``/``--tls-private-key-file``, and without them makes a self-signed
certificate (as the kubelet does; an API server verifying against its CA then refuses it).

Clients may present a certificate signed by the client CA (``--client-ca-file``; under ``up`` the
cluster CA): its CN is the user and its O entries the groups, as for the API server. The API server
calls the agent with such a certificate (``--kubelet-client-certificate``).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

__all__ = ["Issuer", "ca_issuer", "peer_user", "self_signed", "server_context", "serving_hosts", "write_pair"]

# hosts -> (certificate PEM, key PEM)
Issuer = Callable[[list[str]], tuple[bytes, bytes]]


def serving_hosts(node_ip: str, node_name: str) -> list[str]:
    """The names the serving certificate covers (pure)."""
    return list(dict.fromkeys(h for h in (node_ip, "127.0.0.1", node_name) if h))


def san_names(hosts: list[str]) -> list[x509.GeneralName]:
    out: list[x509.GeneralName] = []
    for h in hosts:
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(h)))
        except ValueError:
            out.append(x509.DNSName(h))
    return out


def self_signed(hosts: list[str], cn: str = "servicenet-node") -> tuple[bytes, bytes]:
    """A self-signed serving certificate (the agent's last resort, as the kubelet's)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{cn}@{int(now.timestamp())}")])
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=365))
            .add_extension(x509.SubjectAlternativeName(san_names(hosts)), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(key, hashes.SHA256()))
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))


def ca_issuer(pki_dir: str | Path, node_name: str, days: int = 365) -> Issuer:
    """An issuer signing with the cluster CA in ``pki_dir`` (``ca.crt``/``ca.key``): what a process
    that holds the CA (``servicenet up``) hands its node agents (CN ``system:node:<name>``)."""
    pki = Path(pki_dir)

    def issue(hosts: list[str]) -> tuple[bytes, bytes]:
        ca = x509.load_pem_x509_certificate((pki / "ca.crt").read_bytes())
        ca_key = serialization.load_pem_private_key((pki / "ca.key").read_bytes(), None)
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
                          x509.NameAttribute(NameOID.COMMON_NAME, f"system:node:{node_name}")])
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(ca.subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=days))
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.SubjectAlternativeName(san_names(hosts)), critical=False)
                .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .sign(ca_key, hashes.SHA256()))  # type: ignore[arg-type]
        return (cert.public_bytes(serialization.Encoding.PEM),
                key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))

    return issue


def write_pair(pki_dir: str, cert: bytes, key: bytes, name: str = "kubelet") -> tuple[str, str]:
    """``<pki_dir>/<name>.crt`` and ``.key`` (the key 0600, the directory 0700)."""
    os.makedirs(pki_dir, mode=0o700, exist_ok=True)
    os.chmod(pki_dir, 0o700)
    crt_path, key_path = os.path.join(pki_dir, f"{name}.crt"), os.path.join(pki_dir, f"{name}.key")
    for path, data, mode in ((key_path, key, 0o600), (crt_path, cert, 0o644)):
        tmp = path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    return crt_path, key_path


def server_context(cert_file: str, key_file: str, client_ca_pem: bytes | None) -> ssl.SSLContext:
    """TLS for the agent's API: client certificates are optional, verified against the client CA."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert_file, key_file)
    if client_ca_pem:
        ctx.load_verify_locations(cadata=client_ca_pem.decode())
        ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


def peer_user(peercert: dict[str, Any] | None) -> dict[str, Any] | None:
    """The user a verified client certificate names (CN, O groups), as a TokenReview user (pure)."""
    if not peercert:
        return None
    cn, groups = "", []
    for rdn in peercert.get("subject") or ():
        for k, v in rdn:
            if k == "commonName":
                cn = v
            elif k == "organizationName":
                groups.append(v)
    if not cn:
        return None
    return {"username": cn, "groups": [*groups, "system:authenticated"]}


def read_pem(path: str | None) -> bytes | None:
    return Path(path).read_bytes() if path else None
