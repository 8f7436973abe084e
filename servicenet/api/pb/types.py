"""The protobuf descriptors of the Kubernetes API, and which message each kind is.

Everything here is derived from two generated files next to this module (see
``scripts/gen_k8s_proto.py``): ``k8s.desc``, the compiled ``generated.proto`` files of upstream's
API packages, and ``k8s_go.json``, the JSON side of each field read from upstream's Go struct tags.
No kind is listed by hand: a kind is served in protobuf as soon as its group-version's package has a
message of that name, so kinds added to :mod:`servicenet.api.resources` later are covered too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor

_HERE = Path(__file__).resolve().parent
META = "k8s.io.apimachinery.pkg.apis.meta.v1"
RUNTIME = "k8s.io.apimachinery.pkg.runtime"
UNKNOWN = f"{RUNTIME}.Unknown"
WATCH_EVENT = f"{META}.WatchEvent"


@dataclass(frozen=True, slots=True)
class GoField:
    """The JSON side of one protobuf field, from its Go struct tag."""

    json: str  # the JSON key ("" for an inlined struct)
    omitempty: bool  # a zero value is left out of the JSON
    pointer: bool  # the Go field is a pointer: present means set, even when zero
    inline: bool  # the struct's fields are the parent's fields in JSON
    omitzero: bool = False  # a zero struct is left out too


_DEFAULT = GoField("", False, True, False)


@cache
def pool() -> descriptor_pool.DescriptorPool:
    fds = descriptor_pb2.FileDescriptorSet.FromString((_HERE / "k8s.desc").read_bytes())
    p = descriptor_pool.DescriptorPool()
    for f in fds.file:
        p.Add(f)
    return p


@cache
def _go() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((_HERE / "k8s_go.json").read_text())
    return data


@cache
def message_class(full_name: str) -> Any:
    """The generated Python class of a message, by full proto name."""
    return message_factory.GetMessageClass(pool().FindMessageTypeByName(full_name))


def descriptor(full_name: str) -> Descriptor:
    return pool().FindMessageTypeByName(full_name)


def go_field(message: str, fd: FieldDescriptor) -> GoField:
    """The Go tag facts of field ``fd`` of ``message``; a field the tags do not describe keeps its
    proto name and is written whenever present."""
    row = _go()["messages"].get(message, {}).get(str(fd.number))
    if row is None:
        return GoField(fd.name, _DEFAULT.omitempty, _DEFAULT.pointer, _DEFAULT.inline)
    return GoField(row[0] or fd.name, bool(row[1]), bool(row[2]), bool(row[3]), bool(row[4]))


@cache
def wrappers() -> frozenset[str]:
    """Messages that wrap a Go named slice (``ExtraValue``): a plain list in JSON."""
    return frozenset(_go()["wrappers"])


@cache
def _packages_by_api_version() -> dict[str, str]:
    return {gv: pkg for pkg, gv in _go()["groups"].items()}


def api_version_of(package: str) -> str | None:
    gv: str | None = _go()["groups"].get(package)
    return gv


def package_of(api_version: str) -> str | None:
    return _packages_by_api_version().get(api_version)


@cache
def message_for(api_version: str, kind: str) -> str | None:
    """The full message name of ``kind`` in ``api_version`` (``("v1", "Pod")`` → ``k8s.io.api.core.v1.Pod``).

    Kinds of ``meta.k8s.io`` (Status, DeleteOptions, WatchEvent…) are found under any group-version,
    as upstream's scheme registers them in every one.
    """
    p = pool()
    pkg = package_of(api_version)
    candidates = [f"{pkg}.{kind}"] if pkg else []
    candidates.append(f"{META}.{kind}")
    for name in candidates:
        try:
            p.FindMessageTypeByName(name)
        except KeyError:
            continue
        return name
    return None
