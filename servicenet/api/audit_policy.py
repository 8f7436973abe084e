"""Audit policy evaluation (``audit.k8s.io/v1`` Policy), pure: the first matching rule gives the
level (``None`` < ``Metadata`` < ``Request`` < ``RequestResponse``) and the omitted stages; no
matching rule means ``None``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from servicenet.api.rbac import Attributes, User

LEVELS = ("None", "Metadata", "Request", "RequestResponse")
STAGES = ("RequestReceived", "ResponseStarted", "ResponseComplete", "Panic")


class PolicyError(ValueError):
    pass


@dataclass(frozen=True)
class Decision:
    level: str
    omit_stages: frozenset[str]

    def at_least(self, level: str) -> bool:
        return LEVELS.index(self.level) >= LEVELS.index(level)


NONE = Decision("None", frozenset())


def _path_matches(patterns: list[str], path: str) -> bool:
    return any(p == path or (p.endswith("*") and path.startswith(p[:-1])) for p in patterns)


def _rule_matches(rule: dict[str, Any], user: User, attrs: Attributes) -> bool:
    if rule.get("users") and user.name not in rule["users"]:
        return False
    if rule.get("userGroups") and not set(rule["userGroups"]) & set(user.groups):
        return False
    if rule.get("verbs") and attrs.verb not in rule["verbs"]:
        return False
    if not attrs.resource_request:
        if rule.get("resources") or rule.get("namespaces"):
            return False
        return not rule.get("nonResourceURLs") or _path_matches(rule["nonResourceURLs"], attrs.path)
    if rule.get("nonResourceURLs"):
        return False
    if rule.get("namespaces") is not None and rule.get("namespaces") != [] \
            and attrs.namespace not in rule["namespaces"]:
        return False
    res = rule.get("resources")
    if not res:
        return True
    for gr in res:
        if gr.get("group", "") not in ("*", attrs.api_group):
            continue
        names = gr.get("resources") or []
        full = attrs.full_resource
        if names and not any(n in ("*", full) or (n == f"{attrs.resource}/*" and attrs.subresource)
                             or (n == f"*/{attrs.subresource}" and attrs.subresource) for n in names):
            continue
        if gr.get("resourceNames") and attrs.name not in gr["resourceNames"]:
            continue
        return True
    return False


class Policy:
    def __init__(self, doc: dict[str, Any]) -> None:
        if doc.get("kind") != "Policy" or doc.get("apiVersion") != "audit.k8s.io/v1":
            raise PolicyError("expected kind Policy, apiVersion audit.k8s.io/v1")
        self.rules = list(doc.get("rules") or [])
        for i, r in enumerate(self.rules):
            if r.get("level") not in LEVELS:
                raise PolicyError(f"rules[{i}].level: must be one of {', '.join(LEVELS)}")
            for s in r.get("omitStages") or []:
                if s not in STAGES:
                    raise PolicyError(f"rules[{i}].omitStages: unknown stage {s!r}")
        self.omit = frozenset(doc.get("omitStages") or [])

    def decide(self, user: User, attrs: Attributes) -> Decision:
        for r in self.rules:
            if _rule_matches(r, user, attrs):
                return Decision(r["level"], self.omit | frozenset(r.get("omitStages") or []))
        return NONE
