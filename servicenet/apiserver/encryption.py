"""Encryption at rest: upstream's ``EncryptionConfiguration`` (``apiserver.config.k8s.io/v1``).

The first provider listed for a resource encrypts every write; reads pick the provider by the
stored prefix ``k8s:enc:<provider>:v1:<key name>:`` (``identity`` reads anything without it), so
a rotated-in key re-encrypts on the next write while data under the old key stays readable.

Providers: ``aesgcm`` (12-byte nonce + ciphertext + tag; the storage key is the additional
authenticated data), ``aescbc`` (16-byte IV + CBC, PKCS#7), ``secretbox`` (XSalsa20-Poly1305,
24-byte nonce; needs the optional PyNaCl) and ``identity``.

The store calls :meth:`Codec.encode` / :meth:`Codec.decode` with the storage key and value bytes.
"""

from __future__ import annotations

import base64
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

PREFIX = b"k8s:enc:"

# resource name (as in the config) -> storage key prefix
_STORAGE = {"secrets": "/registry/core/secrets/", "configmaps": "/registry/core/configmaps/"}


class EncryptionConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Key:
    provider: str  # aesgcm | aescbc | secretbox
    name: str
    secret: bytes

    @property
    def prefix(self) -> bytes:
        return f"k8s:enc:{self.provider}:v1:{self.name}:".encode()

    def encrypt(self, storage_key: str, data: bytes) -> bytes:
        if self.provider == "aesgcm":
            nonce = os.urandom(12)
            return self.prefix + nonce + AESGCM(self.secret).encrypt(nonce, data, storage_key.encode())
        if self.provider == "aescbc":
            iv = os.urandom(16)
            padder = padding.PKCS7(128).padder()
            enc = Cipher(algorithms.AES(self.secret), modes.CBC(iv)).encryptor()
            return self.prefix + iv + enc.update(padder.update(data) + padder.finalize()) + enc.finalize()
        box = _secretbox(self.secret)
        nonce = os.urandom(24)
        return self.prefix + nonce + box.encrypt(data, nonce).ciphertext

    def decrypt(self, storage_key: str, blob: bytes) -> bytes:
        body = blob[len(self.prefix):]
        if self.provider == "aesgcm":
            return AESGCM(self.secret).decrypt(body[:12], body[12:], storage_key.encode())
        if self.provider == "aescbc":
            dec = Cipher(algorithms.AES(self.secret), modes.CBC(body[:16])).decryptor()
            unpadder = padding.PKCS7(128).unpadder()
            return unpadder.update(dec.update(body[16:]) + dec.finalize()) + unpadder.finalize()
        return bytes(_secretbox(self.secret).decrypt(body[24:], body[:24]))


def _secretbox(secret: bytes) -> Any:
    try:
        import nacl.secret  # optional dependency, only for the secretbox provider
    except ImportError:
        raise EncryptionConfigError("the secretbox provider needs PyNaCl (pip install pynacl)") from None
    return nacl.secret.SecretBox(secret)


@dataclass(frozen=True)
class ResourcePolicy:
    prefixes: tuple[str, ...]
    write: Key | None  # None = identity first (store plaintext)
    keys: tuple[Key, ...]
    identity_reads: bool


class Codec:
    """What the store calls on every value of a configured resource."""

    def __init__(self, policies: list[ResourcePolicy]) -> None:
        self.policies = policies

    def _policy(self, storage_key: str) -> ResourcePolicy | None:
        for p in self.policies:
            if storage_key.startswith(p.prefixes):
                return p
        return None

    def encode(self, storage_key: str, value: bytes) -> bytes:
        p = self._policy(storage_key)
        if p is None or p.write is None or not value:
            return value
        return p.write.encrypt(storage_key, value)

    def decode(self, storage_key: str, blob: bytes) -> bytes:
        if not blob.startswith(PREFIX):
            return blob  # plaintext (identity, or written before encryption was configured)
        p = self._policy(storage_key)
        keys = p.keys if p is not None else ()
        for k in keys:
            if blob.startswith(k.prefix):
                return k.decrypt(storage_key, blob)
        raise EncryptionConfigError(f"no key in the encryption configuration can decrypt {storage_key}")


def _keys(provider: str, spec: dict[str, Any]) -> list[Key]:
    out = []
    for k in spec.get("keys") or []:
        try:
            secret = base64.b64decode(k["secret"], validate=True)
        except (KeyError, ValueError) as exc:
            raise EncryptionConfigError(f"{provider} key {k.get('name')!r}: invalid secret: {exc}") from None
        want = (32,) if provider == "secretbox" else (16, 24, 32)
        if len(secret) not in want:
            raise EncryptionConfigError(f"{provider} key {k.get('name')!r} must be {' or '.join(map(str, want))} "
                                        f"bytes, got {len(secret)}")
        if provider == "secretbox":
            _secretbox(secret)
        out.append(Key(provider, str(k["name"]), secret))
    if not out:
        raise EncryptionConfigError(f"{provider} provider needs at least one key")
    return out


def parse(text: str) -> Codec:
    doc = yaml.safe_load(text) or {}
    if doc.get("kind") != "EncryptionConfiguration" or doc.get("apiVersion") not in (
            "apiserver.config.k8s.io/v1", "apiserver.k8s.io/v1"):
        raise EncryptionConfigError("expected kind EncryptionConfiguration, apiVersion apiserver.config.k8s.io/v1")
    policies = []
    for entry in doc.get("resources") or []:
        prefixes = []
        for r in entry.get("resources") or []:
            if r not in _STORAGE:
                raise EncryptionConfigError(f"resource {r!r} cannot be encrypted here (supported: "
                                            f"{', '.join(sorted(_STORAGE))})")
            prefixes.append(_STORAGE[r])
        write: Key | None = None
        keys: list[Key] = []
        identity = False
        for i, prov in enumerate(entry.get("providers") or []):
            (name, spec), = prov.items()
            if name == "identity":
                identity = True
                continue
            if name not in ("aesgcm", "aescbc", "secretbox"):
                raise EncryptionConfigError(f"unsupported provider {name!r}")
            ks = _keys(name, spec or {})
            if i == 0:
                write = ks[0]
            keys += ks
        policies.append(ResourcePolicy(tuple(prefixes), write, tuple(keys), identity))
    return Codec(policies)


def default_config() -> str:
    """A fresh configuration: Secrets under a random AES-GCM key, plaintext still readable."""
    key = base64.b64encode(secrets.token_bytes(32)).decode()
    return yaml.safe_dump({
        "apiVersion": "apiserver.config.k8s.io/v1", "kind": "EncryptionConfiguration",
        "resources": [{"resources": ["secrets"],
                       "providers": [{"aesgcm": {"keys": [{"name": "key1", "secret": key}]}}, {"identity": {}}]}],
    }, sort_keys=False)


def load(path: Path, create: bool) -> Codec:
    """Read the configuration at ``path``; with ``create`` write a default one (0600) if absent."""
    if not path.exists():
        if not create:
            raise EncryptionConfigError(f"encryption configuration {path} not found")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(default_config())
    return parse(path.read_text())
