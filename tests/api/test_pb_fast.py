"""The protobuf codec's fast paths: the direct decoder agrees with the reference (message objects), takes
the reference path for anything but Go's canonical bytes, and kept sub-message conversions never
change an answer or share a dict with the caller."""

from __future__ import annotations

import copy
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servicenet.api import resources
from servicenet.api.pb import decode, encode, memo, types, wire
from servicenet.api.pb.encode import encode_message
from tests.api.test_pb_codec import KUBECTL_CONFIGMAP, REALISTIC, _obj_strategy

SERVED = list(resources.all_resources())

# every test here runs against the pure-Python fast paths and the C ones (tests/api/conftest.py)
pytestmark = pytest.mark.usefixtures("pb_codec")


def _reference(body: bytes) -> dict[str, Any]:
    av, kind, raw = wire.split_envelope(body)
    name = types.message_for(av, kind)
    assert name is not None
    return wire._decode_reference(raw, name, av, kind, True).obj


def _fast(body: bytes) -> dict[str, Any]:
    av, kind, raw = wire.split_envelope(body)
    name = types.message_for(av, kind)
    assert name is not None
    return {"apiVersion": av, "kind": kind, **decode.decode_message(raw, name)}  # raises Fallback


@pytest.mark.parametrize("obj", REALISTIC, ids=[o["kind"] for o in REALISTIC])
def test_fast_decoder_reads_what_we_write_for_every_kind(obj: dict[str, Any]) -> None:
    body = wire.encode(obj)
    if obj["kind"] == "CustomResourceDefinition":  # the JSONSchemaProps unions: reference path only
        with pytest.raises(decode.Fallback):
            _fast(body)
        return
    for _ in range(2):  # the second time, kept sub-messages answer
        fast = _fast(body)
        assert fast == obj == _reference(body)


def test_kubectl_bytes_take_the_fast_path() -> None:
    assert _fast(KUBECTL_CONFIGMAP) == _reference(KUBECTL_CONFIGMAP) == {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm1"}, "data": {"a": "b"}}


@pytest.mark.parametrize("kind", SERVED, ids=[r.kind for r in SERVED])
@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_fast_decoder_matches_reference_generated(kind: resources.ResourceInfo, data: st.DataObject) -> None:
    name = types.message_for(kind.api_version, kind.kind)
    assert name is not None
    obj = data.draw(_obj_strategy(types.descriptor(name), depth=4))
    body = wire.envelope(kind.api_version, kind.kind, encode_message(obj, name))
    ref = _reference(body)
    try:
        fast = _fast(body)
    except decode.Fallback:
        assert kind.group == "apiextensions.k8s.io"  # the only kind whose bytes we write that it refuses
        return
    assert fast == ref
    assert wire.decode(body).obj == ref


def _pod_message() -> Any:
    pod = types.message_class("k8s.io.api.core.v1.Pod")()
    pod.metadata.name = "p"
    pod.metadata.labels["a"] = "1"
    c = pod.spec.containers.add(name="c", image="i")
    c.args.extend(["x", "y"])
    return pod


def test_non_canonical_bytes_take_the_reference_path() -> None:
    pod = _pod_message()
    meta = pod.metadata.SerializeToString()
    spec = pod.spec.SerializeToString()
    extra = types.message_class("k8s.io.apimachinery.pkg.apis.meta.v1.ObjectMeta")(namespace="ns")
    cases = {
        # spec before metadata: legal protobuf, not Go's order
        "reversed": b"\x12" + bytes([len(spec)]) + spec + b"\x0a" + bytes([len(meta)]) + meta,
        # metadata twice: the two are merged (protobuf's rule for a repeated singular message)
        "merged": (b"\x0a" + bytes([len(meta)]) + meta + b"\x0a" + bytes([len(extra.SerializeToString())])
                   + extra.SerializeToString()),
        # terminationGracePeriodSeconds (4) as a length-delimited field: a wrong wire type is an unknown field
        "wrong wire type": pod.SerializeToString() + b"\x22\x01\x00",
    }
    for what, raw in cases.items():
        body = wire.envelope("v1", "Pod", raw)
        with pytest.raises(decode.Fallback):
            _fast(body)
        assert wire.decode(body).obj == _reference(body), what
    assert wire.decode(wire.envelope("v1", "Pod", cases["merged"])).obj["metadata"] == {
        "name": "p", "namespace": "ns", "labels": {"a": "1"}}


def test_packed_repeated_scalars_take_the_reference_path() -> None:
    # Go writes a repeated int64 unpacked (one field per value); packed is legal protobuf too
    unpacked = b"\x20\x05\x20\x07"  # PodSecurityContext.supplementalGroups (4) = [5, 7]
    packed = b"\x22\x02\x05\x07"
    for raw, fast in ((unpacked, True), (packed, False)):
        spec = b"\x72" + bytes([len(raw)]) + raw  # PodSpec.securityContext (14)
        body = wire.envelope("v1", "Pod", b"\x12" + bytes([len(spec)]) + spec)
        want = {"apiVersion": "v1", "kind": "Pod", "spec": {"securityContext": {"supplementalGroups": [5, 7]}}}
        assert _reference(body) == want == wire.decode(body).obj
        if fast:
            assert _fast(body) == want
        else:
            with pytest.raises(decode.Fallback):
                _fast(body)


# -- kept conversions --------------------------------------------------------------------------------

def _variants(obj: dict[str, Any], rnd: Any) -> dict[str, Any]:
    """``obj`` with a few nested strings and numbers changed: what a near-miss of a kept entry looks like."""
    out = copy.deepcopy(obj)

    def walk(v: Any) -> None:
        if isinstance(v, dict):
            for k in list(v):
                t = v[k]
                # the last letter moved on: still a valid name, base64 or quantity (times end in Z)
                if (isinstance(t, str) and t and "a" <= t[-1] < "z" and not t[0].isdigit()
                        and k not in ("apiVersion", "kind") and rnd.random() < 0.15):
                    v[k] = t[:-1] + chr(ord(t[-1]) + 1)
                elif type(v[k]) is int and rnd.random() < 0.15:
                    v[k] += 1
                else:
                    walk(v[k])
        elif isinstance(v, list):
            for item in v:
                walk(item)
    walk(out)
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(obj=st.sampled_from([o for o in REALISTIC if o["kind"] != "CustomResourceDefinition"]),
       seed=st.integers(0, 2**32 - 1))
def test_kept_conversions_answer_what_fresh_ones_do(obj: dict[str, Any], seed: int) -> None:
    import random

    rnd = random.Random(seed)
    seq = [obj] + [_variants(obj, rnd) for _ in range(4)] + [obj]
    memo.clear()
    warm = [wire.encode(o) for o in seq]  # later ones hit what earlier ones kept
    back = [wire.decode(b).obj for b in warm + warm]
    for o, b in zip(seq, warm, strict=True):
        memo.clear()
        assert wire.encode(o) == b  # a cold encode writes the same bytes
    assert back == seq + seq
    back[0]["metadata"]["name"] = "mutated"  # no caller shares a dict with a kept entry
    if "spec" in back[1] and isinstance(back[1]["spec"], dict):
        back[1]["spec"]["mutated"] = True
    assert wire.decode(warm[0]).obj == seq[0] and wire.decode(warm[1]).obj == seq[1]


def test_memo_switches_off_for_types_that_never_repeat(pb_codec: str) -> None:
    if pb_codec == "c":
        pytest.skip("the memos are the pure-Python paths' (the C paths keep nothing)")
    memo.clear()
    pods = [{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"p-{i}", "uid": f"u-{i:08d}-xxxxxxxx"}}
            for i in range(memo.WINDOW + 2)]
    bodies = [wire.encode(p) for p in pods]
    assert encode._memos[types.META + ".ObjectMeta"].off > 0
    assert [wire.decode(b).obj for b in bodies] == pods
    kept = decode._plans[types.META + ".ObjectMeta"].memo
    assert kept is not None and kept.off > 0
    # whatever the memo's state, answers stay the same
    assert orjson.dumps([wire.decode(b).obj for b in bodies]) == orjson.dumps(pods)


def test_memos_stay_within_their_byte_budget(monkeypatch: pytest.MonkeyPatch, pb_codec: str) -> None:
    if pb_codec == "c":
        pytest.skip("the memos are the pure-Python paths' (the C paths keep nothing)")
    memo.clear()
    monkeypatch.setattr(memo, "BUDGET", 4096)
    objs = [o for o in REALISTIC if o["kind"] != "CustomResourceDefinition"]
    bodies = [wire.encode(o) for o in objs]
    assert [wire.decode(b).obj for b in bodies] == objs
    assert 0 < memo._held[0] <= 4096
    assert memo._held[0] == sum(m.size for m in memo._all)
    memo.clear()
    assert memo._held[0] == 0


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(obj=st.sampled_from([o for o in REALISTIC if o["kind"] != "CustomResourceDefinition"]),
       flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), min_size=1, max_size=3),
       cut=st.integers(0, 10_000))
def test_fuzz_whatever_the_fast_decoder_accepts_the_reference_reads_the_same(
        obj: dict[str, Any], flips: list[tuple[int, int]], cut: int) -> None:
    av, kind, raw = wire.split_envelope(wire.encode(obj))
    body = bytearray(raw)
    for pos, val in flips:
        body[pos % len(body)] = val
    if cut % 3 == 0:
        del body[cut % (len(body) + 1):]
    name = types.message_for(av, kind)
    assert name is not None
    try:
        fast = decode.decode_message(bytes(body), name)
    except decode.Fallback:
        return
    ref = _reference(wire.envelope(av, kind, bytes(body)))  # must not raise: the fast path accepted it
    assert {"apiVersion": av, "kind": kind, **fast} == ref
