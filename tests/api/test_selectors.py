from __future__ import annotations

import pytest

from servicenet.api.errors import ApiStatusError
from servicenet.api.selectors import (
    FieldSelector,
    LabelSelector,
    field_set,
    format_labels,
    label_selector_from_dict,
    selector_to_string,
)

LABELS = {"app": "web", "tier": "front", "version": "3"}


@pytest.mark.parametrize(
    ("sel", "expected"),
    [
        ("", True),
        ("app=web", True),
        ("app==web", True),
        ("app=db", False),
        ("app!=db", True),
        ("app!=web", False),
        ("missing!=x", True),
        ("app in (web,db)", True),
        ("app in (db)", False),
        ("app notin (db)", True),
        ("app notin (web)", False),
        ("missing notin (web)", True),
        ("app", True),
        ("missing", False),
        ("!missing", True),
        ("!app", False),
        ("app=web,tier=front", True),
        ("app=web,tier=back", False),
        ("app in (web),tier!=db", True),
        ("  app = web , tier in ( front , back )  ", True),
        ("version>2", True),
        ("version<3", False),
        ("missing>1", False),
        ("app=", False),
        ("tier in (front,)", True),
    ],
)
def test_label_selector_matching(sel: str, expected: bool) -> None:
    assert LabelSelector.parse(sel).matches(LABELS) is expected


def test_empty_label_selector_value_matches_empty_label() -> None:
    assert LabelSelector.parse("a=").matches({"a": ""})
    assert not LabelSelector.parse("a=").matches({})


@pytest.mark.parametrize(
    ("sel", "message"),
    [
        ("app=web,", "found '', expected: identifier after ','"),
        ("app web", "unable to parse requirement: found 'web', expected: in, notin, =, ==, !=, gt, lt"),
        ("=web", "found '=', expected: !, identifier, or 'end of string'"),
        ("app in web", "unable to parse requirement: found 'web' expected: '('"),
        ("app in (a b)", "unable to parse requirement: found 'b', expected: ',' or ')'"),
        ("app in ()", None),  # parses ("" is a valid value)
        ("app (", "unable to parse requirement: found '(', expected: in, notin, =, ==, !=, gt, lt"),
        ("!app=x", "found '=', expected: ',' or 'end of string'"),
        ("app>x", "unable to parse requirement: values[0]: Invalid value: \"x\": "
                  "for 'Gt', 'Lt' operators, the value must be an integer"),
        ("a=b c", "found 'c', expected: ',' or 'end of string'"),
    ],
)
def test_label_selector_syntax_errors(sel: str, message: str | None) -> None:
    if message is None:
        LabelSelector.parse(sel)
        return
    with pytest.raises(ApiStatusError) as ei:
        LabelSelector.parse(sel)
    assert ei.value.code == 400
    assert ei.value.reason == "BadRequest"
    assert ei.value.message == message


def test_label_selector_invalid_key_message() -> None:
    with pytest.raises(ApiStatusError) as ei:
        LabelSelector.parse("-bad=x")
    assert ei.value.message == (
        'unable to parse requirement: <nil>: Invalid value: "-bad": name part must consist of alphanumeric '
        "characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  "
        "or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"
    )


def test_label_selector_invalid_value_message() -> None:
    with pytest.raises(ApiStatusError) as ei:
        LabelSelector.parse("app=-x")
    assert ei.value.message.startswith('unable to parse requirement: values[0][app]: Invalid value: "-x": '
                                       "a valid label must be an empty string or consist of")


def test_prefixed_keys() -> None:
    sel = LabelSelector.parse("kubernetes.io/service-name=web")
    assert sel.matches({"kubernetes.io/service-name": "web"})
    with pytest.raises(ApiStatusError) as ei:
        LabelSelector.parse("Bad_Prefix/x=1")
    assert "prefix part a lowercase RFC 1123 subdomain" in ei.value.message
    with pytest.raises(ApiStatusError):
        LabelSelector.parse("a/b/c=1")
    with pytest.raises(ApiStatusError):
        LabelSelector.parse("k=" + "v" * 64)


def test_label_selector_string_is_sorted_canonical() -> None:
    assert str(LabelSelector.parse("tier notin (b,a),app=web,!x,y")) == "app=web,tier notin (a,b),!x,y"
    assert LabelSelector.parse("").empty
    assert not LabelSelector.parse("a").empty


def test_label_selector_from_dict() -> None:
    sel = label_selector_from_dict({
        "matchLabels": {"app": "web"},
        "matchExpressions": [
            {"key": "tier", "operator": "In", "values": ["front", "back"]},
            {"key": "env", "operator": "NotIn", "values": ["prod"]},
            {"key": "canary", "operator": "DoesNotExist"},
            {"key": "team", "operator": "Exists"},
        ],
    })
    assert str(sel) == "app=web,!canary,env notin (prod),team,tier in (back,front)"
    assert sel.matches({"app": "web", "tier": "front", "team": "x"})
    assert not sel.matches({"app": "web", "tier": "front", "team": "x", "canary": "1"})
    assert not sel.matches({"app": "web", "tier": "front"})


def test_label_selector_from_dict_nil_and_empty() -> None:
    assert not label_selector_from_dict(None).matches({})  # nil selector selects nothing
    assert label_selector_from_dict({}).matches({"a": "b"})  # empty selects everything
    assert selector_to_string({"matchLabels": {"b": "2", "a": "1"}}) == "a=1,b=2"


def test_label_selector_from_dict_errors() -> None:
    with pytest.raises(ApiStatusError) as ei:
        label_selector_from_dict({"matchExpressions": [{"key": "a", "operator": "Foo"}]})
    assert ei.value.message == '"Foo" is not a valid label selector operator'
    with pytest.raises(ApiStatusError) as ei:
        label_selector_from_dict({"matchExpressions": [{"key": "a", "operator": "In", "values": []}]})
    assert "values set can't be empty" in ei.value.message


def test_format_labels() -> None:
    assert format_labels({"b": "2", "a": "1"}) == "a=1,b=2"
    assert format_labels({}) == "<none>"
    assert format_labels(None) == "<none>"


POD = {
    "metadata": {"name": "web-0", "namespace": "default"},
    "spec": {"nodeName": "node-a", "restartPolicy": "Always", "schedulerName": "default-scheduler",
             "serviceAccountName": "default"},
    "status": {"phase": "Running", "podIP": "10.244.0.5", "podIPs": [{"ip": "10.244.0.5"}]},
}


@pytest.mark.parametrize(
    ("sel", "expected"),
    [
        ("metadata.name=web-0", True),
        ("metadata.name==web-0", True),
        ("metadata.name!=web-0", False),
        ("metadata.namespace=default,spec.nodeName=node-a", True),
        ("spec.nodeName=node-b", False),
        ("spec.nodeName=", False),
        ("spec.hostNetwork=false", True),
        ("status.phase!=Pending", True),
        ("status.podIP=10.244.0.5", True),
        ("status.nominatedNodeName=", True),
        ("", True),
    ],
)
def test_field_selector_pod(sel: str, expected: bool) -> None:
    assert FieldSelector.parse(sel, "Pod").matches(POD) is expected


def test_field_selector_unsupported_label() -> None:
    with pytest.raises(ApiStatusError) as ei:
        FieldSelector.parse("spec.foo=x", "Service")
    assert (ei.value.code, ei.value.reason, ei.value.message) == (400, "BadRequest",
                                                                  "field label not supported: spec.foo")
    with pytest.raises(ApiStatusError):
        FieldSelector.parse("spec.nodeName=x", "Service")  # pod-only field


def test_field_selector_syntax_and_escaping() -> None:
    with pytest.raises(ApiStatusError) as ei:
        FieldSelector.parse("metadata.name", "Pod")
    assert ei.value.message == "invalid selector: 'metadata.name'; can't understand 'metadata.name'"
    with pytest.raises(ApiStatusError) as ei:
        FieldSelector.parse("metadata.name=a=b", "Pod")
    assert ei.value.message == "invalid field selector: unescaped character in value: ="
    with pytest.raises(ApiStatusError) as ei:
        FieldSelector.parse("metadata.name=a\\x", "Pod")
    assert ei.value.message == "invalid field selector: invalid escape sequence: \\x"
    sel = FieldSelector.parse("metadata.name=a\\,b\\=c", "Pod")
    assert sel.matches({"metadata": {"name": "a,b=c"}})
    assert sel.requires_exact("metadata.name") == "a,b=c"
    assert str(sel) == "metadata.name=a\\,b\\=c"


def test_field_selector_events_describe_query() -> None:
    ev = {"metadata": {"name": "web.1", "namespace": "default"},
          "involvedObject": {"kind": "Service", "name": "web", "namespace": "default", "uid": "u1"},
          "reason": "Created", "type": "Normal", "source": {"component": "ctrl"}}
    sel = FieldSelector.parse("involvedObject.uid=u1,involvedObject.name=web,involvedObject.namespace=default,"
                              "involvedObject.kind=Service", "Event")
    assert sel.matches(ev)
    assert FieldSelector.parse("source=ctrl,type=Normal,reason=Created", "Event").matches(ev)
    assert not FieldSelector.parse("involvedObject.kind=Pod", "Event").matches(ev)


@pytest.mark.parametrize(
    ("kind", "obj", "fields"),
    [
        ("Node", {"metadata": {"name": "n"}, "spec": {"unschedulable": True}}, {"spec.unschedulable": "true"}),
        ("Node", {"metadata": {"name": "n"}}, {"spec.unschedulable": "false"}),
        ("Secret", {"metadata": {"name": "s"}, "type": "Opaque"}, {"type": "Opaque"}),
        ("Namespace", {"metadata": {"name": "ns"}, "status": {"phase": "Active"}}, {"status.phase": "Active"}),
        ("ReplicaSet", {"metadata": {"name": "r"}, "status": {"replicas": 3}}, {"status.replicas": "3"}),
    ],
)
def test_field_sets(kind: str, obj: dict, fields: dict) -> None:
    fs = field_set(kind, obj)
    for k, v in fields.items():
        assert fs[k] == v
    sel = ",".join(f"{k}={v}" for k, v in fields.items())
    assert FieldSelector.parse(sel, kind).matches(obj)
