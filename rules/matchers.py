"""Label matchers with Alertmanager's semantics, shared by rules, silences and the CMDB.

- `name="v"`, `name!="v"`, `name=~"re"`, `name!~"re"`; values may be quoted
  (with `\\"`, `\\\\` and `\\n` escapes) or bare. Any other backslash stays,
  as Alertmanager reads it: `=~"host-\\d+"` is the regex `host-\\d+`, and
  `="a\\tb"` is a backslash and a `t`.
- A missing label matches as the empty string, so `team=""` selects alerts
  without a `team` label and `team!=""` those that have one.
- Regexes are fully anchored: `=~"web"` does not match `webserver`. They are
  RE2 regexes, as in Alertmanager (Go's regexp is RE2): the same syntax (no
  look-around, no back-references; `(?i)` anywhere) and matching in time linear
  in the value, so no pattern a rule, silence or CMDB file holds can make
  matching an alert take minutes (`(a+)+b` would in a backtracking engine).
- Names may contain dots so that rules can match CMDB attributes (`ci.owner`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import re2

from rules.literals import regex_keys

OPS = ("=~", "!~", "!=", "=")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*$")
_MATCHER = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$", re.S)


class MatcherError(ValueError):
    """A matcher that cannot be parsed; the message says what is wrong."""

    reason = ""  # for an invalid regex: what RE2 found wrong with it


_RE2_OPTIONS = re2.Options()
_RE2_OPTIONS.log_errors = False  # errors are raised with their reason, not also printed


class Regexes:
    """Fully anchored RE2 regexes tested together: `matching(value)` gives the
    positions of those that match it. Built on `re2.Set`, which answers which
    patterns match without working out where (faster than a match per pattern)."""

    __slots__ = ("_set",)

    def __init__(self, patterns: Sequence[str]) -> None:
        self._set = re2.Set.FullMatchSet(_RE2_OPTIONS)
        for p in patterns:
            try:
                self._set.Add(p)
            except re2.error:
                reason = _reason_for(p)
                error = MatcherError(f"invalid regex {p!r}: {reason}")
                error.reason = reason
                raise error from None
        self._set.Compile()

    def matching(self, value: str) -> list[int]:
        return self._set.Match(value) or []

    def any(self, value: str) -> bool:
        return self._set.Match(value) is not None


def _reason_for(pattern: str) -> str:
    """What RE2 finds wrong with a pattern a set refused (the set does not say)."""
    try:
        re2.compile(pattern, _RE2_OPTIONS)
    except re2.error as exc:
        msg = exc.args[0] if exc.args else str(exc)
        return msg.decode(errors="replace") if isinstance(msg, bytes) else str(msg)
    return "refused by RE2"


# The matchers made so far, by (name, op, value). A Matcher never changes, and a large
# CMDB repeats the same ones in every cluster it spans (`namespace="app"`,
# `job=~"api-(exporter|metrics)"`): each regex is read and compiled once. Only valid
# matchers are kept; the whole cache is dropped when it reaches _MADE_MAX entries.
_MADE: dict[tuple[str, str, str], Matcher] = {}
_MADE_MAX = 100_000
_PARSED: dict[str, Matcher] = {}  # the same by text (`cluster="c1"`), kept alike: parsed once


@dataclass(frozen=True, slots=True)
class Matcher:
    name: str
    op: str
    value: str
    _regex: Regexes | None = field(default=None, compare=False, repr=False)
    # a regex that is a finite alternation of literals, as the set of strings it
    # matches: tested by membership and never compiled
    _values: frozenset[str] | None = field(default=None, compare=False, repr=False)
    # `op == "="`, kept: CMDB loading asks it of every matcher several times
    is_equality: bool = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "is_equality", self.op == "=")

    @classmethod
    def create(cls, name: str, op: str, value: str) -> Matcher:
        made = _MADE.get((name, op, value))
        if made is not None:
            return made
        made = cls._create(name, op, value)
        if len(_MADE) >= _MADE_MAX:
            _MADE.clear()
        _MADE[name, op, value] = made
        return made

    @classmethod
    def _create(cls, name: str, op: str, value: str) -> Matcher:
        if op not in OPS:
            raise MatcherError(f"unknown matcher operator {op!r} (use =, !=, =~ or !~)")
        if not _NAME.match(name):
            raise MatcherError(f"invalid label name {name!r}")
        if op in ("=~", "!~"):
            keys = regex_keys(value)
            if keys is not None and keys[0] == "exact":
                return cls(name, op, value, None, frozenset(keys[1]))
            try:
                return cls(name, op, value, Regexes([value]))
            except MatcherError as exc:
                raise MatcherError(f"invalid regex in {name}{op}{value!r}: {exc.reason}") from None
        return cls(name, op, value)

    @property
    def literals(self) -> frozenset[str] | None:
        """For =~ and !~: the strings the regex matches when it is a finite list of
        literals (`a|b`, `api-(exporter|metrics)`), else None."""
        return self._values

    def matches_value(self, value: str) -> bool:
        op = self.op
        if op == "=":
            return value == self.value
        if op == "!=":
            return value != self.value
        if self._values is not None:
            hit = value in self._values
        else:
            hit = self._regex.any(value)  # type: ignore[union-attr]
        return hit if op == "=~" else not hit

    def matches(self, labels: Mapping[str, str]) -> bool:
        return self.matches_value(labels.get(self.name, ""))

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'{self.name}{self.op}"{escaped}"'


_ESCAPES = {"n": "\n", "\\": "\\", '"': '"', "'": "'"}  # Alertmanager's, and a single-quoted value's quote


def _unquote(raw: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "\"'":
        body = raw[1:-1]
        if "\\" not in body and raw[0] not in body:  # nothing to undo (the usual case)
            return body
        out = []
        i = 0
        while i < len(body):
            ch = body[i]
            if ch == "\\" and i + 1 < len(body):
                nxt = body[i + 1]
                # a backslash before anything else is the regex's own (`\d`, `\.`)
                out.append(_ESCAPES.get(nxt, ch + nxt))
                i += 2
                continue
            if ch == raw[0]:
                raise MatcherError(f"unescaped quote inside {raw!r}")
            out.append(ch)
            i += 1
        return "".join(out)
    if raw[:1] in "\"'" or raw[-1:] in "\"'":
        raise MatcherError(f"unbalanced quotes in {raw!r}")
    return raw


def parse_matcher(text: str) -> Matcher:
    """Parse one matcher such as `severity=~"critical|page"`."""
    if not isinstance(text, str):
        raise MatcherError(f'a matcher must be a string like name="value", got {text!r}')
    made = _PARSED.get(text)
    if made is not None:
        return made
    m = _MATCHER.match(text)
    if not m:
        raise MatcherError(f'cannot parse matcher {text!r} (expected name="value", !=, =~ or !~)')
    name, op, raw = m.groups()
    made = Matcher.create(name, op, _unquote(raw))
    if len(_PARSED) >= _MADE_MAX:
        _PARSED.clear()
    _PARSED[text] = made
    return made


def _split_selector(text: str) -> list[str]:
    """Split `{a="x,y", b=~"z"}` on the commas outside quotes."""
    body = text.strip()
    if body.startswith("{"):
        if not body.endswith("}"):
            raise MatcherError(f"unbalanced braces in {text!r}")
        body = body[1:-1]
    parts, cur, quote, esc = [], [], "", False
    for ch in body:
        if esc:
            cur.append(ch)
            esc = False
        elif ch == "\\":
            cur.append(ch)
            esc = True
        elif quote:
            cur.append(ch)
            if ch == quote:
                quote = ""
        elif ch in "\"'":
            cur.append(ch)
            quote = ch
        elif ch == ",":
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if quote:
        raise MatcherError(f"unbalanced quotes in {text!r}")
    parts.append("".join(cur))
    return [p for p in (p.strip() for p in parts) if p]


# a match mapping's values, and those whose str() is not what was written (made once:
# `str | int` written in an isinstance() test builds the union anew each time)
_LABEL_VALUE = str | int | float | bool
_NOT_AS_WRITTEN = bool | float


def parse_matchers(spec: str | Iterable[str] | Mapping[str, str] | None) -> list[Matcher]:
    """Parse matchers from a selector string, a list of matcher strings, or a
    `{label: value}` mapping (equality, as in a CMDB `match` block)."""
    if spec is None:
        return []
    if isinstance(spec, Mapping):
        written = getattr(spec, "text_of", None)  # from a YAML file: `canary: true` is "true"
        out = []
        for name, value in spec.items():
            if written is not None and not isinstance(value, str):
                value = written(name) or value
            if not isinstance(name, str) or not isinstance(value, _LABEL_VALUE):
                raise MatcherError(
                    f"match entries must be label: value strings, got {name!r}: {value!r}"
                )
            if isinstance(value, _NOT_AS_WRITTEN):  # str() of them is not what was written
                raise MatcherError(f"{name}: {value!r} is not a string: quote the value")
            out.append(Matcher.create(name, "=", str(value)))
        return out
    if isinstance(spec, str):
        return [parse_matcher(p) for p in _split_selector(spec)]
    if isinstance(spec, Iterable):
        out = []
        for item in spec:
            # an item may be a selector, as in Alertmanager's `matchers:` ('{a="b"}', 'a="b", c="d"')
            out.extend(
                parse_matchers(item)
                if isinstance(item, str) and ("," in item or item.lstrip().startswith("{"))
                else [parse_matcher(item)]
            )
        return out
    raise MatcherError(f'expected matchers (a list of name="value" strings), got {spec!r}')


def matches_all(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)
