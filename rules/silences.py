"""Silences, as in Alertmanager: matchers, a time range, an author and a comment.

A silence is pending before `starts_at`, active until `ends_at`, expired
after; expiring one (the API's DELETE) sets `ends_at` to now. A silenced alert
is still recorded (its incident's timeline and the metrics show it) but it
does not open or escalate an incident. Silences live in memory in a
`SilenceStore`; `to_dict`/`from_dict` and the store's `on_change` hook let the
daemon persist them. Times are epoch seconds from the pipeline's clock.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, overload

from daemon.model import MAX_NAME, MAX_TEXT, optional_text
from daemon.timefmt import TimestampError, format_rfc3339, parse_time_value
from rules.matchers import Matcher, MatcherError, parse_matchers

PENDING, ACTIVE, EXPIRED = "pending", "active", "expired"


class SilenceError(ValueError):
    """A silence that cannot be created; the message says which field is wrong."""


@dataclass(slots=True)
class Silence:
    id: str
    matchers: list[Matcher]
    starts_at: float
    ends_at: float
    created_by: str = ""
    comment: str = ""
    updated_at: float = 0.0
    source: str = "api"  # "api", or the rule file it came from

    def state(self, now: float) -> str:
        if now < self.starts_at:
            return PENDING
        if now < self.ends_at:
            return ACTIVE
        return EXPIRED

    def is_active(self, now: float) -> bool:
        return self.starts_at <= now < self.ends_at

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(m.matches(labels) for m in self.matchers)

    def to_dict(self, now: float | None = None) -> dict[str, Any]:
        """Alertmanager API v2 form (plus `source`); `status` only when `now` is given."""
        out: dict[str, Any] = {
            "id": self.id,
            "matchers": [
                {
                    "name": m.name,
                    "value": m.value,
                    "isRegex": m.op in ("=~", "!~"),
                    "isEqual": m.op in ("=", "=~"),
                }
                for m in self.matchers
            ],
            "startsAt": format_rfc3339(self.starts_at, millis=True),
            "endsAt": format_rfc3339(self.ends_at, millis=True),
            "createdBy": self.created_by,
            "comment": self.comment,
            "updatedAt": format_rfc3339(self.updated_at, millis=True),
            "source": self.source,
        }
        if now is not None:
            out["status"] = {"state": self.state(now)}
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], now: float = 0.0) -> Silence:
        """Build a silence from the Alertmanager API v2 form or the YAML form.

        `matchers` may be a list of `{name, value, isRegex, isEqual}` objects or
        of matcher strings (`severity=~"warn.*"`); times may be RFC 3339
        strings or epoch seconds; `startsAt` defaults to `now`.
        """
        if not isinstance(data, Mapping):
            raise SilenceError("a silence must be an object")
        matchers = _parse_silence_matchers(data.get("matchers"))
        starts = _time(_first(data, "startsAt", "starts_at"), "startsAt", default=now)
        ends = _time(_first(data, "endsAt", "ends_at"), "endsAt", default=None)
        if ends is None:
            raise SilenceError("endsAt: required")
        if ends <= starts:
            raise SilenceError("endsAt: must be after startsAt")
        created_by = optional_text(_first(data, "createdBy", "created_by"), "createdBy", MAX_NAME, SilenceError)
        comment = optional_text(data.get("comment"), "comment", MAX_TEXT, SilenceError)
        sid = optional_text(data.get("id"), "id", MAX_NAME, SilenceError)
        return cls(
            id=sid or str(uuid.uuid4()),
            matchers=matchers,
            starts_at=starts,
            ends_at=ends,
            created_by=created_by,
            comment=comment,
            updated_at=_time(data.get("updatedAt"), "updatedAt", default=now),
            source=str(data.get("source") or "api"),
        )


def _first(data: Mapping[str, Any], *keys: str) -> Any:
    for k in keys:
        if data.get(k) is not None:
            return data[k]
    return None


@overload
def _time(value: Any, field_name: str, default: float) -> float: ...


@overload
def _time(value: Any, field_name: str, default: None) -> float | None: ...


def _time(value: Any, field_name: str, default: float | None) -> float | None:
    if value is None or value == "":
        return default
    try:
        return parse_time_value(value)
    except TimestampError as exc:
        raise SilenceError(f"{field_name}: {exc}") from exc


def _parse_silence_matchers(raw: Any) -> list[Matcher]:
    if not raw:
        raise SilenceError("matchers: at least one matcher is required")
    if isinstance(raw, str):
        raw = [raw]
    if not isinstance(raw, list):
        raise SilenceError("matchers: expected a list")
    out: list[Matcher] = []
    for i, item in enumerate(raw):
        try:
            if isinstance(item, Mapping):
                name, value = item.get("name"), item.get("value")
                if not isinstance(name, str) or not isinstance(value, str):
                    raise MatcherError("name and value must be strings")
                is_regex, is_equal = item.get("isRegex", False), item.get("isEqual", True)
                if not isinstance(is_regex, bool) or not isinstance(is_equal, bool):
                    raise MatcherError("isRegex and isEqual must be true or false")
                op = {
                    (False, True): "=",
                    (False, False): "!=",
                    (True, True): "=~",
                    (True, False): "!~",
                }[(is_regex, is_equal)]
                out.append(Matcher.create(name, op, value))
            else:
                out.extend(parse_matchers([item]))
        except MatcherError as exc:
            raise SilenceError(f"matchers[{i}]: {exc}") from exc
    # Alertmanager refuses silences that would match every alert.
    if all(m.matches({}) for m in out):
        raise SilenceError("matchers: at least one matcher must not match the empty string")
    return out


def _can_update(old: Silence, new: Silence, now: float) -> bool:
    """Alertmanager's test for an update in place: the matchers stay, an active
    silence keeps its start (compared to the millisecond, the API's precision) and
    a pending one does not move its start into the past."""
    if old.matchers != new.matchers:
        return False
    state = old.state(now)
    if state == ACTIVE:
        return abs(old.starts_at - new.starts_at) < 0.001 and new.ends_at >= now
    return state == PENDING and new.starts_at >= now


@dataclass
class SilenceStore:
    """The silences in force, kept in memory; `on_change(silence)` is called on
    every add or expiry so the daemon can persist them."""

    on_change: Callable[[Silence], None] | None = None
    _silences: dict[str, Silence] = field(default_factory=dict)

    def add(self, silence: Silence, now: float) -> Silence:
        """Add a silence or update one, by Alertmanager's rules. With the same
        matchers, an active silence may have its end moved and a pending one its
        times (to a start not in the past): it is updated in place. Any other change
        to a silence expires it and creates a new one; an expired silence stays as it
        was, for the record. A new silence never starts in the past: it starts now."""
        old = self._silences.get(silence.id)
        if old is None or not _can_update(old, silence, now):
            if old is not None:
                self.expire(old.id, now)
                silence.id = str(uuid.uuid4())
            silence.starts_at = max(silence.starts_at, now)
        silence.updated_at = now
        self._silences[silence.id] = silence
        if self.on_change:
            self.on_change(silence)
        return silence

    def get(self, silence_id: str) -> Silence | None:
        return self._silences.get(silence_id)

    def expire(self, silence_id: str, now: float) -> Silence | None:
        """End a silence now; a pending one starts and ends now, so that it reads as
        expired at once, as in Alertmanager. None when unknown."""
        s = self._silences.get(silence_id)
        if s is None:
            return None
        state = s.state(now)
        if state != EXPIRED:
            if state == PENDING:
                s.starts_at = now
            s.ends_at = now
            s.updated_at = now
            if self.on_change:
                self.on_change(s)
        return s

    def list(self, now: float | None = None, state: str | None = None) -> list[Silence]:
        out = sorted(self._silences.values(), key=lambda s: (s.starts_at, s.id))
        if state is not None and now is not None:
            out = [s for s in out if s.state(now) == state]
        return out

    def next_start(self, now: float) -> float | None:
        """When the next silence recorded ahead of `now` starts (None: none does)."""
        return min((s.starts_at for s in self._silences.values() if s.starts_at > now), default=None)

    def replace_source(self, source: str, silences: Iterable[Silence]) -> None:
        """Swap the silences that came from one source (a rule file) for a new set."""
        for sid in [sid for sid, s in self._silences.items() if s.source == source]:
            del self._silences[sid]
        for s in silences:
            s.source = source
            self._silences[s.id] = s

    def load(self, silences: Iterable[Silence]) -> None:
        """Restore persisted silences (no `on_change` calls)."""
        for s in silences:
            self._silences[s.id] = s

    def silenced_by(self, labels: Mapping[str, str], now: float) -> str | None:
        """The id of an active silence matching these labels, or None."""
        for s in self._silences.values():
            if s.is_active(now) and s.matches(labels):
                return s.id
        return None

    def __len__(self) -> int:
        return len(self._silences)
