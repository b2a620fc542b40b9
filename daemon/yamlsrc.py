"""YAML loading that remembers where each value came from.

Config, CMDB and rule files report errors as `file:line: message`, as
`promtool` and `amtool` do; these types carry the line numbers through.
"""

from __future__ import annotations

import functools
import json
import os
import re
from collections.abc import Mapping
from itertools import accumulate
from types import MappingProxyType
from typing import Any

import yaml

from daemon import heap


class LineDict(dict):
    """A mapping from a YAML file; `line` is its own line, `key_lines[k]` each key's (a key
    not there is on the mapping's line)."""

    line: int = 0
    key_lines: Mapping[Any, int]
    texts: dict[Any, str] | None = None  # see `text_of`

    def line_of(self, key: Any) -> int:
        return self.key_lines.get(key, self.line)

    def text_of(self, key: Any) -> str | None:
        """The value of `key` as the file writes it, when YAML read it as something other
        than a string (`true`, `no`, `1.10`, `012`, a date): what Go's YAML, and so
        Alertmanager, gives a string field. None for strings, collections and nulls."""
        return self.texts.get(key) if self.texts else None


class LineList(list):
    """A sequence from a YAML file; `line` is its own line, `item_lines[i]` each item's."""

    line: int = 0
    item_lines: list[int]

    def line_of(self, index: int) -> int:
        return self.item_lines[index] if index < len(self.item_lines) else self.line


# libyaml's parser when the system has it (several times faster on big CMDBs).
_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_STR = "tag:yaml.org,2002:str"
_MAP = yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG
_SEQ = yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG
_MERGE = "tag:yaml.org,2002:merge"  # a `<<` key
_FLATTEN = {_MERGE, "tag:yaml.org,2002:value"}  # and a `=` key
_SCALAR = yaml.ScalarNode


class _Loader(_Base):  # type: ignore[misc,valid-type]
    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        if not self.yaml_path_resolvers:
            # Without path resolvers (none are registered) a node's tag follows from its
            # kind, text and implicitness alone, and a big file repeats the same keys and
            # values thousands of times: each is resolved once per document. The cache
            # (a C function, called by libyaml's composer for every node) goes with the loader.
            self.resolve = functools.lru_cache(maxsize=None)(_RESOLVER.resolve)


_RESOLVER = yaml.resolver.Resolver()  # the loader's own resolver (its tables are the class's)


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> LineDict:
    out = LineDict()
    _fill_mapping(out, node, lambda n: loader.construct_object(n, deep=True), loader)
    return out


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> LineList:
    out = LineList()
    _fill_sequence(out, node, lambda n: loader.construct_object(n, deep=True))
    return out


def _fill_mapping(out: LineDict, node: yaml.MappingNode, value: Any, loader: _Loader) -> None:
    merged = 0  # leading pairs that `<<` merge keys brought in: the mapping's own keys override them
    for k, _ in node.value:
        if k.tag in _FLATTEN:
            own = sum(1 for key_node, _ in node.value if key_node.tag != _MERGE)
            loader.flatten_mapping(node)
            merged = len(node.value) - own
            break
    out.line = node.start_mark.line + 1
    key_lines = out.key_lines = {}
    own_keys: set[Any] = set()
    for i, (key_node, value_node) in enumerate(node.value):
        # a plain string (nearly every key and value) is taken as is, without a call
        if key_node.tag == _STR and type(key_node) is _SCALAR:
            key = key_node.value
        else:
            key = value(key_node)
            if isinstance(key, list | dict):
                raise yaml.constructor.ConstructorError(
                    None, None, "a mapping key must be a scalar", key_node.start_mark
                )
        if i >= merged:
            if key in (own_keys if merged else out):
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            if merged:
                own_keys.add(key)
        if value_node.tag == _STR and type(value_node) is _SCALAR:
            out[key] = value_node.value
        else:
            v = out[key] = value(value_node)
            if v is not None and type(value_node) is _SCALAR:  # so not a string
                if out.texts is None:
                    out.texts = {}
                out.texts[key] = value_node.value
        key_lines[key] = key_node.start_mark.line + 1


def _fill_sequence(out: LineList, node: yaml.SequenceNode, value: Any) -> None:
    items = node.value
    out.extend([child.value if child.tag == _STR and type(child) is _SCALAR else value(child)
                for child in items])
    out.line = node.start_mark.line + 1
    out.item_lines = [child.start_mark.line + 1 for child in items]


_Loader.add_constructor(_MAP, _construct_mapping)
_Loader.add_constructor(_SEQ, _construct_sequence)


class _Converter:
    """The values of a composed document. Plain strings, mappings and sequences (nearly
    everything in a config or CMDB) are built here directly, several times faster than
    PyYAML's general constructor; every other tag goes through it, with the same
    results. A node seen twice (an alias) gives the same value, as with PyYAML."""

    def __init__(self, loader: _Loader) -> None:
        self.loader = loader
        self.done: dict[int, Any] = {}

    def value(self, node: yaml.Node) -> Any:
        tag = node.tag
        if tag == _STR and type(node) is yaml.ScalarNode:
            return node.value
        got = self.done.get(id(node))
        if got is not None:
            return got
        out: Any
        if tag == _MAP and type(node) is yaml.MappingNode:
            out = self.done[id(node)] = LineDict()
            _fill_mapping(out, node, self.value, self.loader)
        elif tag == _SEQ and type(node) is yaml.SequenceNode:
            out = self.done[id(node)] = LineList()
            _fill_sequence(out, node, self.value)
        else:
            try:
                out = self.done[id(node)] = self.loader.construct_object(node, deep=True)
            except (ValueError, OverflowError) as exc:  # a date like 2026-02-30
                raise yaml.constructor.ConstructorError(
                    None, None, f"{node.value!r} is not a valid {node.tag.rsplit(':', 1)[-1]}: {exc}",
                    node.start_mark) from None
        return out


class SourceError(Exception):
    """An error in a file, reported as `file:line: message`."""

    def __init__(self, path: str, line: int, message: str) -> None:
        super().__init__(f"{path}:{line}: {message}")
        self.path = path
        self.line = line
        self.message = message


_FILE_CACHE: dict[str, tuple[tuple[int, int], Any]] = {}


def load_yaml(path: str) -> Any:
    """Load one YAML file into LineDict/LineList values; errors become SourceError.

    A file that has not changed since it was last read (same size and mtime) is
    not parsed again: check-config, start-up and replay all read the same files.
    Callers must not modify what they get back.
    """
    try:
        st = os.stat(path)
        stamp = (st.st_mtime_ns, st.st_size)
        hit = _FILE_CACHE.get(path)
        if hit is not None and hit[0] == stamp:
            return hit[1]
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as exc:
        raise SourceError(path, 0, f"cannot read file: {exc.strerror or exc}") from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:  # YAML files are UTF-8 (an export in Latin-1 is not)
        line = data.count(b"\n", 0, exc.start) + 1
        raise SourceError(path, line, f"not UTF-8 text (byte 0x{data[exc.start]:02x})") from None
    value = load_yaml_text(text, path)
    if len(_FILE_CACHE) > 64:
        _FILE_CACHE.clear()
    _FILE_CACHE[path] = (stamp, value)
    return value


def load_yaml_text(text: str, path: str = "<string>") -> Any:
    with heap.paused():
        value = _JsonReader().read(text)
    if value is not _NOT_JSON:
        return value
    deep = _too_deep(text)
    if deep is not None:
        raise SourceError(path, deep, "invalid YAML: values nested too deeply")
    loader = _Loader(text)
    node = None
    try:
        with heap.paused():  # see daemon.heap: a big file is hundreds of thousands of objects
            node = loader.get_single_node()
            return None if node is None else _Converter(loader).value(node)
    except RecursionError:  # `[[[[...` hundreds deep: no config needs it
        raise SourceError(path, _deepest_line(node), "invalid YAML: values nested too deeply") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        problem = exc.problem or str(exc)
        if "nesting depth" in problem:  # libyaml's own bound (PyYAML 6.0.4 on), said as ours
            problem = "values nested too deeply"
        raise SourceError(path, line, f"invalid YAML: {problem}") from exc
    except yaml.reader.ReaderError as exc:  # a control character: said on its line, on one line
        code = ord(exc.character) if isinstance(exc.character, str) else int(exc.character)
        # the first character the reader refuses: the first of them in the text (libyaml's
        # position counts bytes, not characters)
        where = text.find(chr(code))
        line = text.count("\n", 0, where) + 1 if where >= 0 else 0
        raise SourceError(path, line, f"invalid YAML: unacceptable character #x{code:04x}: {exc.reason}") from exc
    except yaml.YAMLError as exc:
        raise SourceError(path, 0, f"invalid YAML: {exc}") from exc
    finally:
        loader.dispose()


# -- JSON on one line ----------------------------------------------------------
# JSON is YAML, and CMDB exports are often JSON on one line (as `json.dump` writes
# it). The json module reads such a document several times faster than libyaml's
# nodes are built and converted, and every value in it is on line 1. It is read that
# way only where YAML surely reads the same: one line of characters YAML allows, no
# surrogate escape (YAML refuses them), no duplicate key, no key long enough for YAML
# to refuse (it wants the `:` within 1,024 characters of the key's start, so keys
# stay under _JSON_KEY_MAX characters, at most six each when escaped, and runs of
# spaces under 64), no more than _JSON_DEPTH levels. Numbers and constants are
# resolved as YAML resolves them (`1e5` is a string there). Every other text, valid
# or not, is read as YAML, which reports its errors as before.

_NOT_JSON = object()
_NO_KEY_LINES: Mapping[Any, int] = MappingProxyType({})  # every key on its mapping's line (1)
_NOT_YAML_CHAR = (  # YAML's printable characters, less line breaks and a BOM
    "[^\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abAB]")
_JSON_KEY_MAX = 150
_JSON_DEPTH = 100


def _yaml_chars_only(text: str) -> bool:
    """Whether `text` has only characters of _NOT_YAML_CHAR's set. For ASCII text (nearly
    every export) the set is what `isprintable` allows (a space to `~`), asked without
    the regex, which takes 3 ms to compile: it is compiled for other text only."""
    if text.isascii():
        return text.isprintable()
    return re.search(_NOT_YAML_CHAR, text) is None


class _NotJson(Exception):
    """The document is to be read as YAML."""


class _Literal:
    """A JSON number or constant (`NaN`) as written, until YAML resolves it."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


class _JsonReader:
    def __init__(self) -> None:
        self.depth: dict[int, int] = {}  # levels of each mapping its parent has not taken yet
        self.literals: dict[str, tuple[Any, str | None]] = {}  # text -> value, and text unless a string
        self.loader: _Loader | None = None

    def read(self, text: str) -> Any:
        body = text.rstrip("\n")
        if (not body or body[0] not in "{[" or not _yaml_chars_only(body) or " " * 64 in body
                or ("\\u" in body and _SURROGATE_ESCAPE.search(body))):
            return _NOT_JSON
        try:
            value = json.loads(body, object_pairs_hook=self.mapping,
                               parse_int=_Literal, parse_float=_Literal, parse_constant=_Literal)
            return self.sequence(value)[0] if type(value) is list else value
        except (ValueError, RecursionError, _NotJson):  # json.JSONDecodeError is a ValueError
            return _NOT_JSON
        finally:
            if self.loader is not None:
                self.loader.dispose()

    def mapping(self, pairs: list[tuple[str, Any]]) -> LineDict:
        out = LineDict()
        texts = None
        depth = 1
        for key, value in pairs:
            if key in out or len(key) >= _JSON_KEY_MAX:
                raise _NotJson
            kind = type(value)
            if kind is LineDict:
                depth = max(depth, self.depth.pop(id(value)) + 1)
            elif kind is list:
                value, inner = self.sequence(value)
                depth = max(depth, inner + 1)
            elif kind is _Literal or kind is bool:
                value, written = self.literal(value)
                if written is not None:
                    if texts is None:
                        texts = {}
                    texts[key] = written
            out[key] = value
        if depth > _JSON_DEPTH:
            raise _NotJson
        self.depth[id(out)] = depth
        out.line = 1
        out.key_lines = _NO_KEY_LINES
        if texts is not None:
            out.texts = texts
        return out

    def sequence(self, items: list[Any]) -> tuple[LineList, int]:
        depth = 1
        for i, value in enumerate(items):
            kind = type(value)
            if kind is LineDict:
                depth = max(depth, self.depth.pop(id(value)) + 1)
            elif kind is list:
                items[i], inner = self.sequence(value)
                depth = max(depth, inner + 1)
            elif kind is _Literal:
                items[i] = self.literal(value)[0]
        if depth > _JSON_DEPTH:
            raise _NotJson
        out = LineList(items)
        out.line = 1
        out.item_lines = [1] * len(items)
        return out, depth

    def literal(self, value: _Literal | bool) -> tuple[Any, str | None]:
        """The value YAML gives a plain scalar, and its text when that is not a string."""
        if type(value) is bool:
            return value, "true" if value else "false"
        got = self.literals.get(value.text)
        if got is None:
            if self.loader is None:
                self.loader = _Loader("")
            tag = self.loader.resolve(yaml.ScalarNode, value.text, (True, False))
            if tag == _STR:
                got = (value.text, None)
            else:
                try:
                    got = (self.loader.construct_object(yaml.ScalarNode(tag, value.text)), value.text)
                except Exception:  # noqa: BLE001 - YAML reports it, with its line
                    raise _NotJson from None
            self.literals[value.text] = got
        return got


# Values nested deeper than this are refused before libyaml builds its nodes: its node
# builder recurses in C, and some 25,000 levels (`[[[[...`) overflow the process's stack.
_MAX_DEPTH = 1_000
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_BRACKET_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}
_LEAD = re.compile(r"^[ \t-]+", re.MULTILINE)  # indentation and `- `: how block values nest


def _too_deep(text: str) -> int | None:
    """The line where values nest more than _MAX_DEPTH deep, or None.

    A level takes an opening bracket, or more indentation or a `- ` at the start of a
    line, so their sum bounds the depth cheaply; only a text over the bound is parsed
    into events (libyaml's parser keeps its own stack), up to the first level too deep.
    A text YAML cannot read is left to the loader, which says why."""
    brackets = _NOT_BRACKET.sub("", text)
    bound = max(accumulate(map(_BRACKET_STEP.__getitem__, brackets)), default=0)
    bound += max(map(len, _LEAD.findall(text)), default=0)
    if bound <= _MAX_DEPTH:
        return None
    depth = 0
    try:
        for event in yaml.parse(text, Loader=_Base):
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > _MAX_DEPTH:
                    mark = event.start_mark
                    return mark.line + 1 if mark is not None else 1
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
    except yaml.YAMLError:
        return None
    return None


def _deepest_line(node: yaml.Node | None) -> int:
    """The line of the most deeply nested value under `node`, found without recursion."""
    deepest, line = -1, 0
    todo, seen = ([(node, 0)] if node is not None else []), set()
    while todo:
        n, depth = todo.pop()
        if id(n) in seen:  # an alias
            continue
        seen.add(id(n))
        if depth > deepest:
            deepest, line = depth, n.start_mark.line + 1
        if isinstance(n, yaml.SequenceNode):
            todo.extend((child, depth + 1) for child in n.value)
        elif isinstance(n, yaml.MappingNode):
            todo.extend((child, depth + 1) for _, child in n.value)
    return line


def line_of(node: Any, key: Any = None) -> int:
    """The line of `node` (or of its `key`), 0 when unknown."""
    if key is not None:
        if isinstance(node, LineDict):  # any scalar key: `on:` is the boolean True in YAML 1.1
            return node.line_of(key)
        if isinstance(node, LineList) and isinstance(key, int):
            return node.line_of(key)
    return getattr(node, "line", 0)
