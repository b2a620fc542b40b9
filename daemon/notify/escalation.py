"""Escalation: ordered levels, each with targets (receivers or teams) and a
delay. Level 0 is notified with the incident's first message; if nobody
acknowledges within a level's delay, the next level is notified. An
acknowledgement stops it. The deadline is a number stored with the
incident's notification state, so it survives a restart and fires on the
`Clock` in the daemon and in replay alike.
"""

from __future__ import annotations

from dataclasses import dataclass

from daemon.notify.config import EscalationLevel, NotifySettings


@dataclass(slots=True)
class Step:
    level: int
    receivers: list[str]
    next_due: float | None  # when the level after this one is due, if there is one


def receivers_at(settings: NotifySettings, levels: list[EscalationLevel], level: int) -> list[str]:
    out: list[str] = []
    for target in levels[level].targets:
        for r in settings.receivers_of(target):
            if r not in out:
                out.append(r)
    return out


def first_due(levels: list[EscalationLevel], started: float) -> float | None:
    """When level 1 is due, counting from the first notification."""
    return started + levels[0].delay if len(levels) > 1 else None


def step(settings: NotifySettings, levels: list[EscalationLevel], level: int, now: float) -> Step | None:
    """Move from `level` to the next one (None when there is no next level)."""
    nxt = level + 1
    if nxt >= len(levels):
        return None
    due = now + levels[nxt].delay if nxt + 1 < len(levels) else None
    return Step(nxt, receivers_at(settings, levels, nxt), due)
