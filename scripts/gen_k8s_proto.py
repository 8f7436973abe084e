#!/usr/bin/env python3
"""Generate the protobuf codec's data from upstream's verbatim sources in ``third_party/k8s-proto``.

Two outputs, both committed so that the runtime needs only the ``protobuf`` package:

* ``servicenet/api/pb/k8s.desc``: a ``FileDescriptorSet`` compiled by protoc (from ``grpcio-tools``)
  from every ``generated.proto`` there, imports included.
* ``servicenet/api/pb/k8s_go.json``: what the ``.proto`` files cannot say about the JSON form, read from
  the Go struct tags of the same release (``json:"name,omitempty" protobuf:"bytes,3,opt,name=x"``):
  per message and field number the JSON name, ``omitempty``, whether the Go field is a pointer,
  whether it is inlined and ``omitzero``; the Go types that are named slices (``type ExtraValue []string``, a wrapper
  message in protobuf but a plain list in JSON); and the API group of each proto package
  (``+groupName`` from ``doc.go``, else the package directory).

Run:  .venv/bin/python scripts/gen_k8s_proto.py
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "third_party" / "k8s-proto" / "src"
OUT = ROOT / "servicenet" / "api" / "pb"

_TYPE_RE = re.compile(r"^type (\w+) struct \{\s*$")
_SLICE_RE = re.compile(r"^type (\w+) \[\](\S+)\s*$")
_TAG_RE = re.compile(r'(\w+):"([^"]*)"')
_PKG_RE = re.compile(r"^package ([\w.]+);", re.M)
_GROUP_RE = re.compile(r"^// \+groupName=(\S*)", re.M)


def proto_package(proto: Path) -> str:
    m = _PKG_RE.search(proto.read_text())
    if m is None:
        raise SystemExit(f"{proto}: no package line")
    return m.group(1)


def go_fields(go_file: Path) -> tuple[dict[str, dict[str, list]], list[str]]:
    """``{struct: {field number: [json name, omitempty, pointer, inline, omitzero]}}`` and named-slice types."""
    structs: dict[str, dict[str, list]] = {}
    slices: list[str] = []
    current: str | None = None
    for line in go_file.read_text().splitlines():
        if current is None:
            m = _TYPE_RE.match(line)
            if m:
                current = m.group(1)
                structs[current] = {}
                continue
            m = _SLICE_RE.match(line)
            if m:
                slices.append(m.group(1))
            continue
        if line.startswith("}"):
            current = None
            continue
        code = line.strip()
        if code.startswith("//") or "`" not in code:
            continue
        before, tag = code.split("`", 1)
        tags = dict(_TAG_RE.findall(tag))
        if "protobuf" not in tags:
            continue
        tokens = before.split()
        gotype = tokens[-1] if tokens else ""
        pb = tags["protobuf"].split(",")
        number = pb[1]
        jname, _, jopts = tags.get("json", "").partition(",")
        opts = set(jopts.split(",")) if jopts else set()
        inline = "inline" in opts
        structs[current][number] = [jname, "omitempty" in opts, gotype.startswith("*"), inline, "omitzero" in opts]
    return structs, slices


def main() -> int:
    from grpc_tools import protoc  # the generator's own dependency; the runtime does not need it

    protos = sorted(SRC.rglob("generated.proto"))
    rel = [str(p.relative_to(SRC)) for p in protos]
    OUT.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        desc = Path(tmp) / "k8s.desc"
        rc = protoc.main(["protoc", f"-I{SRC}", f"--descriptor_set_out={desc}", "--include_imports", *rel])
        if rc != 0:
            raise SystemExit(f"protoc failed ({rc})")
        (OUT / "k8s.desc").write_bytes(desc.read_bytes())

    messages: dict[str, dict[str, list]] = {}
    wrappers: list[str] = []
    groups: dict[str, str] = {}
    for proto in protos:
        pkg = proto_package(proto)
        d = proto.parent
        doc = d / "doc.go"
        group_m = _GROUP_RE.search(doc.read_text()) if doc.exists() else None
        under = d.relative_to(SRC).parts
        if under[:2] == ("k8s.io", "api") or under[:2] == ("k8s.io", "apiextensions-apiserver"):
            group = group_m.group(1) if group_m else d.parent.name
            groups[pkg] = f"{group}/{d.name}" if group else d.name
        for go in sorted(d.glob("*.go")):
            structs, slices = go_fields(go)
            for name, fields in structs.items():
                if fields:
                    messages.setdefault(f"{pkg}.{name}", {}).update(fields)
            wrappers.extend(f"{pkg}.{s}" for s in slices)
    data = {"generator": "scripts/gen_k8s_proto.py from third_party/k8s-proto",
            "groups": dict(sorted(groups.items())), "wrappers": sorted(set(wrappers)),
            "messages": dict(sorted(messages.items()))}
    (OUT / "k8s_go.json").write_text(json.dumps(data, indent=0, sort_keys=False) + "\n")
    print(f"{len(protos)} proto files, {len(messages)} messages with Go tags, {len(groups)} group-versions")
    return 0


if __name__ == "__main__":
    sys.exit(main())
