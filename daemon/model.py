"""The alert as incidentd sees it, and its Alertmanager-compatible identity."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

# a label name as Prometheus and Alertmanager take it (`match` it: `\Z`, not `$`, so
# no trailing newline gets through)
LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")

_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_MASK = 0xFFFFFFFFFFFFFFFF

# the longest text a person may write: a note, a problem's title or known-error field,
# and an author's name; the API refuses longer ones rather than cut them
MAX_TEXT = 10_000
MAX_NAME = 200


def optional_text(value: Any, name: str, limit: int,
                  error: Callable[[str], Exception] = ValueError) -> str:
    """A text field a person may leave out: absent (None) is empty; anything but a
    string, or a string over `limit` characters, is `error(message)` naming the field."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise error(f"{name}: expected a string")
    if len(value) > limit:
        raise error(f"{name}: at most {limit} characters")
    return value

SEVERITY_RANK = {"none": 0, "info": 1, "warning": 2, "error": 3, "critical": 4, "page": 4}


_CACHE: dict[tuple[tuple[str, str], ...], str] = {}
_CACHE_MAX = 262_144


def fingerprint(labels: dict[str, str]) -> str:
    """Prometheus' `LabelSet.Fingerprint()`: FNV-1a 64 over the sorted label pairs.

    Each name and value is followed by the separator byte 0xFF, so
    `{a="bc"}` and `{ab="c"}` differ. Alerts are re-sent over and over with
    the same labels, so results are cached by label set.
    """
    # keyed by the pairs as given (senders keep their label order from post to
    # post, and Prometheus sorts them), so a re-post costs no sort
    key = tuple(labels.items())
    fp = _CACHE.get(key)
    if fp is None:
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.clear()
        fp = _CACHE[key] = _fnv1a(tuple(sorted(key)))
    return fp


def _fnv1a(pairs: tuple[tuple[str, str], ...]) -> str:
    h = _FNV_OFFSET
    for name, value in pairs:
        for byte in b"".join((name.encode(), b"\xff", value.encode(), b"\xff")):
            h = ((h ^ byte) * _FNV_PRIME) & _MASK
    return f"{h:016x}"


def severity_rank(severity: str | None) -> int:
    return SEVERITY_RANK.get((severity or "").lower(), 1 if severity else 0)


@dataclass(slots=True)
class Alert:
    """One alert notification as received (after validation)."""

    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: float | None
    ends_at: float | None
    status: str  # "firing" | "resolved"
    generator_url: str = ""
    fingerprint: str = ""
    source: str = "api"
    received_at: float = 0.0
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.fingerprint:
            self.fingerprint = fingerprint(self.labels)

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "")

    @property
    def severity(self) -> str:
        return self.labels.get("severity", "")

    def began(self, now: float) -> float:
        """When it began, as the clock reads `now`: its `startsAt` (a notification delivered
        late began before it came), unless unknown or ahead of the clock."""
        return now if self.starts_at is None else min(now, self.starts_at)

    def is_firing(self, now: float) -> bool:
        if self.status == "resolved":
            return False
        return self.ends_at is None or self.ends_at > now
