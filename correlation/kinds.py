"""What kind of alert is this: a likely cause, a symptom, or a local resource condition?

An instance that is down, a pod crash-looping or a full disk says that
*this* CI is broken; high latency or an error rate says that something this
CI needs may be broken (a fault spreads to its dependents as errors and
latency); CPU throttling, a maxed-out autoscaler or a filling disk describe
the CI's own resources and rarely travel along dependencies. Root-cause
ranking and grouping weigh alerts by kind. The patterns are regexes on
`alertname` (fully anchored) and can be extended in the `correlation:` config.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from rules.matchers import Regexes

# weight of an alert as evidence that its own CI is the cause (0..1)
CAUSE = 1.0
STATE = 0.6
RESOURCE = 0.4
SYMPTOM = 0.2

DEFAULT_CAUSE = (
    ".*Down", ".*Unreachable", ".*NotReady", ".*CrashLooping", ".*OOMKill.*",
    ".*(Filesystem|Disk).*(OutOfSpace|Full|ReadOnly).*", ".*OutOfMemory", ".*Failed",
    ".*ProbeFailed", ".*Partition.*", ".*ReplicasMismatch", ".*NodeNetwork.*Errs",
    ".*Unavailable", ".*NotRunning", ".*Restarting.*", ".*Exhausted",
)
DEFAULT_SYMPTOM = (
    ".*ErrorRate.*", ".*Error.*Rate", ".*5xx.*", ".*Latency.*", ".*Slow.*",
    "ErrorBudgetBurn.*", ".*SLO.*", ".*Timeout.*", ".*Apdex.*",
)
DEFAULT_RESOURCE = (
    ".*Throttl.*", ".*Saturat.*", ".*HighUsage", ".*HighUtilization", ".*(CPU|Memory)High.*",
    ".*HpaMaxedOut", ".*Overcommit", ".*FillingUp", ".*ClockNotSynchronising",
)


KIND_NAMES = {CAUSE: "cause", STATE: "state", RESOURCE: "resource", SYMPTOM: "symptom"}


@dataclass(frozen=True, slots=True)
class AlertKinds:
    cause: Regexes
    symptom: Regexes
    resource: Regexes = Regexes(())
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def build(cls, cause: Sequence[str] = DEFAULT_CAUSE, symptom: Sequence[str] = DEFAULT_SYMPTOM,
              resource: Sequence[str] = DEFAULT_RESOURCE) -> AlertKinds:
        return cls(Regexes(cause), Regexes(symptom), Regexes(resource))

    def weight(self, labels: Mapping[str, str]) -> float:
        """How strongly an alert points at its own CI as the cause (CAUSE, STATE, RESOURCE or SYMPTOM)."""
        name = labels.get("alertname", "")
        w = self._cache.get(name)
        if w is None:
            if self.cause.any(name):
                w = CAUSE
            elif self.symptom.any(name):
                w = SYMPTOM
            elif self.resource.any(name):
                w = RESOURCE
            else:
                w = STATE
            if len(self._cache) < 10_000:
                self._cache[name] = w
        return w

    def kind(self, labels: Mapping[str, str]) -> str:
        return KIND_NAMES[self.weight(labels)]
