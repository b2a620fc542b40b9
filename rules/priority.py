"""ITIL priority: impact × urgency, looked up in a matrix that rule files may replace.

The default is the classic three-level matrix:

| impact \\ urgency | high | medium | low |
| --- | --- | --- | --- |
| high   | P1 | P2 | P3 |
| medium | P2 | P3 | P4 |
| low    | P3 | P4 | P5 |

A rule that sets only one of impact and urgency gets the matrix's default for
the other (`medium` unless configured).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

_PRIORITY = re.compile(r"^P[1-9]$")

DEFAULT_MATRIX: dict[str, dict[str, str]] = {
    "high": {"high": "P1", "medium": "P2", "low": "P3"},
    "medium": {"high": "P2", "medium": "P3", "low": "P4"},
    "low": {"high": "P3", "medium": "P4", "low": "P5"},
}


class PriorityMatrixError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class PriorityMatrix:
    """`matrix[impact][urgency]` is a priority `P1`..`P9` (P1 the most urgent)."""

    matrix: Mapping[str, Mapping[str, str]] = field(default_factory=lambda: DEFAULT_MATRIX)
    default_impact: str = "medium"
    default_urgency: str = "medium"

    @property
    def impacts(self) -> list[str]:
        return list(self.matrix)

    @property
    def urgencies(self) -> list[str]:
        first = next(iter(self.matrix.values()), {})
        return list(first)

    def priority(self, impact: str | None, urgency: str | None) -> str | None:
        """The priority for impact × urgency; None when neither is set."""
        if impact is None and urgency is None:
            return None
        row = self.matrix.get(impact or self.default_impact)
        if row is None:
            return None
        return row.get(urgency or self.default_urgency)

    def validate(self) -> list[str]:
        """Problems with this matrix, as messages (empty when valid)."""
        errors: list[str] = []
        if not self.matrix:
            return ["priority matrix is empty"]
        urgencies = self.urgencies
        for impact, row in self.matrix.items():
            if not isinstance(row, Mapping):
                errors.append(f"impact {impact!r}: expected a mapping of urgency: priority")
                continue
            if list(row) != urgencies and set(row) != set(urgencies):
                errors.append(
                    f"impact {impact!r}: urgencies {sorted(row)} differ from {sorted(urgencies)}"
                )
            for urgency, prio in row.items():
                if not isinstance(prio, str) or not _PRIORITY.match(prio):
                    errors.append(
                        f"impact {impact!r}, urgency {urgency!r}: priority must be P1..P9, got {prio!r}"
                    )
        if self.default_impact not in self.matrix:
            errors.append(f"default impact {self.default_impact!r} is not a row of the matrix")
        if self.default_urgency not in urgencies:
            errors.append(f"default urgency {self.default_urgency!r} is not a column of the matrix")
        return errors


def priority_rank(priority: str | None) -> int:
    """Sort key: P1 → 1, ..., unknown or None → 99 (least urgent)."""
    if priority and _PRIORITY.match(priority):
        return int(priority[1:])
    return 99
