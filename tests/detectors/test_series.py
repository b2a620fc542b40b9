import math

import numpy as np
from synthetic import DAY, noisy, run

from detectors.spec import DEFAULT_SPEC


def test_spike_is_detected_after_warmup():
    x = noisy(1200, seed=1)
    x[900:902] += 15.0
    opens, _ = run(x)
    assert opens and 900 <= opens[0] <= 905


def test_level_shift_is_detected_quickly():
    x = noisy(1200, seed=2)
    x[900:] += 8.0
    opens, decisions = run(x)
    assert opens and 900 <= opens[0] <= 910
    assert decisions[opens[0]].expected_high < x[opens[0]]


def test_slow_drift_is_detected():
    x = noisy(1500, seed=3)
    x[900:] += 0.03 * np.arange(600)
    opens, _ = run(x)
    assert opens and opens[0] > 900


def test_change_in_daily_cycle_is_detected():
    x = noisy(6 * DAY, seed=4, seasonal=True)
    start = 4 * DAY + DAY // 4  # near the daily peak the cycle flattens out
    x[start:] = 50.0 + np.random.default_rng(9).normal(0.0, 1.0, len(x) - start)
    opens, _ = run(x)
    assert opens and start <= opens[0] <= start + DAY // 4


def test_clean_noisy_series_raises_no_alert():
    opens, decisions = run(noisy(3000, seed=5))
    assert opens == []
    assert all(0.0 <= d.score <= 1.0 for d in decisions)


def test_clean_daily_seasonal_series_raises_no_alert():
    opens, _ = run(noisy(3000, seed=6, seasonal=True))
    assert opens == []


def test_single_noisy_point_does_not_page():
    # A point 4 sigma out moves the 3-sample level by 1.3 sigma; it must not
    # page. (A single point far beyond anything in the series' history can:
    # it shifts the smoothed level for three samples, see decision.py.)
    x = noisy(1200, seed=8)
    x[900] += 4.0
    opens, _ = run(x)
    assert opens == []


def test_routine_single_point_spikes_of_a_heavy_tailed_series_do_not_page():
    rng = np.random.default_rng(11)
    # Noise clipped at 15 and isolated spikes: a natural 22 right next to a
    # spike of 25 would be a double spike, a new pattern worth a page.
    x = 50.0 + np.clip(rng.standard_t(df=2, size=2000), -15.0, 15.0)
    x[50 + 48 * np.arange(40) + rng.integers(0, 20, size=40)] += 25.0
    opens, _ = run(x)
    assert opens == []


def test_no_alert_during_warmup():
    x = noisy(600, seed=8)
    x[100:110] += 50.0
    opens, decisions = run(x)
    assert all(i > DEFAULT_SPEC.warmup for i in opens)
    assert all(d.score == 0.0 for d in decisions[: DEFAULT_SPEC.warmup])


def test_episode_closes_when_back_to_normal_and_pages_once():
    x = noisy(1400, seed=9)
    x[900:960] += 12.0
    opens, decisions = run(x)
    closes = [i for i, d in enumerate(decisions) if d.transition == "close"]
    assert len(opens) == 1 and 900 <= opens[0] <= 905
    assert closes and 960 <= closes[0] <= 990
    assert not decisions[-1].is_anomaly


def test_out_of_order_and_nan_samples_are_ignored():
    x = noisy(400, seed=10)
    _, decisions = run(x)
    from detectors.series import SeriesDetector

    det = SeriesDetector(DEFAULT_SPEC)
    det.update(100.0, 1.0)
    assert det.update(50.0, 2.0).score == 0.0
    assert det.update(200.0, math.nan).score == 0.0
    assert det.samples_seen == 1


def test_values_near_the_float_range_are_ignored_and_do_not_blind_the_model():
    x = noisy(1200, seed=1)
    x[900:902] += 15.0
    clean, _ = run(x)
    x[610], x[611] = 1e308, -1e308  # finite, but any difference of them overflows
    opens, decisions = run(x)
    assert opens == clean and decisions[610].score == 0.0


def test_a_burst_beyond_the_range_of_earlier_bursts_pages():
    rng = np.random.default_rng(11)
    x = 50.0 + np.clip(rng.standard_t(df=2, size=2000), -15.0, 15.0)
    x[50 + 48 * np.arange(40) + rng.integers(0, 20, size=40)] += 25.0
    x[1900] += 80.0
    opens, _ = run(x)
    assert len(opens) == 1 and 1900 <= opens[0] <= 1905


def test_a_burst_like_one_that_paged_before_pages_again():
    x = noisy(1600, seed=12)
    x[900:903] += 12.0
    x[1400:1403] += 10.0
    opens, _ = run(x)
    assert len(opens) == 2 and 900 <= opens[0] <= 905 and 1400 <= opens[1] <= 1405


def test_a_warmup_shorter_than_a_model_needs_waits_for_enough_values():
    import dataclasses

    from detectors.series import SeriesDetector

    det = SeriesDetector(dataclasses.replace(DEFAULT_SPEC, warmup=0))
    decisions = [det.update(i * 60.0, float(v)) for i, v in enumerate(noisy(120, seed=3))]
    assert not det.has_model or det.samples_seen >= 50  # no fit on a handful of values
    assert all(d.transition is None for d in decisions[:50])


def test_one_huge_value_leaves_no_false_alarms_once_it_leaves_the_score_history():
    # Its scores once dominated the running sums of the score history; when they
    # leave it (1000 samples later) what is left must be the other scores' spread.
    x = noisy(4000, seed=1)
    clean, _ = run(x)
    x[1200] = 1e9
    opens, _ = run(x)
    assert clean == []
    assert len(opens) == 1 and 1200 <= opens[0] <= 1205  # the spike itself, once


def _hourly_daily_cycle(n: int, seed: int, cycle_from: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = 50.0 + rng.normal(0.0, 1.0, n)
    x[cycle_from:] += 10.0 * np.sin(2 * np.pi * np.arange(n - cycle_from) / 24)
    return x


def test_a_first_fit_the_model_refuses_raises_nothing_and_is_tried_again_later():
    from detectors.series import SeriesDetector
    from detectors.spec import parse_detectors

    # check-config's trial fit takes it (71 rows for the seed model), but an hourly series
    # with a daily cycle has 26 values without a feature row: its seed model gets 62
    [spec] = parse_detectors([{"name": "d", "params": {"n_neighbors": 65, "metric": "manhattan"}}], "c.yaml")
    x = _hourly_daily_cycle(700, seed=0)
    x[600:603] += 30.0
    det = SeriesDetector(spec)
    decisions = [det.update(i * 3600.0, float(v)) for i, v in enumerate(x)]
    assert det.fit_failures == 1 and "n_neighbors" in det.fit_error
    assert all(d.score == 0.0 and d.expected_low is None for d in decisions[:250])  # not ready
    assert det.has_model and decisions[250].expected_low is not None  # refit_every later: fits
    assert [i for i, d in enumerate(decisions) if d.transition == "open"] == [604]


def test_a_refit_the_model_refuses_keeps_the_previous_model_scoring():
    from detectors.series import SeriesDetector
    from detectors.spec import parse_detectors

    # a distance for the 8 columns of a series without a cycle; once the series has
    # one, its rows have 9 and each refit raises
    [spec] = parse_detectors([{"name": "d", "params": {
        "metric": "mahalanobis", "metric_params": {"V": np.eye(8).tolist()}}}], "c.yaml")
    det = SeriesDetector(spec)
    decisions = [det.update(i * 3600.0, float(v)) for i, v in enumerate(_hourly_daily_cycle(700, 1, 300))]
    assert det.fit_failures >= 3 and "V" in det.fit_error
    assert all(d.expected_low is not None for d in decisions[150:])  # scored all along
