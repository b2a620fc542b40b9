import numpy as np

from detectors.calibration import MIN_HISTORY, SHORT, ScoreHistory
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


def test_likelihood_ignores_one_odd_score_but_not_a_sustained_rise():
    rng = np.random.default_rng(2)
    h = ScoreHistory(1000)
    assert h.tail_probability() == 1.0
    h.extend(rng.exponential(size=MIN_HISTORY - 1))
    assert h.tail_probability() == 1.0
    h.extend(rng.exponential(size=900))
    h.push(8.0)
    assert h.tail_probability() > 0.01
    for _ in range(SHORT):
        h.push(6.0)
    assert h.tail_probability() < 1e-4


def test_running_sums_match_the_ring_after_wrapping():
    rng = np.random.default_rng(3)
    h = ScoreHistory(100)
    x = rng.normal(size=357)
    h.extend(x[:57])
    for v in x[57:]:
        h.push(float(v))
    assert len(h) == 100
    np.testing.assert_allclose(h.recent_mean(SHORT), x[-SHORT:].mean())
    np.testing.assert_allclose(h._sum, x[-100:].sum())


def test_numpy_knn_scores_equal_pyod_knn():
    from pyod.models.knn import KNN

    from detectors.model import NearestNeighbours

    rng = np.random.default_rng(4)
    train, rows = rng.normal(size=(300, 9)), rng.normal(size=(40, 9)) * 2
    for method in ("mean", "largest", "median"):
        expected = KNN(n_neighbors=10, method=method).fit(train).decision_function(rows)
        nn = NearestNeighbours(train, 10, method)
        np.testing.assert_allclose(nn.score_rows(rows), expected, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose([nn.score_row(r) for r in rows], expected, rtol=1e-12)
        nn32 = NearestNeighbours(train.astype(np.float32), 10, method)
        np.testing.assert_allclose([nn32.score_row(r) for r in rows], expected, rtol=1e-6)
