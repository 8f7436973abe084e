"""RBAC decisions are kept per (user, attributes) and forgotten with the index on any RBAC change."""

from __future__ import annotations

from typing import Any

import orjson

from servicenet.api.rbac import Attributes, User
from servicenet.apiserver.authz import RBAC_PREFIX, Authorizer
from servicenet.store import Record


class _Store:
    def __init__(self) -> None:
        self.objs: dict[str, list[dict[str, Any]]] = {"roles": [], "clusterroles": [], "rolebindings": [],
                                                      "clusterrolebindings": []}
        self.lists = 0

    def list(self, prefix: str) -> tuple[list[Record], int, bool]:
        self.lists += 1
        plural = prefix.removeprefix(RBAC_PREFIX).strip("/")
        return [Record(f"{prefix}{i}", orjson.dumps(o), 1, 1) for i, o in enumerate(self.objs[plural])], 1, False


class _Server:
    def __init__(self) -> None:
        self.store = _Store()


JANE = User("jane", ("system:authenticated",))
GET_POD = Attributes(verb="get", resource_request=True, namespace="team", api_version="v1", resource="pods",
                     name="web")


def test_decisions_are_kept_and_forgotten_on_rbac_change() -> None:
    server = _Server()
    authz = Authorizer(server)
    assert authz.authorize(JANE, GET_POD) == (False, "")
    lists = server.store.lists
    assert authz.authorize(JANE, GET_POD) == (False, "")
    assert server.store.lists == lists  # the index was not rebuilt
    assert authz._decisions == {(JANE, GET_POD): (False, "")}  # and the decision was kept

    server.store.objs["roles"].append({"metadata": {"name": "reader", "namespace": "team"},
                                       "rules": [{"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]}]})
    server.store.objs["rolebindings"].append({
        "metadata": {"name": "jane-reads", "namespace": "team"},
        "subjects": [{"kind": "User", "name": "jane", "apiGroup": "rbac.authorization.k8s.io"}],
        "roleRef": {"kind": "Role", "name": "reader", "apiGroup": "rbac.authorization.k8s.io"}})
    authz._index = None  # what the RBAC watch does on every change
    ok, reason = authz.authorize(JANE, GET_POD)
    assert ok and "jane-reads" in reason
    other = Attributes(verb="delete", resource_request=True, namespace="team", api_version="v1",
                       resource="pods", name="web")
    assert authz.authorize(JANE, other) == (False, "")
    assert authz.authorize(User("bob"), GET_POD) == (False, "")  # per user

    server.store.objs["rolebindings"].clear()
    authz._index = None
    assert authz.authorize(JANE, GET_POD) == (False, "")
