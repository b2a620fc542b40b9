"""Synthetic series for the detector tests: 5-minute samples, fixed seeds."""

from __future__ import annotations

import numpy as np

from detectors.series import SeriesDetector
from detectors.spec import DEFAULT_SPEC, DetectorSpec

STEP = 300.0
DAY = 288


def noisy(n: int, seed: int = 0, seasonal: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = 50.0 + rng.normal(0.0, 1.0, n)
    if seasonal:
        x += 10.0 * np.sin(2 * np.pi * np.arange(n) / DAY)
    return x


def run(values: np.ndarray, spec: DetectorSpec = DEFAULT_SPEC) -> tuple[list[int], list]:
    """Indices of the samples that open an episode, and all decisions."""
    det = SeriesDetector(spec)
    decisions = [det.update(i * STEP, float(v)) for i, v in enumerate(values)]
    return [i for i, d in enumerate(decisions) if d.transition == "open"], decisions
