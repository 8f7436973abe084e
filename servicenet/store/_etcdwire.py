"""The protobuf bytes of the etcd transactions the store sends on every write (pure).

Building ``rpc.TxnRequest`` from nested message objects costs tens of microseconds per write
(each sub-message is built, then copied into its parent's repeated field); these few fixed shapes
are written straight as protobuf wire format instead, and sent through a gRPC method whose request
serializer is the identity. ``tests/store/test_etcdwire.py`` checks every shape byte for byte
against ``SerializeToString()`` of the generated messages (field numbers: etcd's rpc.proto).
"""

from __future__ import annotations

_LD = 2  # wire type: length-delimited
_VARINT = 0
_MOD = 2  # Compare.CompareTarget.MOD (Compare.result EQUAL is 0, the default: not written)


_SMALL = [bytes((i,)) for i in range(128)]


def _varint(n: int) -> bytes:
    if 0 <= n < 0x80:
        return _SMALL[n]
    if 0 <= n < 0x4000:
        return bytes((n & 0x7F | 0x80, n >> 7))
    if n < 0:
        n += 1 << 64  # int64: two's complement, ten bytes
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _ld(field: int, data: bytes) -> bytes:
    return _SMALL[field << 3 | _LD] + _varint(len(data)) + data  # (fields 1..15: a one-byte tag)


def _vi(field: int, n: int) -> bytes:
    return _SMALL[field << 3 | _VARINT] + _varint(n)


def _bytes_field(field: int, data: bytes) -> bytes:
    """A proto3 ``bytes`` field: absent when empty."""
    return _ld(field, data) if data else b""


# The functions below run on every write: they inline the tag bytes and the one-byte lengths (a
# Python call costs about as much as the bytes operations of a whole field), with the same output
# as the general helpers above (tests/store/test_etcdwire.py compares them with protobuf's).


def compare_mod(key: bytes, mod_revision: int) -> bytes:
    """Compare{target: MOD, result: EQUAL, key, mod_revision} (mod_revision is in a oneof: always written)."""
    n = len(key)
    k = b"\x1a" + (_SMALL[n] if n < 0x80 else _varint(n)) + key if n else b""
    return b"\x10\x02" + k + b"\x30" + (_SMALL[mod_revision] if 0 <= mod_revision < 0x80 else _varint(mod_revision))


def put_op(key: bytes, value: bytes, prev_kv: bool = False, lease: int = 0) -> bytes:
    """RequestOp{request_put: PutRequest{key, value, lease, prev_kv}}."""
    n, m = len(key), len(value)
    body = b"".join((b"\x0a" + (_SMALL[n] if n < 0x80 else _varint(n)) if n else b"", key,
                     b"\x12" + (_SMALL[m] if m < 0x80 else _varint(m)) if m else b"", value,
                     b"\x18" + _varint(lease) if lease else b"",
                     b"\x20\x01" if prev_kv else b""))
    return b"\x12" + _varint(len(body)) + body


def delete_op(key: bytes, prev_kv: bool = True) -> bytes:
    """RequestOp{request_delete_range: DeleteRangeRequest{key, prev_kv}}."""
    return _ld(3, _bytes_field(1, key) + (_vi(3, 1) if prev_kv else b""))


def range_op(key: bytes) -> bytes:
    """RequestOp{request_range: RangeRequest{key}}."""
    n = len(key)
    if not n:
        return b"\x0a\x00"
    rr = b"\x0a" + (_SMALL[n] if n < 0x80 else _varint(n)) + key
    n = len(rr)
    return b"\x0a" + (_SMALL[n] if n < 0x80 else _varint(n)) + rr


def txn_if_mod(key: bytes, mod_revision: int, success: bytes) -> bytes:
    """TxnRequest: if ``key``'s mod_revision is ``mod_revision`` (0: absent) then ``success``
    (a RequestOp), else read the key."""
    cmp, fail = compare_mod(key, mod_revision), range_op(key)
    c, f = len(cmp), len(fail)
    return b"".join((b"\x0a", _SMALL[c] if c < 0x80 else _varint(c), cmp, b"\x12", _varint(len(success)), success,
                     b"\x1a", _SMALL[f] if f < 0x80 else _varint(f), fail))
