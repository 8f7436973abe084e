"""The protobuf codec's C loops (``servicenet.api.pb._cpb``, via :mod:`servicenet.api.pb.native`) answer
exactly what the pure-Python fast paths answer: the same bytes, the same dicts in the same key order,
the same errors; whatever bytes they are fed, they answer or fall back, never crash; and they keep
no memory per call.

The other protobuf tests (test_pb_codec.py, test_pb_fast.py) run once per codec (tests/api/conftest.py).
"""

from __future__ import annotations

import copy
import gc
import os
import random
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servicenet.api import resources
from servicenet.api.pb import convert, decode, encode, native, types, wire
from tests.api.test_pb_codec import KUBECTL_CONFIGMAP, REALISTIC, _obj_strategy

SERVED = list(resources.all_resources())
POD = "k8s.io.api.core.v1.Pod"
needs_c = pytest.mark.skipif(not native.BUILT, reason="servicenet.api.pb._cpb is not built")


def test_the_extension_is_built_under_ci() -> None:
    """CI must measure and test the C paths: a checkout whose ``pip install -e .`` did not compile
    servicenet/api/pb/_cpb.c fails here instead of silently running the slow paths."""
    if os.environ.get("CI", "").lower() not in ("true", "1", "yes"):
        if not native.BUILT:
            pytest.skip("servicenet.api.pb._cpb is not built (run `pip install -e .` with a C compiler)")
    assert native.BUILT, "servicenet.api.pb._cpb is not importable: `pip install -e .` did not build _cpb.c"
    if os.environ.get("SERVICENET_PB_NATIVE", "1") != "0":
        assert native.ENABLED and wire.native_in_use()


# -- agreement helpers --------------------------------------------------------------------------------

_FALLBACK = "fallback"


def _py_decode(raw: bytes, name: str) -> Any:
    try:
        return decode.decode_message(raw, name)
    except decode.Fallback:
        return _FALLBACK


def _c_decode(raw: bytes, name: str) -> Any:
    try:
        return native.decode_native(raw, name)
    except decode.Fallback:
        return _FALLBACK


def _agree_decode(raw: bytes, name: str) -> Any:
    """The C loop accepts what the Python fast path accepts and answers the same dict (key order too)."""
    py, c = _py_decode(raw, name), _c_decode(raw, name)
    if py is _FALLBACK or c is _FALLBACK:
        assert py is c, (py if c is _FALLBACK else c)
        return py
    assert orjson.dumps(c) == orjson.dumps(py)
    assert c == py
    return c


def _outcome(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - the outcome compared is the error itself
        return (type(exc), str(exc))


def _agree_encode(obj: dict[str, Any], name: str, deep: bool = False) -> Any:
    """The C path writes the Python encoder's bytes, or raises its error; the C loop alone writes those
    bytes too (no silent slow path) unless the object nests deeper than its limit (``deep``), and never
    other bytes."""
    py = _outcome(encode.encode_message, obj, name)
    c = _outcome(native.encode_message, obj, name)
    if isinstance(py, tuple) and py[0] is RecursionError:  # the message names where the stack ran out
        assert isinstance(c, tuple) and c[0] is RecursionError
    else:
        assert c == py
    alone = _outcome(native.encode_native, obj, name)
    if isinstance(py, bytes):
        assert alone in ((py, (decode.Fallback, "")) if deep else (py,)), alone
    else:
        assert alone == (decode.Fallback, "")
    return py


# -- canonical objects: the C loops answer without falling back ---------------------------------------

@needs_c
@pytest.mark.parametrize("obj", REALISTIC, ids=[o["kind"] for o in REALISTIC])
def test_realistic_objects_same_bytes_and_dicts(obj: dict[str, Any]) -> None:
    name = types.message_for(obj["apiVersion"], obj["kind"])
    assert name is not None
    raw = _agree_encode(obj, name)
    assert native.encode_native(obj, name) == raw  # the C loop itself, no fallback
    back = _agree_decode(raw, name)
    if obj["kind"] == "CustomResourceDefinition":  # the JSONSchemaProps unions: the reference path
        assert back is _FALLBACK
    else:
        assert {"apiVersion": obj["apiVersion"], "kind": obj["kind"], **back} == obj
        assert native.decode_native(raw, name) == back


@needs_c
def test_kubectl_configmap_bytes() -> None:
    av, kind, raw = wire.split_envelope(KUBECTL_CONFIGMAP)
    assert native.decode_native(raw, "k8s.io.api.core.v1.ConfigMap") == {"metadata": {"name": "cm1"},
                                                                        "data": {"a": "b"}}


@needs_c
@pytest.mark.parametrize("kind", SERVED, ids=[r.kind for r in SERVED])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_generated_objects_same_bytes_and_dicts(kind: resources.ResourceInfo, data: st.DataObject) -> None:
    name = types.message_for(kind.api_version, kind.kind)
    assert name is not None
    obj = data.draw(_obj_strategy(types.descriptor(name), depth=4))
    raw = _agree_encode(obj, name)
    assert native.encode_native(obj, name) == raw
    back = _agree_decode(raw, name)
    if back is _FALLBACK:
        assert kind.group == "apiextensions.k8s.io"
    else:
        assert back == obj


@needs_c
@pytest.mark.parametrize("case", [
    {"metadata": {"creationTimestamp": "0500-01-02T03:04:05Z"}},  # before year 1000: Python formats it
    {"metadata": {"creationTimestamp": "2024-02-31T25:61:61Z"}},  # calendar.timegm takes these
    {"metadata": {"creationTimestamp": "2024-01-02t03:04:05z"}},
    {"metadata": {"creationTimestamp": "2024-01-02T03:04:05.5+02:00"}},
    {"metadata": {"creationTimestamp": "2024-13-02T03:04:05Z"}},  # refused, with Python's message
    {"metadata": {"creationTimestamp": "2024-01-02T03:04:05Z\n"}},
    {"metadata": {"creationTimestamp": "٢٠٢٤-01-02T03:04:05Z"}},  # \d takes other digits
    {"metadata": {"creationTimestamp": 5}},
    {"metadata": {"generation": -1, "deletionGracePeriodSeconds": 2**70}},  # masked to 64 bits, as Python does
    {"metadata": {"generation": 3.0}}, {"metadata": {"generation": 3.5}}, {"metadata": {"generation": True}},
    {"metadata": {"generation": float("inf")}}, {"metadata": {"name": "\ud800"}}, {"metadata": {"name": 5}},
    {"metadata": {"labels": {"a": None, "b": "c"}, "annotations": {"x": 1}}},
    {"metadata": {"name": "ü" * 200, "labels": {"k" * 130: "v" * 300}}},  # multi-byte lengths
    {"metadata": None, "spec": None}, {"spec": {"containers": [None, {"name": "c"}]}},
    {"spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80}], "resources": {
        "limits": {"cpu": 1, "memory": 2.5, "x": "1Gi"}, "requests": {"cpu": None}}}]}},
    {"spec": {"containers": [{"name": "c", "readinessProbe": {"httpGet": {"port": "http"}, "exec": None},
                              "livenessProbe": {"tcpSocket": {"port": 2**40}}}]}},
    {"spec": {"containers": [{"name": "c", "readinessProbe": {"httpGet": {"port": 1.5}}}]}},
    {"spec": {"containers": "nope"}}, {"spec": {"containers": [{"name": "c", "args": ["a", None, "b"]}]}},
    {"spec": {"overhead": {"cpu": True}}}, {"spec": {"nodeSelector": []}},
    {"spec": {"securityContext": {"supplementalGroups": [1, -1, 2**63]}}},
    {"spec": {"volumes": [{"name": "v", "emptyDir": {}, "secret": {"secretName": "s", "defaultMode": 420}}]}},
    {"status": {"conditions": [{"type": "Ready", "lastProbeTime": None}], "startTime": "2024-01-02T03:04:05Z"}},
    {"metadata": {"managedFields": [{"fieldsV1": {"f:a": {}}, "time": "2024-01-02T03:04:05Z"},
                                    {"fieldsV1": {1: 2}}]}},
])
def test_edge_values_same_bytes_or_same_error(case: dict[str, Any]) -> None:
    raw = _agree_encode(case, POD)
    if isinstance(raw, bytes):
        _agree_decode(raw, POD)


@needs_c
def test_other_special_shapes() -> None:
    cases = [
        ("k8s.io.api.coordination.v1.Lease", {"spec": {"renewTime": "2024-01-02T03:04:05.123456Z",
                                                      "acquireTime": "2024-01-02T03:04:05Z", "leaseDurationSeconds": 15}}),
        ("k8s.io.api.core.v1.Secret", {"data": {"a": "aGk=", "b": ""}, "type": "Opaque"}),
        ("k8s.io.api.core.v1.Secret", {"data": {"a": "not base64!"}}),
        ("k8s.io.api.authentication.v1.UserInfo", {"username": "u", "extra": {"k": ["a", "b"], "e": []}}),
        ("k8s.io.api.autoscaling.v2.HorizontalPodAutoscaler", {"spec": {"behavior": {"scaleUp": {
            "policies": [{"type": "Pods", "value": 4, "periodSeconds": 15}]}}}}),
        ("k8s.io.apimachinery.pkg.apis.meta.v1.Status", {"details": {"retryAfterSeconds": 0}, "code": 404}),
        ("k8s.io.apimachinery.pkg.apis.meta.v1.WatchEvent", {"type": "ADDED", "object": {"a": [1, 2.5, None]}}),
    ]
    for name, obj in cases:
        raw = _agree_encode(obj, name)
        if isinstance(raw, bytes):
            _agree_decode(raw, name)


@needs_c
def test_special_values_read_off_the_wire() -> None:
    meta = types.message_class(types.META + ".ObjectMeta")
    for seconds in (1, -1, 86399, -62135596800, 253402300799, 32503680000, 10**12, -(10**12)):
        m = meta()
        m.creationTimestamp.seconds = seconds
        m.creationTimestamp.nanos = 7
        _agree_decode(m.SerializeToString(), types.META + ".ObjectMeta")
    ios = types.message_class("k8s.io.api.core.v1.ServicePort")
    for raw in (ios(targetPort={"type": 1}).SerializeToString(), ios(targetPort={"type": 0}).SerializeToString(),
                ios(targetPort={"type": 2, "intVal": 3}).SerializeToString(), ios(port=-5).SerializeToString()):
        _agree_decode(raw, "k8s.io.api.core.v1.ServicePort")


# -- fuzzing the C decoder: random and damaged bytes ---------------------------------------------------

_NAMES = [POD, "k8s.io.api.core.v1.ConfigMap", "k8s.io.api.core.v1.Service", "k8s.io.api.apps.v1.Deployment",
          "k8s.io.api.core.v1.Secret", "k8s.io.api.coordination.v1.Lease", types.META + ".Status",
          "k8s.io.api.discovery.v1.EndpointSlice", "k8s.io.api.core.v1.PodList",
          "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1.CustomResourceDefinition"]


@needs_c
@settings(max_examples=1500, deadline=None)
@given(body=st.binary(max_size=400), name=st.sampled_from(_NAMES))
def test_fuzz_random_bytes(body: bytes, name: str) -> None:
    _agree_decode(body, name)


@needs_c
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(obj=st.sampled_from(REALISTIC), cut=st.integers(0, 10_000), flips=st.lists(
    st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=4))
def test_fuzz_damaged_real_bytes(obj: dict[str, Any], cut: int, flips: list[tuple[int, int]]) -> None:
    name = types.message_for(obj["apiVersion"], obj["kind"])
    assert name is not None
    body = bytearray(encode.encode_message(obj, name))
    for pos, val in flips:
        body[pos % len(body)] = val
    if cut % 2:
        del body[cut % (len(body) + 1):]
    _agree_decode(bytes(body), name)
    d = _outcome(wire.decode, wire.envelope(obj["apiVersion"], obj["kind"], bytes(body)))
    assert isinstance(d, wire.Decoded) or d[0] is wire.ProtobufError


@needs_c
def test_every_truncation_of_a_pod() -> None:
    obj = next(o for o in REALISTIC if o["kind"] == "Pod")
    raw = encode.encode_message(obj, POD)
    view = memoryview(raw)
    for n in range(len(raw) + 1):
        _agree_decode(raw[:n], POD)
        _agree_decode(raw[n:], POD)
        # the C loop reads any buffer (the Python fast path wants bytes: wire hands it bytes)
        assert _c_decode(view[:n], POD) == _c_decode(raw[:n], POD)


_SCHEMA = "k8s.io.apiextensions_apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps"


@needs_c
@pytest.mark.parametrize("depth", [30, 100, 101, 5000])
def test_deep_nesting_answers_or_falls_back_without_crashing(depth: int) -> None:
    # JSONSchemaProps.not (28) is a JSONSchemaProps: the one recursive type with a plain table
    body = b"\x0a\x01x"  # id = "x"
    for _ in range(depth):
        body = b"\xe2\x01" + encode.varint(len(body)) + body
    if depth <= 100:
        assert _agree_decode(body, _SCHEMA) is not _FALLBACK
    else:  # deeper than the C loop's own limit: it hands over to the Python paths, which decide
        assert _c_decode(body, _SCHEMA) is _FALLBACK
        py = _py_decode(body, _SCHEMA)
        assert (py is _FALLBACK) == (depth >= 5000)
        if py is not _FALLBACK:
            assert native.decode_message(body, _SCHEMA) == py
    obj: dict[str, Any] = {"id": "x"}
    for _ in range(depth):
        obj = {"not": obj}
    out = _agree_encode(obj, _SCHEMA, deep=depth > 100)
    assert isinstance(out, bytes) == (depth < 5000)


# -- the envelope ----------------------------------------------------------------------------------------

def _split_reference(body: bytes) -> Any:
    was = wire.native_in_use()
    wire.use_native(False)
    try:
        return _outcome(wire.split_envelope, body)
    finally:
        wire.use_native(was)


@needs_c
def test_envelopes_as_go_writes_them_are_split_in_c() -> None:
    for body in (KUBECTL_CONFIGMAP, wire.encode(REALISTIC[0]), wire.envelope("v1", "Pod", b""),
                 wire.envelope("", "Status", b"\x08\x01")):
        got = native.split_envelope(body)
        assert got is not None and got == _split_reference(body)
    # not canonical: the message-object path answers (and refuses with its reasons)
    for body in (wire.envelope("v1", "", b""), b"k8s\x00", KUBECTL_CONFIGMAP + b"\x2a\x00",
                 KUBECTL_CONFIGMAP[:-2] + b"\x22\x01x", KUBECTL_CONFIGMAP[:20]):
        assert native.split_envelope(body) is None


@needs_c
@settings(max_examples=1500, deadline=None)
@given(obj=st.sampled_from(REALISTIC), cut=st.integers(0, 10_000), flips=st.lists(
    st.tuples(st.integers(0, 60), st.integers(0, 255)), max_size=3))
def test_fuzz_envelopes(obj: dict[str, Any], cut: int, flips: list[tuple[int, int]]) -> None:
    body = bytearray(wire.encode(obj))
    for pos, val in flips:
        body[pos % len(body)] = val
    if cut % 2:
        del body[cut % (len(body) + 1):]
    got = native.split_envelope(bytes(body))
    if got is not None:
        assert got == _split_reference(bytes(body))


# -- fuzzing the C encoder: damaged objects -------------------------------------------------------------

_JUNK = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=4),
                  st.binary(max_size=3), st.lists(st.integers(), max_size=2),
                  st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


def _damage(obj: Any, rnd: random.Random, junk: list[Any]) -> Any:
    if isinstance(obj, dict):
        return {k: (junk.pop() if junk and rnd.random() < 0.1 else _damage(v, rnd, junk)) for k, v in obj.items()}
    if isinstance(obj, list):
        return [junk.pop() if junk and rnd.random() < 0.1 else _damage(v, rnd, junk) for v in obj]
    return obj


@needs_c
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(obj=st.sampled_from(REALISTIC), seed=st.integers(0, 2**32 - 1), junk=st.lists(_JUNK, max_size=6))
def test_fuzz_damaged_objects(obj: dict[str, Any], seed: int, junk: list[Any]) -> None:
    name = types.message_for(obj["apiVersion"], obj["kind"])
    assert name is not None
    bad = _damage(copy.deepcopy(obj), random.Random(seed), list(junk))
    raw = _agree_encode(bad, name)
    if isinstance(raw, bytes):
        _agree_decode(raw, name)


# -- memory ---------------------------------------------------------------------------------------------

def _rss_kib() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * (os.sysconf("SC_PAGE_SIZE") // 1024)


@needs_c
def test_no_memory_kept_per_call() -> None:
    """Encodes, decodes and their fallbacks (bad values, damaged bytes), many times over: RSS stays flat.
    (``python -m bench.api.pbcodec --leak 200000`` runs the long version.)"""
    objs = [o for o in REALISTIC if o["kind"] != "CustomResourceDefinition"]
    pairs = [(o, types.message_for(o["apiVersion"], o["kind"])) for o in objs]
    raws = [encode.encode_message(o, n) for o, n in pairs]
    bad_obj = {"metadata": {"name": "x", "generation": "nope"}, "spec": {"containers": [{"name": "c"}]}}
    bad_raw = raws[0][: len(raws[0]) // 2]
    bad_name = pairs[0][1]

    def round_(k: int) -> None:
        for _ in range(k):
            for (o, n), raw in zip(pairs, raws, strict=True):
                native.encode_native(o, n)
                native.decode_native(raw, n)
            for fn, args in ((native.encode_native, (bad_obj, POD)), (native.decode_native, (bad_raw, bad_name))):
                try:
                    fn(*args)
                except decode.Fallback:
                    pass

    round_(300)  # plans built, allocator pools warm
    gc.collect()
    before = _rss_kib()
    round_(3000)
    gc.collect()
    grown = _rss_kib() - before
    assert grown < 2048, f"RSS grew {grown} KiB over {3000 * (len(pairs) + 1)} encode/decode pairs"


@needs_c
def test_the_python_paths_stay_available() -> None:
    was = wire.native_in_use()
    try:
        assert wire.use_native(False) is False and not wire.native_in_use()
        pod = next(o for o in REALISTIC if o["kind"] == "Pod")
        py = wire.encode(pod)
        assert wire.use_native(True) is True and wire.native_in_use()
        assert wire.encode(pod) == py and wire.decode(py).obj == pod
    finally:
        wire.use_native(was)
    assert convert.ConversionError  # the error type both encoders raise


@needs_c
def test_plans_are_filled_once() -> None:
    # a decode or encode paused in a Python helper (time formatting, orjson) may be reading a plan's tables
    plan = native._dec_plan(POD)
    with pytest.raises(RuntimeError, match="filled once"):
        plan.fill(0, [])
    with pytest.raises(RuntimeError, match="filled once"):
        native._enc_plan(POD).fill({}, 0, [], [])
    pod = next(o for o in REALISTIC if o["kind"] == "Pod")
    assert native.decode_native(native.encode_native(pod, POD), POD) == {k: v for k, v in pod.items()
                                                                          if k not in ("apiVersion", "kind")}
