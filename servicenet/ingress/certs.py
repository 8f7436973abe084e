"""TLS material: checking a Secret's certificate/key pair and making the default certificate (pure)."""

from __future__ import annotations

import base64
import datetime
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


class CertError(ValueError):
    pass


def secret_pem(secret: dict) -> bytes:
    """The ``tls.crt`` chain followed by the ``tls.key`` of a TLS Secret, checked to be a pair."""
    data = secret.get("data") or {}
    try:
        crt = base64.b64decode(data.get("tls.crt") or "", validate=True)
        key = base64.b64decode(data.get("tls.key") or "", validate=True)
    except ValueError:
        raise CertError("tls.crt/tls.key are not base64") from None
    if not crt or not key:
        raise CertError("the Secret has no tls.crt or no tls.key")
    return check_pair(crt, key)


def check_pair(crt: bytes, key: bytes) -> bytes:
    try:
        certs = x509.load_pem_x509_certificates(crt)
    except ValueError as exc:
        raise CertError(f"tls.crt is not a PEM certificate: {exc}") from None
    try:
        pkey = serialization.load_pem_private_key(key, password=None)
    except (ValueError, TypeError) as exc:
        raise CertError(f"tls.key is not an unencrypted PEM private key: {exc}") from None
    pub = serialization.PublicFormat.SubjectPublicKeyInfo
    enc = serialization.Encoding.DER
    if certs[0].public_key().public_bytes(enc, pub) != pkey.public_key().public_bytes(enc, pub):
        raise CertError("tls.key does not match the certificate in tls.crt")
    out = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)
    return out + pkey.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())


def self_signed(common_name: str = "servicenet-ingress-default", sans: tuple[str, ...] = (),
                days: int = 365) -> bytes:
    """A self-signed certificate + key in PEM (the default certificate, and test fixtures)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    alt: list[x509.GeneralName] = []
    for s in sans:
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(s)))
        except ValueError:
            alt.append(x509.DNSName(s))
    b = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
         .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
         .not_valid_after(now + datetime.timedelta(days=days)))
    if alt:
        b = b.add_extension(x509.SubjectAlternativeName(alt), critical=False)
    cert = b.sign(key, hashes.SHA256())
    return cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
