"""Bound ServiceAccount tokens: ES256 JWTs signed with the cluster's service-account key.

Claims follow upstream's ``pkg/serviceaccount/claims.go``: ``iss``, ``sub``
(``system:serviceaccount:<ns>:<name>``), ``aud``, ``exp``/``iat``/``nbf``, ``jti`` and the private
``kubernetes.io`` claim naming the namespace, the ServiceAccount and the bound Pod (and its Node).
Verification checks the signature, issuer, audience and time; the caller then checks that the
named objects still exist with the same uids.
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature

ISSUER = "https://kubernetes.default.svc.cluster.local"
DEFAULT_EXPIRATION = 3600
MIN_EXPIRATION = 600
MAX_EXPIRATION = 48 * 3600
# the marker projected volumes ask for (upstream WarnOnlyBoundTokenExpirationSeconds)
PROJECTED_EXPIRATION = 3607


class TokenError(Exception):
    pass


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64url(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


@dataclass(frozen=True, slots=True)
class Bound:
    """What a token is bound to (name, uid) pairs; empty strings when absent."""

    namespace: str
    sa_name: str
    sa_uid: str
    pod_name: str = ""
    pod_uid: str = ""
    node_name: str = ""
    node_uid: str = ""
    jti: str = ""
    audiences: tuple[str, ...] = ()
    exp: int = 0


def load_or_create_key(path: Path) -> ec.EllipticCurvePrivateKey:
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key
    key = ec.generate_private_key(ec.SECP256R1())
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return key


_VERIFIED_MAX = 4096


def _check_time(exp: int, nbf: int, now: float | None) -> None:
    t = int(now if now is not None else time.time())
    if exp < t:
        raise TokenError("service account token has expired")
    if nbf > t + 60:
        raise TokenError("service account token is not valid yet")


class Signer:
    def __init__(self, key: ec.EllipticCurvePrivateKey, issuer: str = ISSUER) -> None:
        self.key = key
        self.public = key.public_key()
        self.issuer = issuer
        der = self.public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.kid = b64url(hashlib.sha256(der).digest())
        # tokens whose signature, issuer and audiences checked out: (bound, nbf) by (token, audiences).
        # An ECDSA verify costs ~100 us per request; the times are checked again on every use.
        self._verified: dict[tuple[str, tuple[str, ...]], tuple[Bound, int]] = {}

    # -- discovery -----------------------------------------------------------------------------------
    def jwks(self) -> dict[str, Any]:
        nums = self.public.public_numbers()
        return {"keys": [{"use": "sig", "kty": "EC", "kid": self.kid, "crv": "P-256", "alg": "ES256",
                          "x": b64url(nums.x.to_bytes(32, "big")), "y": b64url(nums.y.to_bytes(32, "big"))}]}

    def openid_configuration(self, jwks_uri: str) -> dict[str, Any]:
        return {"issuer": self.issuer, "jwks_uri": jwks_uri, "response_types_supported": ["id_token"],
                "subject_types_supported": ["public"], "id_token_signing_alg_values_supported": ["ES256"]}

    # -- issue ---------------------------------------------------------------------------------------
    def issue(self, b: Bound, audiences: list[str], expiration: int, now: float | None = None) -> tuple[str, int]:
        """(token, exp unix time)."""
        iat = int(now if now is not None else time.time())
        exp = iat + expiration
        k8s: dict[str, Any] = {"namespace": b.namespace,
                               "serviceaccount": {"name": b.sa_name, "uid": b.sa_uid}}
        if b.pod_name:
            k8s["pod"] = {"name": b.pod_name, "uid": b.pod_uid}
        if b.node_name:
            k8s["node"] = {"name": b.node_name, "uid": b.node_uid}
        claims = {"aud": audiences, "exp": exp, "iat": iat, "nbf": iat, "iss": self.issuer,
                  "jti": str(uuid.uuid4()), "kubernetes.io": k8s,
                  "sub": f"system:serviceaccount:{b.namespace}:{b.sa_name}"}
        header = {"alg": "ES256", "kid": self.kid}
        signing_input = b64url(orjson.dumps(header)) + "." + b64url(orjson.dumps(claims))
        der = self.key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return signing_input + "." + b64url(sig), exp

    # -- verify --------------------------------------------------------------------------------------
    def verify(self, token: str, audiences: list[str], now: float | None = None) -> Bound:
        """Check signature, issuer, audience and time; returns the bound objects (not yet looked up)."""
        key = (token, tuple(audiences))
        kept = self._verified.get(key)
        if kept is not None:
            return self._in_time(kept[0], kept[1], now)
        bound, nbf = self._verify(token, audiences, now)
        if len(self._verified) >= _VERIFIED_MAX:
            self._verified.clear()
        self._verified[key] = (bound, nbf)
        return bound

    @staticmethod
    def _in_time(b: Bound, nbf: int, now: float | None) -> Bound:
        _check_time(b.exp, nbf, now)
        return b

    def _verify(self, token: str, audiences: list[str], now: float | None) -> tuple[Bound, int]:
        parts = token.split(".")
        if len(parts) != 3:
            raise TokenError("not a JWT")
        try:
            header = orjson.loads(unb64url(parts[0]))
            claims = orjson.loads(unb64url(parts[1]))
            sig = unb64url(parts[2])
        except (ValueError, orjson.JSONDecodeError) as exc:
            raise TokenError(f"malformed token: {exc}") from None
        if not isinstance(header, dict) or header.get("alg") != "ES256" or len(sig) != 64:
            raise TokenError("unsupported signing algorithm")
        try:
            self.public.verify(encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big")),
                               (parts[0] + "." + parts[1]).encode(), ec.ECDSA(hashes.SHA256()))
        except InvalidSignature:
            raise TokenError("invalid signature") from None
        if not isinstance(claims, dict) or claims.get("iss") != self.issuer:
            raise TokenError("token issuer is not trusted")
        aud = claims.get("aud")
        auds = [aud] if isinstance(aud, str) else list(aud or [])
        if not set(auds) & set(audiences):
            raise TokenError("token audiences is invalid for the target audience")
        exp, nbf = int(claims.get("exp", 0)), int(claims.get("nbf", 0))
        _check_time(exp, nbf, now)
        k8s = claims.get("kubernetes.io") or {}
        sa = k8s.get("serviceaccount") or {}
        pod = k8s.get("pod") or {}
        node = k8s.get("node") or {}
        if not k8s.get("namespace") or not sa.get("name"):
            raise TokenError("token lacks the kubernetes.io claim")
        return Bound(k8s["namespace"], sa["name"], sa.get("uid", ""), pod.get("name", ""), pod.get("uid", ""),
                     node.get("name", ""), node.get("uid", ""), str(claims.get("jti", "")),
                     tuple(a for a in auds if a in audiences), exp), nbf
