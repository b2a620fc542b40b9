"""Detector configuration: the ``detectors:`` list of the config file.

```yaml
detectors:
  - name: node-cpu                      # unique
    match: ['__name__="node_cpu_busy"', 'env=~"prod|staging"']   # or {env: prod}
    promql: 'avg by (instance) (rate(node_cpu_seconds_total{mode!="idle"}[5m]))'
    model: knn                          # a PyOD model (see MODELS below)
    params: {n_neighbors: 10}           # passed to the model
    sensitivity: 0.6                    # 0 (fewest alerts) .. 1 (most)
    warmup: 150                         # samples before a series may alert
    stale_after: 1h                     # unseen this long and 100 of its intervals: its anomaly
                                        # ends; 24 times as long: it is dropped
```

The warm-up counts samples before the first model is fitted: a series
scores nothing before it, then it may alert at once (its score history is
seeded from the first fit). Only ``name`` is required. The other tuning values (training window, refit
interval) have defaults chosen for typical metric series and are accepted
as ``window`` and ``refit_every`` for special cases. ``window`` (values, 100
to `MAX_WINDOW`) sets most of what a series costs: each series keeps about
70 bytes per window value, scoring a sample reads the whole training window,
and the first fit compares the two halves of it, every row with every row
(measured: a first fit of 1,000 values takes 0.01 s; of 10,000, 0.7 s, and
the process peaks at 420 MB against 40 MB with 1,000).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from rules.matchers import Matcher, parse_matchers

# name -> (module, class, default parameters). KNN is the default (see
# DetectorSpec); the others are offered for experiments and special series.
MODELS: dict[str, tuple[str, str, dict[str, Any]]] = {
    "knn": ("pyod.models.knn", "KNN", {"n_neighbors": 10, "method": "mean"}),
    "hbos": ("pyod.models.hbos", "HBOS", {}),
    "ecod": ("pyod.models.ecod", "ECOD", {}),
    "copod": ("pyod.models.copod", "COPOD", {}),
    "iforest": ("pyod.models.iforest", "IForest", {"n_estimators": 50, "random_state": 0}),
    "loda": ("pyod.models.loda", "LODA", {}),
    "lof": ("pyod.models.lof", "LOF", {"n_neighbors": 20}),
}

# The largest training window (values) a detector may ask for: ten times the default,
# a month of 5-minute samples. See the module docstring for what a window costs.
MAX_WINDOW = 10_000

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d|w)$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_KEYS = {
    "name", "match", "promql", "model", "params", "sensitivity", "warmup", "stale_after",
    "window", "refit_every",
}


@dataclass(frozen=True, slots=True)
class DetectorSpec:
    """One configured detector: which series it watches and how."""

    name: str = "default"
    match: tuple[Matcher, ...] = ()
    promql: str | None = None
    model: str = "knn"
    params: Mapping[str, Any] = field(default_factory=dict)
    sensitivity: float = 0.6
    warmup: int = 150
    stale_after: float = 3600.0
    window: int = 1000
    refit_every: int = 100


DEFAULT_SPEC = DetectorSpec()
"""Used when the config has no detectors: every series, KNN, sensitivity 0.6."""


def _duration(value: Any, where: str) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{where}: expected seconds or a duration like 30m, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.match(value.strip())):
        seconds = float(m.group(1)) * _UNIT[m.group(2)]
    else:
        raise ValueError(f"{where}: expected seconds or a duration like 30m, got {value!r}")
    if not 0 < seconds < float("inf"):  # (also false for NaN)
        raise ValueError(f"{where}: must be a positive, finite duration, got {value!r}")
    return seconds


def _int(value: Any, where: str, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{where}: expected an integer >= {low}, got {value!r}")
    if high is not None and value > high:
        raise ValueError(f"{where}: at most {high} (larger ones cost too much memory and time per series),"
                         f" got {value!r}")
    return value


def _one(raw: Any, where: str) -> DetectorSpec:
    if not isinstance(raw, Mapping):
        raise ValueError(f"{where}: expected a mapping, got {type(raw).__name__}")
    unknown = sorted(set(map(str, raw)) - _KEYS)
    if unknown:
        raise ValueError(f"{where}.{unknown[0]}: unknown field (known: {', '.join(sorted(_KEYS))})")
    name = raw.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"{where}.name: required, a non-empty string")
    match_raw = raw.get("match")
    if match_raw is not None and not isinstance(match_raw, str | list | Mapping):
        raise ValueError(f"{where}.match: expected a list of matchers or a mapping of labels")
    try:
        match = tuple(parse_matchers(match_raw))
    except ValueError as exc:
        raise ValueError(f"{where}.match: {exc}") from None
    promql = raw.get("promql")
    if promql is not None and not isinstance(promql, str):
        raise ValueError(f"{where}.promql: expected a string")
    model_raw = raw.get("model", DEFAULT_SPEC.model)
    params_raw = raw.get("params", {})
    if isinstance(model_raw, Mapping):
        params_raw = model_raw.get("params", params_raw)
        model_raw = model_raw.get("name")
    if not isinstance(model_raw, str) or model_raw.lower() not in MODELS:
        raise ValueError(f"{where}.model: expected one of {', '.join(sorted(MODELS))}, got {model_raw!r}")
    if not isinstance(params_raw, Mapping):
        raise ValueError(f"{where}.params: expected a mapping of model parameters")
    sens = raw.get("sensitivity", DEFAULT_SPEC.sensitivity)
    if isinstance(sens, bool) or not isinstance(sens, int | float) or not 0.0 <= sens <= 1.0:
        raise ValueError(f"{where}.sensitivity: expected a number between 0 and 1, got {sens!r}")
    warmup = _int(raw.get("warmup", DEFAULT_SPEC.warmup), f"{where}.warmup", 0)
    window = _int(raw.get("window", DEFAULT_SPEC.window), f"{where}.window", 100, MAX_WINDOW)
    if params_raw:  # after warmup and window: they decide what the first fit fits on
        problem = _params_problem(model_raw.lower(), params_raw, warmup, window)
        if problem:
            raise ValueError(f"{where}.params: {problem}")
    return DetectorSpec(
        name=name.strip(),
        match=match,
        promql=promql,
        model=model_raw.lower(),
        params=dict(params_raw),
        sensitivity=float(sens),
        warmup=warmup,
        stale_after=_duration(raw.get("stale_after", DEFAULT_SPEC.stale_after), f"{where}.stale_after"),
        window=window,
        refit_every=_int(raw.get("refit_every", DEFAULT_SPEC.refit_every), f"{where}.refit_every", 1),
    )


def _params_problem(model: str, params: Mapping[str, Any], warmup: int = DEFAULT_SPEC.warmup,
                    window: int = DEFAULT_SPEC.window) -> str | None:
    """What is wrong with a model's parameters, if anything: one it does not take, or
    values it refuses when fitted. It is fitted as a series' first fit fits it
    (`detectors.model.fit_model` after the warm-up, on random rows): on the older half
    of the feature rows (the seed model, the fewest rows any fit of the series has)
    and on all of them. A series with a daily cycle of P samples has fewer rows (its
    first P + 2 values give none); if its fit fails, the failure is counted and the
    fit tried again later, on more values (`detectors.series`). PyOD is imported."""
    import importlib
    import inspect

    module, cls, defaults = MODELS[model]
    klass = getattr(importlib.import_module(module), cls)
    accepted = inspect.signature(klass).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values()):
        unknown = sorted(str(k) for k in params if k not in accepted)
        if unknown:
            return f"{model} takes no parameter {unknown[0]!r}"
    import warnings

    import numpy as np

    from detectors.features import SPAN
    from detectors.model import MIN_TRAINING_ROWS

    # The first fit's values: the warm-up's, or, when the warm-up is shorter, the
    # fewest that give a model enough rows; never more than the window.
    values = min(window, max(warmup, MIN_TRAINING_ROWS + SPAN - 1))
    rows = np.random.default_rng(0).normal(size=(values - SPAN + 1, SPAN))
    for n in (len(rows) // 2, len(rows)):
        try:
            with warnings.catch_warnings():  # a trial: what the model adjusts itself is no error
                warnings.simplefilter("ignore")
                klass(**{**defaults, **dict(params)}).fit(rows[:n])
        except Exception as exc:  # whatever the model says of its parameters
            more = "warmup" if values < window else "window"
            return (f"{model} refuses them: {str(exc).splitlines()[0][:200]} (the first fit, on"
                    f" {values} values, fits {len(rows)} feature rows and its seed model"
                    f" {len(rows) // 2}; a longer {more} gives it more)")
    return None


def parse_detectors(raw: list | None, source: str) -> list[DetectorSpec]:
    """Validate the ``detectors:`` list; errors name the file and the field."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise ValueError(f"{source}: detectors: expected a list, got {type(raw).__name__}")
    specs = [_one(item, f"{source}: detectors[{i}]") for i, item in enumerate(raw)]
    seen: set[str] = set()
    for i, spec in enumerate(specs):
        if spec.name in seen:
            raise ValueError(f"{source}: detectors[{i}].name: duplicate detector name {spec.name!r}")
        seen.add(spec.name)
    return specs
