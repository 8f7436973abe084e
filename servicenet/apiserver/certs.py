"""First-start credentials: a CA, a serving certificate signed by it, and an admin bearer token."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


@dataclass(frozen=True, slots=True)
class Credentials:
    ca_cert: Path
    server_cert: Path
    server_key: Path
    token_file: Path

    @property
    def ca_pem(self) -> bytes:
        return self.ca_cert.read_bytes()

    def tokens(self) -> dict[str, str]:
        """token → user name, from a ``token,user,uid`` file (``#`` comments allowed)."""
        out: dict[str, str] = {}
        for line in self.token_file.read_text().splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = [p.strip() for p in line.split(",")]
            out[parts[0]] = parts[1] if len(parts) > 1 else "admin"
        return out

    def admin_token(self) -> str:
        return next(iter(self.tokens()))


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def ensure(pki_dir: Path, hosts: list[str]) -> Credentials:
    """Create the CA, serving certificate and token once; reuse them afterwards.

    The serving certificate is re-issued (by the same CA) when ``hosts`` gains a name.
    """
    pki_dir.mkdir(parents=True, exist_ok=True)
    creds = Credentials(pki_dir / "ca.crt", pki_dir / "apiserver.crt", pki_dir / "apiserver.key",
                        pki_dir / "tokens.csv")
    now = dt.datetime.now(dt.UTC)
    ca_key_path = pki_dir / "ca.key"
    if not creds.ca_cert.exists() or not ca_key_path.exists():
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca = (x509.CertificateBuilder().subject_name(_name("servicenet-ca")).issuer_name(_name("servicenet-ca"))
              .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
              .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=3650))
              .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
              .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                           content_commitment=False, key_encipherment=False,
                                           data_encipherment=False, key_agreement=False,
                                           encipher_only=False, decipher_only=False), critical=True)
              .sign(ca_key, hashes.SHA256()))
        _write_private(ca_key_path, ca_key.private_bytes(serialization.Encoding.PEM,
                                                         serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))
        creds.ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
        for p in (creds.server_cert, creds.server_key):
            p.unlink(missing_ok=True)
    ca = x509.load_pem_x509_certificate(creds.ca_cert.read_bytes())
    ca_key = serialization.load_pem_private_key(ca_key_path.read_bytes(), None)
    wanted = sorted(set(hosts) | {"localhost", "127.0.0.1", "::1", "kubernetes", "kubernetes.default",
                                  "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"})
    if creds.server_cert.exists() and creds.server_key.exists():
        cert = x509.load_pem_x509_certificate(creds.server_cert.read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        have = {str(v) for v in san.get_values_for_type(x509.DNSName)}
        have |= {str(v) for v in san.get_values_for_type(x509.IPAddress)}
        if set(wanted) <= have and cert.not_valid_after_utc > now + dt.timedelta(days=30):
            wanted = []
    if wanted:
        key = ec.generate_private_key(ec.SECP256R1())
        alt: list[x509.GeneralName] = []
        for h in wanted:
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(h)))
            except ValueError:
                alt.append(x509.DNSName(h))
        cert = (x509.CertificateBuilder().subject_name(_name("servicenet-apiserver")).issuer_name(ca.subject)
                .public_key(key.public_key()).serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=825))
                .add_extension(x509.SubjectAlternativeName(alt), critical=False)
                .add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .sign(ca_key, hashes.SHA256()))  # type: ignore[arg-type]
        _write_private(creds.server_key, key.private_bytes(serialization.Encoding.PEM,
                                                            serialization.PrivateFormat.PKCS8,
                                                            serialization.NoEncryption()))
        creds.server_cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    if not creds.token_file.exists():
        _write_private(creds.token_file, f"{secrets.token_urlsafe(32)},admin,admin,system:masters\n".encode())
    return creds
