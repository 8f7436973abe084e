"""Golden vectors from the Kubernetes Ingress documentation (path types, examples, multiple matches,
hostname wildcards): shared by the pure-core tests and the same cases run through HAProxy."""

from __future__ import annotations

# (rule paths as (pathType, path), request path, index of the rule that must win or None = default)
PATH_CASES: list[tuple[list[tuple[str, str]], str, int | None]] = [
    ([("Prefix", "/")], "/anything/at/all", 0),
    ([("Exact", "/foo")], "/foo", 0),
    ([("Exact", "/foo")], "/bar", None),
    ([("Exact", "/foo")], "/foo/", None),
    ([("Exact", "/foo/")], "/foo", None),
    ([("Prefix", "/foo")], "/foo", 0),
    ([("Prefix", "/foo")], "/foo/", 0),
    ([("Prefix", "/foo/")], "/foo", 0),
    ([("Prefix", "/foo/")], "/foo/", 0),
    ([("Prefix", "/aaa/bb")], "/aaa/bbb", None),
    ([("Prefix", "/aaa/bbb")], "/aaa/bbb", 0),
    ([("Prefix", "/aaa/bbb/")], "/aaa/bbb", 0),
    ([("Prefix", "/aaa/bbb")], "/aaa/bbb/", 0),
    ([("Prefix", "/aaa/bbb")], "/aaa/bbb/ccc", 0),
    ([("Prefix", "/aaa/bbb")], "/aaa/bbbxyz", None),
    ([("Prefix", "/"), ("Prefix", "/aaa")], "/aaa/ccc", 1),
    ([("Prefix", "/"), ("Prefix", "/aaa"), ("Prefix", "/aaa/bbb")], "/aaa/bbb", 2),
    ([("Prefix", "/"), ("Prefix", "/aaa"), ("Prefix", "/aaa/bbb")], "/ccc", 0),
    ([("Prefix", "/aaa")], "/ccc", None),
    ([("Prefix", "/foo"), ("Exact", "/foo")], "/foo", 1),
    ([("Exact", "/foo"), ("Prefix", "/foo")], "/foo", 0),
    ([("Exact", "/foo"), ("Prefix", "/foo")], "/foo/x", 1),
    ([("ImplementationSpecific", "/foo")], "/foo/bar", 0),
    ([("ImplementationSpecific", "/foo")], "/foobar", None),
    ([("Prefix", "/api"), ("Prefix", "/")], "/apix", 1),
    ([("Prefix", "/FOO")], "/foo", None),  # case-sensitive
]

# (rule hosts, request Host, index of the rule host that must win or None = no rule)
HOST_CASES: list[tuple[list[str], str, int | None]] = [
    (["foo.bar.com"], "foo.bar.com", 0),
    (["foo.bar.com"], "FOO.bar.com", 0),  # DNS names compare case-insensitively
    (["foo.bar.com"], "foo.bar.com:8080", 0),
    (["foo.bar.com"], "bar.com", None),
    (["*.foo.com"], "bar.foo.com", 0),
    (["*.foo.com"], "baz.bar.foo.com", None),
    (["*.foo.com"], "foo.com", None),
    (["*.foo.com", "bar.foo.com"], "bar.foo.com", 1),  # exact beats wildcard
    (["*.foo.com", ""], "baz.bar.foo.com", 1),  # no-host rule catches the rest
    (["foo.bar.com", ""], "other.com", 1),
    (["foo.bar.com"], "other.com", None),
]
