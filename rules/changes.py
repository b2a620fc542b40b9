"""Changes and maintenance windows: work planned on a CI for a time range.

An alert from a CI under an active change (and, when `cover_dependents` is on,
from a CI that depends on it) is *expected*: recorded, but it never pages.
After the fact, a change that ended shortly before an incident opened on its
CI (or was still running then) is the incident's *suspected change*.

The CMDB stays behind one callable, `depends_on(a, b) -> bool` ("a needs b",
transitively), because the graph belongs to the cmdb package.
"""

from __future__ import annotations

import bisect
import builtins
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

from daemon.model import MAX_TEXT, optional_text
from daemon.timefmt import TimestampError, format_rfc3339, parse_time_value

DependsOn = Callable[[str, str], bool]


class ChangeError(ValueError):
    """A change record that cannot be accepted; the message names the field."""


@dataclass(slots=True)
class Change:
    id: str
    ci: str
    starts_at: float
    ends_at: float | None  # None: open-ended until updated
    summary: str = ""
    source: str = "api"

    def is_active(self, now: float) -> bool:
        return self.starts_at <= now and (self.ends_at is None or now < self.ends_at)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "ci": self.ci,
            "summary": self.summary,
            "start": format_rfc3339(self.starts_at),
            "end": format_rfc3339(self.ends_at),
            "source": self.source,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], now: float = 0.0) -> Change:
        """From the API/YAML form `{id, ci, summary, start, end}` or a replay
        `change` event (`at` is the start when `start` is absent)."""
        if not isinstance(data, Mapping):
            raise ChangeError("a change must be an object")
        cid, ci = data.get("id"), data.get("ci")
        if not isinstance(cid, str) or not cid:
            raise ChangeError("id: required string")
        if not isinstance(ci, str) or not ci:
            raise ChangeError("ci: required string")
        for name, value in (("id", cid), ("ci", ci)):
            if len(value) > MAX_TEXT:
                raise ChangeError(f"{name}: at most {MAX_TEXT} characters")
        summary = optional_text(data.get("summary"), "summary", MAX_TEXT, ChangeError)
        start_raw = data.get("start")
        if start_raw is None or start_raw == "":
            start_raw = data.get("at")
        starts = _time(start_raw, "start") if start_raw not in (None, "") else now
        end_raw = data.get("end")
        ends = _time(end_raw, "end") if end_raw not in (None, "") else None
        if ends is not None and ends < starts:
            raise ChangeError("end: must not be before start")
        return cls(cid, ci, starts, ends, summary, str(data.get("source") or "api"))


def _time(value: Any, name: str) -> float:
    try:
        return parse_time_value(value)
    except TimestampError as exc:
        raise ChangeError(f"{name}: {exc}") from exc


@dataclass
class ChangeStore:
    """Change records in memory, by id (a record sent again replaces the old one)."""

    cover_dependents: bool = False
    suspect_window: float = 7200.0  # seconds before an incident opens
    depends_on: DependsOn | None = None
    on_change: Callable[[Change], None] | None = None
    _changes: dict[str, Change] = field(default_factory=dict)
    _by_ci: dict[str, dict[str, Change]] = field(default_factory=dict)
    version: int = 0  # moves with every record added, replaced or removed

    _starts: list[float] = field(default_factory=list)  # every change's start, sorted
    _ends: list[tuple[float, str]] = field(default_factory=list)  # (end, id), sorted; open-ended: infinity
    # each change's position in `_changes` (record order: a replaced record keeps it)
    _place: dict[str, int] = field(default_factory=dict)
    _next_place: int = 0
    # the changes active over a span of time, for one `version`: see `_active_at`
    _active: tuple[int, float, float, list[Change]] | None = None
    # a CI's changes, latest-ending first (then latest-starting, then in the CI's record
    # order), for `suspected_change_for`; dropped when a change on the CI is added,
    # replaced or removed, and sorted again when next asked
    _suspects: dict[str, list[Change]] = field(default_factory=dict)

    def _put(self, change: Change) -> None:
        old = self._changes.get(change.id)
        if old is not None:
            self._unindex(old)
        else:
            self._place[change.id] = self._next_place
            self._next_place += 1
        self._changes[change.id] = change  # a replaced record keeps its place
        self._by_ci.setdefault(change.ci, {})[change.id] = change
        self._suspects.pop(change.ci, None)
        bisect.insort(self._starts, change.starts_at)
        bisect.insort(self._ends, self._end_key(change))
        self.version += 1

    @staticmethod
    def _end_key(change: Change) -> tuple[float, str]:
        return (math.inf if change.ends_at is None else change.ends_at), change.id

    def _unindex(self, change: Change) -> None:
        self._by_ci.get(change.ci, {}).pop(change.id, None)
        self._suspects.pop(change.ci, None)
        del self._starts[bisect.bisect_left(self._starts, change.starts_at)]
        del self._ends[bisect.bisect_left(self._ends, self._end_key(change))]

    def add(self, change: Change) -> Change:
        self._put(change)
        if self.on_change:
            self.on_change(change)
        return change

    def load(self, changes: Iterable[Change]) -> None:
        """Restore persisted changes (no `on_change` calls)."""
        for c in changes:
            self._put(c)

    def replace_source(self, source: str, changes: Iterable[Change]) -> None:
        for cid in [cid for cid, c in self._changes.items() if c.source == source]:
            self._unindex(self._changes.pop(cid))
            del self._place[cid]
        for c in changes:
            c.source = source
            self._put(c)
        self.version += 1

    def get(self, change_id: str) -> Change | None:
        return self._changes.get(change_id)

    def list(self) -> list[Change]:
        return sorted(self._changes.values(), key=lambda c: (c.starts_at, c.id))

    def next_start(self, now: float) -> float | None:
        """When the next change recorded ahead of `now` starts (None: none does)."""
        i = bisect.bisect_right(self._starts, now)
        return self._starts[i] if i < len(self._starts) else None

    def active_for(self, ci: str | None, now: float) -> Change | None:
        """The active change covering `ci` at `now`: one on the CI itself first,
        then (with `cover_dependents`) one on a CI that `ci` depends on."""
        if ci is None:
            return None
        active = self._active_at(now)
        for c in active:
            if c.ci == ci:
                return c
        if self.cover_dependents and self.depends_on is not None:
            for c in sorted(active, key=lambda c: (c.starts_at, c.id)):
                if self.depends_on(ci, c.ci):
                    return c
        return None

    def _active_at(self, now: float) -> builtins.list[Change]:  # (`list` is a method here)
        """The changes active at `now`, in record order. Every alert asks, and records
        pile up (each deploy of a year), so the answer is kept with the span of time
        around `now` in which no change starts or ends; it is worked out again when
        `now` leaves that span or a record is added, replaced or removed, from the
        changes that end after `now` (few: most records are of changes long over)."""
        got = self._active
        if got is not None and got[0] == self.version and got[1] <= now < got[2]:
            return got[3]
        starts, ends = self._starts, self._ends
        s = bisect.bisect_right(starts, now)
        e = bisect.bisect_right(ends, now, key=itemgetter(0))  # the first change that ends after now
        lo = max(starts[s - 1] if s else -math.inf, ends[e - 1][0] if e else -math.inf)
        hi = min(starts[s] if s < len(starts) else math.inf, ends[e][0] if e < len(ends) else math.inf)
        active = [c for c in (self._changes[cid] for _, cid in ends[e:]) if c.starts_at <= now]
        active.sort(key=lambda c: self._place[c.id])
        self._active = (self.version, lo, hi, active)
        return active

    def suspected_change_for(self, ci: str | None, opened_at: float) -> Change | None:
        """The change on `ci` that ended within `suspect_window` before `opened_at`,
        or was running then; the latest-ending one when several qualify."""
        if ci is None:
            return None
        order = self._suspects.get(ci)
        if order is None:  # a stable sort: the CI's record order stays on a tie
            order = self._suspects[ci] = sorted(
                self._by_ci.get(ci, {}).values(), key=lambda c: (-self._end_key(c)[0], -c.starts_at)
            )
        horizon = opened_at - self.suspect_window
        for c in order:
            if (math.inf if c.ends_at is None else c.ends_at) < horizon:
                return None  # and so do all after it
            if c.starts_at <= opened_at:
                return c
        return None

    def base_rate(self, at: float, cis: int, horizon: float = 7 * 86400.0) -> float:
        """How likely a given CI is to have a suspected change at a moment chosen at random:
        the changes that began within `horizon` before `at`, each suspected for its
        `suspect_window`, spread over `cis` CIs and the time they were recorded in."""
        lo = bisect.bisect_left(self._starts, at - horizon)
        n = bisect.bisect_right(self._starts, at) - lo
        if n <= 0 or cis <= 0:
            return 1.0
        span = max(at - self._starts[lo], self.suspect_window)
        return min(1.0, n * self.suspect_window / (cis * span))
