"""Container environment, computed the way the kubelet does it (pure, no I/O).

* :func:`service_link_env` — the docker-links style variables for a list of Services.
* :func:`services_for_pod` — which Services a pod sees (its namespace + ``default/kubernetes``).
* :func:`expand` — ``$(VAR)`` references: ``$$`` escapes, unknown references stay literal.
* :func:`container_env` — envFrom, env (literal, fieldRef, resourceFieldRef, configMap/secret
  key refs) and service links, in the kubelet's precedence order.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from servicenet.api.views import Obj
from servicenet.api.views import meta as meta_of

__all__ = [
    "EnvError",
    "EnvSources",
    "container_env",
    "expand",
    "expand_command",
    "parse_quantity",
    "service_link_env",
    "services_for_pod",
]



class EnvError(Exception):
    """The environment cannot be built (missing non-optional configMap/secret key, bad fieldPath).

    The kubelet reports it as the container waiting reason ``CreateContainerConfigError``.
    """


def _env_name(service_name: str) -> str:
    return service_name.upper().replace("-", "_").replace(".", "_")


def _has_cluster_ip(svc: Obj) -> bool:
    spec = svc.get("spec") or {}
    ip = spec.get("clusterIP") or ""
    return bool(ip) and ip != "None" and spec.get("type") != "ExternalName"


def service_link_env(services: list[Obj]) -> list[tuple[str, str]]:
    """Variables for each Service with a cluster IP, in the given Service order."""
    out: list[tuple[str, str]] = []
    for svc in services:
        if not _has_cluster_ip(svc):
            continue
        spec = svc["spec"]
        ports = spec.get("ports") or []
        if not ports:
            continue
        prefix = _env_name(svc["metadata"]["name"])
        ip = spec["clusterIP"]
        first = ports[0]
        out.append((f"{prefix}_SERVICE_HOST", ip))
        out.append((f"{prefix}_SERVICE_PORT", str(first["port"])))
        for p in ports:
            if p.get("name"):
                out.append((f"{prefix}_SERVICE_PORT_{_env_name(p['name'])}", str(p["port"])))
        proto0 = (first.get("protocol") or "TCP").lower()
        out.append((f"{prefix}_PORT", f"{proto0}://{_url_host(ip)}:{first['port']}"))
        for p in ports:
            proto = p.get("protocol") or "TCP"
            base = f"{prefix}_PORT_{p['port']}_{proto.upper()}"
            out.append((base, f"{proto.lower()}://{_url_host(ip)}:{p['port']}"))
            out.append((f"{base}_PROTO", proto.lower()))
            out.append((f"{base}_PORT", str(p["port"])))
            out.append((f"{base}_ADDR", ip))
    return out


def _url_host(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip


def services_for_pod(pod: Obj, services: list[Obj]) -> list[Obj]:
    """The Services whose links a pod receives, ordered: own namespace by name, then the master service.

    A Service of the pod's own namespace wins over ``default/kubernetes`` of the same name.
    ``enableServiceLinks: false`` keeps only the master service.
    """
    ns = pod["metadata"].get("namespace") or "default"
    links = (pod.get("spec") or {}).get("enableServiceLinks")
    links = True if links is None else bool(links)
    own: dict[str, Obj] = {}
    master: Obj | None = None
    for svc in services:
        meta = svc["metadata"]
        if not _has_cluster_ip(svc):
            continue
        if meta.get("namespace") == "default" and meta["name"] == "kubernetes":
            master = svc
            continue
        if links and meta.get("namespace") == ns:
            own[meta["name"]] = svc
    result = [own[n] for n in sorted(own)]
    if master is not None and "kubernetes" not in own:
        result.append(master)
    return result


def expand(value: str, lookup: Callable[[str], str | None]) -> str:
    """Expand ``$(NAME)`` references; ``$$`` yields ``$``; unresolvable references stay as written."""
    out: list[str] = []
    i, n = 0, len(value)
    while i < n:
        c = value[i]
        if c != "$" or i + 1 >= n:
            out.append(c)
            i += 1
            continue
        nxt = value[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
        elif nxt == "(":
            close = value.find(")", i + 2)
            if close < 0:  # unterminated: keep the text as is
                out.append("$(")
                i += 2
                continue
            name = value[i + 2:close]
            resolved = lookup(name) if name else None
            out.append(resolved if resolved is not None else f"$({name})")
            i = close + 1
        else:
            out.append("$" + nxt)
            i += 2
    return "".join(out)


def expand_command(argv: list[str], env: Mapping[str, str]) -> list[str]:
    return [expand(a, env.get) for a in argv]


_SUFFIX = {
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
    "n": 1e-9, "u": 1e-6, "m": 1e-3, "": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
}
_QTY = re.compile(r"^([+-]?[0-9.]+(?:[eE][+-]?[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$")


def parse_quantity(q: str | int | float) -> float:
    """A resource quantity (``500m``, ``1Gi``, ``2``) as a number of base units."""
    if isinstance(q, int | float):
        return float(q)
    m = _QTY.match(q.strip())
    if not m:
        raise EnvError(f"invalid quantity {q!r}")
    return float(m.group(1)) * _SUFFIX[m.group(2) or ""]


@dataclass(frozen=True, slots=True)
class EnvSources:
    """Everything outside the pod spec the environment depends on."""

    services: tuple[Obj, ...] = ()
    config_maps: Mapping[str, Obj] | None = None   # name -> ConfigMap in the pod's namespace
    secrets: Mapping[str, Obj] | None = None       # name -> Secret in the pod's namespace
    node_allocatable: Mapping[str, str] | None = None


def _field_value(pod: Obj, path: str) -> str:
    meta, spec, status = meta_of(pod), pod.get("spec") or {}, pod.get("status") or {}
    simple = {
        "metadata.name": meta.get("name", ""),
        "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""),
        "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", ""),
        "status.podIP": status.get("podIP", ""),
        "status.hostIP": status.get("hostIP", ""),
    }
    if path in simple:
        return simple[path] or ""
    if path == "status.podIPs":
        return ",".join(p["ip"] for p in status.get("podIPs") or [])
    if path == "status.hostIPs":
        return ",".join(p["ip"] for p in status.get("hostIPs") or [])
    m = re.fullmatch(r"metadata\.(labels|annotations)\['([^']*)'\]", path)
    if m:
        return (meta.get(m.group(1)) or {}).get(m.group(2), "")
    if path in ("metadata.labels", "metadata.annotations"):
        d = meta.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{d[k]}"' for k in sorted(d))
    raise EnvError(f"unsupported fieldPath {path!r}")


def _resource_value(container: Obj, ref: Obj, allocatable: Mapping[str, str]) -> str:
    resource = ref.get("resource", "")
    kind, _, name = resource.partition(".")
    res = container.get("resources") or {}
    raw = (res.get(kind) or {}).get(name)
    if raw is None and kind == "requests":
        raw = (res.get("limits") or {}).get(name)  # requests default to limits
    if raw is None:
        raw = allocatable.get(name, "0") if kind == "limits" else "0"
    value = parse_quantity(raw)
    divisor = parse_quantity(ref.get("divisor") or "1")
    if divisor == 0:
        raise EnvError(f"zero divisor for {resource}")
    return str(math.ceil(value / divisor - 1e-9))


def _key_ref(kind: str, store: Mapping[str, Obj], ref: Obj) -> str | None:
    obj = store.get(ref.get("name", ""))
    key = ref.get("key", "")
    optional = bool(ref.get("optional"))
    if obj is None:
        if optional:
            return None
        raise EnvError(f'{kind} "{ref.get("name", "")}" not found')
    if kind == "secret":
        data = obj.get("data") or {}
        if key in data:
            return base64.b64decode(data[key]).decode(errors="replace")
        if key in (obj.get("stringData") or {}):
            return obj["stringData"][key]
    else:
        if key in (obj.get("data") or {}):
            return obj["data"][key]
        if key in (obj.get("binaryData") or {}):
            return base64.b64decode(obj["binaryData"][key]).decode(errors="replace")
    if optional:
        return None
    raise EnvError(f'couldn\'t find key {key} in {"Secret" if kind == "secret" else "ConfigMap"} '
                   f'{meta_of(obj).get("namespace", "")}/{ref.get("name", "")}')


_C_IDENT = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")


def container_env(pod: Obj, container: Obj, sources: EnvSources) -> dict[str, str]:
    """The final environment of one container (insertion-ordered).

    Order of precedence as in the kubelet: envFrom sources, then ``env`` entries (later wins),
    then service links for names not already set.  ``$(VAR)`` in literal values expands against
    what is defined so far, then against the service links.
    """
    cms = sources.config_maps or {}
    secrets = sources.secrets or {}
    links = dict(service_link_env(services_for_pod(pod, list(sources.services))))
    env: dict[str, str] = {}
    for src in container.get("envFrom") or []:
        prefix = src.get("prefix") or ""
        if "configMapRef" in src:
            ref, store, field = src["configMapRef"], cms, "data"
        elif "secretRef" in src:
            ref, store, field = src["secretRef"], secrets, "data"
        else:
            continue
        obj = store.get(ref.get("name", ""))
        if obj is None:
            if ref.get("optional"):
                continue
            kind = "configmap" if store is cms else "secret"
            raise EnvError(f'{kind} "{ref.get("name", "")}" not found')
        for k, v in (obj.get(field) or {}).items():
            name = prefix + k
            if not _C_IDENT.match(name):
                continue  # upstream skips invalid names (and emits an event)
            env[name] = base64.b64decode(v).decode(errors="replace") if store is secrets else v

    def lookup(name: str) -> str | None:
        if name in env:
            return env[name]
        return links.get(name)

    for e in container.get("env") or []:
        name = e["name"]
        vf = e.get("valueFrom")
        if vf is None:
            env[name] = expand(e.get("value") or "", lookup)
            continue
        value: str | None
        if "fieldRef" in vf:
            value = _field_value(pod, vf["fieldRef"]["fieldPath"])
        elif "resourceFieldRef" in vf:
            ref = vf["resourceFieldRef"]
            target = container
            if ref.get("containerName"):
                target = next((c for c in pod["spec"].get("containers", []) if c["name"] == ref["containerName"]),
                              container)
            value = _resource_value(target, ref, sources.node_allocatable or {})
        elif "configMapKeyRef" in vf:
            value = _key_ref("configmap", cms, vf["configMapKeyRef"])
        elif "secretKeyRef" in vf:
            value = _key_ref("secret", secrets, vf["secretKeyRef"])
        else:
            raise EnvError(f"unsupported valueFrom for {name}")
        if value is not None:
            env[name] = value
    for k, v in links.items():
        env.setdefault(k, v)
    return env
