"""From calibrated tail probabilities to alert decisions: one alarm per episode.

An on-call engineer wants one page when a series goes wrong, none for a
single odd sample, and no flapping while it stays wrong. `EpisodeTracker`
is the small state machine that does this:

- persistence: an episode opens only after ``persistence`` consecutive
  samples whose tail probability is below ``open_probability``;
- hysteresis: it closes only after ``clear_after`` consecutive samples whose
  probability is back above ``close_probability`` (far less strict than the
  open level), so a degradation hovering at the edge does not flap;
- refractory period: no new episode opens within ``refractory`` samples of
  the previous opening, so one incident pages once even when it wobbles;
- warm-up is the caller's: it says whether this sample may alert.

`open_probability_for` maps the one user-facing knob, ``sensitivity`` in
[0, 1], to the open level on a log scale: 0 asks for a one-in-a-million
tail, 1 for one in a hundred.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

Transition = Literal["open", "close"]

PERSISTENCE = 3
CLEAR_AFTER = 6
CLOSE_PROBABILITY = 0.05
REFRACTORY = 200


def open_probability_for(sensitivity: float) -> float:
    """Tail probability below which a sample counts towards opening an episode."""
    return 10.0 ** -(6.0 - 4.0 * sensitivity)


@dataclass(frozen=True, slots=True)
class DecisionParams:
    open_probability: float
    close_probability: float = CLOSE_PROBABILITY
    persistence: int = PERSISTENCE
    clear_after: int = CLEAR_AFTER
    refractory: int = REFRACTORY


@dataclass(slots=True)
class EpisodeTracker:
    """Per-series episode state; `step` is called once per sample."""

    params: DecisionParams
    active: bool = False
    hits: int = 0
    calm: int = 0
    since_open: int = field(default=1 << 30)

    def step(self, probability: float, may_alert: bool) -> Transition | None:
        p = 1.0 if math.isnan(probability) else probability
        self.since_open += 1
        self.hits = self.hits + 1 if p < self.params.open_probability else 0
        if not self.active:
            if (
                may_alert
                and self.hits >= self.params.persistence
                and self.since_open >= self.params.refractory
            ):
                self.active = True
                self.calm = 0
                self.since_open = 0
                return "open"
            return None
        self.calm = self.calm + 1 if p > self.params.close_probability else 0
        if self.calm >= self.params.clear_after:
            self.active = False
            self.calm = 0
            return "close"
        return None
