"""The `problems` section of the replay result (CONTRACT.md section 4)."""

from __future__ import annotations

from typing import Any

from daemon.build import Components
from daemon.problems.model import problem_view
from daemon.store import Store


def problems_section(components: Components, store: Store) -> list[dict[str, Any]]:
    part = components.parts.get("problems")
    if part is None:
        return []
    now = max((p.updated_at for p in part.problems.values()), default=0.0)
    return [problem_view(p, now) for p in part.listing()]
