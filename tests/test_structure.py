"""The house rules, checked on the source (AST only; nothing is imported or run).

* Each package may import only the packages its row of :data:`MAY_IMPORT` names (plus itself).
  Components talk to one another through the API, never by import.
* Cores (:data:`CORES`) do no I/O: they import none of :data:`IO_MODULES` and call no ``open``.
* No import circles among modules; no import inside a function except of an optional dependency.
* No module over :data:`MAX_LINES` lines.
* One reading of the wire dicts: ``Obj = dict[str, Any]`` is declared only in ``api/wire.py``,
  nothing re-reads metadata as ``x.get("metadata") or {}`` (``api.wire.meta`` does), and the
  ``clusterIPs`` fallback and the ``kubernetes.io/service-name`` label are spelled only in ``api/``.

Adding a package: give it a row in MAY_IMPORT (a component gets ``COMPONENT``) and list its pure
modules in CORES. The test fails on a package it does not know, so the table cannot fall behind.
"""

from __future__ import annotations

import ast
import fnmatch
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "servicenet"
MAX_LINES = 600

LIBS = {"servicenet.api", "servicenet.client", "servicenet.common"}
COMPONENT = frozenset(LIBS)
ANYTHING = frozenset({"*"})
# package -> the servicenet packages it may import (besides itself)
MAY_IMPORT: dict[str, frozenset[str]] = {
    "servicenet.api": frozenset(),  # pure library: objects, validation, views, well-known names
    "servicenet.common": frozenset(),  # process plumbing: logging, health, netns, signals
    "servicenet.client": frozenset({"servicenet.api", "servicenet.common"}),
    "servicenet.store": frozenset({"servicenet.api", "servicenet.common"}),
    "servicenet.apiserver": COMPONENT | {"servicenet.store"},
    "servicenet.controllers": COMPONENT,
    "servicenet.dns": COMPONENT,
    "servicenet.node": COMPONENT,
    "servicenet.proxy": COMPONENT,
    "servicenet.ingress": COMPONENT,
    "servicenet.gateway": COMPONENT,
    "servicenet.lb": COMPONENT,
    # composition roots: they assemble the components
    "servicenet.cli": ANYTHING,
    "servicenet.up": ANYTHING,
    "servicenet.cluster": ANYTHING,  # composition root of `servicenet up --nodes`
    "servicenet.rootless": ANYTHING,  # rootless mode: the supervisor `up` becomes (docs/rootless.md)
    "servicenet.testing": ANYTHING,
    "servicenet.testing_cluster": ANYTHING,  # API server processes on one etcd (tests, bench)
    "servicenet": ANYTHING,  # servicenet/__init__.py
}

# Pure cores: data in, decisions out. Patterns are module names (fnmatch).
CORES = [
    "servicenet.api.*",
    "servicenet.dns.model", "servicenet.dns.records", "servicenet.dns.responder", "servicenet.dns.wire",
    "servicenet.controllers.*_core", "servicenet.controllers.actions", "servicenet.controllers.slicepack",
    "servicenet.controllers.wakeup", "servicenet.controllers.scheduler_affinity",
    "servicenet.node.hostgw", "servicenet.cluster.plan", "servicenet.cluster.cpplan",
    "servicenet.node.restart", "servicenet.node.status", "servicenet.node.podspec", "servicenet.node.envvars",
    "servicenet.node.probes", "servicenet.node.spdy", "servicenet.node.spdy_frames",
    "servicenet.apiserver.watchfilter",
    "servicenet.store.index", "servicenet.store._plan", "servicenet.store._types", "servicenet.store._etcdaddr",
    "servicenet.store._etcdwire",
    "servicenet.proxy.model", "servicenet.proxy.names", "servicenet.proxy.render_iptables",
    "servicenet.proxy.render_nftables", "servicenet.proxy.nft_commands", "servicenet.proxy.nft_skeleton",
    "servicenet.proxy.nft_blocks",
    "servicenet.proxy.planner", "servicenet.proxy.published",
    "servicenet.lb.model", "servicenet.lb.hashing", "servicenet.lb.policies", "servicenet.lb.outlier",
    "servicenet.lb.budget", "servicenet.lb.balancer", "servicenet.lb.roles",
    "servicenet.ingress.core", "servicenet.ingress.model", "servicenet.ingress.annotations",
    "servicenet.ingress.match", "servicenet.ingress.render", "servicenet.ingress.status",
    "servicenet.ingress.maps", "servicenet.ingress.incremental", "servicenet.ingress.gateway_core",
    "servicenet.ingress.gateway_compile", "servicenet.ingress.gateway_match", "servicenet.ingress.gateway_maps",
    "servicenet.ingress.gateway_status", "servicenet.ingress.render_gateway", "servicenet.ingress.gateway_lua",
]
IO_MODULES = {"asyncio", "socket", "subprocess", "aiohttp", "multiprocessing", "ssl", "selectors", "shutil",
              "tempfile", "os", "pathlib", "io", "fcntl", "signal", "servicenet.client", "servicenet.store",
              "servicenet.common.netns", "servicenet.common.runner", "servicenet.common.hijack"}
# a core that reads a data file shipped inside the package, once: module -> why
READS_PACKAGE_DATA = {"servicenet.api.schema": "loads its bundled schema.json (generated, read-only) once",
                      "servicenet.api.pb.types": "loads its bundled descriptors (k8s.desc, k8s_go.json; generated) once"}

OPTIONAL_DEPENDENCIES = {"uvloop", "prometheus_client", "nacl"}  # may be imported inside a function, to stay optional



@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    tree: ast.Module

    @property
    def rel(self) -> str:
        return self.path.relative_to(ROOT).as_posix()

    @property
    def package(self) -> str:
        parts = self.name.split(".")
        return ".".join(parts[:2])


def _modules() -> list[Module]:
    out = []
    for path in sorted(SRC.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out.append(Module(".".join(parts), path, ast.parse(path.read_text(), str(path))))
    return out


MODULES = _modules()
BY_NAME = {m.name: m for m in MODULES}


def _is_package(m: Module) -> bool:
    return m.path.name == "__init__.py"


def _imports(m: Module) -> Iterator[tuple[ast.stmt, str, bool]]:
    """(node, imported module, at module level) for every import statement of ``m``."""
    top = {id(n) for n in m.tree.body}
    guarded = set()
    for n in m.tree.body:  # ``if TYPE_CHECKING:`` / ``try: import x except ImportError`` at top level
        if isinstance(n, (ast.If, ast.Try)):
            guarded |= {id(x) for x in ast.walk(n)}
    for node in ast.walk(m.tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = m.name.split(".") if _is_package(m) else m.name.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            # ``from pkg import sub`` imports the module ``pkg.sub`` when it is one
            names = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in BY_NAME else mod for a in node.names]
        else:
            continue
        for name in dict.fromkeys(names):
            yield node, name, id(node) in top or id(node) in guarded


def _top_package(name: str) -> str:
    return ".".join(name.split(".")[:2])


def test_every_package_has_a_rule() -> None:
    unknown = sorted({m.package for m in MODULES} - set(MAY_IMPORT))
    assert not unknown, f"add {unknown} to MAY_IMPORT (and its cores to CORES) in {Path(__file__).name}"


@pytest.mark.parametrize("m", MODULES, ids=lambda m: m.name)
def test_imports_follow_the_package_rules(m: Module) -> None:
    allowed = MAY_IMPORT.get(m.package, frozenset())
    if allowed == ANYTHING:
        return
    bad = sorted({name for _, name, _ in _imports(m)
                  if name.startswith("servicenet.") and _top_package(name) not in allowed | {m.package}})
    assert not bad, f"{m.rel} imports {bad}; {m.package} may import only {sorted(allowed)}"


def _is_core(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, pat) for pat in CORES)


CORE_MODULES = [m for m in MODULES if _is_core(m.name)]


def test_core_list_names_real_modules() -> None:
    for pat in CORES:
        assert any(fnmatch.fnmatchcase(m.name, pat) for m in MODULES), f"CORES entry {pat} matches no module"


@pytest.mark.parametrize("m", CORE_MODULES, ids=lambda m: m.name)
def test_cores_do_no_io(m: Module) -> None:
    io = sorted({name for _, name, _ in _imports(m)
                 if (name in IO_MODULES or any(name.startswith(x + ".") for x in IO_MODULES))
                 and not _is_core(name)})  # a core may use another core (the store's cores its _types)
    if m.name in READS_PACKAGE_DATA:
        io = [x for x in io if x != "pathlib"]
    assert not io, f"core {m.rel} imports {io}: move the I/O to a shell"
    opens = [n.lineno for n in ast.walk(m.tree) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
             and n.func.id == "open"]
    assert not opens, f"core {m.rel} opens files (lines {opens})"


def test_no_import_circles() -> None:
    graph = {m.name: {name for _, name, _ in _imports(m) if name in BY_NAME and name != m.name} for m in MODULES}
    # a package's __init__ re-exporting its modules is not a circle: drop edges from a package to its own modules
    for m in MODULES:
        if _is_package(m):
            graph[m.name] = {n for n in graph[m.name] if not n.startswith(m.name + ".")}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    assert not cycles, f"import circles: {cycles}"


@pytest.mark.parametrize("m", MODULES, ids=lambda m: m.name)
def test_no_imports_inside_functions(m: Module) -> None:
    inner = sorted({(node.lineno, name) for node, name, at_top in _imports(m)
                    if not at_top and name.split(".")[0] not in OPTIONAL_DEPENDENCIES})
    assert not inner, f"{m.rel}: imports inside functions {inner} (only optional dependencies may be)"


@pytest.mark.parametrize("m", MODULES, ids=lambda m: m.name)
def test_module_size(m: Module) -> None:
    n = len(m.path.read_text().splitlines())
    assert n <= MAX_LINES, f"{m.rel} has {n} lines (max {MAX_LINES}): split it"


OBJ_HOME = "servicenet.api.wire"


def _is_obj_alias(node: ast.stmt) -> bool:
    """``Obj = dict[str, Any]`` (or annotated, or a TypeAlias)."""
    if isinstance(node, ast.Assign):
        targets, value = node.targets, node.value
    elif isinstance(node, ast.AnnAssign) and node.value is not None:
        targets, value = [node.target], node.value
    else:
        return False
    return (any(isinstance(t, ast.Name) and t.id == "Obj" for t in targets)
            and isinstance(value, ast.Subscript) and isinstance(value.value, ast.Name) and value.value.id == "dict")


def _is_metadata_or_empty(node: ast.AST) -> bool:
    """``x.get("metadata") or {}``."""
    return (isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or) and len(node.values) == 2
            and isinstance(node.values[1], ast.Dict) and not node.values[1].keys
            and isinstance(node.values[0], ast.Call) and isinstance(node.values[0].func, ast.Attribute)
            and node.values[0].func.attr == "get" and len(node.values[0].args) >= 1
            and isinstance(node.values[0].args[0], ast.Constant) and node.values[0].args[0].value == "metadata")


@pytest.mark.parametrize("m", MODULES, ids=lambda m: m.name)
def test_one_reading_of_wire_dicts(m: Module) -> None:
    if m.name != OBJ_HOME:
        aliases = [n.lineno for n in m.tree.body if _is_obj_alias(n)]
        assert not aliases, f"{m.rel}:{aliases}: declares Obj again; import it from {OBJ_HOME}"
    rereads = sorted(n.lineno for n in ast.walk(m.tree) if _is_metadata_or_empty(n))
    assert not rereads, f'{m.rel}:{rereads}: x.get("metadata") or {{}}; use {OBJ_HOME}.meta (or a view)'


def test_obj_home_declares_obj() -> None:
    assert any(_is_obj_alias(n) for n in BY_NAME[OBJ_HOME].tree.body)


@pytest.mark.parametrize("m", [m for m in MODULES if m.package != "servicenet.api"], ids=lambda m: m.name)
def test_service_shapes_are_read_in_api_only(m: Module) -> None:
    text = m.path.read_text()
    for needle in ('clusterIPs") or', '"kubernetes.io/service-name"'):
        assert needle not in text, f"{m.rel}: {needle!r} outside servicenet/api (use api.views / api.wellknown)"
