"""Small templates for rule actions, in the style of Prometheus alerting rules.

`{{ $labels.instance }}`, `{{ $annotations.summary }}` and `{{ $ci.owner }}`
(`$ci.id` is the alert's CI) are replaced by the alert's values, the empty
string when absent. A value may go through filters: `| default "none"`,
`| upper`, `| lower`, `| title`. Anything else is an error at load time, so a
typo is reported as `file:line: message` instead of rendering garbage.

This is deliberately not a general template engine: rules run on every alert,
and a templater that can only substitute values is fast and cannot loop.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

_EXPR = re.compile(r"\{\{(.*?)\}\}", re.S)
_REF = re.compile(r"^\$(labels|annotations|ci)\.([A-Za-z_][A-Za-z0-9_]*)$")
_DEFAULT = re.compile(r'^default\s+"((?:[^"\\]|\\.)*)"$')
_SIMPLE_FILTERS: dict[str, Callable[[str], str]] = {
    "upper": str.upper,
    "lower": str.lower,
    "title": str.title,
}


class TemplateError(ValueError):
    """A template that cannot be compiled; the message says what is wrong."""


@dataclass(frozen=True, slots=True)
class _Ref:
    source: str  # labels | annotations | ci
    key: str
    filters: tuple[Callable[[str], str], ...]


def _default(value: str) -> Callable[[str], str]:
    return lambda s: s if s else value


def _compile_expr(expr: str) -> _Ref:
    parts = [p.strip() for p in expr.split("|")]
    m = _REF.match(parts[0])
    if not m:
        raise TemplateError(
            f"unknown template expression {{{{{expr}}}}}: use $labels.NAME, "
            "$annotations.NAME or $ci.ATTR"
        )
    filters: list[Callable[[str], str]] = []
    for f in parts[1:]:
        if f in _SIMPLE_FILTERS:
            filters.append(_SIMPLE_FILTERS[f])
            continue
        d = _DEFAULT.match(f)
        if d:
            filters.append(_default(re.sub(r"\\(.)", r"\1", d.group(1))))
            continue
        raise TemplateError(f'unknown template filter {f!r} (use default "x", upper, lower, title)')
    return _Ref(m.group(1), m.group(2), tuple(filters))


class Template:
    """A compiled template; `render` substitutes an alert's values."""

    __slots__ = ("source", "_parts", "uses_ci")

    def __init__(self, source: str) -> None:
        if not isinstance(source, str):
            raise TemplateError(f"expected a string, got {source!r}")
        self.source = source
        parts: list[str | _Ref] = []
        pos = 0
        for m in _EXPR.finditer(source):
            if m.start() > pos:
                parts.append(source[pos : m.start()])
            parts.append(_compile_expr(m.group(1).strip()))
            pos = m.end()
        rest = source[pos:]
        if "{{" in rest:
            raise TemplateError(f"unclosed '{{{{' in template {source!r}")
        if rest:
            parts.append(rest)
        self._parts = tuple(parts)
        self.uses_ci = any(isinstance(p, _Ref) and p.source == "ci" for p in parts)

    @property
    def is_constant(self) -> bool:
        return all(isinstance(p, str) for p in self._parts)

    def render(
        self,
        labels: Mapping[str, str],
        annotations: Mapping[str, str],
        ci: Any = None,
    ) -> str:
        """`ci`: the CI's attributes, anything with `get(name)` (a mapping, a `CiView`)."""
        out = []
        for part in self._parts:
            if isinstance(part, str):
                out.append(part)
                continue
            if part.source == "labels":
                value = labels.get(part.key, "")
            elif part.source == "annotations":
                value = annotations.get(part.key, "")
            else:
                value = attr_string((ci or {}).get(part.key))
            for f in part.filters:
                value = f(value)
            out.append(value)
        return "".join(out)

    def __repr__(self) -> str:
        return f"Template({self.source!r})"


def attr_string(value: Any) -> str:
    """A CMDB attribute as the string a matcher or template sees."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple | set | frozenset):
        return ",".join(attr_string(v) for v in value)
    return str(value)
