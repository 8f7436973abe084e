"""Authorization shell: RBAC over the stored roles, the node restriction, escalation checks, and the
aggregation controller.

The chain is upstream's: ``system:masters`` always passes, then the node restriction (a node's
identity reads only the Secrets and ConfigMaps its own pods use), then RBAC. The current user of a
request is carried in :data:`CURRENT_USER` so that registry hooks (escalation prevention) see it.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from typing import Any

from servicenet.api import errors
from servicenet.api import rbac_policy as policy
from servicenet.api.rbac import (
    MASTERS,
    Attributes,
    RbacIndex,
    User,
    aggregated_rules,
    escalation_message,
    uncovered,
)
from servicenet.api.resources import by_plural
from servicenet.api.wire import Obj
from servicenet.api.wire import meta as meta_of
from servicenet.apiserver.registry import WriteOptions
from servicenet.common import log

_log = log.get("apiserver.authz")

CURRENT_USER: contextvars.ContextVar[User | None] = contextvars.ContextVar("servicenet_user", default=None)

RBAC_PREFIX = "/registry/rbac.authorization.k8s.io/"
_KINDS = ("roles", "clusterroles", "rolebindings", "clusterrolebindings")


def _objs(store: Any, plural: str) -> list[Obj]:
    recs, _, _ = store.list(f"{RBAC_PREFIX}{plural}/")
    return [r.obj() for r in recs]


def pod_references(pod: Obj) -> set[tuple[str, str]]:
    """(kind, name) of every Secret and ConfigMap a pod uses (volumes, env, envFrom, pull secrets)."""
    out: set[tuple[str, str]] = set()
    spec = pod.get("spec") or {}
    for v in spec.get("volumes") or ():
        if v.get("secret"):
            out.add(("secrets", v["secret"].get("secretName", "")))
        if v.get("configMap"):
            out.add(("configmaps", v["configMap"].get("name", "")))
        for src in (v.get("projected") or {}).get("sources") or ():
            if src.get("secret"):
                out.add(("secrets", src["secret"].get("name", "")))
            if src.get("configMap"):
                out.add(("configmaps", src["configMap"].get("name", "")))
    for s in spec.get("imagePullSecrets") or ():
        out.add(("secrets", s.get("name", "")))
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        for e in c.get("envFrom") or ():
            if e.get("secretRef"):
                out.add(("secrets", e["secretRef"].get("name", "")))
            if e.get("configMapRef"):
                out.add(("configmaps", e["configMapRef"].get("name", "")))
        for e in c.get("env") or ():
            vf = e.get("valueFrom") or {}
            if vf.get("secretKeyRef"):
                out.add(("secrets", vf["secretKeyRef"].get("name", "")))
            if vf.get("configMapKeyRef"):
                out.add(("configmaps", vf["configMapKeyRef"].get("name", "")))
    return out


def node_name_of(user: User) -> str | None:
    if "system:nodes" in user.groups and user.name.startswith("system:node:"):
        return user.name[len("system:node:"):]
    return None


_DECISIONS_MAX = 4096


class Authorizer:
    def __init__(self, server: Any) -> None:
        self.server = server
        self._index: RbacIndex | None = None
        # decisions of the current index by (user, attributes): forgotten with it on any RBAC change
        self._decisions: dict[tuple[User, Attributes], tuple[bool, str]] = {}
        self._task: asyncio.Task[None] | None = None

    @property
    def store(self) -> Any:
        return self.server.store

    # -- lifecycle -----------------------------------------------------------------------------------
    async def start(self) -> None:
        await self.reconcile_bootstrap()
        await self.aggregate()
        self._task = asyncio.create_task(self._watch(), name="rbac-watch")
        reg = self.server.registry
        for plural in _KINDS:
            reg.before_create[plural] = self._check_escalation
            reg.before_update[plural] = self._check_escalation

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    async def reconcile_bootstrap(self) -> None:
        """Create the default roles and bindings; overwrite those still marked autoupdate."""
        reg = self.server.registry
        for plural, objs in (("clusterroles", policy.cluster_roles()),
                             ("clusterrolebindings", policy.cluster_role_bindings())):
            info = by_plural("rbac.authorization.k8s.io", "v1", plural)
            assert info is not None
            for obj in objs:
                name = obj["metadata"]["name"]
                rec = self.store.get(f"{RBAC_PREFIX}{plural}/{name}")
                if rec is None:
                    await reg.create(info, None, obj, WriteOptions())
                    continue
                cur = rec.obj()
                ann = meta_of(cur).get("annotations") or {}
                if ann.get("rbac.authorization.kubernetes.io/autoupdate") == "false":
                    continue
                want = {k: v for k, v in obj.items() if k not in ("metadata", "apiVersion", "kind")}
                if plural == "clusterroles" and obj.get("aggregationRule"):
                    want.pop("rules", None)
                if all(cur.get(k) == v for k, v in want.items()):
                    continue
                cur.update(want)
                await reg.update(info, None, name, cur, WriteOptions())

    async def aggregate(self) -> None:
        """The aggregation controller: aggregated ClusterRoles get the union of the selected roles' rules."""
        info = by_plural("rbac.authorization.k8s.io", "v1", "clusterroles")
        assert info is not None
        for _ in range(3):  # edit aggregates into admin: settle chains
            changed = False
            roles = _objs(self.store, "clusterroles")
            for role in roles:
                rules = aggregated_rules(role, roles)
                if rules is None or rules == (role.get("rules") or []):
                    continue
                role["rules"] = rules
                with contextlib.suppress(errors.ApiStatusError):
                    await self.server.registry.update(info, None, role["metadata"]["name"], role, WriteOptions())
                    changed = True
            if not changed:
                return

    async def _watch(self) -> None:
        while True:
            try:
                w = self.store.watch(RBAC_PREFIX, self.store.revision)
                self._index = None
                async for ev in w:
                    self._index = None
                    if "/clusterroles/" in ev.record.key:
                        await asyncio.sleep(0)
                        await self.aggregate()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a closed or overflowing watch: start again
                _log.info("rbac watch restarted", error=str(exc))
                await asyncio.sleep(0.2)

    # -- decisions -----------------------------------------------------------------------------------
    @property
    def index(self) -> RbacIndex:
        idx = self._index
        if idx is None:
            idx = self._index = RbacIndex.build(*(_objs(self.store, p) for p in _KINDS))
            self._decisions = {}
        return idx

    def authorize(self, user: User, attrs: Attributes) -> tuple[bool, str]:
        if MASTERS in user.groups:
            return True, ""
        node = node_name_of(user)
        if node is not None and attrs.resource_request and attrs.api_group == "" \
                and attrs.resource in ("secrets", "configmaps") and not attrs.subresource:
            return self._node_object(node, attrs)
        idx = self.index  # rebuilt, and the kept decisions forgotten, after any RBAC change
        key = (user, attrs)
        got = self._decisions.get(key)
        if got is None:
            got = idx.authorize(user, attrs)
            if len(self._decisions) >= _DECISIONS_MAX:
                self._decisions.clear()
            self._decisions[key] = got
        return got

    def _node_object(self, node: str, attrs: Attributes) -> tuple[bool, str]:
        """Node restriction: get of a Secret/ConfigMap referenced by a pod bound to this node."""
        if attrs.verb != "get" or not attrs.name:
            return False, "node restriction: nodes may only get individual secrets and configmaps"
        want = (attrs.resource, attrs.name)
        recs, _, _ = self.store.list(f"/registry/core/pods/{attrs.namespace}/")
        for rec in recs:
            if f'"nodeName":"{node}"'.encode() not in rec.value.replace(b" ", b""):
                continue
            pod = rec.obj()
            if (pod.get("spec") or {}).get("nodeName") == node and want in pod_references(pod):
                return True, f"node restriction: referenced by pod {pod['metadata']['name']}"
        return False, f'no relationship found between node "{node}" and this object'

    def rules_for(self, user: User, namespace: str) -> list[Obj]:
        return self.index.rules_for(user, namespace)

    # -- escalation prevention (registry hook) -------------------------------------------------------
    async def _check_escalation(self, info: Any, new: Obj, old: Obj | None) -> None:
        user = CURRENT_USER.get()
        if user is None or MASTERS in user.groups:
            return None
        ns = meta_of(new).get("namespace") or ""
        idx = self.index
        if info.plural in ("roles", "clusterroles"):
            if old is not None and (old.get("rules") or []) == (new.get("rules") or []):
                return None
            if idx.authorize(user, Attributes("escalate", True, namespace=ns, api_group=info.group,
                                              resource=info.plural, name=new["metadata"]["name"]))[0]:
                return None
            wanted = new.get("rules") or []
        else:
            ref = new.get("roleRef") or {}
            if old is not None and old.get("subjects") == new.get("subjects") and old.get("roleRef") == ref:
                return None
            res = "clusterroles" if ref.get("kind") == "ClusterRole" else "roles"
            if idx.authorize(user, Attributes("bind", True, namespace=ns, api_group=info.group, resource=res,
                                              name=ref.get("name", "")))[0]:
                return None
            wanted = idx.cluster_roles.get(ref.get("name", ""), []) if res == "clusterroles" \
                else idx.roles.get((ns, ref.get("name", "")), [])
        missing = uncovered(idx.rules_for(user, ns), wanted)
        if missing:
            raise errors.forbidden_error(
                f'{info.qualified_resource} "{new["metadata"]["name"]}" is forbidden: '
                + escalation_message(user, missing), info.plural, info.group, new["metadata"]["name"])
        return None
