"""Label and field selectors: parsing, validation and matching (pure).

Grammar and error texts follow upstream ``apimachinery/pkg/labels`` and ``pkg/fields``:
label selectors accept ``k=v``, ``k==v``, ``k!=v``, ``k in (a,b)``, ``k notin (a,b)``, ``k``,
``!k``, ``k>1``, ``k<1`` joined by commas (AND); field selectors accept ``=``, ``==``, ``!=``
with ``\\``-escaping of ``\\``, ``,`` and ``=`` in values.  Parse errors raise a 400 BadRequest
``ApiStatusError``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from servicenet.api.errors import bad_request
from servicenet.api.fieldselectors import FieldSelector, FieldTerm, field_set, supported_field_labels

__all__ = [
    "FieldSelector",
    "FieldTerm",
    "LabelSelector",
    "Requirement",
    "equality_selector_matches",
    "field_set",
    "format_labels",
    "label_selector_from_dict",
    "selector_matches",
    "selector_to_string",
    "supported_field_labels",
]

# ---------------------------------------------------------------------------------------------
# validation helpers (messages as apimachinery/pkg/util/validation)

_QNAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_QNAME_RE = re.compile("^" + _QNAME_FMT + "$")
_LVALUE_FMT = "(" + _QNAME_FMT + ")?"
_LVALUE_RE = re.compile("^" + _LVALUE_FMT + "$")
_DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUB_FMT = _DNS1123_LABEL_FMT + "(\\." + _DNS1123_LABEL_FMT + ")*"
_DNS1123_SUB_RE = re.compile("^" + _DNS1123_SUB_FMT + "$")


def _regex_error(msg: str, fmt: str, *examples: str) -> str:
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    out = msg + " (e.g. "
    for i, ex in enumerate(examples):
        if i:
            out += " or "
        out += f"'{ex}', "
    return out + f"regex used for validation is '{fmt}')"


_QNAME_MSG = ("must consist of alphanumeric characters, '-', '_' or '.', "
              "and must start and end with an alphanumeric character")
_LVALUE_MSG = ("a valid label must be an empty string or consist of alphanumeric characters, "
               "'-', '_' or '.', and must start and end with an alphanumeric character")
_DNS1123_SUB_MSG = ("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
                    "'-' or '.', and must start and end with an alphanumeric character")


def qualified_name_errors(value: str) -> list[str]:
    """Upstream ``IsQualifiedName``: optional DNS-subdomain prefix, ``/``, name ≤ 63."""
    errs: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            if len(prefix) > 253:
                errs.append("prefix part must be no more than 253 characters")
            if not _DNS1123_SUB_RE.match(prefix):
                errs.append("prefix part " + _regex_error(_DNS1123_SUB_MSG, _DNS1123_SUB_FMT, "example.com"))
    else:
        return ["a qualified name " + _regex_error(_QNAME_MSG, _QNAME_FMT, "MyName", "my.name", "123-abc")
                + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part must be no more than 63 characters")
    if not _QNAME_RE.match(name):
        errs.append("name part " + _regex_error(_QNAME_MSG, _QNAME_FMT, "MyName", "my.name", "123-abc"))
    return errs


def label_value_errors(value: str) -> list[str]:
    errs: list[str] = []
    if len(value) > 63:
        errs.append("must be no more than 63 characters")
    if not _LVALUE_RE.match(value):
        errs.append(_regex_error(_LVALUE_MSG, _LVALUE_FMT, "MyValue", "my_value", "12345"))
    return errs


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _invalid(path: str, value: str, errs: list[str]) -> str:
    return f"{path}: Invalid value: {_quote(value)}: " + "; ".join(errs)


# ---------------------------------------------------------------------------------------------
# label selectors

_OPS_DISPLAY = ("in", "notin", "=", "==", "!=", "gt", "lt")


@dataclass(frozen=True, slots=True)
class Requirement:
    """One label requirement. ``op`` ∈ ``=``, ``==``, ``!=``, ``in``, ``notin``, ``exists``, ``!``, ``gt``, ``lt``."""

    key: str
    op: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        op = self.op
        if op in ("=", "==", "in"):
            return self.key in labels and labels[self.key] in self.values
        if op in ("!=", "notin"):
            return self.key not in labels or labels[self.key] not in self.values
        if op == "exists":
            return self.key in labels
        if op == "!":
            return self.key not in labels
        if op in ("gt", "lt"):
            if self.key not in labels:
                return False
            try:
                have = int(labels[self.key])
                want = int(self.values[0])
            except (ValueError, IndexError):
                return False
            return have > want if op == "gt" else have < want
        return False

    def __str__(self) -> str:
        op = self.op
        if op == "exists":
            return self.key
        if op == "!":
            return "!" + self.key
        if op in ("in", "notin"):
            return f"{self.key} {op} ({','.join(self.values)})"
        if op == "gt":
            return f"{self.key}>{self.values[0]}"
        if op == "lt":
            return f"{self.key}<{self.values[0]}"
        return f"{self.key}{op}{self.values[0]}"


def _new_requirement(key: str, op: str, values: Iterable[str]) -> Requirement:
    """Upstream ``NewRequirement`` validation; raises ``ValueError`` with upstream's text."""
    vals = sorted(set(values))
    errs = qualified_name_errors(key)
    if errs:
        raise ValueError(_invalid("key", key, errs))
    if op in ("in", "notin"):
        if not vals:
            raise ValueError("values: Invalid value: null: for 'in', 'notin' operators, values set can't be empty")
    elif op in ("=", "==", "!="):
        if len(vals) != 1:
            raise ValueError(f"values: Invalid value: [{','.join(_quote(v) for v in vals)}]: "
                             "exact-match compatibility requires one single value")
    elif op in ("exists", "!"):
        if vals:
            raise ValueError(f"values: Invalid value: [{','.join(_quote(v) for v in vals)}]: "
                             "values set must be empty for exists and does not exist")
    elif op in ("gt", "lt"):
        if len(vals) != 1:
            raise ValueError("values: Invalid value: null: for 'Gt', 'Lt' operators, "
                             "exactly one value is required")
        try:
            int(vals[0])
        except ValueError:
            raise ValueError(f"values[0]: Invalid value: {_quote(vals[0])}: for 'Gt', 'Lt' operators, "
                             "the value must be an integer") from None
        return Requirement(key, op, tuple(vals))
    else:
        raise ValueError(f"operator: Unsupported value: {_quote(op)}")
    for i, v in enumerate(vals):
        verrs = label_value_errors(v)
        if verrs:
            raise ValueError(_invalid(f"values[{i}][{key}]", v, verrs))
    return Requirement(key, op, tuple(vals))


# lexer -----------------------------------------------------------------------

_ID, _END, _COMMA, _NOTEXIST, _EQ, _DEQ, _NEQ, _IN, _NOTIN, _OPEN, _CLOSE, _GT, _LT, _ERR = range(14)
_SPECIAL = "=!(),<>"
_SYMBOLS = {"!": _NOTEXIST, "!=": _NEQ, "=": _EQ, "==": _DEQ, "(": _OPEN, ")": _CLOSE, ",": _COMMA,
            ">": _GT, "<": _LT}


def _lex(s: str) -> list[tuple[int, str]]:
    toks: list[tuple[int, str]] = []
    i, n = 0, len(s)
    while True:
        while i < n and s[i] in " \t\r\n":
            i += 1
        if i >= n:
            toks.append((_END, ""))
            return toks
        c = s[i]
        if c in _SPECIAL:
            j = i
            while j < n and s[j] in _SPECIAL and s[i:j + 1] in _SYMBOLS:
                j += 1
            lit = s[i:j]
            if not lit:
                toks.append((_ERR, c))
                i += 1
            else:
                toks.append((_SYMBOLS[lit], lit))
                i = j
            continue
        j = i
        while j < n and s[j] not in _SPECIAL and s[j] not in " \t\r\n":
            j += 1
        lit = s[i:j]
        toks.append((_IN if lit == "in" else _NOTIN if lit == "notin" else _ID, lit))
        i = j


class _Parser:
    def __init__(self, s: str) -> None:
        self.toks = _lex(s)
        self.pos = 0

    def _tok(self, values: bool, advance: bool) -> tuple[int, str]:
        tok, lit = self.toks[min(self.pos, len(self.toks) - 1)]
        if advance:
            self.pos += 1
        if values and tok in (_IN, _NOTIN):
            tok = _ID
        return tok, lit

    def peek(self) -> tuple[int, str]:
        return self._tok(True, False)

    def take(self, values: bool = True) -> tuple[int, str]:
        return self._tok(values, True)

    def parse(self) -> list[Requirement]:
        reqs: list[Requirement] = []
        while True:
            tok, lit = self.peek()
            if tok in (_ID, _NOTEXIST):
                try:
                    reqs.append(self.requirement())
                except ValueError as e:
                    raise ValueError(f"unable to parse requirement: {e}") from None
                t, lit2 = self.take()
                if t == _END:
                    return reqs
                if t == _COMMA:
                    t2, l2 = self.peek()
                    if t2 not in (_ID, _NOTEXIST):
                        raise ValueError(f"found '{l2}', expected: identifier after ','")
                    continue
                raise ValueError(f"found '{lit2}', expected: ',' or 'end of string'")
            if tok == _END:
                return reqs
            raise ValueError(f"found '{lit}', expected: !, identifier, or 'end of string'")

    def requirement(self) -> Requirement:
        op = ""
        tok, lit = self.take()
        if tok == _NOTEXIST:
            op = "!"
            tok, lit = self.take()
        if tok != _ID:
            raise ValueError(f"found '{lit}', expected: identifier")
        errs = qualified_name_errors(lit)
        if errs:
            raise ValueError(_invalid("<nil>", lit, errs))
        key = lit
        nxt, _ = self.peek()
        if op == "!" or nxt in (_END, _COMMA):
            # "!key" never takes an operator; whatever follows is reported by the caller
            return _new_requirement(key, op or "exists", ())
        tok, lit = self.take(values=False)
        ops = {_IN: "in", _NOTIN: "notin", _EQ: "=", _DEQ: "==", _NEQ: "!=", _GT: "gt", _LT: "lt"}
        if tok not in ops:
            raise ValueError(f"found '{lit}', expected: {', '.join(_OPS_DISPLAY)}")
        op = ops[tok]
        if op in ("in", "notin"):
            values = self.set_values()
        else:
            values = self.exact_value()
        return _new_requirement(key, op, values)

    def set_values(self) -> list[str]:
        tok, lit = self.take()
        if tok != _OPEN:
            raise ValueError(f"found '{lit}' expected: '('")
        tok, lit = self.peek()
        if tok in (_ID, _COMMA):
            vals = self.identifiers()
            t, _ = self.take()
            if t != _CLOSE:
                raise ValueError(f"found '{lit}', expected: ')'")
            return vals
        if tok == _CLOSE:
            self.take()
            return [""]
        raise ValueError(f"found '{lit}', expected: ',', ')' or identifier")

    def identifiers(self) -> list[str]:
        out: list[str] = []
        while True:
            tok, lit = self.take()
            if tok == _ID:
                out.append(lit)
                t2, l2 = self.peek()
                if t2 == _COMMA:
                    continue
                if t2 == _CLOSE:
                    return out
                raise ValueError(f"found '{l2}', expected: ',' or ')'")
            if tok == _COMMA:
                if not out:
                    out.append("")
                t2, _ = self.peek()
                if t2 == _CLOSE:
                    out.append("")
                    return out
                if t2 == _COMMA:
                    self.take()
                    out.append("")
                continue
            raise ValueError(f"found '{lit}', expected: ',', or identifier")

    def exact_value(self) -> list[str]:
        tok, _ = self.peek()
        if tok in (_END, _COMMA):
            return [""]
        tok, lit = self.take()
        if tok == _ID:
            return [lit]
        raise ValueError(f"found '{lit}', expected: identifier")


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """A conjunction of label requirements, sorted by key like upstream's ``internalSelector``."""

    requirements: tuple[Requirement, ...] = ()
    nothing: bool = False  # upstream ``labels.Nothing()``: matches no object

    @staticmethod
    def parse(s: str | None) -> LabelSelector:
        if s is None or not s.strip():
            return LabelSelector()
        try:
            reqs = _Parser(s).parse()
        except ValueError as e:
            raise bad_request(str(e)) from None
        return LabelSelector(tuple(sorted(reqs, key=lambda r: r.key)))

    @property
    def empty(self) -> bool:
        return not self.requirements and not self.nothing

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        if self.nothing:
            return False
        lab = labels or {}
        return all(r.matches(lab) for r in self.requirements)

    def __str__(self) -> str:
        return ",".join(str(r) for r in self.requirements)


def label_selector_from_dict(sel: Mapping[str, Any] | None) -> LabelSelector:
    """``metav1.LabelSelectorAsSelector``: ``None`` → matches nothing, ``{}`` → everything.

    Raises a 400 ``ApiStatusError`` for invalid keys/values/operators.
    """
    if sel is None:
        return LabelSelector(nothing=True)
    reqs: list[Requirement] = []
    try:
        for k, v in (sel.get("matchLabels") or {}).items():
            reqs.append(_new_requirement(k, "=", [v]))
        for expr in sel.get("matchExpressions") or []:
            op = expr.get("operator")
            key = expr.get("key", "")
            vals = expr.get("values") or []
            mapped = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}.get(op or "")
            if mapped is None:
                raise ValueError(f'"{op}" is not a valid label selector operator')
            reqs.append(_new_requirement(key, mapped, vals))
    except ValueError as e:
        raise bad_request(str(e)) from None
    return LabelSelector(tuple(sorted(reqs, key=lambda r: r.key)))


def selector_to_string(sel: LabelSelector | Mapping[str, Any] | None) -> str:
    """The canonical selector string (``labels.Selector.String()``)."""
    if not isinstance(sel, LabelSelector):
        sel = label_selector_from_dict(sel)
    return str(sel)


def format_labels(labels: Mapping[str, str] | None) -> str:
    """``labels.FormatLabels``: sorted ``k=v`` joined by commas, ``<none>`` when empty."""
    if not labels:
        return "<none>"
    return ",".join(f"{k}={labels[k]}" for k in sorted(labels))


_LENIENT_OPS = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}


def selector_matches(sel: Mapping[str, Any] | None, labels: Mapping[str, str] | None) -> bool:
    """Match a stored ``metav1.LabelSelector`` dict without re-validating it.

    ``None`` matches nothing, ``{}`` everything (``LabelSelectorAsSelector``). Stored objects were
    validated on write, so an unknown operator is ignored rather than raised. Uses the same
    :class:`Requirement` semantics as parsed selectors.
    """
    if sel is None:
        return False
    lab = labels or {}
    for k, v in (sel.get("matchLabels") or {}).items():
        if lab.get(k) != v:
            return False
    for expr in sel.get("matchExpressions") or ():
        op = _LENIENT_OPS.get(expr.get("operator") or "")
        if op is not None and not Requirement(expr.get("key", ""), op, tuple(expr.get("values") or ())).matches(lab):
            return False
    return True


def equality_selector_matches(selector: Mapping[str, str] | None, labels: Mapping[str, str] | None) -> bool:
    """A Service's ``spec.selector``: every pair must match; an empty or absent selector matches nothing."""
    if not selector:
        return False
    lab = labels or {}
    return all(lab.get(k) == v for k, v in selector.items())

