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


def test_stale_series_are_dropped_and_their_open_alert_resolved():
    spec = dataclasses.replace(DEFAULT_SPEC, stale_after=600.0)
    bank = DetectorBank([spec])
    x = noisy(1000, seed=2)
    x[950:] += 20
    for i, v in enumerate(x):
        bank.observe({"s": "a"}, i * STEP, float(v))
        bank.observe({"s": "b"}, i * STEP, 1.0)
    bank.observe({"s": "b"}, 1010 * STEP, 1.0)
    assert bank.series_count() == 2
    closed = bank.expire(now=1010 * STEP)
    assert bank.series_count() == 1
    assert [(e.transition, dict(e.labels)) for e in closed] == [("close", {"s": "a"})]


def test_series_are_routed_by_matchers_and_unmatched_ones_ignored():
    specs = parse_detectors([{"name": "cpu", "match": {"__name__": "cpu"}}], "c.yaml")
    bank = DetectorBank(specs)
    assert bank.observe({"__name__": "mem"}, 0.0, 1.0) is None
    bank.observe({"__name__": "cpu", "host": "a"}, 0.0, 1.0)
    assert bank.series_count() == 1


def test_deferred_refits_are_plain_callables_run_by_the_owner():
    spec = dataclasses.replace(DEFAULT_SPEC, warmup=100)
    bank = DetectorBank([spec], refit="deferred")
    x = noisy(400, seed=3)
    for i, v in enumerate(x[:150]):
        bank.observe({"s": "a"}, i * STEP, float(v))
    jobs = bank.pending_refits()
    assert len(jobs) == 1 and bank.pending_refits() == []
    bank.complete(jobs[0], jobs[0]())
    decisions = [bank.observe({"s": "a"}, (150 + i) * STEP, float(v)) for i, v in enumerate(x[150:])]
    assert decisions.count(None) == len(decisions)
    assert len(bank.pending_refits()) == 1
