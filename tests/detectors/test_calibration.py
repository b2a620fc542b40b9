import math

import numpy as np
import pytest

from detectors.calibration import ScoreHistory


def test_the_sums_match_the_ring_after_a_huge_score_leaves_it():
    scores = np.random.default_rng(0).normal(1.0, 0.1, 150)
    history = ScoreHistory(100)
    history.extend(scores[:50])
    history.push(1e9)  # one sample far out: its score dwarfs all others
    history.extend(scores[50:150])  # it has just left the ring (the lap ends at 200)
    assert len(history) == 100 and history._ring.max() < 2.0
    ring = history._ring
    assert history._sum == pytest.approx(float(ring.sum()), rel=1e-12)
    assert history._sumsq == pytest.approx(float(ring @ ring), rel=1e-12)
    fresh = ScoreHistory(100)  # the same 100 scores, without the one that left
    fresh.extend(scores[50:150])
    assert math.isclose(history.tail_probability(), fresh.tail_probability(), rel_tol=1e-9)
