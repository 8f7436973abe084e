"""At rest: owner-only files, Secrets encrypted in state.db through an EncryptionConfiguration,
key rotation (re-encrypt on write, old data readable), and the encryption codec's formats."""

from __future__ import annotations

import base64
import os
import sqlite3
import stat
from pathlib import Path

import pytest
import yaml
from cryptography.exceptions import InvalidTag

from servicenet.apiserver import encryption
from servicenet.testing import running_apiserver

MARKER = "plaintext-marker-7f3a9c"


def _mode(p: Path) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


def _rows(db: Path, key: str) -> list[bytes]:
    conn = sqlite3.connect(db)
    try:
        return [bytes(v) for (v,) in conn.execute("SELECT value FROM kine WHERE name = ? ORDER BY id", (key,))
                if v is not None]
    finally:
        conn.close()


def _file_bytes(d: Path) -> bytes:
    return b"".join((d / n).read_bytes() for n in ("state.db", "state.db-wal") if (d / n).exists())


def _config(keys: list[tuple[str, bytes]], provider: str = "aesgcm", identity_first: bool = False) -> str:
    providers = [{provider: {"keys": [{"name": n, "secret": base64.b64encode(k).decode()} for n, k in keys]}},
                 {"identity": {}}]
    if identity_first:
        providers.reverse()
    return yaml.safe_dump({"apiVersion": "apiserver.config.k8s.io/v1", "kind": "EncryptionConfiguration",
                           "resources": [{"resources": ["secrets"], "providers": providers}]})


async def test_files_are_owner_only_and_secrets_encrypted(tmp_path: Path) -> None:
    d = tmp_path / "data"
    async with running_apiserver(d, storage="sqlite") as api:
        await api.client.create("v1", "secrets", "default", {"metadata": {"name": "s"},
                                                              "stringData": {"password": MARKER}})
        got = await api.client.get("v1", "secrets", "default", "s")
        assert base64.b64decode(got["data"]["password"]).decode() == MARKER
        assert _mode(d) == 0o700
        for p in [d / "state.db", d / "kubeconfig", d / "encryption-config.yaml", d / "pki" / "ca.key",
                  d / "pki" / "apiserver.key", d / "pki" / "sa.key", d / "pki" / "tokens.csv"]:
            assert _mode(p) == 0o600, p
        if (d / "state.db-wal").exists():
            assert _mode(d / "state.db-wal") == 0o600
        rows = _rows(d / "state.db", "/registry/core/secrets/default/s")
        assert rows and all(r.startswith(b"k8s:enc:aesgcm:v1:key1:") for r in rows)
        raw = _file_bytes(d)
        assert MARKER.encode() not in raw and base64.b64encode(MARKER.encode()) not in raw
    # after a restart the Secret decrypts from the file
    async with running_apiserver(d, storage="sqlite") as api:
        got = await api.client.get("v1", "secrets", "default", "s")
        assert base64.b64decode(got["data"]["password"]).decode() == MARKER


async def test_identity_first_stores_plaintext(tmp_path: Path) -> None:
    """The check above can fail: with identity first, the value is in the file in the clear."""
    d = tmp_path / "data"
    d.mkdir()
    (d / "encryption-config.yaml").write_text(_config([("k", os.urandom(32))], identity_first=True))
    async with running_apiserver(d, storage="sqlite") as api:
        await api.client.create("v1", "secrets", "default", {"metadata": {"name": "s"},
                                                              "stringData": {"password": MARKER}})
        assert base64.b64encode(MARKER.encode()) in _file_bytes(d)


async def test_key_rotation_reencrypts_on_write(tmp_path: Path) -> None:
    d = tmp_path / "data"
    d.mkdir()
    cfg = d / "encryption-config.yaml"
    k1, k2 = os.urandom(32), os.urandom(32)
    cfg.write_text(_config([("key1", k1)]))
    key = "/registry/core/secrets/default/s"
    async with running_apiserver(d, storage="sqlite") as api:
        await api.client.create("v1", "secrets", "default", {"metadata": {"name": "s"}, "stringData": {"v": "one"}})
    # rotate: key2 first (writes), key1 still listed (reads)
    cfg.write_text(_config([("key2", k2), ("key1", k1)]))
    async with running_apiserver(d, storage="sqlite") as api:
        got = await api.client.get("v1", "secrets", "default", "s")
        assert base64.b64decode(got["data"]["v"]) == b"one"  # old data readable
        await api.client.patch("v1", "secrets", "default", "s", {"stringData": {"v": "two"}}, patch_type="merge")
        rows = _rows(d / "state.db", key)
        assert rows[0].startswith(b"k8s:enc:aesgcm:v1:key1:")
        assert rows[-1].startswith(b"k8s:enc:aesgcm:v1:key2:")  # re-encrypted on write
    # an unknown key is a clear error, never silent garbage
    cfg.write_text(_config([("key3", os.urandom(32))]))
    with pytest.raises(encryption.EncryptionConfigError):
        async with running_apiserver(d, storage="sqlite"):
            pass


@pytest.mark.parametrize("provider", ["aesgcm", "aescbc"])
def test_codec_round_trip_and_authenticated_key(provider: str) -> None:
    codec = encryption.parse(_config([("a", os.urandom(32))], provider))
    k = "/registry/core/secrets/ns/x"
    blob = codec.encode(k, b'{"data":{"k":"dg=="}}')
    assert blob.startswith(f"k8s:enc:{provider}:v1:a:".encode())
    assert codec.decode(k, blob) == b'{"data":{"k":"dg=="}}'
    assert codec.encode("/registry/core/configmaps/ns/x", b"plain") == b"plain"  # not configured
    assert codec.decode(k, b'{"plain":1}') == b'{"plain":1}'  # identity reads
    if provider == "aesgcm":  # the storage key is authenticated: a blob moved to another key fails
        with pytest.raises(InvalidTag):
            codec.decode("/registry/core/secrets/ns/y", blob)


def test_bad_configs_are_rejected() -> None:
    for text in ("kind: Nope", _config([("a", b"short")]),
                 _config([("a", os.urandom(32))]).replace("secrets", "pods")):
        with pytest.raises(encryption.EncryptionConfigError):
            encryption.parse(text)
