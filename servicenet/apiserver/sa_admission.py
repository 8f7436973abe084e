"""ServiceAccounts for pods: the admission step that mounts a token volume into every pod, and the
namespace controller that keeps a ``default`` ServiceAccount and the ``kube-root-ca.crt`` ConfigMap
in every namespace (upstream's ServiceAccount admission, serviceaccounts controller and root-CA
publisher).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import string
from typing import Any

from servicenet.api import errors, spec_cache
from servicenet.api.resources import by_plural
from servicenet.api.wire import Obj
from servicenet.api.wire import meta as meta_of
from servicenet.apiserver.registry import WriteOptions
from servicenet.apiserver.sa_tokens import PROJECTED_EXPIRATION
from servicenet.common import log
from servicenet.common.component import cancel_all

_log = log.get("apiserver.serviceaccounts")

MOUNT_PATH = "/var/run/secrets/kubernetes.io/serviceaccount"
ROOT_CA = "kube-root-ca.crt"
_ALNUM = string.ascii_lowercase + string.digits
# the one object name each watched prefix is kept for (a namespace's default ServiceAccount, its root CA)
_KEPT = {"/registry/core/serviceaccounts/": "default", "/registry/core/configmaps/": ROOT_CA}


_SUFFIXES: list[str] = []


def _suffix() -> str:
    """Five characters drawn uniformly from ``_ALNUM`` (as ``random.choices(_ALNUM, k=5)``), drawn
    1,024 suffixes at a time."""
    if not _SUFFIXES:
        chars = "".join(random.choices(_ALNUM, k=5 * 1024))
        _SUFFIXES.extend(chars[i:i + 5] for i in range(0, len(chars), 5))
    return _SUFFIXES.pop()


def token_volume(name: str) -> Obj:
    return {"name": name, "projected": {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": PROJECTED_EXPIRATION, "path": "token"}},
        {"configMap": {"name": ROOT_CA, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace",
                                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
    ]}}


def mount_token(pod: Obj, sa: Obj | None) -> None:
    """Set ``serviceAccountName`` and add the projected token volume unless automount is off (pure)."""
    mount_token_spec(pod.setdefault("spec", {}), _automount(sa), "kube-api-access-" + _suffix())


# the token volume's name in a kept admission result (spec_cache.admitted_spec): as long as a real
# one, and never one (a real suffix is lower-case letters and digits)
PLACEHOLDER = "kube-api-access-@@@@@"


def _automount(sa: Obj | None) -> bool | None:
    return sa.get("automountServiceAccountToken") if sa is not None else None


def mount_token_spec(spec: Obj, sa_automount: Any, vol: str) -> list[tuple[Any, ...]]:
    """:func:`mount_token` on a spec, with the volume's name given; returns the paths (within the
    spec) where that name was written. Reads only the spec and ``sa_automount`` (pure)."""
    name = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
    spec["serviceAccountName"] = name
    spec["serviceAccount"] = name
    auto = spec.get("automountServiceAccountToken")
    if auto is None:
        auto = sa_automount
    if auto is False:
        return []
    paths: list[tuple[Any, ...]] = []
    for field in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(field) or ()):
            if any((m.get("mountPath") or "").rstrip("/") == MOUNT_PATH for m in c.get("volumeMounts") or ()):
                continue
            mounts = c.setdefault("volumeMounts", [])
            mounts.append({"name": vol, "readOnly": True, "mountPath": MOUNT_PATH})
            paths.append((field, i, "volumeMounts", len(mounts) - 1, "name"))
    if paths:
        vols = spec.setdefault("volumes", [])
        vols.append(token_volume(vol))
        paths.append(("volumes", len(vols) - 1, "name"))
    return paths


class ServiceAccounts:
    def __init__(self, server: Any) -> None:
        self.server = server
        self._task: asyncio.Task[None] | None = None
        self._task2: asyncio.Task[None] | None = None
        self._task3: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.server.registry.before_create["pods"] = self.admit_pod
        recs, _, _ = self.server.store.list("/registry/core/namespaces/")
        for rec in recs:
            await self.ensure(rec.obj())
        self._task = asyncio.create_task(self._watch("/registry/core/namespaces/"), name="serviceaccounts-controller")
        self._task2 = asyncio.create_task(self._watch("/registry/core/serviceaccounts/"), name="default-sa-keeper")
        self._task3 = asyncio.create_task(self._watch("/registry/core/configmaps/"), name="root-ca-publisher")

    async def stop(self) -> None:
        await cancel_all((self._task, self._task2, self._task3))

    async def admit_pod(self, info: Any, pod: Obj, old: Obj | None) -> None:
        ns = pod["metadata"].get("namespace") or "default"
        spec = pod.get("spec") or {}
        name = spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"
        rec = self.server.store.get(f"/registry/core/serviceaccounts/{ns}/{name}")
        if rec is None and name == "default":  # the controller has not caught up with a new namespace
            await self._create_default_sa(ns)
            rec = self.server.store.get(f"/registry/core/serviceaccounts/{ns}/{name}")
        if rec is None:
            raise errors.forbidden_error(
                f'pods "{pod["metadata"].get("name", "")}" is forbidden: error looking up service account '
                f'{ns}/{name}: serviceaccount "{name}" not found', "pods", "", pod["metadata"].get("name", ""))
        # only the account's automountServiceAccountToken is read: most accounts do not set it
        auto = _automount(rec.obj()) if b'"automountServiceAccountToken"' in rec.value else None
        # upstream draws this suffix from a non-cryptographic generator too; secrets.choice asked the OS
        # for entropy five times per pod (each a GIL release under load)
        spec_cache.admitted_spec(pod, ("serviceaccount", auto), lambda spec, vol: mount_token_spec(spec, auto, vol),
                                 "kube-api-access-" + _suffix(), PLACEHOLDER)
        return None

    async def _create_default_sa(self, ns: str) -> None:
        info = by_plural("", "v1", "serviceaccounts")
        assert info is not None
        with contextlib.suppress(errors.ApiStatusError):
            await self.server.registry.create(info, ns, {"metadata": {"name": "default"}}, WriteOptions())

    async def ensure(self, ns_obj: Obj) -> None:
        md = meta_of(ns_obj)
        ns = md.get("name", "")
        if md.get("deletionTimestamp") or not ns:
            return
        store = self.server.store
        if store.get(f"/registry/core/serviceaccounts/{ns}/default") is None:
            await self._create_default_sa(ns)
        creds = self.server.creds
        if creds is None:
            return
        ca = creds.ca_pem.decode()
        cm_info = by_plural("", "v1", "configmaps")
        assert cm_info is not None
        rec = store.get(f"/registry/core/configmaps/{ns}/{ROOT_CA}")
        body = {"metadata": {"name": ROOT_CA, "annotations": {
            "kubernetes.io/description": "Contains a CA bundle that can be used to verify the kube-apiserver "
                                         "when using internal endpoints such as the internal service IP or "
                                         "kubernetes.default.svc. No other usage is guaranteed across "
                                         "distributions of Kubernetes clusters."}},
                "data": {"ca.crt": ca}}
        with contextlib.suppress(errors.ApiStatusError):
            if rec is None:
                await self.server.registry.create(cm_info, ns, body, WriteOptions())
            elif (rec.obj().get("data") or {}).get("ca.crt") != ca:
                cur = rec.obj()
                cur["data"] = {"ca.crt": ca}
                await self.server.registry.update(cm_info, ns, ROOT_CA, cur, WriteOptions())

    async def _watch(self, prefix: str) -> None:
        """Namespaces: ensure their defaults. A deleted ``default`` ServiceAccount or root CA map
        (or an edited map): put it back, as upstream's controllers do."""
        store = self.server.store
        while True:
            try:
                w = store.watch(prefix, store.revision)
                kept = _KEPT.get(prefix)
                if kept is not None:
                    # one name matters under this prefix: the fan-out drops batches without it
                    # instead of waking this task for every ConfigMap or ServiceAccount change
                    w.set_sink(lambda evs, end="/" + kept: not any(e.record.key.endswith(end) for e in evs))
                async for ev in w:
                    key = ev.record.key
                    if prefix.endswith("/namespaces/"):
                        if ev.type != "DELETED":
                            await self.ensure(ev.record.obj())
                        continue
                    ns, _, name = key[len(prefix):].partition("/")
                    if (name, prefix) in (("default", "/registry/core/serviceaccounts/"),
                                          (ROOT_CA, "/registry/core/configmaps/")):
                        nrec = store.get(f"/registry/core/namespaces/{ns}")
                        if nrec is not None:
                            await self.ensure(nrec.obj())
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                _log.info("namespace watch restarted", error=str(exc))
                await asyncio.sleep(0.2)
