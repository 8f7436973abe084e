"""The hand-written etcd transaction bytes equal the generated protobuf messages' serialization."""

from __future__ import annotations

import pytest
from aetcd import rpc

from servicenet.store import _etcdwire as w

_CMP = rpc.Compare
KEYS = [b"/registry/configmaps/ns/a", b"k" * 200, bytes(range(256))]


def reference(key: bytes, rev: int, op: rpc.RequestOp) -> bytes:
    return rpc.TxnRequest(compare=[_CMP(key=key, target=_CMP.MOD, result=_CMP.EQUAL, mod_revision=rev)],
                          success=[op], failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=key))]
                          ).SerializeToString()


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("rev", [0, 1, 127, 128, 300, 2**31, 2**62])
@pytest.mark.parametrize("value", [b"", b"v", b"x" * 1000, b"y" * 70000])
@pytest.mark.parametrize("prev_kv", [False, True])
def test_put_txn_bytes(key: bytes, rev: int, value: bytes, prev_kv: bool) -> None:
    op = rpc.RequestOp(request_put=rpc.PutRequest(key=key, value=value, prev_kv=prev_kv))
    mine = w.txn_if_mod(key, rev, w.put_op(key, value, prev_kv))
    assert mine == reference(key, rev, op)
    parsed = rpc.TxnRequest.FromString(mine)
    assert parsed.compare[0].mod_revision == rev and parsed.success[0].request_put.value == value


@pytest.mark.parametrize("lease", [1, 127, 128, 7587894829937645573, 2**63 - 1])
@pytest.mark.parametrize("prev_kv", [False, True])
def test_put_with_a_lease_bytes(lease: int, prev_kv: bool) -> None:
    key, value = KEYS[0], b"v" * 300
    op = rpc.RequestOp(request_put=rpc.PutRequest(key=key, value=value, lease=lease, prev_kv=prev_kv))
    mine = w.txn_if_mod(key, 0, w.put_op(key, value, prev_kv, lease=lease))
    assert mine == reference(key, 0, op)
    assert rpc.TxnRequest.FromString(mine).success[0].request_put.lease == lease


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("rev", [0, 5, 1 << 40])
def test_delete_txn_bytes(key: bytes, rev: int) -> None:
    op = rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=key, prev_kv=True))
    assert w.txn_if_mod(key, rev, w.delete_op(key)) == reference(key, rev, op)


def test_varint_edges() -> None:
    assert w._varint(0) == b"\x00" and w._varint(127) == b"\x7f" and w._varint(128) == b"\x80\x01"
    assert w._varint(-1) == b"\xff" * 9 + b"\x01"
