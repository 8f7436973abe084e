"""Watch filter core: (store event, old, new, selector) -> what the watcher sees. No sockets."""

from __future__ import annotations

import pytest

from servicenet.apiserver.watchfilter import Selection, filter_event


def obj(app: str | None, node: str = "") -> dict:
    md = {"name": "p", "namespace": "a", "labels": {"app": app} if app else {}}
    return {"metadata": md, "spec": {"nodeName": node}}


WEB = Selection.parse("app=web", "", "Pod")
ON_N1 = Selection.parse("", "spec.nodeName=n1", "Pod")
BOTH = Selection.parse("app=web", "spec.nodeName=n1", "Pod")
NONE = Selection.parse("", "", "Pod")

CASES = [
    # selection, store event, new object, old object, watcher sees
    (NONE, "ADDED", obj("x"), None, "ADDED"),
    (NONE, "MODIFIED", obj("x"), obj("y"), "MODIFIED"),
    (NONE, "DELETED", obj("x"), None, "DELETED"),
    (WEB, "ADDED", obj("web"), None, "ADDED"),
    (WEB, "ADDED", obj("db"), None, None),
    (WEB, "MODIFIED", obj("web"), obj("web"), "MODIFIED"),
    (WEB, "MODIFIED", obj("web"), obj("db"), "ADDED"),      # enters the selection
    (WEB, "MODIFIED", obj("db"), obj("web"), "DELETED"),    # leaves it
    (WEB, "MODIFIED", obj("db"), obj("db"), None),
    (WEB, "MODIFIED", obj("web"), None, "ADDED"),            # no previous state known
    (WEB, "DELETED", obj("web"), None, "DELETED"),
    (WEB, "DELETED", obj("db"), None, None),
    (ON_N1, "MODIFIED", obj("x", "n1"), obj("x", ""), "ADDED"),  # field selector: scheduled onto n1
    (ON_N1, "MODIFIED", obj("x", "n2"), obj("x", "n1"), "DELETED"),
    (BOTH, "MODIFIED", obj("web", "n1"), obj("db", "n1"), "ADDED"),
    (BOTH, "MODIFIED", obj("web", "n2"), obj("web", "n1"), "DELETED"),
]


@pytest.mark.parametrize("sel, etype, new, old, want", CASES)
def test_filter_event(sel, etype, new, old, want):
    assert filter_event(etype, new, old, sel) == want


def test_selection_active_and_matches():
    assert not NONE.active and WEB.active and ON_N1.active
    assert NONE.matches(obj(None)) and not WEB.matches(obj(None))
