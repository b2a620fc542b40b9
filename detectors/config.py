"""The detector sections of the daemon's config: ``detectors:`` and ``prometheus:``.

```yaml
prometheus:                      # the Prometheus source (only for detectors with promql)
  url: http://127.0.0.1:9090     # the server whose HTTP API is queried
  interval: 30s                  # one instant query per promql detector this often
  timeout: 10s                   # per attempt
  retries: 2                     # attempts after the first, with exponential backoff

detectors:
  - name: checkout-latency       # samples posted or replayed: chosen by matchers
    match: ['__name__="http_request_duration_seconds"', 'service="checkout"']
    sensitivity: 0.6
    warmup: 120
  - name: node-cpu               # series returned by a PromQL query, one stream each
    promql: 'sum by (instance) (rate(node_cpu_seconds_total{mode!="idle"}[5m]))'
    stale_after: 10m
```

A detector with ``promql`` watches the series its query returns (its
``match``, if any, filters them); a detector without watches the samples
posted to ``/api/v1/samples`` or replayed, the first whose matchers select a
series taking it. With no ``detectors:`` at all, every posted series gets
the default detector. Errors are ``file:line: message`` for check-config.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from daemon.config import Config
from daemon.timefmt import parse_duration
from daemon.yamlsrc import line_of
from detectors.spec import DEFAULT_SPEC, DetectorSpec, parse_detectors

_PROM_KEYS = ("url", "interval", "timeout", "retries")
_WHERE = re.compile(r"detectors\[\d+\](?:\.(\w+))?: (.*)$", re.S)


@dataclass(frozen=True, slots=True)
class PrometheusSettings:
    """Where and how often the Prometheus source queries."""

    url: str = ""
    interval: float = 30.0
    timeout: float = 10.0
    retries: int = 2
    backoff: float = 0.5  # seconds before the first retry; doubles each time


@dataclass(frozen=True, slots=True)
class DetectorSettings:
    """The parsed detector configuration."""

    specs: tuple[DetectorSpec, ...] = ()
    prometheus: PrometheusSettings | None = None
    configured: bool = False  # the config has a `detectors:` list (else: the default detector)

    @property
    def sample_specs(self) -> tuple[DetectorSpec, ...]:
        """Detectors for posted and replayed samples (in config order)."""
        if not self.configured:
            return (DEFAULT_SPEC,)
        return tuple(s for s in self.specs if not s.promql)

    @property
    def query_specs(self) -> tuple[DetectorSpec, ...]:
        """Detectors fed by the Prometheus source."""
        return tuple(s for s in self.specs if s.promql)


@dataclass(slots=True)
class _Errors:
    path: str
    items: list[str] = field(default_factory=list)

    def add(self, node: Any, key: str | int | None, message: str) -> None:
        self.items.append(f"{self.path}:{line_of(node, key)}: {message}")


def _prometheus(raw: Any, errs: _Errors) -> PrometheusSettings | None:
    node = raw.get("prometheus")
    if node is None:
        return None
    if not isinstance(node, Mapping):
        errs.add(raw, "prometheus", "prometheus must be a mapping with url, interval, timeout, retries")
        return None
    values: dict[str, Any] = {}
    for key, value in node.items():
        if key not in _PROM_KEYS:
            errs.add(node, key, f"unknown key prometheus.{key} (known: {', '.join(_PROM_KEYS)})")
        elif key == "url":
            parts = urlsplit(value) if isinstance(value, str) else None
            if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
                errs.add(node, key, f"prometheus.url: expected an http(s) URL, got {value!r}")
            else:
                values["url"] = value.rstrip("/")
        elif key in ("interval", "timeout"):
            try:
                seconds = parse_duration(value)
            except ValueError as exc:
                errs.add(node, key, f"prometheus.{key}: {exc}")
                continue
            if seconds <= 0:
                errs.add(node, key, f"prometheus.{key}: must be positive")
            else:
                values[key] = seconds
        elif key == "retries":
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 10:
                errs.add(node, key, "prometheus.retries: expected an integer from 0 to 10")
            else:
                values["retries"] = value
    if "url" not in node:
        errs.add(node, None, "prometheus.url is required")
    return PrometheusSettings(**values)


def _specs(raw: Any, errs: _Errors) -> tuple[DetectorSpec, ...]:
    node = raw.get("detectors")
    if node is None:
        return ()
    if not isinstance(node, list):
        errs.add(raw, "detectors", "detectors must be a list of detectors")
        return ()
    specs: list[DetectorSpec] = []
    names: dict[str, int] = {}
    for i, item in enumerate(node):
        name = item.get("name") if isinstance(item, Mapping) else None
        if isinstance(name, str) and name.strip():
            if name.strip() in names:
                errs.add(item, "name", f"detectors[{i}].name: duplicate detector name"
                         f" {name.strip()!r} (first at detectors[{names[name.strip()]}])")
                continue
            names[name.strip()] = i
        # One at a time, so that every broken detector is reported with its line.
        try:
            (spec,) = parse_detectors([item], errs.path)
        except ValueError as exc:
            m = _WHERE.search(str(exc))
            key, message = (m.group(1), m.group(2)) if m else (None, str(exc))
            where = f"detectors[{i}]" + (f".{key}" if key else "")
            target = item if key and isinstance(item, Mapping) and key in item else node
            errs.add(target, key if target is item else i, f"{where}: {message}")
            continue
        if spec.promql is not None and not spec.promql.strip():
            errs.add(item, "promql", f"detectors[{i}].promql: an empty query")
            continue
        specs.append(spec)
    return tuple(specs)


def load_detector_settings(config: Config) -> tuple[DetectorSettings, list[str]]:
    """The detector settings of ``config`` and every error in them."""
    raw = config.raw if isinstance(config.raw, Mapping) else {}
    errs = _Errors(config.path or "<config>")
    prometheus = _prometheus(raw, errs)
    specs = _specs(raw, errs)
    if any(s.promql for s in specs) and prometheus is None:
        node = raw.get("detectors") or []
        first = next(i for i, item in enumerate(node) if isinstance(item, Mapping) and item.get("promql"))
        errs.add(node, first, "detectors with promql need a prometheus: {url: ...} section")
    settings = DetectorSettings(specs, prometheus, configured=raw.get("detectors") is not None)
    return settings, errs.items


def check_detectors(config: Config) -> list[str]:
    """check-config: the ``detectors:`` and ``prometheus:`` sections."""
    return load_detector_settings(config)[1]
