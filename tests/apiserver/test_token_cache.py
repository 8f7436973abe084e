"""A verified service-account token is kept (no second ECDSA verify), and its times are checked on every use."""

from __future__ import annotations

import time

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from servicenet.apiserver.sa_tokens import Bound, Signer, TokenError

AUD = ["https://kubernetes.default.svc"]


def test_kept_tokens_still_expire_and_keep_their_audiences() -> None:
    signer = Signer(ec.generate_private_key(ec.SECP256R1()))
    token, exp = signer.issue(Bound("team", "reader", "u1"), AUD, 600)
    first = signer.verify(token, AUD)
    assert (token, tuple(AUD)) in signer._verified
    assert signer.verify(token, AUD) == first and first.sa_name == "reader"
    with pytest.raises(TokenError, match="expired"):
        signer.verify(token, AUD, now=exp + 1)
    with pytest.raises(TokenError, match="not valid yet"):
        signer.verify(token, AUD, now=time.time() - 3600)
    with pytest.raises(TokenError, match="audiences"):
        signer.verify(token, ["https://elsewhere"])
    other = Signer(ec.generate_private_key(ec.SECP256R1()))
    with pytest.raises(TokenError, match="signature"):
        other.verify(token, AUD)
    assert not other._verified
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    with pytest.raises(TokenError):
        signer.verify(tampered, AUD)
