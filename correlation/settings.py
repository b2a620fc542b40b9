"""The `correlation:` section of the config: its settings, their defaults and checks.

Every wrong setting is reported at once (`SettingErrors`), each naming its key, so
that `incidentd check-config` can put each on its own line of the file.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from correlation.model import FaultModel
from rules.matchers import Regexes


@dataclass(frozen=True, slots=True)
class SettingError:
    """A wrong `correlation:` setting; `key` is the setting's own key there (its line)."""

    key: str
    message: str

    def __str__(self) -> str:
        return self.message


class SettingErrors(ValueError):
    """Every wrong setting of a `correlation:` section, in the section's order."""

    def __init__(self, errors: list[SettingError]) -> None:
        super().__init__("; ".join(map(str, errors)))
        self.errors = errors


@dataclass(slots=True)
class CorrelationConfig:
    """The `correlation:` section of the config."""

    # a dependent alerts only after its own `for:` (up to 15 minutes in the common rule
    # sets) once the fault reaches it, so symptoms keep coming well after ten minutes
    window: float = 720.0
    max_span: float = 3600.0
    max_hops: int = 3
    depth: int = 8
    cause_alerts: list[str] = field(default_factory=list)
    symptom_alerts: list[str] = field(default_factory=list)
    resource_alerts: list[str] = field(default_factory=list)
    candidates: int = 5
    model: dict[str, float] = field(default_factory=dict)  # FaultModel probabilities to override

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | None) -> CorrelationConfig:
        """The settings of a `correlation:` mapping; SettingErrors lists every wrong one."""
        cfg = cls()
        if not data:
            return cfg
        if not isinstance(data, Mapping):
            what = "a list" if isinstance(data, list) else f"{data!r}"
            raise ValueError(f"must be a mapping of settings, not {what}")
        errors: list[SettingError] = []
        for key, value in data.items():
            check = _SETTINGS.get(key)
            if check is None:
                hint = difflib.get_close_matches(str(key), _SETTINGS, n=1)
                more = f"; did you mean {hint[0]!r}?" if hint else f" (known: {', '.join(_SETTINGS)})"
                errors.append(SettingError(key, f"correlation.{key}: unknown setting{more}"))
                continue
            try:
                setattr(cfg, key, check(value))
            except _Wrong as exc:
                errors += [SettingError(key, f"correlation.{key}{tail}") for tail in exc.tails]
        if errors:
            raise SettingErrors(errors)
        return cfg


class _Wrong(ValueError):
    """A setting's value is wrong: each tail completes a message `correlation.KEY...`."""

    def __init__(self, *tails: str) -> None:
        super().__init__(tails[0])
        self.tails = tails


def _duration(value: Any) -> float:
    from daemon.timefmt import parse_duration

    try:
        return parse_duration(value)
    except ValueError as exc:
        raise _Wrong(f": {exc}") from None


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _Wrong(" must be a non-negative integer")
    return value


def _hops(most: int) -> Callable[[Any], int]:
    """A number of hops from 0 to `most`: the closures below every alerting CI are
    cached to that depth, and a dependency chain longer than a few dozen hops is no
    CMDB's (thousands would fill the memory)."""
    def check(value: Any) -> int:
        if _count(value) > most:
            raise _Wrong(f" must be at most {most}")
        return value
    return check


def _model(value: Any) -> dict[str, float]:
    known = set(FaultModel.__dataclass_fields__)
    if not isinstance(value, Mapping):
        raise _Wrong(" must map the model's numbers to values; known: " + ", ".join(sorted(known)))
    wrong = []
    for k, v in value.items():
        if k not in known:
            wrong.append(f".{k}: unknown; known: {', '.join(sorted(known))}")
        elif isinstance(v, bool) or not isinstance(v, int | float) or not v > 0:
            wrong.append(f".{k} must be a positive number, not {v!r}")
        elif k not in _MODEL_SECONDS and v > 1:
            wrong.append(f".{k} is a probability: at most 1, not {v!r}")
    if wrong:
        raise _Wrong(*wrong)
    return dict(value)


def _patterns(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _Wrong(" must be a list of strings")
    try:
        Regexes(value)
    except ValueError as exc:
        raise _Wrong(f": {exc}") from None
    return list(value)


# each setting's check: the value it takes, or _Wrong
_SETTINGS: dict[str, Callable[[Any], Any]] = {
    "window": _duration, "max_span": _duration,
    "max_hops": _hops(32), "depth": _hops(32), "candidates": _count,
    "cause_alerts": _patterns, "symptom_alerts": _patterns, "resource_alerts": _patterns,
    "model": _model,
}

_MODEL_SECONDS = frozenset({"settle", "coincidence", "delay_grace", "delay_scale", "recovery_grace",
                            "symptom_lag"})  # the rest are probabilities
