"""etcd with TLS and client-certificate authentication: the store connects with a client cert, and
without one it is refused."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from servicenet.store import StoreError
from servicenet.store.etcd import EtcdStore, EtcdTLS
from servicenet.store.etcdlaunch import Cluster


def _pki(d: Path) -> dict[str, str]:
    now = dt.datetime.now(dt.UTC)
    name = lambda cn: x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])  # noqa: E731
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("etcd-ca")).issuer_name(name("etcd-ca"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    out = {"ca": str(d / "ca.crt")}
    (d / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))

    def issue(stem: str, cn: str, usage: list[x509.ObjectIdentifier], sans: list[x509.GeneralName]) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        b = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(ca.subject)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=1))
             .add_extension(x509.ExtendedKeyUsage(usage), critical=False))
        if sans:
            b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = b.sign(ca_key, hashes.SHA256())
        (d / f"{stem}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        kp = d / f"{stem}.key"
        kp.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()))
        kp.chmod(0o600)

    issue("server", "etcd", [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH],
          [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")])
    issue("client", "servicenet-apiserver", [ExtendedKeyUsageOID.CLIENT_AUTH], [])
    out.update(cert=str(d / "server.crt"), key=str(d / "server.key"),
               client_cert=str(d / "client.crt"), client_key=str(d / "client.key"))
    return out


async def test_store_over_tls_with_client_certificate(tmp_path: Path, etcd_members: Callable[..., Cluster]) -> None:
    pki = _pki(tmp_path)
    cluster = etcd_members(1, tls=pki)
    assert cluster.endpoints[0].startswith("https://")
    store = EtcdStore(cluster.endpoints, tls=EtcdTLS(pki["ca"], pki["client_cert"], pki["client_key"]),
                      compact_interval=0, etcd_compact_interval=0)
    await store.open()
    try:
        rec = await store.create("/registry/configmaps/default/a", {"metadata": {"name": "a"}})
        assert store.get("/registry/configmaps/default/a") == rec
        # a create no longer waits for its own watch event (it is applied from etcd's answer), so the
        # watch stream may still be opening: readiness must follow within a deadline
        deadline = time.monotonic() + 10
        while not store.ready()[0] and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        assert store.ready() == (True, "ok")
    finally:
        await store.close()
    anonymous = EtcdStore(cluster.endpoints, tls=EtcdTLS(pki["ca"]), request_timeout=2,
                          compact_interval=0, etcd_compact_interval=0)
    with pytest.raises(StoreError, match="cannot read from etcd"):  # no client certificate: refused
        await anonymous.open()
