import numpy as np

from detectors.calibration import TailCalibrator
from detectors.features import detect_period, feature_matrix, feature_row, lookback


def test_feature_row_equals_the_matrix_row():
    x = np.random.default_rng(0).normal(size=400)
    for period in (0, 24):
        full = feature_matrix(x, period)
        for i in (lookback(period), 200, 399):
            np.testing.assert_allclose(feature_row(x[: i + 1], period), full[i])


def test_daily_cycle_is_found_and_noise_has_none():
    t = np.arange(1000)
    rng = np.random.default_rng(1)
    daily = np.sin(2 * np.pi * t / 288) + 0.2 * rng.normal(size=1000)
    assert detect_period(daily, 300.0, max_lag=500) == 288
    assert detect_period(rng.normal(size=1000), 300.0, max_lag=500) == 0


def test_calibration_tail_keeps_decreasing_beyond_the_largest_score():
    cal = TailCalibrator.fit(np.random.default_rng(2).exponential(size=1000))
    top = float(cal.sorted_scores[-1])
    assert cal.tail_probability(0.0) == 1.0
    assert cal.tail_probability(top + 5) < cal.tail_probability(top) < 0.01
