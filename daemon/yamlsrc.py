"""YAML loading that remembers where each value came from.

Config, CMDB and rule files report errors as `file:line: message`, as
`promtool` and `amtool` do; these types carry the line numbers through.
"""

from __future__ import annotations

import os
from typing import Any

import yaml


class LineDict(dict):
    """A mapping from a YAML file; `line` is its own line, `key_lines[k]` each key's."""

    line: int = 0
    key_lines: dict[str, int]

    def line_of(self, key: str) -> int:
        return self.key_lines.get(key, self.line)


class LineList(list):
    """A sequence from a YAML file; `line` is its own line, `item_lines[i]` each item's."""

    line: int = 0
    item_lines: list[int]

    def line_of(self, index: int) -> int:
        return self.item_lines[index] if index < len(self.item_lines) else self.line


# libyaml's parser when the system has it (several times faster on big CMDBs);
# the constructors that record line numbers are the same either way.
_Base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):  # type: ignore[misc,valid-type]
    pass


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> LineDict:
    loader.flatten_mapping(node)
    out = LineDict()
    out.line = node.start_mark.line + 1
    out.key_lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if isinstance(key, list | dict):
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a scalar", key_node.start_mark
            )
        if key in out:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        out[key] = loader.construct_object(value_node, deep=True)
        out.key_lines[key] = key_node.start_mark.line + 1
    return out


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> LineList:
    out = LineList(loader.construct_object(child, deep=True) for child in node.value)
    out.line = node.start_mark.line + 1
    out.item_lines = [child.start_mark.line + 1 for child in node.value]
    return out


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


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
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise SourceError(path, 0, f"cannot read file: {exc.strerror or exc}") from exc
    data = load_yaml_text(text, path)
    if len(_FILE_CACHE) > 64:
        _FILE_CACHE.clear()
    _FILE_CACHE[path] = (stamp, data)
    return data


def load_yaml_text(text: str, path: str = "<string>") -> Any:
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 0
        raise SourceError(path, line, f"invalid YAML: {exc.problem or exc}") from exc
    except yaml.YAMLError as exc:
        raise SourceError(path, 0, f"invalid YAML: {exc}") from exc


def line_of(node: Any, key: str | int | None = None) -> int:
    """The line of `node` (or of its `key`), 0 when unknown."""
    if key is not None:
        if isinstance(node, LineDict) and isinstance(key, str):
            return node.line_of(key)
        if isinstance(node, LineList) and isinstance(key, int):
            return node.line_of(key)
    return getattr(node, "line", 0)
