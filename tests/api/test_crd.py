"""Pure CRD logic: structural schemas, pruning, defaulting, validation, CEL rules, printer columns,
apply shapes and admission policies (servicenet.api.crd)."""

from __future__ import annotations

import copy
import datetime as dt
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from servicenet.api.crd import celrules, merge, policy, present, structural
from servicenet.api.crd import schema as sch
from servicenet.api.errors import FieldError

BUNDLE = Path(__file__).resolve().parents[1] / "third_party" / "gateway-api" / "standard-install.yaml"


@cache
def gateway_crds() -> dict[str, dict[str, Any]]:
    return {d["spec"]["names"]["kind"]: d for d in yaml.safe_load_all(BUNDLE.read_text())
            if d and d["kind"] == "CustomResourceDefinition"}


def storage_schema(kind: str) -> dict[str, Any]:
    crd = gateway_crds()[kind]
    v = next(v for v in crd["spec"]["versions"] if v["storage"])
    return v["schema"]["openAPIV3Schema"]  # type: ignore[no-any-return]


def admit(obj: dict[str, Any], schema: dict[str, Any], old: dict[str, Any] | None = None) -> list[FieldError]:
    sch.prune(obj, schema)
    sch.default(obj, schema)
    errs = sch.validate(obj, schema)
    skipped = sch.blocking(errs)
    return errs + ([skipped] if skipped else celrules.validate(obj, old, schema))


# ---------------------------------------------------------------- pruning and defaulting

S: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {"type": "object", "properties": {
            "a": {"type": "object", "default": {}, "properties": {"b": {"type": "integer", "default": 7}}},
            "c": {"type": "object", "properties": {"d": {"type": "string", "default": "x"}}},
            "n": {"type": "string", "nullable": True},
            "m": {"type": "string"},
            "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True,
                     "properties": {"known": {"type": "object", "properties": {"k": {"type": "string"}}}}},
            "map": {"type": "object", "additionalProperties": {"type": "object", "properties": {
                "v": {"type": "integer", "default": 1}}}},
            "emb": {"type": "object", "x-kubernetes-embedded-resource": True,
                    "properties": {"spec": {"type": "object"}}},
        }},
    },
}


def test_prune_default_order_and_rules() -> None:
    obj = {"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "n", "labels": {"a": "b"}}, "top": 1,
           "spec": {"n": None, "m": None, "zz": 1,
                    "free": {"anything": [1], "known": {"k": "v", "drop": 1}},
                    "map": {"one": {}, "two": {"v": 5, "junk": True}},
                    "emb": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}, "x": 1}}}
    unknown = sch.prune(obj, S)
    assert sorted(unknown) == [".spec.emb.x", ".spec.free.known.drop", ".spec.map.two.junk", ".spec.zz", ".top"]
    assert obj["metadata"] == {"name": "n", "labels": {"a": "b"}}  # metadata is never pruned
    assert "m" not in obj["spec"] and obj["spec"]["n"] is None  # nulls: pruned unless nullable
    assert obj["spec"]["free"] == {"anything": [1], "known": {"k": "v"}}  # pruning resumes in listed properties
    assert obj["spec"]["emb"]["metadata"] == {"name": "p"}
    sch.default(obj, S)
    assert obj["spec"]["a"] == {"b": 7}  # default {} cascades into its own defaults
    assert "c" not in obj["spec"]  # no parent, no default
    assert obj["spec"]["map"] == {"one": {"v": 1}, "two": {"v": 5}}
    assert sch.validate(obj, S) == []


def test_validation_messages() -> None:
    s = {"type": "object", "properties": {"spec": {"type": "object", "required": ["r"], "properties": {
        "r": {"type": "string"},
        "i": {"type": "integer", "minimum": 1, "maximum": 10},
        "f": {"type": "number", "exclusiveMaximum": True, "maximum": 1.5},
        "s": {"type": "string", "minLength": 2, "format": "ipv4"},
        "l": {"type": "array", "minItems": 2, "items": {"type": "string"}},
        "ios": {"x-kubernetes-int-or-string": True},
    }}}}
    errs = sch.validate({"spec": {"i": 11, "f": 1.5, "s": "a", "l": ["x"], "ios": 1.5}}, s)
    got = [e.full() for e in errs]
    assert got == [
        "spec.r: Required value",
        "spec.i: Invalid value: 11: spec.i in body should be less than or equal to 10",
        "spec.f: Invalid value: 1.5: spec.f in body should be less than 1.5",
        'spec.s: Invalid value: "a": spec.s in body should be at least 2 chars long',
        'spec.s: Invalid value: "a": spec.s in body must be of type ipv4: "a"',
        "spec.l: Invalid value: 1: spec.l in body should have at least 2 items",
        'spec.ios: Invalid value: "number": spec.ios in body must be of type integer,string: 1.5',
    ]
    assert sch.validate({"spec": {"r": "x", "i": 2.0, "ios": "80%"}}, s) == []  # 2.0 is an integer in JSON


def test_embedded_resource_and_list_types() -> None:
    s = {"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "e": {"type": "object", "x-kubernetes-embedded-resource": True, "x-kubernetes-preserve-unknown-fields": True},
        "set": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "integer"}},
        "map": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["k", "p"],
                "items": {"type": "object", "properties": {"k": {"type": "string"},
                                                           "p": {"type": "string", "default": "TCP"}}}}}}}}
    errs = sch.validate({"spec": {"e": {"metadata": {}}, "set": [1, 2, 1],
                                  "map": [{"k": "a"}, {"k": "a", "p": "TCP"}, {"k": "a", "p": "UDP"}]}}, s)
    assert [e.full() for e in errs] == [
        "spec.e.apiVersion: Required value", "spec.e.kind: Required value",
        "spec.set[2]: Duplicate value: 1",
        'spec.map[1]: Duplicate value: {"k":"a","p":"TCP"}',
    ]


# ---------------------------------------------------------------- CEL


def test_cel_escaping_and_root_view() -> None:
    assert celrules.escape_name("x-y.z/w") == "x__dash__y__dot__z__slash__w"
    assert celrules.escape_name("namespace") == "__namespace__"
    assert celrules.escape_name("a__b") == "a__underscores__b"
    assert celrules.escape_name("a b") is None
    s = {"type": "object", "x-kubernetes-validations": [
        {"rule": "self.metadata.name.startsWith('ok') && !has(self.metadata.labels)"},
        {"rule": "self.spec.x__dash__y == 1"},
        {"rule": "self.spec.x__dash__y == 2", "message": "two"}],
        "properties": {"spec": {"type": "object", "properties": {"x-y": {"type": "integer"}}}}}
    obj = {"apiVersion": "a/v1", "kind": "K", "metadata": {"name": "ok1", "labels": {"a": "b"}},
           "spec": {"x-y": 1}}
    errs = celrules.validate(obj, None, s)
    # the root sees only name/generateName of the metadata (so no labels); names are escaped
    assert [e.full() for e in errs] == ['<root>: Invalid value: "object": two']


def test_cel_transition_rules_correlate_by_list_map_keys() -> None:
    s = {"type": "object", "properties": {"spec": {"type": "object", "properties": {"items": {
        "type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
        "items": {"type": "object", "properties": {
            "name": {"type": "string"},
            "v": {"type": "string", "x-kubernetes-validations": [
                {"rule": "self == oldSelf", "message": "Value is immutable"}]}}}}}}}}
    old = {"spec": {"items": [{"name": "a", "v": "1"}, {"name": "b", "v": "2"}]}}
    new = {"spec": {"items": [{"name": "b", "v": "2"}, {"name": "a", "v": "9"}, {"name": "c", "v": "3"}]}}
    errs = celrules.validate(new, old, s)
    assert [e.full() for e in errs] == ['spec.items[1].v: Invalid value: "string": Value is immutable']
    assert celrules.validate(new, None, s) == []  # transition rules do not run on create


def test_cel_optional_old_self_message_expression_and_ratcheting() -> None:
    s = {"type": "object", "properties": {"spec": {"type": "object", "x-kubernetes-validations": [
        {"rule": "!oldSelf.hasValue() || self.n >= oldSelf.value().n", "optionalOldSelf": True,
         "message": "n may not decrease"},
        {"rule": "self.n < 10", "messageExpression": "'n is ' + string(self.n)"},
        {"rule": "self.n != 5", "messageExpression": "'bad\\nmessage'", "message": "fallback"},
    ], "properties": {"n": {"type": "integer"}}}}}
    assert [e.detail for e in celrules.validate({"spec": {"n": 11}}, None, s)] == ["n is 11"]
    assert [e.detail for e in celrules.validate({"spec": {"n": 5}}, None, s)] == ["fallback"]
    assert [e.detail for e in celrules.validate({"spec": {"n": 3}}, {"spec": {"n": 4}}, s)] == ["n may not decrease"]
    # an unchanged value is not judged again by non-transition rules (ratcheting)
    assert [e.detail for e in celrules.validate({"spec": {"n": 12}}, {"spec": {"n": 12}}, s)] == []


def test_kubernetes_library_functions() -> None:
    def run(expr: str, **v: Any) -> Any:
        return celrules.compile_expr(expr).run(v)

    assert run("isIP('10.0.0.1') && isIP('::1') && !isIP('example.com')") is True
    assert run("isURL('https://a.b/c?x=1') && url('https://a.b:8443/c').getPort() == '8443'") is True
    assert run("'a/b/c'.split('/')[1] == 'b' && 'abc'.substring(1) == 'bc'") is True
    assert run("matches(s, '^v1\\\\.[0-5]\\\\.\\\\d+$')", s="v1.4.2") is True
    assert run(r'''s.matches(r"""(?i)^FOO\.com$""")''', s="foo.com") is True
    assert run("[1, 2, 3].isSorted() && [3, 1].indexOf(1) == 1 && 'abc'.indexOf('c') == 2") is True
    assert run("duration('1s') < duration('2m')") is True
    assert run("'abc'.find('[bc]+') == 'bc' && 'a1b2'.findAll('[0-9]') == ['1', '2']") is True
    with pytest.raises(celrules.CelCompileError):
        celrules.compile_expr("self.a >")


# ---------------------------------------------------------------- the CRD object


def test_gateway_api_crds_are_structural_and_every_rule_compiles() -> None:
    crds = gateway_crds()
    assert len(crds) == 10
    for crd in crds.values():
        c = copy.deepcopy(crd)
        structural.apply_defaults(c)
        assert structural.validate(c) == [], c["metadata"]["name"]
        assert c["spec"]["conversion"] == {"strategy": "None"}


def test_structural_schema_rules() -> None:
    bad = {"type": "object", "properties": {
        "a": {"properties": {}},
        "b": {"type": "object", "additionalProperties": False},
        "c": {"type": "array", "x-kubernetes-list-type": "map", "items": {"type": "object"}},
        "d": {"type": "string", "uniqueItems": True, "$ref": "#/x"},
        "e": {"type": "object", "anyOf": [{"type": "string"}]},
        "metadata": {"type": "object", "properties": {"labels": {"type": "object"}}},
    }}
    fields = {e.field for e in structural.structural_errors(bad, "s")}
    assert fields == {"s.properties[a].type", "s.properties[b].additionalProperties",
                      "s.properties[c].x-kubernetes-list-map-keys", "s.properties[d].uniqueItems",
                      "s.properties[d].$ref", "s.properties[e].anyOf[0].type",
                      "s.properties[metadata].properties[labels]"}


def test_conversion_webhooks_are_refused() -> None:
    crd = copy.deepcopy(gateway_crds()["Gateway"])
    crd["spec"]["conversion"] = {"strategy": "Webhook", "webhook": {"conversionReviewVersions": ["v1"]}}
    assert [e.full() for e in structural.validate(crd)] == [
        'spec.conversion.strategy: Unsupported value: "Webhook": supported values: "None"']


def test_names_versions_and_conditions() -> None:
    assert structural.sort_versions(["v1beta1", "foo", "v2", "v1", "v1alpha1", "v2beta2", "v1beta2"]) == \
        ["v2", "v1", "v2beta2", "v1beta2", "v1beta1", "v1alpha1", "foo"]
    a = {"spec": {"group": "g.io", "names": {"plural": "as", "singular": "a", "kind": "A", "listKind": "AList",
                                             "shortNames": ["x"]}}}
    accepted = copy.deepcopy(a)
    accepted["status"] = {"acceptedNames": a["spec"]["names"]}
    b = {"spec": {"group": "g.io", "names": {"plural": "bs", "singular": "b", "kind": "B", "listKind": "BList",
                                             "shortNames": ["x"]}}}
    assert structural.naming_condition(b, [accepted])[:2] == ("False", "ShortNamesConflict")
    b["spec"]["group"] = "other.io"
    assert structural.naming_condition(b, [accepted]) == ("True", "NoConflicts", "no conflicts found")
    crd: dict[str, Any] = {}
    assert structural.set_condition(crd, "Established", "True", "R", "m", "t1")
    assert not structural.set_condition(crd, "Established", "True", "R", "m", "t2")
    assert crd["status"]["conditions"][0]["lastTransitionTime"] == "t1"


# ---------------------------------------------------------------- presentation


def test_jsonpath_and_printer_cells() -> None:
    o = {"metadata": {"name": "g", "creationTimestamp": "2026-01-01T00:00:00Z"},
         "spec": {"hostnames": ["a", "b"], "n": 3.0},
         "status": {"conditions": [{"type": "Accepted", "status": "True"}, {"type": "Programmed", "status": "False"}],
                    "addresses": [{"value": "1.2.3.4"}, {"value": "5.6.7.8"}]}}
    assert present.find(o, present.compile_path('.status.conditions[?(@.type=="Programmed")].status')) == ["False"]
    assert present.find(o, present.compile_path(".status.addresses[*].value")) == ["1.2.3.4", "5.6.7.8"]
    assert present.find(o, present.compile_path("{.spec['hostnames'][1]}")) == ["b"]
    cv = structural.served_versions(gateway_crds()["Gateway"])[0]
    cv = structural.CrdVersion(info=cv.info, schema={}, storage_version="v1", crd_name="x", scale=None,
                               printer_columns=(
                                   {"name": "Hosts", "type": "string", "jsonPath": ".spec.hostnames"},
                                   {"name": "Addr", "type": "string", "jsonPath": ".status.addresses[*].value"},
                                   {"name": "N", "type": "integer", "jsonPath": ".spec.n"},
                                   {"name": "Bad", "type": "boolean", "jsonPath": ".spec.n"},
                                   {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}))
    t = present.to_table(cv, [o], now=dt.datetime(2026, 1, 1, 0, 5, tzinfo=dt.UTC), include_object=None,
                         resource_version="5", continue_token=None)
    assert [c["name"] for c in t["columnDefinitions"]] == ["Name", "Hosts", "Addr", "N", "Bad", "Age"]
    assert t["rows"][0]["cells"] == ["g", '["a","b"]', "1.2.3.4", 3, None, "5m"]
    assert t["rows"][0]["object"]["kind"] == "PartialObjectMetadata"


def test_openapi_model_names_and_apply_shapes() -> None:
    assert present.model_name("gateway.networking.k8s.io", "v1", "Gateway") == "io.k8s.networking.gateway.v1.Gateway"
    specs = merge.list_specs(storage_schema("Gateway"))
    assert specs[("spec", "listeners")].ssa == "map" and specs[("spec", "listeners")].keys == ("name",)
    assert ("spec", "addresses") not in specs  # no list-type: atomic
    toy = {"type": "object", "properties": {"spec": {"type": "object", "properties": {
        "sel": {"type": "object", "x-kubernetes-map-type": "atomic", "additionalProperties": {"type": "string"}},
        "l": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["a", "b"],
              "items": {"type": "object", "properties": {"inner": {"type": "array", "x-kubernetes-list-type": "set",
                                                                   "items": {"type": "string"}}}}}}}}}
    assert merge.atomic_maps(toy) == {("spec", "sel")}
    got = merge.list_specs(toy)
    assert got[("spec", "l")].keys == ("a", "b") and got[("spec", "l", "inner")].ssa == "set"


# ---------------------------------------------------------------- admission policies


def _attrs(**kw: Any) -> policy.Attributes:
    base: dict[str, Any] = {"operation": "CREATE", "group": "apps", "version": "v1", "resource": "deployments",
                            "subresource": "", "kind": "Deployment", "namespace": "ns", "name": "d",
                            "obj": {"metadata": {"name": "d", "labels": {"tier": "web"}}, "spec": {"replicas": 2}},
                            "old": None}
    base.update(kw)
    return policy.Attributes(**base)


def test_policy_matching() -> None:
    rule = {"apiGroups": ["apps"], "apiVersions": ["*"], "operations": ["CREATE"], "resources": ["deployments"]}
    no_ns = (lambda ns: {})  # noqa: E731
    assert policy.resources_match({"resourceRules": [rule]}, _attrs(), no_ns)
    assert not policy.resources_match({"resourceRules": [rule]}, _attrs(operation="UPDATE"), no_ns)
    assert not policy.resources_match({"resourceRules": [rule]}, _attrs(subresource="status"), no_ns)
    assert policy.resources_match({"resourceRules": [{**rule, "resources": ["*/status"]}]},
                                  _attrs(subresource="status"), no_ns)
    assert not policy.resources_match({"resourceRules": [rule], "excludeResourceRules": [rule]}, _attrs(), no_ns)
    assert policy.resources_match({"resourceRules": [rule], "objectSelector": {"matchLabels": {"tier": "web"}}},
                                  _attrs(), no_ns)
    assert not policy.resources_match({"resourceRules": [rule], "namespaceSelector": {"matchLabels": {"a": "b"}}},
                                      _attrs(), no_ns)


def test_policy_evaluation_actions() -> None:
    p = {"metadata": {"name": "p"}, "spec": {
        "matchConstraints": {"resourceRules": [{"apiGroups": ["*"], "apiVersions": ["*"], "operations": ["*"],
                                                "resources": ["*"]}]},
        "matchConditions": [{"name": "web", "expression": "object.metadata.labels.tier == 'web'"}],
        "variables": [{"name": "r", "expression": "object.spec.replicas"},
                      {"name": "r2", "expression": "variables.r * 2"}],
        "validations": [{"expression": "variables.r2 < 4"},
                        {"expression": "request.namespace == 'ns' && oldObject == null", "message": "m"}]}}
    b = {"metadata": {"name": "b"}, "spec": {"policyName": "p", "validationActions": ["Warn", "Audit"]}}
    out = policy.evaluate(p, b, _attrs(), lambda ns: {}, lambda *a: None)
    assert [(d.action, d.message) for d in out] == [("Warn", "failed expression: variables.r2 < 4"),
                                                    ("Audit", "failed expression: variables.r2 < 4")]
    other = _attrs(obj={"metadata": {"labels": {"tier": "db"}}, "spec": {"replicas": 9}})
    assert policy.evaluate(p, b, other, lambda ns: {}, lambda *a: None) == []  # matchConditions
    assert policy.deny_error(out[0]).code == 422
    assert policy.warning_text(out[0]) == ("Validation failed for ValidatingAdmissionPolicy 'p' with binding 'b': "
                                           "failed expression: variables.r2 < 4")


# ---------------------------------------------------------------- fuzzing

_json = st.recursive(st.none() | st.booleans() | st.integers(-2**40, 2**40) | st.floats(allow_nan=False)
                     | st.text(max_size=20),
                     lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4),
                     max_leaves=20)

_ROUTE = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "r"},
          "spec": {"parentRefs": [{"name": "gw"}], "hostnames": ["a.example"],
                   "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": "/"},
                                           "headers": [{"name": "x", "value": "y"}]}],
                              "filters": [{"type": "RequestHeaderModifier",
                                           "requestHeaderModifier": {"set": [{"name": "a", "value": "b"}]}}],
                              "backendRefs": [{"name": "svc", "port": 80, "weight": 1}]}]}}
_PATHS = [("spec",), ("spec", "hostnames"), ("spec", "hostnames", 0), ("spec", "rules"),
          ("spec", "rules", 0), ("spec", "rules", 0, "matches"), ("spec", "rules", 0, "matches", 0, "path"),
          ("spec", "rules", 0, "matches", 0, "path", "value"), ("spec", "rules", 0, "matches", 0, "headers", 0),
          ("spec", "rules", 0, "filters", 0), ("spec", "rules", 0, "filters", 0, "type"),
          ("spec", "rules", 0, "backendRefs", 0, "port"), ("spec", "parentRefs", 0), ("spec", "parentRefs"),
          ("metadata",), ("spec", "rules", 0, "timeouts")]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(_PATHS), _json), min_size=1, max_size=4), st.booleans())
def test_fuzz_validator_never_raises(edits: list[tuple[tuple[Any, ...], Any]], as_update: bool) -> None:
    schema = storage_schema("HTTPRoute")
    obj = copy.deepcopy(_ROUTE)
    for path, value in edits:
        cur: Any = obj
        for p in path[:-1]:
            if isinstance(cur, dict) and isinstance(p, str):
                cur = cur.setdefault(p, {})
            elif isinstance(cur, list) and isinstance(p, int) and p < len(cur):
                cur = cur[p]
            else:
                break
        else:
            if isinstance(cur, dict) and isinstance(path[-1], str):
                cur[path[-1]] = value
            elif isinstance(cur, list) and isinstance(path[-1], int) and path[-1] < len(cur):
                cur[path[-1]] = value
    old = copy.deepcopy(_ROUTE) if as_update else None
    if old is not None:
        admit(old, schema)
    errs = admit(obj, schema, old)
    for e in errs:
        assert isinstance(e, FieldError) and e.full()  # every error renders


@settings(max_examples=200, deadline=None)
@given(_json)
def test_fuzz_arbitrary_documents(value: Any) -> None:
    schema = storage_schema("Gateway")
    obj = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway", "metadata": {"name": "g"},
           "spec": value}
    errs = admit(obj, schema)
    assert all(e.full() for e in errs)
