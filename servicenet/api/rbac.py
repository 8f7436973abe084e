"""RBAC v1 evaluation as pure data: request attributes, rule matching, bindings, escalation checks.

Nothing here does I/O. The API server shell (``servicenet.apiserver.authz``) feeds the stored
Roles, ClusterRoles and bindings into :class:`RbacIndex` and asks it questions::

    idx = RbacIndex.build(roles, cluster_roles, role_bindings, cluster_role_bindings)
    ok = idx.allows(User("jane", ("team",)), attributes_of("GET", "/api/v1/namespaces/a/pods", {}))

Semantics follow upstream's ``evaluation_helpers.go``: an allow-only union, ``*`` wildcards,
``resourceNames`` never matching create or unnamed list/watch, and ``nonResourceURLs`` with a
trailing ``*`` as a prefix.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from servicenet.api.wire import Obj
from servicenet.api.wire import meta as meta_of

MASTERS = "system:masters"
AUTHENTICATED = "system:authenticated"
UNAUTHENTICATED = "system:unauthenticated"
ANONYMOUS = "system:anonymous"
SA_PREFIX = "system:serviceaccount:"


@dataclass(frozen=True, slots=True)
class User:
    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def info(self) -> Obj:
        """The ``UserInfo`` object the review APIs return."""
        d: Obj = {"username": self.name, "groups": list(self.groups)}
        if self.uid:
            d["uid"] = self.uid
        if self.extra:
            d["extra"] = {k: list(v) for k, v in self.extra}
        return d


def service_account_user(namespace: str, name: str, uid: str = "",
                         extra: tuple[tuple[str, tuple[str, ...]], ...] = ()) -> User:
    return User(f"{SA_PREFIX}{namespace}:{name}",
                ("system:serviceaccounts", f"system:serviceaccounts:{namespace}", AUTHENTICATED), uid, extra)


def split_sa(username: str) -> tuple[str, str] | None:
    """``system:serviceaccount:ns:name`` -> (ns, name)."""
    if not username.startswith(SA_PREFIX):
        return None
    ns, _, name = username[len(SA_PREFIX):].partition(":")
    return (ns, name) if ns and name and ":" not in name else None


@dataclass(frozen=True, slots=True)
class Attributes:
    """What a request asks to do (upstream ``authorizer.Attributes``)."""

    verb: str
    resource_request: bool
    path: str = ""
    namespace: str = ""
    api_group: str = ""
    api_version: str = ""
    resource: str = ""
    subresource: str = ""
    name: str = ""

    @property
    def full_resource(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete", "GET": "get", "HEAD": "get"}


def attributes_of(method: str, path: str, query: Mapping[str, str]) -> Attributes:
    """Parse a request like upstream's ``RequestInfoFactory``."""
    verb = _VERBS.get(method.upper(), method.lower())
    parts = [p for p in path.split("/") if p]
    if not parts or parts[0] not in ("api", "apis"):
        return Attributes(verb=verb, resource_request=False, path=path)
    if parts[0] == "api":
        if len(parts) < 3:
            return Attributes(verb=verb, resource_request=False, path=path)
        group, version, rest = "", parts[1], parts[2:]
    else:
        if len(parts) < 4:
            return Attributes(verb=verb, resource_request=False, path=path)
        group, version, rest = parts[1], parts[2], parts[3:]
    watch_prefix = False
    if rest and rest[0] == "watch":
        watch_prefix, rest = True, rest[1:]
    ns = ""
    if len(rest) >= 2 and rest[0] == "namespaces":
        if len(rest) >= 3:
            ns, rest = rest[1], rest[2:]
        else:  # /namespaces/<name>: the namespace object itself
            ns = rest[1]
    resource = rest[0] if rest else ""
    name = rest[1] if len(rest) > 1 else ""
    sub = rest[2] if len(rest) > 2 else ""
    if watch_prefix:
        verb = "watch"
    elif verb == "get" and not name:
        verb = "watch" if query.get("watch") in ("1", "true", "True") else "list"
    elif verb == "delete" and not name:
        verb = "deletecollection"
    if verb in ("list", "watch", "deletecollection") and not name:
        for term in (query.get("fieldSelector") or "").split(","):
            key, _, val = term.partition("=")
            if key.strip() == "metadata.name" and val and not val.startswith("="):
                name = val.strip()
    return Attributes(verb=verb, resource_request=True, path=path, namespace=ns, api_group=group,
                      api_version=version, resource=resource, subresource=sub, name=name)


# ---------------------------------------------------------------- rule matching

def _has(values: Iterable[str], want: str) -> bool:
    for v in values:
        if v == "*" or v == want:
            return True
    return False


def _resource_matches(rule: Obj, attrs: Attributes) -> bool:
    combined = attrs.full_resource
    for r in rule.get("resources") or ():
        if r == "*" or r == combined:
            return True
        if attrs.subresource and r == "*/" + attrs.subresource:
            return True
    return False


def rule_allows(rule: Obj, attrs: Attributes) -> bool:
    if not _has(rule.get("verbs") or (), attrs.verb):
        return False
    if not attrs.resource_request:
        path = attrs.path
        for u in rule.get("nonResourceURLs") or ():
            if u == "*" or u == path or (u.endswith("*") and path.startswith(u[:-1])):
                return True
        return False
    if rule.get("nonResourceURLs") and not rule.get("resources"):
        return False
    if not _has(rule.get("apiGroups") or (), attrs.api_group):
        return False
    if not _resource_matches(rule, attrs):
        return False
    names = rule.get("resourceNames") or ()
    if not names:
        return True
    return bool(attrs.name) and attrs.name in names


def subject_matches(subject: Obj, user: User, namespace_of_binding: str) -> bool:
    kind = subject.get("kind")
    name = subject.get("name", "")
    if kind == "User":
        return user.name == name
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        ns = subject.get("namespace") or namespace_of_binding
        return user.name == f"{SA_PREFIX}{ns}:{name}"
    return False


# ---------------------------------------------------------------- index over stored objects

def _meta(o: Obj) -> Obj:
    return meta_of(o)


@dataclass
class RbacIndex:
    """Roles by (namespace, name), ClusterRoles by name, and every binding."""

    roles: dict[tuple[str, str], list[Obj]] = field(default_factory=dict)
    cluster_roles: dict[str, list[Obj]] = field(default_factory=dict)
    role_bindings: list[Obj] = field(default_factory=list)
    cluster_role_bindings: list[Obj] = field(default_factory=list)

    @classmethod
    def build(cls, roles: Iterable[Obj], cluster_roles: Iterable[Obj], role_bindings: Iterable[Obj],
              cluster_role_bindings: Iterable[Obj]) -> RbacIndex:
        return cls(roles={(_meta(r).get("namespace", ""), _meta(r).get("name", "")): list(r.get("rules") or [])
                          for r in roles},
                   cluster_roles={_meta(r).get("name", ""): list(r.get("rules") or []) for r in cluster_roles},
                   role_bindings=list(role_bindings), cluster_role_bindings=list(cluster_role_bindings))

    def _role_rules(self, ref: Obj, namespace: str) -> list[Obj]:
        if ref.get("kind") == "ClusterRole":
            return self.cluster_roles.get(ref.get("name", ""), [])
        if ref.get("kind") == "Role":
            return self.roles.get((namespace, ref.get("name", "")), [])
        return []

    def visit(self, user: User, namespace: str) -> Iterable[tuple[str, Obj]]:
        """(binding description, rule) for every rule ``user`` holds in ``namespace`` ("" = cluster scope)."""
        for b in self.cluster_role_bindings:
            if any(subject_matches(s, user, "") for s in b.get("subjects") or ()):
                desc = f'ClusterRoleBinding "{_meta(b).get("name")}" of ClusterRole ' \
                       f'"{(b.get("roleRef") or {}).get("name")}"'
                for r in self._role_rules(b.get("roleRef") or {}, ""):
                    yield desc, r
        if not namespace:
            return
        for b in self.role_bindings:
            bns = _meta(b).get("namespace", "")
            if bns != namespace:
                continue
            if any(subject_matches(s, user, bns) for s in b.get("subjects") or ()):
                ref = b.get("roleRef") or {}
                desc = f'RoleBinding "{_meta(b).get("name")}/{bns}" of {ref.get("kind")} "{ref.get("name")}"'
                for r in self._role_rules(ref, bns):
                    yield desc, r

    def authorize(self, user: User, attrs: Attributes) -> tuple[bool, str]:
        """(allowed, reason); the reason names the granting binding, as upstream's RBAC authorizer."""
        if MASTERS in user.groups:
            return True, ""
        for desc, rule in self.visit(user, attrs.namespace if attrs.resource_request else ""):
            if rule_allows(rule, attrs):
                return True, f"RBAC: allowed by {desc}"
        return False, ""

    def rules_for(self, user: User, namespace: str) -> list[Obj]:
        if MASTERS in user.groups:
            return [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]},
                    {"verbs": ["*"], "nonResourceURLs": ["*"]}]
        return [r for _, r in self.visit(user, namespace)]


# ---------------------------------------------------------------- escalation

def _atoms(rule: Obj) -> Iterable[Attributes | tuple[str, str]]:
    names = rule.get("resourceNames") or [""]
    for verb in rule.get("verbs") or ():
        for url in rule.get("nonResourceURLs") or ():
            yield ("url", f"{verb} {url}")
        for g in rule.get("apiGroups") or ():
            for res in rule.get("resources") or ():
                resource, _, sub = res.partition("/")
                for n in names:
                    yield Attributes(verb=verb, resource_request=True, api_group=g, resource=resource,
                                     subresource=sub, name=n)


def _covers(owner: Obj, atom: Attributes | tuple[str, str]) -> bool:
    """Does ``owner`` grant ``atom`` (a piece of a requested rule, wildcards compared literally)?"""
    verbs = owner.get("verbs") or ()
    if isinstance(atom, tuple):
        verb, _, url = atom[1].partition(" ")
        if not _has(verbs, verb):
            return False
        for u in owner.get("nonResourceURLs") or ():
            if u == "*" or u == url or (u.endswith("*") and url.startswith(u[:-1])):
                return True
        return False
    if not _has(verbs, atom.verb) or not _has(owner.get("apiGroups") or (), atom.api_group):
        return False
    if not _resource_matches(owner, atom):
        return False
    names = owner.get("resourceNames") or ()
    return not names or (bool(atom.name) and atom.name in names)


def uncovered(owner_rules: list[Obj], wanted: list[Obj]) -> list[Obj]:
    """The requested rules (broken into single verb/group/resource pieces) ``owner_rules`` do not grant."""
    missing: list[Obj] = []
    for rule in wanted:
        for atom in _atoms(rule):
            if any(_covers(o, atom) for o in owner_rules):
                continue
            if isinstance(atom, tuple):
                verb, _, url = atom[1].partition(" ")
                missing.append({"nonResourceURLs": [url], "verbs": [verb]})
            else:
                piece: Obj = {"apiGroups": [atom.api_group], "resources": [atom.full_resource], "verbs": [atom.verb]}
                if atom.name:
                    piece["resourceNames"] = [atom.name]
                missing.append(piece)
    return missing


def _go_list(v: list[str]) -> str:
    return "[" + " ".join(f'"{x}"' for x in v) + "]"


def escalation_message(user: User, missing: list[Obj]) -> str:
    groups = ",".join(f'"{g}"' for g in user.groups)
    lines = []
    for m in missing:
        if "nonResourceURLs" in m:
            lines.append(f"{{NonResourceURLs:{_go_list(m['nonResourceURLs'])}, Verbs:{_go_list(m['verbs'])}}}")
        else:
            s = f"{{APIGroups:{_go_list(m['apiGroups'])}, Resources:{_go_list(m['resources'])}"
            if m.get("resourceNames"):
                s += f", ResourceNames:{_go_list(m['resourceNames'])}"
            lines.append(s + f", Verbs:{_go_list(m['verbs'])}}}")
    return (f'user "{user.name}" (groups=[{groups}]) is attempting to grant RBAC permissions not currently held:\n'
            + "\n".join(lines))


# ---------------------------------------------------------------- aggregation

def _selector_matches(sel: Obj, labels: Mapping[str, str]) -> bool:
    for k, v in (sel.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in sel.get("matchExpressions") or ():
        key, op, vals = e.get("key", ""), e.get("operator", ""), e.get("values") or []
        if op == "In" and labels.get(key) not in vals:
            return False
        if op == "NotIn" and key in labels and labels[key] in vals:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def aggregated_rules(role: Obj, cluster_roles: Iterable[Obj]) -> list[Obj] | None:
    """The union of the rules of every ClusterRole ``role``'s aggregationRule selects (None: not aggregated)."""
    agg = role.get("aggregationRule")
    if not agg:
        return None
    selectors = agg.get("clusterRoleSelectors") or []
    out: list[Obj] = []
    me = _meta(role).get("name")
    for cr in sorted(cluster_roles, key=lambda o: _meta(o).get("name", "")):
        if _meta(cr).get("name") == me:
            continue
        labels = _meta(cr).get("labels") or {}
        if any(_selector_matches(s, labels) for s in selectors):
            for r in cr.get("rules") or ():
                if r not in out:
                    out.append(r)
    return out


# ---------------------------------------------------------------- messages

def forbidden_message(user: User, attrs: Attributes) -> tuple[str, str, str, str]:
    """(message, qualified resource, group, name) for a 403, worded as upstream's."""
    if not attrs.resource_request:
        return f'forbidden: User "{user.name}" cannot {attrs.verb} path "{attrs.path}"', "", "", ""
    res = attrs.full_resource
    why = f'User "{user.name}" cannot {attrs.verb} resource "{res}" in API group "{attrs.api_group}"'
    why += f' in the namespace "{attrs.namespace}"' if attrs.namespace else " at the cluster scope"
    qualified = f"{attrs.resource}.{attrs.api_group}" if attrs.api_group else attrs.resource
    head = f'{qualified} "{attrs.name}" is forbidden' if attrs.name else f"{qualified} is forbidden"
    return f"{head}: {why}", attrs.resource, attrs.api_group, attrs.name
