"""Deployment controller core: a Deployment and its ReplicaSets -> RS creates/scales/deletes + status.

RollingUpdate follows upstream's ``rolloutRolling``: scale the new ReplicaSet up within
``replicas + maxSurge``, then scale old ones down while keeping at least
``replicas - maxUnavailable`` available pods (counting *available* replicas as reported
by the ReplicaSet controller). Recreate scales everything old to zero, waits for the pods
to go, then scales the new one up.
"""

from __future__ import annotations

import copy
import json
import math
from datetime import datetime

from servicenet.api import wellknown as wk
from servicenet.api.views import meta as meta_of

from .actions import (
    Action,
    EventIntent,
    Obj,
    Result,
    annotations_of,
    controller_ref,
    fmt_time,
    meta,
    name_of,
    ns_of,
)

HASH_LABEL = wk.POD_TEMPLATE_HASH_LABEL
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
LAST_APPLIED = wk.LAST_APPLIED_ANNOTATION
_NOT_COPIED = {REVISION, REVISION_HISTORY, DESIRED_REPLICAS, MAX_REPLICAS, LAST_APPLIED}
ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


# ---------------------------------------------------------------------------------------------
# hashing and template comparison


def _strip_hash(template: Obj) -> Obj:
    t = copy.deepcopy(template or {})
    labels = meta_of(t).get("labels")
    if labels and HASH_LABEL in labels:
        del labels[HASH_LABEL]
    return t


def _prune(v: object) -> object:
    """Drop nulls and empty maps/lists: Go treats them like absent fields."""
    if isinstance(v, dict):
        out = {k: _prune(x) for k, x in v.items()}
        return {k: x for k, x in out.items() if x is not None and x != {} and x != []}
    if isinstance(v, list):
        return [_prune(x) for x in v]
    return v


def _canonical(template: Obj) -> bytes:
    return json.dumps(_prune(_strip_hash(template)), sort_keys=True, separators=(",", ":")).encode()


def fnv32a(data: bytes) -> int:
    h = 0x811C9DC5
    for b in data:
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h


def template_hash(template: Obj, collision_count: int | None = None) -> str:
    """Stable hash of a pod template, rendered like upstream ``ComputeHash`` (safe alphabet)."""
    data = _canonical(template)
    if collision_count:  # 0 and absent hash alike
        data += collision_count.to_bytes(4, "little")
    return "".join(ALPHABET[ord(c) % len(ALPHABET)] for c in str(fnv32a(data)))


def templates_equal(a: Obj, b: Obj) -> bool:
    return _canonical(a) == _canonical(b)


def revision_of(o: Obj) -> int:
    try:
        return int(annotations_of(o).get(REVISION, "0"))
    except ValueError:
        return 0


def _scaled(value: int | str | None, total: int, default: str, round_up: bool) -> int:
    v = default if value is None else value
    if isinstance(v, int):
        return v
    if v.endswith("%"):
        frac = int(v[:-1]) * total / 100
        return math.ceil(frac) if round_up else math.floor(frac)
    return int(v)


def resolve_fenceposts(deploy: Obj) -> tuple[int, int]:
    spec = deploy.get("spec") or {}
    ru = (spec.get("strategy") or {}).get("rollingUpdate") or {}
    replicas = int(spec.get("replicas", 1))
    surge = _scaled(ru.get("maxSurge"), replicas, "25%", True)
    unavailable = _scaled(ru.get("maxUnavailable"), replicas, "25%", False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def _replicas(rs: Obj) -> int:
    return int((rs.get("spec") or {}).get("replicas", 0))


def _st(rs: Obj, key: str) -> int:
    return int((rs.get("status") or {}).get(key, 0) or 0)


def _ctime(rs: Obj) -> tuple[str, str]:
    return (meta(rs).get("creationTimestamp") or "", name_of(rs))


# ---------------------------------------------------------------------------------------------
# the reconcile


class _Sync:
    def __init__(self, deploy: Obj, rss: list[Obj], now: datetime) -> None:
        self.d = deploy
        self.spec = deploy.get("spec") or {}
        self.want = int(self.spec.get("replicas", 1))
        self.now = now
        self.actions: list[Action] = []
        self.created_new = False
        tmpl = self.spec.get("template") or {}
        matching = sorted((rs for rs in rss if templates_equal(rs["spec"].get("template") or {}, tmpl)), key=_ctime)
        self.new: Obj | None = matching[0] if matching else None
        self.olds = sorted((rs for rs in rss if rs is not self.new), key=_ctime)
        # replicas as they will be after this sync's writes
        self.size: dict[str, int] = {name_of(rs): _replicas(rs) for rs in rss}

    def event(self, reason: str, msg: str) -> EventIntent:
        return EventIntent(reason, msg)

    # -- new ReplicaSet ------------------------------------------------------------------------
    def ensure_new(self, replicas: int) -> None:
        max_old = max((revision_of(rs) for rs in self.olds), default=0)
        new_rev = str(max_old + 1)
        surge, _ = resolve_fenceposts(self.d)
        ann_extra = {DESIRED_REPLICAS: str(self.want), MAX_REPLICAS: str(self.want + surge)}
        if self.new is not None:
            if revision_of(self.new) <= max_old:
                patch = {"metadata": {"annotations": {REVISION: new_rev}}}
                self.actions.append(Action("patch", "apps/v1", "replicasets", ns_of(self.d), name_of(self.new), patch))
                self.new = copy.deepcopy(self.new)
                self.new["metadata"].setdefault("annotations", {})[REVISION] = new_rev
            return
        tmpl = copy.deepcopy(self.spec.get("template") or {})
        h = template_hash(tmpl, (self.d.get("status") or {}).get("collisionCount"))
        tmpl.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = h
        sel = copy.deepcopy(self.spec.get("selector") or {})
        sel.setdefault("matchLabels", {})[HASH_LABEL] = h
        ann = {k: v for k, v in annotations_of(self.d).items() if k not in _NOT_COPIED}
        ann.update(ann_extra)
        ann[REVISION] = new_rev
        name = f"{name_of(self.d)}-{h}"
        rs: Obj = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": name,
                "namespace": ns_of(self.d),
                "labels": dict(tmpl["metadata"]["labels"]),
                "annotations": ann,
                "ownerReferences": [controller_ref(self.d, "apps/v1", "Deployment")],
            },
            "spec": {
                "replicas": replicas,
                "minReadySeconds": int(self.spec.get("minReadySeconds") or 0),
                "selector": sel,
                "template": tmpl,
            },
        }
        ev = self.event("ScalingReplicaSet", f"Scaled up replica set {name} from 0 to {replicas}")
        self.actions.append(Action("create", "apps/v1", "replicasets", ns_of(self.d), name, rs, event=ev))
        self.new = rs
        self.size[name] = replicas
        self.created_new = True

    def scale(self, rs: Obj, to: int) -> None:
        frm = self.size[name_of(rs)]
        if frm == to:
            return
        surge, _ = resolve_fenceposts(self.d)
        patch = {
            "metadata": {"annotations": {DESIRED_REPLICAS: str(self.want), MAX_REPLICAS: str(self.want + surge)}},
            "spec": {"replicas": to},
        }
        word = "up" if to > frm else "down"
        ev = self.event("ScalingReplicaSet", f"Scaled {word} replica set {name_of(rs)} from {frm} to {to}")
        self.actions.append(Action("patch", "apps/v1", "replicasets", ns_of(rs), name_of(rs), patch, event=ev))
        self.size[name_of(rs)] = to

    # -- strategies ------------------------------------------------------------------------------
    def new_rs_target(self, current_new: int) -> int:
        surge, _ = resolve_fenceposts(self.d)
        if current_new >= self.want:
            return self.want
        total = sum(self.size.values())
        max_total = self.want + surge
        if total >= max_total:
            return current_new
        return current_new + min(max_total - total, self.want - current_new)

    def rolling(self) -> None:
        if self.new is None:
            self.size["__new__"] = 0
            target = self.new_rs_target(0)
            del self.size["__new__"]
            self.ensure_new(target)
        else:
            self.ensure_new(0)
            assert self.new is not None
            if self.new_rs_target(self.size[name_of(self.new)]) > self.size[name_of(self.new)]:
                self.scale(self.new, self.new_rs_target(self.size[name_of(self.new)]))
                return
            if self.size[name_of(self.new)] > self.want:
                self.scale(self.new, self.want)
        self.scale_down_olds()

    def scale_down_olds(self) -> None:
        assert self.new is not None
        old_count = sum(self.size[name_of(rs)] for rs in self.olds)
        if old_count == 0:
            return
        _, max_unavail = resolve_fenceposts(self.d)
        min_available = self.want - max_unavail
        all_count = sum(self.size.values())
        new_unavailable = self.size[name_of(self.new)] - _st(self.new, "availableReplicas")
        max_down = all_count - min_available - new_unavailable
        if max_down <= 0:
            return
        # first remove unhealthy old replicas (they do not count towards availability)
        cleaned = 0
        for rs in self.olds:
            if cleaned >= max_down:
                break
            cur = self.size[name_of(rs)]
            unhealthy = cur - _st(rs, "availableReplicas")
            if cur == 0 or unhealthy <= 0:
                continue
            down = min(unhealthy, max_down - cleaned)
            self.scale(rs, cur - down)
            cleaned += down
        # then scale down available old replicas while staying above min_available
        available = sum(min(_st(rs, "availableReplicas"), self.size[name_of(rs)]) for rs in self.olds)
        available += _st(self.new, "availableReplicas")
        budget = min(available - min_available, max_down - cleaned)
        for rs in self.olds:
            if budget <= 0:
                break
            cur = self.size[name_of(rs)]
            if cur == 0:
                continue
            down = min(cur, budget)
            self.scale(rs, cur - down)
            budget -= down

    def recreate(self) -> None:
        for rs in self.olds:
            self.scale(rs, 0)
        if any(_st(rs, "replicas") > 0 or self.size[name_of(rs)] > 0 for rs in self.olds):
            if self.new is None:
                self.ensure_new(0)
            return
        if self.new is None:
            self.ensure_new(self.want)
        else:
            self.ensure_new(0)
            self.scale(self.new, self.want)

    def cleanup(self) -> None:
        limit = int(self.spec.get("revisionHistoryLimit", 10))
        dead = [
            rs
            for rs in self.olds
            if self.size[name_of(rs)] == 0 and _st(rs, "replicas") == 0 and not meta(rs).get("deletionTimestamp")
        ]
        if len(dead) <= limit:
            return
        dead.sort(key=lambda rs: (revision_of(rs), _ctime(rs)))
        for rs in dead[: len(dead) - limit]:
            self.actions.append(Action("delete", "apps/v1", "replicasets", ns_of(rs), name_of(rs)))

    # -- status ----------------------------------------------------------------------------------
    def status(self, rss: list[Obj]) -> Obj:
        old_status = self.d.get("status") or {}
        new_name = name_of(self.new) if self.new is not None else None
        all_rs = list(rss)
        replicas = sum(_st(rs, "replicas") for rs in all_rs)
        available = sum(_st(rs, "availableReplicas") for rs in all_rs)
        updated = sum(_st(rs, "replicas") for rs in all_rs if name_of(rs) == new_name)
        st: Obj = {
            "observedGeneration": meta(self.d).get("generation", 0),
            "replicas": replicas,
            "updatedReplicas": updated,
            "readyReplicas": sum(_st(rs, "readyReplicas") for rs in all_rs),
            "availableReplicas": available,
            "unavailableReplicas": max(self.want - available, 0),
        }
        if "collisionCount" in old_status:
            st["collisionCount"] = old_status["collisionCount"]
        _, max_unavail = resolve_fenceposts(self.d)
        conds = {c["type"]: c for c in old_status.get("conditions") or []}
        if available >= self.want - max_unavail:
            avail = ("True", "MinimumReplicasAvailable", "Deployment has minimum availability.")
        else:
            avail = ("False", "MinimumReplicasUnavailable", "Deployment does not have minimum availability.")
        complete = updated == self.want and replicas == self.want and available == self.want
        if self.spec.get("paused"):
            prog = ("Unknown", "DeploymentPaused", "Deployment is paused")
        elif self.created_new:
            prog = ("True", "NewReplicaSetCreated", f'Created new replica set "{new_name}"')
        elif complete and new_name:
            prog = ("True", "NewReplicaSetAvailable", f'ReplicaSet "{new_name}" has successfully progressed.')
        elif new_name:
            prog = ("True", "ReplicaSetUpdated", f'ReplicaSet "{new_name}" is progressing.')
        else:
            prog = None
        out = [self._cond(conds.get("Available"), "Available", avail)]
        if prog is not None:
            out.append(self._cond(conds.get("Progressing"), "Progressing", prog))
        st["conditions"] = out
        return st

    def _cond(self, old: Obj | None, ctype: str, val: tuple[str, str, str]) -> Obj:
        status, reason, message = val
        now = fmt_time(self.now)
        if old and (old.get("status"), old.get("reason"), old.get("message")) == val:
            return old
        return {
            "type": ctype,
            "status": status,
            "lastUpdateTime": now,
            "lastTransitionTime": old["lastTransitionTime"] if old and old.get("status") == status else now,
            "reason": reason,
            "message": message,
        }


def reconcile(deploy: Obj, rss: list[Obj], now: datetime) -> Result:
    """``rss`` are the ReplicaSets this Deployment controls."""
    if meta(deploy).get("deletionTimestamp"):
        return Result()
    s = _Sync(deploy, rss, now)
    spec = deploy.get("spec") or {}
    if not spec.get("paused"):
        if (spec.get("strategy") or {}).get("type") == "Recreate":
            s.recreate()
        else:
            s.rolling()
        if all(s.size[name_of(rs)] == 0 for rs in s.olds):
            s.cleanup()
    if s.new is not None and annotations_of(deploy).get(REVISION) != annotations_of(s.new).get(REVISION):
        patch = {"metadata": {"annotations": {REVISION: annotations_of(s.new)[REVISION]}}}
        s.actions.append(Action("patch", "apps/v1", "deployments", ns_of(deploy), name_of(deploy), patch))
    st = s.status(rss)
    if st != {k: (deploy.get("status") or {}).get(k) for k in st}:
        s.actions.append(Action("patch_status", "apps/v1", "deployments", ns_of(deploy), name_of(deploy), {"status": st}))
    return Result(actions=tuple(s.actions))
