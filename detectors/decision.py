"""From calibrated tail probabilities to alert decisions: one alarm per episode.

An on-call engineer wants one page when a series goes wrong, none for a
single odd sample, and no flapping while it stays wrong. `EpisodeTracker`
is the small state machine that does this:

- persistence: the evidence of the last ``persistence`` samples must reach
  the open level. The default is one sample: the anomaly likelihood
  (`detectors.calibration`) already averages the last ten raw scores, so a
  single odd sample moves it little, and a second average only delayed the
  alert (measured on NAB: averaging over 3 or 6 samples scored no better);
- hysteresis: it closes only after ``clear_after`` consecutive samples whose
  probability is back above ``close_probability`` (far less strict than the
  open level), so a degradation hovering at the edge does not flap;
- refractory period: no new episode opens within ``refractory`` samples of
  the previous opening, so one incident pages once even when it wobbles.
  100 samples: long enough to absorb the wobble of one incident, short
  enough not to hide a second one (measured on NAB: 200 samples missed
  windows that follow closely; 0, i.e. hysteresis alone, added false
  alarms; raising the open level after each alarm lost more windows than
  it saved false alarms);
- warm-up and routine bursts are the caller's: it says whether this sample
  may alert (`detectors.series`).

`open_probability_for` maps the one user-facing knob, ``sensitivity`` in
[0, 1], to the open level on a log scale: 0 asks for a one-in-a-million
tail, 1 for one in a hundred.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

Transition = Literal["open", "close"]

PERSISTENCE = 1
CLEAR_AFTER = 6
CLOSE_PROBABILITY = 0.05
REFRACTORY = 100


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
    """Per-series episode state; `step` is called once per sample.

    Persistence is counted as evidence: the surprise ``-log10(p)`` of each
    sample, capped at twice the open level, averaged over the last
    ``persistence`` samples, must reach the open level. With a persistence
    above 1 a short burst that is far out, or a longer one that is
    moderately out, opens an episode.
    """

    params: DecisionParams
    active: bool = False
    calm: int = 0
    since_open: int = field(default=1 << 30)
    recent: list[float] = field(default_factory=list)

    def step(self, probability: float, may_alert: bool) -> Transition | None:
        params = self.params
        p = 1.0 if math.isnan(probability) else max(probability, 1e-300)
        level = -math.log10(params.open_probability)
        self.since_open += 1
        self.recent.append(min(-math.log10(p), 2.0 * level))
        if len(self.recent) > params.persistence:
            del self.recent[0]
        if not self.active:
            evidence = sum(self.recent) / params.persistence
            if may_alert and evidence >= level and self.since_open >= params.refractory:
                self.active = True
                self.calm = 0
                self.since_open = 0
                return "open"
            return None
        self.calm = self.calm + 1 if p > params.close_probability else 0
        if self.calm >= params.clear_after:
            self.active = False
            self.calm = 0
            return "close"
        return None
