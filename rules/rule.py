"""A rule: matchers on an alert (and its CI) and the actions applied when they match."""

from __future__ import annotations

from dataclasses import dataclass, field

from rules.matchers import Matcher
from rules.templates import Template

CI_PREFIX = "ci."


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    matchers: tuple[Matcher, ...]
    origin: str = ""  # file:line, for logs and test output
    set_labels: dict[str, Template] = field(default_factory=dict)
    set_annotations: dict[str, Template] = field(default_factory=dict)
    copy_labels: tuple[tuple[str, str], ...] = ()  # (from, to); from may be ci.ATTR
    copy_annotations: tuple[tuple[str, str], ...] = ()
    drop: bool = False
    impact: str | None = None
    urgency: str | None = None
    priority: str | None = None
    team: str | None = None
    receiver: str | None = None
    runbook: Template | None = None
    correlation_window: float | None = None
    group_by: tuple[str, ...] | None = None
    continue_: bool = False

    @property
    def changes_labels(self) -> bool:
        return bool(self.set_labels or self.copy_labels)

    @property
    def uses_ci(self) -> bool:
        return (
            any(m.name.startswith(CI_PREFIX) for m in self.matchers)
            or any(t.uses_ci for t in (*self.set_labels.values(), *self.set_annotations.values()))
            or any(
                src.startswith(CI_PREFIX) for src, _ in (*self.copy_labels, *self.copy_annotations)
            )
            or (self.runbook is not None and self.runbook.uses_ci)
        )


@dataclass(slots=True)
class Outcome:
    """What the rules did to one alert."""

    labels: dict[str, str]
    annotations: dict[str, str]
    dropped: bool = False
    impact: str | None = None
    urgency: str | None = None
    priority: str | None = None
    team: str | None = None
    receiver: str | None = None
    runbook: str | None = None
    correlation_window: float | None = None
    group_by: list[str] | None = None
    matched: list[str] = field(default_factory=list)  # rule names, in order
