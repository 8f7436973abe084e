"""A pod create's defaulting, spec validation and service-account admission kept per spec: equal to
fresh results, kept trees handed out shared but never changed, never kept for specs whose JSON text
is not exact."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import orjson
import pytest

from bench.api import objects
from servicenet.api import defaults, jsontree, known, resources, spec_cache, tolerations, validation
from servicenet.api._validation_base import validate_annotations, validate_labels
from servicenet.api._validation_kinds import validate_pod_spec
from tests.api.test_pb_codec import REALISTIC

PODS = [o for o in REALISTIC if o["kind"] == "Pod"] + [objects.pod("p")]
TOLERATIONS = (300, 300)


def _fill(obj: dict[str, Any], seconds: tuple[int | None, int | None] = TOLERATIONS) -> None:
    defaults.apply_defaults("v1", "Pod", obj)
    defaults.prepare_for_create("v1", "Pod", obj)
    if isinstance(obj.get("spec"), dict):
        tolerations.add_default_tolerations(obj["spec"], *seconds)


def _renamed(o: dict[str, Any], i: int) -> dict[str, Any]:
    c = copy.deepcopy(o)
    c.setdefault("metadata", {}).update(name=f"pod-{i}", namespace=f"ns-{i}")
    c["status"] = {"phase": "Running", "podIP": f"10.0.0.{i}"}  # a client's status is replaced
    return c


@pytest.fixture(autouse=True)
def _empty() -> None:
    spec_cache._created.clear()
    spec_cache._valid.clear()
    spec_cache._admitted.clear()
    known.clear()


@pytest.mark.parametrize("pod", PODS, ids=lambda p: p["metadata"]["name"])
def test_kept_defaults_equal_fresh_ones(pod: dict[str, Any]) -> None:
    for i in range(3):  # a miss, then hits
        kept, fresh = _renamed(pod, i), _renamed(pod, i)
        spec_cache.pod_create_defaults(kept, TOLERATIONS, _fill)
        _fill(fresh)
        assert orjson.dumps(kept) == orjson.dumps(fresh)
    assert len(spec_cache._created) == 1


def test_kept_defaults_are_shared_until_owned_and_depend_on_the_context() -> None:
    pod = objects.pod("p")
    first = copy.deepcopy(pod)
    spec_cache.pod_create_defaults(first, TOLERATIONS, _fill)
    second = copy.deepcopy(pod)
    spec_cache.pod_create_defaults(second, TOLERATIONS, _fill)
    if jsontree.FAST:  # the kept tree itself, not a copy; the status is the pod's own
        assert second["spec"] is spec_cache._created[next(iter(spec_cache._created))][2]
    assert second["status"] is not first["status"]
    owned = spec_cache.own_spec(second)
    assert owned is second["spec"] and known.text(owned) is None
    owned["containers"][0]["image"] = "changed"
    second["status"]["phase"] = "changed"
    third = copy.deepcopy(pod)
    spec_cache.pod_create_defaults(third, TOLERATIONS, _fill)
    assert third == first
    other = copy.deepcopy(pod)  # another toleration config: another entry, its own result
    spec_cache.pod_create_defaults(other, (60, None), lambda o: _fill(o, (60, None)))
    fresh = copy.deepcopy(pod)
    _fill(fresh, (60, None))
    assert other == fresh != first
    assert len(spec_cache._created) == 2


@pytest.mark.parametrize("spec", [
    {"containers": [{"name": "a", "image": "i", "command": None}]},  # null (NaN and inf are written so too)
    {"containers": [{"name": "a", "image": "i", "args": [float("nan")]}]},
    {"containers": [{"name": "a", "image": "i"}], "x": dt.datetime(2026, 1, 1)},  # YAML timestamps
    {"containers": [{"name": "a", "image": "i"}], 1: "non-str key"},
    {"containers": [{"name": "a", "image": "i"}], "big": 1 << 70},
])
def test_inexact_specs_are_never_kept(spec: dict[Any, Any]) -> None:
    assert spec_cache.spec_key(spec) is None
    calls = []

    def fill(obj: dict[str, Any]) -> None:
        calls.append(1)
        obj["status"] = {"phase": "Pending"}

    for _ in range(2):
        spec_cache.pod_create_defaults({"spec": spec}, TOLERATIONS, fill)
        assert spec_cache.spec_valid(spec, "pod", lambda: calls.append(1) or []) == []
    assert len(calls) == 4 and not spec_cache._created and not spec_cache._valid


def test_only_valid_specs_are_kept() -> None:
    bad = {"containers": [{"name": "Bad_Name", "image": "i"}], "restartPolicy": "Always", "dnsPolicy": "ClusterFirst"}
    good = {**bad, "containers": [{"name": "good", "image": "i"}]}
    calls: list[str] = []

    def check(spec: dict[str, Any]) -> Any:
        def run() -> list[Any]:
            calls.append(spec["containers"][0]["name"])
            return validate_pod_spec(spec, "spec")
        return run

    for _ in range(3):
        assert spec_cache.spec_valid(bad, "pod", check(bad))
        assert spec_cache.spec_valid(good, "pod", check(good)) == []
    assert calls == ["Bad_Name", "good", "Bad_Name", "Bad_Name"]


def test_pod_validation_through_the_cache_equals_fresh() -> None:
    info = resources.by_plural("", "v1", "pods")
    assert info is not None
    pod = objects.pod("p")
    pod["metadata"]["namespace"] = "default"
    _fill(pod)
    for _ in range(2):  # a miss, then a hit
        assert validation.validate_create(info, pod) == []
    broken = copy.deepcopy(pod)
    broken["spec"]["restartPolicy"] = "Sometimes"
    broken["metadata"]["name"] = "UPPER"
    errs = validation.validate_create(info, broken)
    assert {e.field for e in errs} == {"metadata.name", "spec.restartPolicy"}


def test_labels_and_annotations_seen_valid_before_are_skipped_exactly() -> None:
    good = {"app": "web", "example.com/tier": "front"}
    for _ in range(2):  # the second pass takes the seen-valid path
        assert validate_labels(good, "metadata.labels") == []
        assert validate_annotations(good, "metadata.annotations") == []
    bad = {"app": "not valid!", "Bad Key": "web", "example.com/tier": 7}
    assert [(e.field, e.value) for e in validate_labels(bad, "metadata.labels")] == [
        ("metadata.labels", "not valid!"), ("metadata.labels", "Bad Key")]
    assert [e.value for e in validate_annotations({"app": "x", "Bad Key": "y"}, "metadata.annotations")] == ["Bad Key"]
    big = {"app": "v" * (256 * 1024)}
    assert [e.kind for e in validate_annotations(big, "metadata.annotations")] == ["TooLong"]


@pytest.mark.parametrize("pod", PODS, ids=lambda p: p["metadata"]["name"])
def test_the_noted_spec_text_is_what_spec_key_and_shape_key_would_write(pod: dict[str, Any]) -> None:
    from servicenet.api import shape_cache

    for i in range(3):  # a miss (the text just kept), then hits (the kept text)
        obj = _renamed(pod, i)
        spec_cache.pod_create_defaults(obj, TOLERATIONS, _fill)
        noted = spec_cache.known_text(obj["spec"])
        with_note = spec_cache.spec_key(obj["spec"]), shape_cache.shape_key(obj)
        obj["spec"] = copy.deepcopy(obj["spec"])  # an equal tree whose text nobody noted
        assert spec_cache.known_text(obj["spec"]) is None
        without = spec_cache.spec_key(obj["spec"]), shape_cache.shape_key(obj)
        assert with_note == without and noted == without[0]
        assert noted is not None or b"null" in orjson.dumps(obj["spec"])


def test_the_note_is_for_that_spec_object_only() -> None:
    obj = objects.pod("p")
    spec_cache.pod_create_defaults(obj, TOLERATIONS, _fill)
    other = copy.deepcopy(obj["spec"])  # equal, but not the object the note is for
    assert spec_cache.known_text(other) is None
    other["containers"][0]["image"] = "changed"
    assert spec_cache.spec_key(other) == orjson.dumps(other)


# -- the service-account admission, kept -----------------------------------------------------------

PLACEHOLDER = "vol-@@@@@"


def _admit(spec: dict[str, Any], vol: str) -> list[tuple[Any, ...]]:
    """A stand-in admission: a volume and a mount in every container, as the token admission adds."""
    paths: list[tuple[Any, ...]] = []
    for i, c in enumerate(spec.get("containers") or []):
        mounts = c.setdefault("volumeMounts", [])
        mounts.append({"name": vol, "mountPath": "/m"})
        paths.append(("containers", i, "volumeMounts", len(mounts) - 1, "name"))
    vols = spec.setdefault("volumes", [])
    vols.append({"name": vol, "emptyDir": {}})
    paths.append(("volumes", len(vols) - 1, "name"))
    return paths


@pytest.mark.parametrize("pod", PODS, ids=lambda p: p["metadata"]["name"])
def test_a_kept_admission_equals_a_fresh_one_and_its_texts_are_exact(pod: dict[str, Any]) -> None:
    from servicenet.api.pb import wire

    for i in range(4):  # a miss, then hits
        kept, fresh = _renamed(pod, i), _renamed(pod, i)
        spec_cache.pod_create_defaults(kept, TOLERATIONS, _fill)
        _fill(fresh)
        name = f"vol-{i:05d}"
        spec_cache.admitted_spec(kept, "x", _admit, name, PLACEHOLDER)
        _admit(fresh["spec"], name)
        assert kept == fresh
        assert known.text(kept["spec"]) == orjson.dumps(fresh["spec"])
        assert known.protobuf(kept["spec"]) == wire.encode_pod_spec(fresh["spec"])
        full = {**kept, "apiVersion": "v1", "kind": "Pod"}
        assert wire.encode(full) == wire.encode(copy.deepcopy(full))  # spliced = encoded whole
    assert len(spec_cache._admitted) == 1 and all(spec_cache._admitted.values())
    t = next(iter(spec_cache._admitted.values()))
    assert t is not None and orjson.dumps(t.tree) == t.text  # the template was never changed


def test_an_admission_whose_stand_in_name_is_in_the_spec_is_not_kept() -> None:
    pod = objects.pod("p")
    pod["spec"]["containers"][0]["env"].append({"name": "X", "value": PLACEHOLDER})
    for i in range(2):
        kept, fresh = _renamed(pod, i), _renamed(pod, i)
        spec_cache.pod_create_defaults(kept, TOLERATIONS, _fill)
        _fill(fresh)
        spec_cache.admitted_spec(kept, "x", _admit, f"vol-{i:05d}", PLACEHOLDER)
        _admit(fresh["spec"], f"vol-{i:05d}")
        assert kept == fresh and known.text(kept["spec"]) is None
        assert kept["spec"]["containers"][0]["env"][-1]["value"] == PLACEHOLDER
    assert list(spec_cache._admitted.values()) == [None]
    assert all(orjson.dumps(v[2]) == v[0] for v in spec_cache._created.values() if v[2] is not None)


def test_an_admission_of_an_unknown_spec_changes_the_pods_own_tree() -> None:
    obj = {"spec": {"containers": [{"name": "a", "image": "i"}]}}
    spec = obj["spec"]
    spec_cache.admitted_spec(obj, "x", _admit, "vol-00000", PLACEHOLDER)
    assert obj["spec"] is spec and spec["volumes"] == [{"name": "vol-00000", "emptyDir": {}}]
    assert not spec_cache._admitted


def test_the_known_table_is_by_identity_and_bounded() -> None:
    trees = [{"i": i} for i in range(known.MAX_ENTRIES + 5)]
    for t in trees:
        known.note(t, orjson.dumps(t), lambda: b"pb")
    assert len(known._known) <= known.MAX_ENTRIES
    last = trees[-1]
    assert known.text(last) == b'{"i":%d}' % (len(trees) - 1) and known.protobuf(last) == b"pb"
    assert known.text({"i": len(trees) - 1}) is None  # equal, not the same object
    known.forget(last)
    assert known.text(last) is None


def test_a_known_spec_is_spliced_where_go_writes_it() -> None:
    from servicenet.api.pb import wire

    for i, obj in enumerate(({"apiVersion": "v1", "kind": "Pod", "spec": {"containers": [{"name": "a"}]}},
                             {"apiVersion": "v1", "kind": "Pod", "spec": {"containers": [{"name": "a"}]},
                              "status": {"phase": "Pending"}},
                             {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x", "labels": {"a": "b"}},
                              "spec": {"containers": [{"name": "a"}]}, "status": {"phase": "Pending"}})):
        whole = wire.encode(obj)
        known.note(obj["spec"], orjson.dumps(obj["spec"]), wire.encode_pod_spec(obj["spec"]))
        assert wire.encode(obj) == whole, i


@pytest.mark.parametrize("pod", PODS, ids=lambda p: p["metadata"]["name"])
def test_a_protobuf_pods_kept_spec_decodes_as_the_whole_body_does(pod: dict[str, Any]) -> None:
    from servicenet.api.pb import wire

    wire._kept_specs.clear()
    body = wire.encode({**pod, "apiVersion": "v1", "kind": "Pod"})
    plain = wire.decode(body).obj
    first, second = (wire.decode(body, share_pod_spec=True).obj for _ in range(2))
    assert first == second == plain
    assert list(first) == list(plain)  # the same key order: the stored JSON is written the same
    assert second["spec"] is first["spec"] and known.text(second["spec"]) == orjson.dumps(plain["spec"])
    assert plain["spec"] is not first["spec"] and known.text(plain["spec"]) is None
    obj = {**second, "metadata": {"name": "p"}}  # the defaulting fills a copy, never the kept tree
    spec_cache.pod_create_defaults(obj, TOLERATIONS, _fill)
    assert orjson.dumps(first["spec"]) == orjson.dumps(plain["spec"])


def test_protobuf_pods_that_are_not_canonical_are_decoded_as_without_sharing() -> None:
    from servicenet.api.pb import wire

    wire._kept_specs.clear()
    meta = b"\x0a\x03\x0a\x01p"  # ObjectMeta{name: p} as field 1
    spec = wire.encode_pod_spec({"containers": [{"name": "a", "image": "i"}]})
    spec_field = b"\x12" + bytes([len(spec)]) + spec
    odd = spec + b"\xf8\x07\x01"  # an unknown field (127) in the spec: the usual path reports it
    for raw in (spec_field + meta, meta + spec_field, meta + b"\x12" + bytes([len(odd)]) + odd, meta):
        body = wire.envelope("v1", "Pod", raw)
        for _ in range(2):
            shared, plain = wire.decode(body, share_pod_spec=True), wire.decode(body)
            assert shared.obj == plain.obj and list(shared.obj) == list(plain.obj)
            assert shared.unknown == plain.unknown
    assert wire.decode(wire.envelope("v1", "Pod", meta + b"\x12" + bytes([len(odd)]) + odd)).unknown
