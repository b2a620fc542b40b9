import dataclasses

from synthetic import STEP, noisy

from detectors.bank import DetectorBank
from detectors.spec import DEFAULT_SPEC, parse_detectors


def test_anomaly_opens_and_closes_an_alert_for_the_series():
    bank = DetectorBank()
    labels = {"__name__": "latency", "service": "checkout"}
    x = noisy(1300, seed=1)
    x[900:950] += 15
    events = [e for i, v in enumerate(x) if (e := bank.observe(labels, i * STEP, float(v)))]
    assert [e.transition for e in events] == ["open", "close"]
    opened = events[0]
    assert opened.alert_labels() == {"alertname": "MetricAnomaly", "metric": "latency",
                                     "service": "checkout", "detector": "default"}
    notes = opened.alert_annotations()
    assert float(notes["score"]) > 0.99 and "expected_low" in notes and "expected_high" in notes


def _anomalous_at_the_end(*steady: str) -> DetectorBank:
    """A bank whose series `a` is in an anomaly when its 1000 samples end (and the
    series `steady` run alongside)."""
    bank = DetectorBank([dataclasses.replace(DEFAULT_SPEC, stale_after=600.0)])
    x = noisy(1000, seed=2)
    x[950:] += 20
    for i, v in enumerate(x):
        bank.observe({"s": "a"}, i * STEP, float(v))
        for name in steady:
            bank.observe({"s": name}, i * STEP, 1.0)
    return bank


def test_a_quiet_series_resolves_its_alert_and_a_gone_one_is_dropped():
    bank = _anomalous_at_the_end("b")
    # eleven intervals away: past stale_after, but a series may miss a few samples
    bank.observe({"s": "b"}, 1010 * STEP, 1.0)
    assert bank.expire(now=1010 * STEP) == []
    # a hundred intervals: quiet; its alert resolves, its model stays for its return
    closed = bank.expire(now=(999 + 101) * STEP)
    assert [(e.transition, dict(e.labels)) for e in closed] == [("close", {"s": "a"})]
    assert bank.series_count() == 2 and bank.expire(now=(999 + 102) * STEP) == []
    # 24 times as long: gone, and dropped
    bank.observe({"s": "b"}, (999 + 2401) * STEP, 1.0)
    assert bank.expire(now=(999 + 2401) * STEP) == []
    assert bank.series_count() == 1


def test_a_series_back_after_a_gap_keeps_its_model_and_ends_its_episode():
    bank = _anomalous_at_the_end()
    detector = bank._series[(("s", "a"),)].detector
    assert detector.active
    # back after 200 intervals, with no sweep in between: as if the sweep had run
    event = bank.observe({"s": "a"}, (999 + 200) * STEP, 0.0)
    assert event is not None and event.transition == "close"
    assert bank._series[(("s", "a"),)].detector is detector and detector.samples_seen == 1001


def test_series_are_routed_by_matchers_and_unmatched_ones_ignored():
    specs = parse_detectors([{"name": "cpu", "match": {"__name__": "cpu"}}], "c.yaml")
    bank = DetectorBank(specs)
    assert bank.observe({"__name__": "mem"}, 0.0, 1.0) is None
    bank.observe({"__name__": "cpu", "host": "a"}, 0.0, 1.0)
    assert bank.series_count() == 1


def test_the_first_model_is_fitted_at_once_and_later_refits_are_callables_run_by_the_owner():
    spec = dataclasses.replace(DEFAULT_SPEC, warmup=100)
    bank = DetectorBank([spec], refit="deferred")
    x = noisy(400, seed=3)
    for i, v in enumerate(x[:150]):
        bank.observe({"s": "a"}, i * STEP, float(v))
    # without a model nothing is scored: the first one is fitted when due, in place
    detector = bank._series[(("s", "a"),)].detector
    assert detector.has_model and bank.pending_refits() == []
    for i, v in enumerate(x[150:250]):
        bank.observe({"s": "a"}, (150 + i) * STEP, float(v))
    jobs = bank.pending_refits()  # the next ones are left to the owner
    assert len(jobs) == 1 and bank.pending_refits() == []
    bank.complete(jobs[0], jobs[0]())
    decisions = [bank.observe({"s": "a"}, (250 + i) * STEP, float(v)) for i, v in enumerate(x[250:])]
    assert decisions.count(None) == len(decisions)
    assert len(bank.pending_refits()) == 1


def test_a_burst_of_samples_is_scored_live_as_detect_scores_it():
    """A backfill posted in one request: with deferred refits (the daemon), every sample
    after warmup is scored, and the spike opens the episode it opens inline (`detect`)."""
    spec = dataclasses.replace(DEFAULT_SPEC, warmup=100, refit_every=10_000)
    x = noisy(400, seed=4)
    x[380:] += 25
    opened = {}
    for mode in ("inline", "deferred"):
        bank = DetectorBank([spec], refit=mode)
        events = [bank.observe({"s": "a"}, i * STEP, float(v)) for i, v in enumerate(x)]
        opened[mode] = [i for i, e in enumerate(events) if e is not None and e.transition == "open"]
    assert opened["deferred"] == opened["inline"] and opened["inline"] and opened["inline"][0] >= 380


def test_a_first_fit_that_fails_leaves_the_series_to_try_again(tmp_path):
    spec = dataclasses.replace(DEFAULT_SPEC, warmup=100, model="lof", params={"n_neighbors": 0})
    bank = DetectorBank([spec], refit="deferred")
    x = noisy(250, seed=5)
    for i, v in enumerate(x[:150]):
        assert bank.observe({"s": "a"}, i * STEP, float(v)) is None  # no exception escapes
    detector = bank._series[(("s", "a"),)].detector
    assert not detector.has_model and bank.take_fit_failures() == 1 and bank.take_fit_failures() == 0
    # not at every sample (a fit each, and a log line): refit_every samples on
    assert not detector.refit_due()
    for i, v in enumerate(x[150:], start=150):
        bank.observe({"s": "a"}, i * STEP, float(v))
    assert detector.fit_failures == 2 and bank.take_fit_failures() == 1


def test_the_owner_never_gets_a_series_first_fit_even_when_it_falls_due_at_a_chunk_end():
    """The daemon asks for due refits after each chunk; a series that reached its warmup
    with the chunk's last sample must still fit its first model in place, at its next
    sample (fitted elsewhere, it came in too late for the spike of a backfill)."""
    spec = dataclasses.replace(DEFAULT_SPEC, warmup=100, refit_every=10_000)
    x = noisy(400, seed=4)
    x[300:315] += 25
    inline = DetectorBank([spec])
    want = [i for i, v in enumerate(x) if (e := inline.observe({"s": "a"}, i * STEP, float(v))) and e.transition == "open"]
    bank = DetectorBank([spec], refit="deferred")
    got = []
    for start in range(0, 400, 100):  # chunks that end exactly at the warmup
        for i in range(start, start + 100):
            e = bank.observe({"s": "a"}, i * STEP, float(x[i]))
            if e is not None and e.transition == "open":
                got.append(i)
        assert bank.pending_refits() == []  # never the first fit (and no refit due yet)
    assert got == want and want and 300 <= want[0] < 315
