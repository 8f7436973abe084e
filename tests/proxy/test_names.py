"""Chain-name hashing: the hand-rolled base32 must equal the standard one, byte for byte."""

from __future__ import annotations

import base64
import hashlib

from hypothesis import given
from hypothesis import strategies as st

from servicenet.proxy import names
from servicenet.proxy.model import ServicePortName


@given(st.text(max_size=300))
def test_b32sha_is_base32_of_the_sha256_prefix(s: str) -> None:
    names._b32sha.cache_clear()
    want = base64.b32encode(hashlib.sha256(s.encode()).digest()[:10]).decode()
    assert names._b32sha(s) == want


def test_upstream_chain_name() -> None:
    # kube-proxy's servicePortChainName("default/kubernetes:https", "tcp"): KUBE-SVC-NPX46M4PTMTKRN6Y
    spn = ServicePortName("default", "kubernetes", "https", "TCP")
    assert names.ipt_svc(spn) == "KUBE-SVC-NPX46M4PTMTKRN6Y"
