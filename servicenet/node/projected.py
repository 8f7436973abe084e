"""Projected volumes (``serviceAccountToken``, ``configMap``, ``secret``, ``downwardAPI`` sources),
written the way the kubelet's atomic writer does: a timestamped directory, a ``..data`` symlink
swapped atomically, and per-file symlinks through it. The ServiceAccount token is refreshed once
80 % of its lifetime has passed (or after 24 h), so a reader always finds a valid token.
"""

from __future__ import annotations

import base64
import os
import shutil
import time
from collections.abc import Awaitable, Callable

from servicenet.api.wire import Obj
from servicenet.api.wire import meta as meta_of

TokenFn = Callable[[str, str, Obj, list[str], int], Awaitable[tuple[str, float]]]
FetchFn = Callable[[str, str, str], Awaitable[Obj | None]]


def refresh_at(issued: float, expires: float) -> float:
    """When the kubelet refreshes a projected token: at 80 % of its TTL, at the latest after 24 h."""
    ttl = max(expires - issued, 0.0)
    return issued + min(ttl * 0.8, 24 * 3600.0)


def _field(pod: Obj, path: str) -> str:
    md = meta_of(pod)
    simple = {"metadata.name": md.get("name", ""), "metadata.namespace": md.get("namespace", ""),
              "metadata.uid": md.get("uid", ""), "spec.nodeName": (pod.get("spec") or {}).get("nodeName", ""),
              "spec.serviceAccountName": (pod.get("spec") or {}).get("serviceAccountName", "")}
    if path in simple:
        return str(simple[path])
    for prefix, src in (("metadata.labels", md.get("labels") or {}), ("metadata.annotations",
                                                                      md.get("annotations") or {})):
        if path == prefix:
            return "\n".join(f'{k}="{v}"' for k, v in sorted(src.items()))
        if path.startswith(prefix + "['") and path.endswith("']"):
            return str(src.get(path[len(prefix) + 2:-2], ""))
    return ""


async def collect(pod: Obj, vol: Obj, fetch: FetchFn, token: TokenFn | None) -> tuple[dict[str, bytes], float]:
    """(relative path -> content, time the content must be refreshed or 0) for a projected volume."""
    ns = meta_of(pod).get("namespace") or "default"
    files: dict[str, bytes] = {}
    refresh = 0.0
    for src in (vol.get("projected") or {}).get("sources") or ():
        if "serviceAccountToken" in src:
            if token is None:
                continue
            s = src["serviceAccountToken"]
            aud = [s["audience"]] if s.get("audience") else []
            issued = time.time()
            tok, exp = await token(ns, (pod.get("spec") or {}).get("serviceAccountName") or "default", pod, aud,
                                   int(s.get("expirationSeconds") or 3600))
            files[s.get("path") or "token"] = tok.encode()
            at = refresh_at(issued, exp)
            refresh = at if not refresh else min(refresh, at)
        for kind, key in (("configMap", "configmaps"), ("secret", "secrets")):
            if kind not in src:
                continue
            ref = src[kind]
            obj = await fetch(key, ns, ref.get("name", ""))
            if obj is None:
                if ref.get("optional"):
                    continue
                raise FileNotFoundError(f'{kind} "{ref.get("name", "")}" not found')
            data = {k: (base64.b64decode(v) if key == "secrets" else v.encode())
                    for k, v in (obj.get("data") or {}).items()}
            data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
            items = ref.get("items")
            for k, rel in ([(i["key"], i["path"]) for i in items] if items else [(k, k) for k in data]):
                if k in data:
                    files[rel] = data[k]
        if "downwardAPI" in src:
            for item in src["downwardAPI"].get("items") or ():
                fr = item.get("fieldRef") or {}
                if fr.get("fieldPath"):
                    files[item["path"]] = _field(pod, fr["fieldPath"]).encode()
    return files, refresh


def token_paths(vol: Obj) -> set[str]:
    """The relative paths of a projected volume's ServiceAccount tokens."""
    return {(s["serviceAccountToken"].get("path") or "token") for s in (vol.get("projected") or {}).get("sources")
            or () if "serviceAccountToken" in s}


def write_atomic(target_dir: str, files: dict[str, bytes], mode: int = 0o644,
                 private: tuple[set[str], int, int] | None = None) -> None:
    """Publish ``files`` in ``target_dir`` through a ``..data`` symlink swapped in one rename.

    ``private`` = (paths, uid, gid): those files are 0600 and owned by the container's user (the
    kubelet does so for a token when every container runs as the same user)."""
    os.makedirs(target_dir, exist_ok=True)
    stamp = f"..{time.strftime('%Y_%m_%d_%H_%M_%S')}.{time.time_ns() % 1_000_000_000}"
    ts_dir = os.path.join(target_dir, stamp)
    os.makedirs(ts_dir)
    os.chmod(ts_dir, 0o755)
    for rel, data in files.items():
        p = os.path.join(ts_dir, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        if private is not None and rel in private[0]:
            os.chown(p, private[1], private[2])
            os.chmod(p, 0o600)
        else:
            os.chmod(p, mode)
    data_link = os.path.join(target_dir, "..data")
    old = os.readlink(data_link) if os.path.islink(data_link) else None
    tmp = os.path.join(target_dir, "..data_tmp")
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(stamp, tmp)
    os.replace(tmp, data_link)
    for rel in files:
        top = rel.split("/", 1)[0]
        link = os.path.join(target_dir, top)
        if not os.path.lexists(link):
            os.symlink(os.path.join("..data", top), link)
    if old and old != stamp:
        shutil.rmtree(os.path.join(target_dir, old), ignore_errors=True)
