"""The configuration items of a CMDB and the relations between them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rules.matchers import Matcher

CRITICALITIES = ("low", "medium", "high", "critical")
CRITICALITY_RANK = {name: i + 1 for i, name in enumerate(CRITICALITIES)}

# `A <relation> B` always means "a fault in B can show as symptoms in A":
# the graph edge is A -> B whatever the relation type.
RELATIONS = ("depends_on", "runs_on", "connects_to")


@dataclass(frozen=True, slots=True)
class MatchBlock:
    """One `match` block of a CI: an alert belongs to the CI when all matchers hold."""

    ci: str
    matchers: tuple[Matcher, ...]
    order: int  # definition order, the last tie-break between equally specific blocks

    @property
    def specificity(self) -> tuple[int, int, int]:
        """More labels win (an alert belongs to the CI whose match it satisfies with the
        most labels: two matchers on one label count once); then more equality
        matchers; then more matchers."""
        return (len({m.name for m in self.matchers}),
                [m.is_equality for m in self.matchers].count(True), len(self.matchers))


@dataclass(slots=True)
class CI:
    """A configuration item: what it is, who owns it, how alerts find it."""

    id: str
    type: str = "service"
    criticality: str | None = None
    owner: str | None = None
    tier: int | None = None
    business_service: bool = False
    description: str = ""
    match: list[MatchBlock] = field(default_factory=list)
    attrs: dict[str, Any] = field(default_factory=dict)
    source: str = ""  # file:line where it is defined

    @property
    def criticality_rank(self) -> int:
        """1 (low) .. 4 (critical); 0 when unknown."""
        return CRITICALITY_RANK.get(self.criticality or "", 0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "criticality": self.criticality,
            "owner": self.owner,
            "tier": self.tier,
            "business_service": self.business_service,
            "description": self.description,
            "match": [[str(m) for m in block.matchers] for block in self.match],
            "attrs": dict(self.attrs),
            "source": self.source,
        }
