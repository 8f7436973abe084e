"""The Kubernetes CEL environment and ``x-kubernetes-validations`` evaluation (pure).

Expressions are parsed and run by the ``common-expression-language`` package (Rust ``cel``
crate); this module adds the Kubernetes library functions (``isIP``, ``url``/``isURL``, regex
``find``/``findAll``, list ``isSorted``/``indexOf``…, the global ``matches``) and the cel-go string
and list extensions the package ships in ``cel.stdlib``.

Rules run bottom-up through the schema as upstream: ``self`` is the value at the rule's node,
``oldSelf`` the correlated old value (transition rules run only on UPDATE when that exists, or
always with ``optionalOldSelf``). Old and new values correlate through object properties, map keys
and ``list-type: map`` keys/``set`` values; never through atomic lists.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import cel
import cel.stdlib as celstd

from servicenet.api import errors
from servicenet.api.crd import schema as sch
from servicenet.api.errors import FieldError

# ---------------------------------------------------------------- library functions


def _is_ip(s: Any) -> bool:
    if not isinstance(s, str) or "%" in s:
        return False
    try:
        ipaddress.ip_address(s)
    except ValueError:
        return False
    return True


def _is_cidr(s: Any) -> bool:
    if not isinstance(s, str) or "/" not in s:
        return False
    try:
        ipaddress.ip_network(s, strict=False)
    except ValueError:
        return False
    return True


def _is_url(s: Any) -> bool:
    if not isinstance(s, str):
        return False
    try:
        u = urlsplit(s)
    except ValueError:
        return False
    return bool(u.scheme) or s.startswith("/")


def _url(s: str) -> str:
    if not _is_url(s):
        raise ValueError(f"URL is invalid: {s}")
    return s


def _get_part(name: str) -> Callable[[str], Any]:
    def get(u: str) -> Any:
        p = urlsplit(u)
        if name == "scheme":
            return p.scheme
        if name == "host":
            return p.netloc.rsplit("@", 1)[-1]
        if name == "hostname":
            return (p.hostname or "").strip("[]")
        if name == "port":
            return str(p.port) if p.port is not None else ""
        if name == "path":
            return p.path
        return {k: v for k, v in (kv.split("=", 1) if "=" in kv else (kv, "") for kv in p.query.split("&") if kv)}
    return get


def _matches(s: str, pattern: str) -> bool:
    return _regex(pattern).search(s) is not None


@lru_cache(maxsize=512)
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _find(s: str, pattern: str) -> str:
    m = _regex(pattern).search(s)
    return m.group(0) if m else ""


def _find_all(s: str, pattern: str, limit: int = -1) -> list[str]:
    out = [m.group(0) for m in _regex(pattern).finditer(s)]
    return out if limit < 0 else out[:limit]


def _is_sorted(xs: list[Any]) -> bool:
    return all(a <= b for a, b in zip(xs, xs[1:], strict=False))


def _list_index_of(xs: Any, v: Any, last: bool = False) -> int:
    if isinstance(xs, str):
        return xs.rfind(v) if last else xs.find(v)
    idx = [i for i, x in enumerate(xs) if x == v]
    return (idx[-1] if last else idx[0]) if idx else -1


#: name → Python implementation, every function the Kubernetes environment adds to the crate's core.
FUNCTIONS: dict[str, Callable[..., Any]] = {}
for _lib in ("core", "strings", "lists", "sets", "math", "encoders"):
    FUNCTIONS.update(celstd.EXTENSIONS[_lib])
FUNCTIONS.update({
    "isIP": _is_ip, "isCIDR": _is_cidr, "isURL": _is_url, "url": _url,
    "getScheme": _get_part("scheme"), "getHost": _get_part("host"), "getHostname": _get_part("hostname"),
    "getPort": _get_part("port"), "getEscapedPath": _get_part("path"), "getQuery": _get_part("query"),
    "matches": _matches, "find": _find, "findAll": _find_all, "isSorted": _is_sorted,
    "indexOf": lambda xs, v, *a: celstd.index_of(xs, v, *a) if isinstance(xs, str) else _list_index_of(xs, v),
    "lastIndexOf": lambda xs, v, *a: (celstd.last_index_of(xs, v, *a) if isinstance(xs, str)
                                      else _list_index_of(xs, v, True)),
})
# ``matches`` is native as a method; only a global call ``matches(s, re)`` needs ours.
_GLOBAL_MATCHES = re.compile(r"(?<![.\w])matches\s*\(")


class Compiled:
    """One compiled expression and the library functions it needs."""

    __slots__ = ("program", "needs", "ctx", "source", "variables")

    def __init__(self, source: str) -> None:
        self.source = source
        self.program = cel.compile(source)
        self.variables = frozenset(self.program.variables())
        self.needs = tuple(f for f in self.program.functions() if f in FUNCTIONS
                           and (f != "matches" or _GLOBAL_MATCHES.search(source)))
        self.ctx: Any = None
        if self.needs:
            self.ctx = cel.Context()
            for f in self.needs:
                self.ctx.add_function(f, FUNCTIONS[f])

    def run(self, variables: dict[str, Any]) -> Any:
        if self.ctx is None:
            return self.program.execute(variables)
        for k, v in variables.items():
            self.ctx.add_variable(k, v)
        return self.program.execute(self.ctx)


class CelCompileError(ValueError):
    pass


@lru_cache(maxsize=4096)
def compile_expr(source: str) -> Compiled:
    """Compile (cached); raises :class:`CelCompileError` with the parser's message."""
    try:
        return Compiled(source)
    except (ValueError, RuntimeError, SyntaxError, TypeError) as exc:
        raise CelCompileError(str(exc).strip().splitlines()[0] if str(exc).strip() else "compilation failed") \
            from None


def is_transition(source: str) -> bool:
    try:
        return "oldSelf" in compile_expr(source).variables
    except CelCompileError:
        return False


# ---------------------------------------------------------------- value views

_RESERVED = frozenset("true false null in as break const continue else for function if import let loop package "
                      "namespace return var void while".split())
_IDENT = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


@lru_cache(maxsize=8192)
def escape_name(name: str) -> str | None:
    """The CEL-visible name of a property (``x-y`` → ``x__dash__y``); None when not accessible."""
    if name in _RESERVED:
        return f"__{name}__"
    if _IDENT.match(name):
        return name.replace("__", "__underscores__")
    if not re.match(r"^[a-zA-Z_.\-/][a-zA-Z0-9_.\-/]*$", name):
        return None
    return (name.replace("__", "__underscores__").replace(".", "__dot__").replace("-", "__dash__")
            .replace("/", "__slash__"))


def view(v: Any, s: sch.Schema, root: bool = False, only: frozenset[str] | None = None) -> Any:
    """``v`` as CEL sees it: escaped property names; at the root (and embedded resources) only
    apiVersion, kind, metadata.name/generateName of the metadata; unknown preserved data hidden.
    ``only``: the (escaped) top-level fields to include (the rules read no others)."""
    if isinstance(v, dict):
        ps = sch.props(s)
        ap = sch.addl(s)
        out: dict[str, Any] = {}
        if ap is not None and not ps:
            return {k: view(x, ap) for k, x in v.items()}
        top = root or bool(s.get(sch.EMBEDDED))
        for k, x in v.items():
            if only is not None and escape_name(k) not in only:
                continue
            if top and k in ("apiVersion", "kind"):
                out[k] = x
            elif top and k == "metadata":
                md = x if isinstance(x, dict) else {}
                out[k] = {n: md[n] for n in ("name", "generateName") if n in md}
            elif k in ps:
                name = escape_name(k)
                if name is not None and x is not None:
                    out[name] = view(x, ps[k])
        return out
    if isinstance(v, list):
        it = sch.items(s) or {}
        return [view(x, it) for x in v]
    return v


# ---------------------------------------------------------------- rule evaluation


def _schema_type(s: sch.Schema) -> str:
    return str(s.get("type") or "")


def rule_message(rule: dict[str, Any]) -> str:
    msg = rule.get("message")
    if isinstance(msg, str) and msg:
        return msg
    return "failed rule: " + str(rule.get("rule", "")).strip()


def _error(rule: dict[str, Any], path: str, s: sch.Schema, message: str) -> FieldError:
    fp = rule.get("fieldPath")
    if isinstance(fp, str) and fp:
        path = path + fp if fp.startswith("[") else sch.child_path(path, fp.lstrip("."))
    disp = path or "<root>"
    reason = rule.get("reason") or "FieldValueInvalid"
    if reason == "FieldValueForbidden":
        return errors.forbidden(disp, message)
    if reason == "FieldValueRequired":
        return errors.required(disp, message)
    if reason == "FieldValueDuplicate":
        return FieldError("Duplicate", disp, message, _schema_type(s), True)
    return errors.invalid(disp, _schema_type(s), message)


def _message_expression(rule: dict[str, Any], variables: dict[str, Any]) -> str | None:
    me = rule.get("messageExpression")
    if not isinstance(me, str) or not me:
        return None
    try:
        out = compile_expr(me).run(variables)
    except Exception:
        return None
    if not isinstance(out, str) or not out.strip() or "\n" in out:
        return None
    return out


_SELF_REF = re.compile(r"\b(self|oldSelf)\b(\s*\.\s*([A-Za-z_][A-Za-z0-9_]*)(\s*\()?)?")


@lru_cache(maxsize=4096)
def referenced_fields(source: str) -> frozenset[str] | None:
    """The fields of ``self``/``oldSelf`` an expression reads (``self.a``, ``has(self.b)``), or None
    when it uses the value whole (``self == oldSelf``, ``self.all(...)``, ``self['k']``)."""
    out: set[str] = set()
    for m in _SELF_REF.finditer(source):
        if m.group(3) is None or m.group(4) is not None:
            return None
        out.add(m.group(3))
    return frozenset(out)


class _Env:
    """One set of variables shared by the rules of a node: values are converted into CEL once
    (the conversion, not the evaluation, is what costs)."""

    __slots__ = ("variables", "needs", "ctx")

    def __init__(self, variables: dict[str, Any]) -> None:
        self.variables = variables
        self.needs: set[str] = set()
        self.ctx: Any = None

    def run(self, c: Compiled) -> Any:
        if self.ctx is None:
            self.ctx = cel.Context()
            for f in self.needs:
                self.ctx.add_function(f, FUNCTIONS[f])
            for k, v in self.variables.items():
                self.ctx.add_variable(k, v)
        if not self.needs.issuperset(c.needs):
            return c.run(self.variables)
        return c.program.execute(self.ctx)


def run_rules(v: Any, s: sch.Schema, path: str, old: Any, has_old: bool, out: list[FieldError],
              root: bool = False) -> None:
    rules = s.get(sch.VALIDATIONS)
    if not rules:
        return
    unchanged: bool | None = None
    todo: list[tuple[dict[str, Any], Compiled, str]] = []  # (rule, program, "plain" | "old" | "optional")
    for rule in rules:
        if not isinstance(rule, dict) or not isinstance(rule.get("rule"), str):
            continue
        try:
            c = compile_expr(rule["rule"])
        except CelCompileError as exc:
            out.append(_error(rule, path, s, f"compilation failed: {exc}"))
            continue
        if "oldSelf" in c.variables:
            if rule.get("optionalOldSelf"):
                todo.append((rule, c, "optional"))
            elif has_old:
                todo.append((rule, c, "old"))
            continue  # a transition rule runs only when there is an old value
        if has_old:
            if unchanged is None:
                unchanged = old == v
            if unchanged:
                continue  # ratcheting: an unchanged value is not re-judged
        todo.append((rule, c, "plain"))
    if not todo:
        return
    only: frozenset[str] | None = frozenset()
    if isinstance(v, dict) and sch.props(s):
        for rule, c, _ in todo:
            for src in (c.source, rule.get("messageExpression")):
                f = referenced_fields(src) if isinstance(src, str) and src else frozenset()
                only = None if f is None or only is None else only | f
    else:
        only = None
    cur = view(v, s, root, only)
    prev = view(old, s, root, only) if has_old and any(k != "plain" for _, _, k in todo) else None
    envs: dict[str, _Env] = {}
    for _, c, kind in todo:
        env = envs.get(kind)
        if env is None:
            variables: dict[str, Any] = {"self": cur}
            if kind == "old":
                variables["oldSelf"] = prev
            elif kind == "optional":
                variables["oldSelf"] = cel.OptionalValue.of(prev) if has_old else cel.OptionalValue.none()
            env = envs[kind] = _Env(variables)
        env.needs.update(c.needs)
    for rule, c, kind in todo:
        env = envs[kind]
        try:
            ok = env.run(c)
        except Exception as exc:  # evaluation errors fail the rule, as upstream
            out.append(_error(rule, path, s, f"{rule_message(rule)}: {_eval_error(exc)}"
                              if rule.get("message") else f"{_eval_error(exc)}"))
            continue
        if ok is not True:
            msg = _message_expression(rule, env.variables) or rule_message(rule)
            out.append(_error(rule, path, s, msg))


def _eval_error(exc: Exception) -> str:
    if isinstance(exc, KeyError):
        return f"no such key: {exc.args[0] if exc.args else ''}"
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def validate(obj: Any, old: Any, root_schema: sch.Schema) -> list[FieldError]:
    """Every CEL rule failure of ``obj`` (``old`` on UPDATE, else None)."""
    out: list[FieldError] = []
    _walk(obj, root_schema, "", old, old is not None, out, True)
    return out


_TRANSITIONS: dict[int, tuple[sch.Schema, bool]] = {}


def has_transition_rules(s: sch.Schema) -> bool:
    """Whether any rule at or below ``s`` reads ``oldSelf`` (cached by schema identity)."""
    hit = _TRANSITIONS.get(id(s))
    if hit is not None and hit[0] is s:
        return hit[1]
    found = any(isinstance(r, dict) and isinstance(r.get("rule"), str) and is_transition(r["rule"])
                for r in s.get(sch.VALIDATIONS) or [])
    if not found:
        kids = [*sch.props(s).values(), sch.addl(s), sch.items(s)]
        found = any(isinstance(k, dict) and has_transition_rules(k) for k in kids)
    if len(_TRANSITIONS) > 100_000:
        _TRANSITIONS.clear()
    _TRANSITIONS[id(s)] = (s, found)
    return found


def _walk(v: Any, s: sch.Schema, path: str, old: Any, has_old: bool, out: list[FieldError],
          root: bool = False) -> None:
    if v is None:
        return
    if has_old and not root and old == v and not has_transition_rules(s):
        return  # ratcheting: an unchanged value is not judged again
    if isinstance(v, dict):
        ps = sch.props(s)
        ap = sch.addl(s)
        od = old if has_old and isinstance(old, dict) else None
        for k, x in v.items():
            if root and k in ("apiVersion", "kind", "metadata"):
                continue
            if k in ps:
                _walk(x, ps[k], sch.child_path(path, k), od.get(k) if od else None,
                      od is not None and k in od, out)
            elif ap is not None:
                _walk(x, ap, sch.index_path(path, k), od.get(k) if od else None,
                      od is not None and k in od, out)
    elif isinstance(v, list):
        it = sch.items(s)
        if it is not None:
            olds = _correlate(v, old if has_old and isinstance(old, list) else None, s)
            for i, x in enumerate(v):
                o = olds[i]
                _walk(x, it, sch.index_path(path, i), o[1], o[0], out)
    run_rules(v, s, path, old, has_old, out, root)


def _correlate(v: list[Any], old: list[Any] | None, s: sch.Schema) -> list[tuple[bool, Any]]:
    none = [(False, None)] * len(v)
    if old is None:
        return none
    lt = s.get(sch.LIST_TYPE)
    if lt == "map":
        keys = [k for k in s.get(sch.LIST_MAP_KEYS) or [] if isinstance(k, str)]
        by_key = {sch.map_key(o, keys, s): o for o in old}
        return [(True, by_key[k]) if (k := sch.map_key(x, keys, s)) in by_key else (False, None) for x in v]
    if lt == "set":
        olds = {sch._hashable(o) for o in old}
        return [(True, x) if sch._hashable(x) in olds else (False, None) for x in v]
    return none
