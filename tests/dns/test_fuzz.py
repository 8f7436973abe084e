"""Garbage in: the responder never raises, never crashes, and keeps answering valid queries."""

from __future__ import annotations

import random
import struct
import time

import dns.message
import dns.rcode
from dns_fixtures import cluster
from hypothesis import given, settings
from hypothesis import strategies as st

from servicenet.dns.model import DnsConfig

Z = "cluster.local."
_, R = cluster(DnsConfig(forward=False, axfr=True))
VALID = [
    dns.message.make_query(name, qtype, use_edns=edns).to_wire()
    for name, qtype in ((f"web.default.svc.{Z}", "A"), (f"_peer._tcp.hl.default.svc.{Z}", "SRV"),
                        (f"missing.default.svc.{Z}", "A"), ("1.0.96.10.in-addr.arpa.", "PTR"),
                        (f"dns-version.{Z}", "TXT"), (Z, "SOA"), ("example.com.", "AAAA"))
    for edns in (-1, 0)
]


def check_valid_answers() -> None:
    q = dns.message.make_query(f"web.default.svc.{Z}", "A", use_edns=0)
    m = dns.message.from_wire(R.answer(q.to_wire()))  # type: ignore[arg-type]
    assert m.id == q.id and m.answer[0][0].address == "10.96.0.20"
    q = dns.message.make_query(f"nothing.default.svc.{Z}", "A")
    assert dns.message.from_wire(R.answer(q.to_wire())).rcode() == dns.rcode.NXDOMAIN  # type: ignore[arg-type]


def test_specific_malformed_packets() -> None:
    q = VALID[0]
    cases = {
        b"": None, b"\x00" * 11: None,  # no header → dropped
        q[:12]: "FORMERR",  # no question
        q[:-3]: "FORMERR",  # truncated qtype/qclass
        q[:2] + b"\x81\x00" + q[4:]: None,  # a response: never answered
        q[:2] + b"\x28\x00" + q[4:]: "NOTIMP",  # opcode 5 (UPDATE)
        q[:12] + b"\x3f" + b"a" * 10: "FORMERR",  # label past the end
        q[:12] + b"\xc0\x0c\x00\x01\x00\x01": "FORMERR",  # compression loop in the question
        q[:12] + b"\x80abc\x00\x00\x01\x00\x01": "FORMERR",  # reserved label type
        q[:12] + (b"\x3fa" + b"b" * 62) * 5 + b"\x00\x00\x01\x00\x01": "FORMERR",  # name > 255
        q[:-2] + b"\x00\x03": "REFUSED",  # class CH
        q[:4] + b"\x00\x02" + q[6:]: "FORMERR",  # qdcount 2
        q[:-4] + b"\x00\x29\x00\x01": "FORMERR",  # qtype OPT
    }
    for pkt, want in cases.items():
        out = R.answer(pkt)
        if want is None:
            assert out is None, pkt
        else:
            assert out is not None and out[:2] == pkt[:2]
            assert dns.rcode.to_text(out[3] & 0x0F) == want, (pkt, out)
    edns1 = dns.message.make_query(f"web.default.svc.{Z}", "A", use_edns=1).to_wire()
    m = dns.message.from_wire(R.answer(edns1))  # type: ignore[arg-type]
    assert m.rcode() == dns.rcode.BADVERS and m.edns == 0
    assert R.internal_errors == 0


@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=600))
def test_hypothesis_random_bytes(data: bytes) -> None:
    out = R.answer(data)
    assert out is None or out[:2] == data[:2]
    assert R.internal_errors == 0


@settings(max_examples=3000, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=63), max_size=6), st.integers(0, 65535), st.integers(0, 65535),
       st.integers(0, 65535), st.booleans(), st.integers(0, 65535))
def test_hypothesis_structured_queries(labels: list[bytes], qtype: int, qclass: int, flags: int, edns: bool,
                                       size: int) -> None:
    name = b"".join(bytes([len(x)]) + x for x in labels) + b"\x00"
    pkt = struct.pack("!HHHHHH", 0x1234, flags, 1, 0, 0, int(edns)) + name + struct.pack("!HH", qtype, qclass)
    if edns:
        pkt += b"\x00\x00\x29" + struct.pack("!HIH", size, 0, 0)
    out = R.answer(pkt)
    if flags & 0x8000:
        assert out is None
    else:
        assert out is not None
        if len(name) <= 255 and (flags >> 11) & 0xF == 0:
            m = dns.message.from_wire(out)  # well-formed questions get well-formed answers
            assert m.id == 0x1234
    assert R.internal_errors == 0


def mutate(rng: random.Random, seed: bytes) -> bytes:
    op = rng.randrange(6)
    b = bytearray(seed)
    if op == 0:
        for _ in range(rng.randrange(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
    elif op == 1:
        del b[rng.randrange(len(b)):]
    elif op == 2:
        i = rng.randrange(len(b))
        b[i:i] = rng.randbytes(rng.randrange(1, 8))
    elif op == 3:
        b[rng.randrange(12, len(b))] = rng.choice((0, 0x3F, 0x40, 0xC0, 0xFF))
    elif op == 4:
        b[4:12] = rng.randbytes(8)
    else:
        return rng.randbytes(rng.randrange(0, 64))
    return bytes(b)


def test_million_mutated_packets() -> None:
    """1,000,000 random and mutated packets through answer(), checking valid answers between."""
    rng = random.Random(20261121)
    t0 = time.monotonic()
    answered = dropped = 0
    for i in range(1_000_000):
        pkt = mutate(rng, VALID[i % len(VALID)])
        out = R.answer(pkt)
        if out is None:
            dropped += 1
        else:
            answered += 1
            if out[:2] != pkt[:2]:
                raise AssertionError(f"id not echoed for {pkt!r}")
        if i % 50_000 == 0:
            check_valid_answers()
    check_valid_answers()
    assert R.internal_errors == 0
    assert answered > 500_000 and dropped > 10_000  # the mix exercised both paths
    assert time.monotonic() - t0 < 60
