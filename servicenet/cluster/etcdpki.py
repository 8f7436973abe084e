"""etcd's own PKI for the multi-machine topology (as kubeadm's ``/etc/kubernetes/pki/etcd``).

A CA of its own (``etcd-ca``), one certificate per member (its IP; serving clients and peers and
authenticating to peers) and the API servers' client certificate. Private keys are written 0600
in a 0700 directory. The CA is kept across restarts; member certificates are re-issued each start.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from servicenet.common.tls import write_pair

_DAYS = 3650


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def _ca(pki: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    crt, key = pki / "ca.crt", pki / "ca.key"
    if crt.exists() and key.exists():
        loaded = serialization.load_pem_private_key(key.read_bytes(), None)
        assert isinstance(loaded, ec.EllipticCurvePrivateKey)
        return x509.load_pem_x509_certificate(crt.read_bytes()), loaded
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("etcd-ca")).issuer_name(_name("etcd-ca"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=_DAYS))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    write_pair(str(pki), ca.public_bytes(serialization.Encoding.PEM), _pem_key(ca_key), "ca")
    return ca, ca_key


def _issue(pki: Path, stem: str, cn: str, ips: list[str], server: bool) -> dict[str, str]:
    ca, ca_key = _ca(pki)
    now = dt.datetime.now(dt.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    usage = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH] if server \
        else [ExtendedKeyUsageOID.CLIENT_AUTH]
    b = (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca.subject).public_key(key.public_key())
         .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
         .not_valid_after(now + dt.timedelta(days=_DAYS))
         .add_extension(x509.ExtendedKeyUsage(usage), critical=False))
    if ips:
        b = b.add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address(i)) for i in ips] + [x509.DNSName("localhost")]), critical=False)
    cert = b.sign(ca_key, hashes.SHA256())
    crt_path, key_path = write_pair(str(pki), cert.public_bytes(serialization.Encoding.PEM), _pem_key(key), stem)
    return {"ca": str(pki / "ca.crt"), "cert": crt_path, "key": key_path}


def member(pki: Path, name: str, ip: str) -> dict[str, str]:
    """A member's certificate for ``ip`` (and 127.0.0.1, for etcdctl on the member's machine)."""
    return _issue(pki, name, name, [ip, "127.0.0.1"], server=True)


def apiserver_client(pki: Path) -> dict[str, str]:
    """The API servers' client certificate (kubeadm: ``apiserver-etcd-client``)."""
    return _issue(pki, "apiserver-etcd-client", "kube-apiserver-etcd-client", [], server=False)
