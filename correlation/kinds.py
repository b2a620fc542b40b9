"""What kind of alert is this: a likely cause, or a symptom?

An instance that is down, a pod crash-looping or a full disk says that
*this* CI is broken; high latency or an error rate says that something this
CI needs may be broken. Root-cause ranking weighs a candidate's own alerts
by this kind. The patterns are regexes on `alertname` (fully anchored) and
can be extended in the `correlation:` config.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

# weight of an alert as evidence that its own CI is the cause (0..1)
CAUSE = 1.0
STATE = 0.6
SYMPTOM = 0.2

DEFAULT_CAUSE = (
    ".*Down", ".*Unreachable", ".*NotReady", ".*CrashLooping", ".*OOMKill.*",
    ".*(Filesystem|Disk).*(OutOfSpace|Full|ReadOnly).*", ".*OutOfMemory", ".*Failed",
    ".*ProbeFailed", ".*Partition.*", ".*ReplicasMismatch", ".*NodeNetwork.*Errs",
    ".*Unavailable", ".*NotRunning", ".*Restarting.*", ".*Exhausted",
)
DEFAULT_SYMPTOM = (
    ".*ErrorRate.*", ".*Error.*Rate", ".*5xx.*", ".*Latency.*", ".*Slow.*",
    "ErrorBudgetBurn.*", ".*SLO.*", ".*Timeout.*", ".*Throttl.*", ".*Saturat.*",
    ".*HighUsage", ".*HighUtilization", ".*Apdex.*",
)


@dataclass(frozen=True, slots=True)
class AlertKinds:
    cause: tuple[re.Pattern[str], ...]
    symptom: tuple[re.Pattern[str], ...]

    @classmethod
    def build(cls, cause: Sequence[str] = DEFAULT_CAUSE, symptom: Sequence[str] = DEFAULT_SYMPTOM) -> AlertKinds:
        return cls(tuple(re.compile(p) for p in cause), tuple(re.compile(p) for p in symptom))

    def weight(self, labels: Mapping[str, str]) -> float:
        """How strongly an alert points at its own CI as the cause (CAUSE, STATE or SYMPTOM)."""
        name = labels.get("alertname", "")
        if any(p.fullmatch(name) for p in self.cause):
            return CAUSE
        if any(p.fullmatch(name) for p in self.symptom):
            return SYMPTOM
        return STATE

    def kind(self, labels: Mapping[str, str]) -> str:
        w = self.weight(labels)
        return "cause" if w == CAUSE else "symptom" if w == SYMPTOM else "state"
