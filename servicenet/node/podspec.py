"""What a pod spec means for this node, decided without I/O.

* the pod's hostname, ``/etc/resolv.conf`` and ``/etc/hosts`` (as the kubelet writes them);
* which program runs for a container (``command``/``args`` or a built-in image program);
* container ports by name (for probes).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from servicenet.api.views import Obj

__all__ = [
    "HostResolv",
    "ImageNotRunnable",
    "container_argv",
    "image_program",
    "parse_resolv_conf",
    "pod_hostname",
    "render_hosts",
    "render_resolv_conf",
    "resolve_port",
]

MAX_NAMESERVERS = 3
MAX_SEARCH = 32


def pod_hostname(pod: Obj) -> str:
    """``spec.hostname`` or the pod name, cut to 63 characters without a trailing ``-``/``.``."""
    name = (pod.get("spec") or {}).get("hostname") or pod["metadata"]["name"]
    if len(name) > 63:
        name = name[:63].rstrip("-.")
    return name


@dataclass(frozen=True, slots=True)
class HostResolv:
    """The node's own resolver configuration (``--resolv-conf``)."""

    nameservers: tuple[str, ...] = ()
    searches: tuple[str, ...] = ()
    options: tuple[str, ...] = ()


def parse_resolv_conf(text: str) -> HostResolv:
    ns: list[str] = []
    search: list[str] = []
    opts: list[str] = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].split(";", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if fields[0] == "nameserver" and len(fields) > 1:
            ns.append(fields[1])
        elif fields[0] in ("search", "domain"):
            search = fields[1:]  # the last search/domain line wins
        elif fields[0] == "options":
            opts.extend(fields[1:])
    return HostResolv(tuple(ns), tuple(search), tuple(opts))


def _dedup(items: list[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for i in items:
        if i not in seen:
            seen.add(i)
            out.append(i)
    return out


def _merge_options(base: list[str], extra: list[Obj]) -> list[str]:
    merged: dict[str, str | None] = {}
    for o in base:
        k, sep, v = o.partition(":")
        merged[k] = v if sep else None
    for o in extra:
        merged[o["name"]] = o.get("value")
    return [k if v is None else f"{k}:{v}" for k, v in merged.items()]


def render_resolv_conf(pod: Obj, cluster_dns: list[str], cluster_domain: str, host: HostResolv) -> str:
    """The pod's ``/etc/resolv.conf`` for its ``dnsPolicy`` and ``dnsConfig``."""
    spec = pod.get("spec") or {}
    policy = spec.get("dnsPolicy") or "ClusterFirst"
    host_network = bool(spec.get("hostNetwork"))
    if policy == "ClusterFirstWithHostNet":
        policy = "ClusterFirst"
    elif policy == "ClusterFirst" and host_network:
        policy = "Default"
    if policy == "ClusterFirst" and not cluster_dns:
        policy = "Default"  # no cluster DNS configured: upstream falls back to the node's resolver
    nameservers: list[str]
    searches: list[str]
    options: list[str]
    if policy == "ClusterFirst":
        ns = pod["metadata"].get("namespace") or "default"
        nameservers = list(cluster_dns)
        searches = [f"{ns}.svc.{cluster_domain}", f"svc.{cluster_domain}", cluster_domain, *host.searches]
        options = ["ndots:5"]
    elif policy == "Default":
        nameservers, searches, options = list(host.nameservers), list(host.searches), list(host.options)
    else:  # None
        nameservers, searches, options = [], [], []
    cfg = spec.get("dnsConfig") or {}
    nameservers = _dedup(nameservers + list(cfg.get("nameservers") or []))[:MAX_NAMESERVERS]
    searches = _dedup(searches + list(cfg.get("searches") or []))[:MAX_SEARCH]
    options = _merge_options(options, list(cfg.get("options") or []))
    lines = [f"nameserver {n}" for n in nameservers]
    if searches:
        lines.append("search " + " ".join(searches))
    if options:
        lines.append("options " + " ".join(options))
    return "\n".join(lines) + "\n" if lines else ""


def render_hosts(pod: Obj, pod_ips: list[str], cluster_domain: str) -> str:
    """The kubelet-managed ``/etc/hosts`` for a pod with its own network namespace."""
    spec = pod.get("spec") or {}
    hostname = pod_hostname(pod)
    lines = [
        "# Kubernetes-managed hosts file.",
        "127.0.0.1\tlocalhost",
        "::1\tlocalhost ip6-localhost ip6-loopback",
        "fe00::0\tip6-localnet",
        "fe00::0\tip6-mcastprefix",
        "fe00::1\tip6-allnodes",
        "fe00::2\tip6-allrouters",
    ]
    sub = spec.get("subdomain") or ""
    for ip in pod_ips:
        if sub:
            ns = pod["metadata"].get("namespace") or "default"
            lines.append(f"{ip}\t{hostname}.{sub}.{ns}.svc.{cluster_domain}\t{hostname}")
        else:
            lines.append(f"{ip}\t{hostname}")
    aliases = spec.get("hostAliases") or []
    if aliases:
        lines.append("")
        lines.append("# Entries added by HostAliases.")
        for a in aliases:
            lines.append(a["ip"] + "\t" + "\t".join(a.get("hostnames") or []))
    return "\n".join(lines) + "\n"


class ImageNotRunnable(Exception):
    """No command and no built-in program for the image (the container stays waiting)."""


def _image_name(image: str) -> str:
    """``registry/path/name:tag@digest`` -> ``name``."""
    base = image.split("@", 1)[0]
    last = base.rsplit("/", 1)[-1]
    return last.split(":", 1)[0]


def image_program(image: str) -> str | None:
    """The built-in program module for a well-known image, or None."""
    name = _image_name(image)
    if name == "dns" and image.split("@", 1)[0].rsplit(":", 1)[0].endswith("servicenet/dns"):
        return "dns"  # the cluster DNS add-on (servicenet up --nodes)
    if name == "serve_hostname" or name == "serve-hostname":
        return "serve_hostname"
    if name == "nginx" or name.startswith("nginx-"):
        return "nginx"
    if name in ("agnhost",):
        return "agnhost"
    if name in ("busybox", "alpine", "pause", "ubuntu", "debian") or "dnsutils" in name or name == "curl":
        return "idle"
    return None


def container_argv(container: Obj, python: str = sys.executable) -> list[str]:
    """The argv a container runs (before ``$(VAR)`` expansion).

    ``command`` (+ ``args``) runs host executables.  Without a command, a well-known image
    runs its built-in program (with ``args`` appended); anything else is not runnable.
    """
    command = list(container.get("command") or [])
    args = list(container.get("args") or [])
    if command:
        return command + args
    image = container.get("image") or ""
    prog = image_program(image)
    if prog is None:
        raise ImageNotRunnable(
            f'image "{image}" is not available on this node: set "command" to run a host executable '
            f'(built-in images: serve_hostname, nginx, agnhost, busybox, dnsutils, servicenet/dns)')
    if prog == "idle" and args:
        return args  # busybox-like images with args but no command: run the args as a command
    return [python, "-m", f"servicenet.node.images.{prog}", *args]


def resolve_port(container: Obj, port: int | str) -> int:
    """A probe/target port: a number, a numeric string, or a named container port."""
    if isinstance(port, int):
        return port
    if port.isdigit():
        return int(port)
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return int(p["containerPort"])
    raise ValueError(f"port {port!r} not found in container {container.get('name')!r}")
