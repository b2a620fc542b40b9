"""The daemon's configuration: one YAML file (CONTRACT.md section 7) and its defaults.

Each package parses its own section (`detectors:`, `correlation:`, ...) from
`Config.raw`; this module owns the core keys, resolves paths relative to the
config file, and reports every error as `file:line: message`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from daemon.timefmt import parse_duration
from daemon.yamlsrc import LineDict, SourceError, line_of, load_yaml

DEFAULT_LISTEN = "127.0.0.1:9095"


@dataclass(slots=True)
class IncidentSettings:
    # an alert outside the CMDB joins an incident of its label group whose last new alert
    # came this recently (see correlation/grouping.py)
    group_window: float = 300.0
    reopen_window: float = 600.0  # a resolved incident reopens if an alert fires again within
    group_by: list[str] = field(
        default_factory=lambda: ["alertname", "cluster", "namespace", "service", "job"]
    )
    flap_window: float = 900.0  # flapping: this many state changes ...
    flap_threshold: int = 4  # ... within this window
    resolve_timeout: float = 300.0  # alerts posted without endsAt resolve after this silence


@dataclass(slots=True)
class InboxSettings:
    max_depth: int = 200_000  # alerts waiting for the pipeline before ingest answers 503
    max_body_bytes: int = 16 * 1024 * 1024
    retry_after: int = 5
    fsync: bool = False  # fsync every group commit: survive power loss, not only a crash


@dataclass(slots=True)
class Config:
    path: str | None = None
    listen: str = DEFAULT_LISTEN
    data_dir: str = "."  # the store is <data_dir>/incidentd.sqlite3
    cmdb: list[str] = field(default_factory=list)
    rules: list[str] = field(default_factory=list)
    incidents: IncidentSettings = field(default_factory=IncidentSettings)
    inbox: InboxSettings = field(default_factory=InboxSettings)
    log_level: str = "info"
    log_format: str = "auto"  # auto | json | console
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def base_dir(self) -> str:
        return os.path.dirname(os.path.abspath(self.path)) if self.path else os.getcwd()

    def resolve(self, path: str) -> str:
        return path if os.path.isabs(path) else os.path.normpath(os.path.join(self.base_dir, path))

    @property
    def listen_host_port(self) -> tuple[str, int]:
        return split_listen(self.listen)


class ConfigError(Exception):
    """One or more `file:line: message` errors."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


class Section:
    """A top-level section of the config that another package reads (`problems:`,
    `sla:`, ...): its mapping, None when absent or not a mapping, and the
    `file:line: message` errors found in it."""

    def __init__(self, config: Config, name: str, shape: str = "a mapping") -> None:
        self.name = name
        self.where = config.path or "<config>"
        self.errors: list[str] = []
        raw = config.raw.get(name) if isinstance(config.raw, Mapping) else None
        if raw is not None and not isinstance(raw, Mapping):
            self.errors.append(f"{self.where}:{line_of(config.raw, name)}: {name} must be {shape}")
            raw = None
        self.raw: Mapping[str, Any] | None = raw

    def items(self) -> list[tuple[str, Any]]:
        return list(self.raw.items()) if self.raw else []

    def error(self, node: Any, key: str | None, msg: str) -> None:
        self.errors.append(f"{self.where}:{line_of(node, key)}: {msg}")

    def flag(self, key: str, value: Any) -> bool | None:
        """A true/false value of the section, None (and an error) otherwise."""
        if isinstance(value, bool):
            return value
        self.error(self.raw, key, f"{self.name}.{key} must be true or false")
        return None

    def duration(self, key: str, value: Any, node: Any = None, path: str | None = None) -> float | None:
        """A duration (`90s`, `5m`, seconds), None (and an error) otherwise."""
        try:
            return parse_duration(value)
        except ValueError as exc:
            self.error(self.raw if node is None else node, key, f"{path or f'{self.name}.{key}'}: {exc}")
            return None

    def unknown(self, key: str, node: Any = None, path: str | None = None) -> None:
        self.error(self.raw if node is None else node, key, f"unknown key {path or f'{self.name}.{key}'}")


def split_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"listen address must be HOST:PORT, got {listen!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


CORE_KEYS = ("listen", "data_dir", "cmdb", "rules", "incidents", "inbox", "log")  # read here


def load_config(path: str | None) -> Config:
    """Load the config file (or the built-in defaults when `path` is None)."""
    if path is None:
        return Config()
    try:
        raw = load_yaml(path)
    except SourceError as exc:
        raise ConfigError([str(exc)]) from exc
    if raw is None:
        raw = LineDict()
        raw.key_lines = {}
    if not isinstance(raw, dict):
        raise ConfigError([f"{path}:{line_of(raw)}: the config must be a YAML mapping"])
    cfg = Config(path=path, raw=raw)
    errors: list[str] = []

    def err(node: Any, key: str | None, msg: str) -> None:
        errors.append(f"{path}:{line_of(node, key)}: {msg}")

    if "listen" in raw:
        try:
            split_listen(str(raw["listen"]))
            cfg.listen = str(raw["listen"])
        except ValueError as exc:
            err(raw, "listen", str(exc))
    if "data_dir" in raw:
        if not isinstance(raw["data_dir"], str):
            err(raw, "data_dir", "data_dir must be a path string")
        else:
            cfg.data_dir = raw["data_dir"]
    for key in ("cmdb", "rules"):
        if key in raw:
            value = raw[key]
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                err(raw, key, f"{key} must be a list of file paths")
            else:
                setattr(cfg, key, [cfg.resolve(v) for v in value])
    cfg.data_dir = cfg.resolve(cfg.data_dir)

    inc = raw.get("incidents")
    if inc is not None:
        if not isinstance(inc, dict):
            err(raw, "incidents", "incidents must be a mapping")
        else:
            s = cfg.incidents
            for key in ("group_window", "reopen_window", "flap_window", "resolve_timeout"):
                if key in inc:
                    try:
                        setattr(s, key, parse_duration(inc[key]))
                    except ValueError as exc:
                        err(inc, key, f"incidents.{key}: {exc}")
            if "flap_threshold" in inc:
                v = inc["flap_threshold"]
                if not isinstance(v, int) or isinstance(v, bool) or v < 2:
                    err(inc, "flap_threshold", "incidents.flap_threshold must be an integer >= 2")
                else:
                    s.flap_threshold = v
            if "group_by" in inc:
                v = inc["group_by"]
                if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
                    err(inc, "group_by", "incidents.group_by must be a list of label names")
                else:
                    s.group_by = list(v)
            for key in inc:
                if key not in {"group_window", "reopen_window", "flap_window", "resolve_timeout",
                               "flap_threshold", "group_by"}:
                    err(inc, key, f"unknown key incidents.{key}")

    box = raw.get("inbox")
    if box is not None:
        if not isinstance(box, dict):
            err(raw, "inbox", "inbox must be a mapping")
        else:
            s2 = cfg.inbox
            for key in ("max_depth", "max_body_bytes", "retry_after"):
                if key in box:
                    v = box[key]
                    if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                        err(box, key, f"inbox.{key} must be a positive integer")
                    else:
                        setattr(s2, key, v)
            if "durability" in box:
                v = box["durability"]
                if v not in ("crash", "power"):
                    err(box, "durability", "inbox.durability must be 'crash' (default) or 'power' (fsync each commit)")
                else:
                    s2.fsync = v == "power"
            for key in box:
                if key not in {"max_depth", "max_body_bytes", "retry_after", "durability"}:
                    err(box, key, f"unknown key inbox.{key}")

    log = raw.get("log")
    if log is not None:
        if not isinstance(log, dict):
            err(raw, "log", "log must be a mapping")
        else:
            if "level" in log:
                if str(log["level"]).lower() not in ("debug", "info", "warning", "error"):
                    err(log, "level", "log.level must be debug, info, warning or error")
                else:
                    cfg.log_level = str(log["level"]).lower()
            if "format" in log:
                if log["format"] not in ("auto", "json", "console"):
                    err(log, "format", "log.format must be auto, json or console")
                else:
                    cfg.log_format = log["format"]
    if errors:
        raise ConfigError(errors)
    return cfg
