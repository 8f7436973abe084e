"""Chain and set names, derived exactly like upstream kube-proxy derives them."""

from __future__ import annotations

import hashlib
from functools import lru_cache

from servicenet.proxy.model import Endpoint, ServicePortName

NFT_NAME_MAX = 240


_B32 = [a + b for a in "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567" for b in "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"]  # 10 bits each


@lru_cache(maxsize=1 << 16)
def _b32sha(s: str) -> str:
    """The first 16 characters of base32(sha256(s)), all any name uses (10 bytes = 16 characters).

    Equal to ``base64.b32encode(digest[:10])``, which is pure Python on 3.11 and cost a full
    sync of 10^4 services 60 ms."""
    d = hashlib.sha256(s.encode()).digest()
    hi, lo, t = int.from_bytes(d[:5], "big"), int.from_bytes(d[5:10], "big"), _B32
    return (t[hi >> 30] + t[(hi >> 20) & 1023] + t[(hi >> 10) & 1023] + t[hi & 1023]
            + t[lo >> 30] + t[(lo >> 20) & 1023] + t[(lo >> 10) & 1023] + t[lo & 1023])


# --- iptables ---------------------------------------------------------------------------

def ipt_hash(spn: ServicePortName) -> str:
    """First 16 base32 chars of sha256(``ns/name:port`` + ``tcp``)."""
    return _b32sha(str(spn) + spn.proto)[:16]


def ipt_svc(spn: ServicePortName) -> str:
    return "KUBE-SVC-" + ipt_hash(spn)


def ipt_svl(spn: ServicePortName) -> str:
    return "KUBE-SVL-" + ipt_hash(spn)


def ipt_ext(spn: ServicePortName) -> str:
    return "KUBE-EXT-" + ipt_hash(spn)


def ipt_fw(spn: ServicePortName) -> str:
    return "KUBE-FW-" + ipt_hash(spn)


def ipt_sep(spn: ServicePortName, ep: Endpoint) -> str:
    return "KUBE-SEP-" + _b32sha(str(spn) + spn.proto + ep.addr)[:16]


# --- nftables ---------------------------------------------------------------------------

def _hash_and_truncate(name: str) -> str:
    full = _b32sha(name)[:8] + "-" + name
    return full if len(full) <= NFT_NAME_MAX else full[: NFT_NAME_MAX - 3] + "..."


def nft_base(spn: ServicePortName) -> str:
    return f"{spn.namespace}/{spn.name}/{spn.proto}/{spn.port}"


def nft_ep_base(spn: ServicePortName, ep: Endpoint) -> str:
    ip = ep.ip.replace(":", ".")
    return f"{nft_base(spn)}__{ip}/{ep.port}"


@lru_cache(maxsize=1 << 16)
def nft_suffix(spn: ServicePortName) -> str:
    """``<H8>-ns/name/proto/port``: what every per-service chain name ends with."""
    return _hash_and_truncate(nft_base(spn))


def nft_service(spn: ServicePortName) -> str:
    return "service-" + nft_suffix(spn)


def nft_endpoint(spn: ServicePortName, ep: Endpoint) -> str:
    return "endpoint-" + _hash_and_truncate(nft_ep_base(spn, ep))


def nft_affinity(spn: ServicePortName, ep: Endpoint) -> str:
    return "affinity-" + _hash_and_truncate(nft_ep_base(spn, ep))
