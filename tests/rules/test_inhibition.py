"""Inhibition: Alertmanager's semantics, several sources at once, and the CMDB."""

from daemon.model import Alert
from daemon.pipeline import AlertEvent
from rules.inhibit import InhibitRule, InhibitStage
from rules.matchers import parse_matchers


def ev(labels, ci=None, status="firing", ends_at=None):
    return AlertEvent(
        Alert(labels=labels, annotations={}, starts_at=0.0, ends_at=ends_at, status=status), ci=ci
    )


def rule(source, target, equal=(), **kw):
    sources = tuple(
        tuple(parse_matchers(s)) for s in (source if isinstance(source, list) else [source])
    )
    return InhibitRule(
        name=kw.pop("name", "r"),
        sources=sources,
        target=tuple(parse_matchers(target)),
        equal=tuple(equal),
        **kw,
    )


def test_source_inhibits_target_with_equal_labels():
    stage = InhibitStage([rule('{alertname="ClusterDown"}', '{severity="warning"}', ["cluster"])])
    src = ev({"alertname": "ClusterDown", "cluster": "eu"})
    same = ev({"alertname": "PodSlow", "severity": "warning", "cluster": "eu"})
    other = ev({"alertname": "PodSlow", "severity": "warning", "cluster": "us"})
    stage.process([src, same, other], now=10)
    assert same.inhibited_by and same.inhibited_by.startswith("r: ClusterDown[")
    assert other.inhibited_by is None and src.inhibited_by is None
    assert same.suppressed and "inhibited by" in same.notes[0]


def test_missing_equal_label_on_both_sides_counts_as_equal():
    stage = InhibitStage([rule('{alertname="A"}', '{alertname="B"}', ["cluster"])])
    stage.process([ev({"alertname": "A"})], now=0)
    target = ev({"alertname": "B"})
    stage.process([target], now=1)
    assert target.inhibited_by


def test_resolved_source_no_longer_inhibits():
    stage = InhibitStage([rule('{alertname="A"}', '{alertname="B"}')])
    stage.process([ev({"alertname": "A"})], now=0)
    stage.process([ev({"alertname": "A"}, status="resolved", ends_at=5)], now=5)
    target = ev({"alertname": "B"})
    stage.process([target], now=6)
    assert target.inhibited_by is None


def test_source_inhibits_until_its_ends_at():
    stage = InhibitStage([rule('{alertname="A"}', '{alertname="B"}')])
    stage.process([ev({"alertname": "A"}, ends_at=240)], now=0)
    early, late = ev({"alertname": "B"}), ev({"alertname": "B"})
    stage.process([early], now=239)
    stage.process([late], now=241)
    assert early.inhibited_by and late.inhibited_by is None


def test_source_without_ends_at_inhibits_until_it_resolves():
    # a firing alert of an Alertmanager webhook: no endsAt, re-sent every repeat_interval
    stage = InhibitStage([rule('{alertname="A"}', '{alertname="B"}')])
    stage.process([ev({"alertname": "A"})], now=0)
    later = ev({"alertname": "B"})
    stage.process([later], now=4 * 3600)
    stage.process([ev({"alertname": "A"}, status="resolved", ends_at=4 * 3600 + 1)], now=4 * 3600 + 1)
    after = ev({"alertname": "B"})
    stage.process([after], now=4 * 3600 + 2)
    assert later.inhibited_by and after.inhibited_by is None


def test_alerts_matching_both_sides_do_not_inhibit_each_other():
    stage = InhibitStage(
        [rule('{severity="critical"}', '{severity=~"critical|warning"}', ["cluster"])]
    )
    a = ev({"alertname": "A", "severity": "critical", "cluster": "eu"})
    b = ev({"alertname": "B", "severity": "critical", "cluster": "eu"})
    w = ev({"alertname": "W", "severity": "warning", "cluster": "eu"})
    stage.process([a, b, w], now=0)
    assert a.inhibited_by is None and b.inhibited_by is None
    assert w.inhibited_by


def test_several_sources_must_fire_at_once():
    both_links = rule(
        ['{alertname="LinkDown", link="a"}', '{alertname="LinkDown", link="b"}'],
        '{alertname="SiteUnreachable"}',
        ["site"],
    )
    stage = InhibitStage([both_links])
    stage.process([ev({"alertname": "LinkDown", "link": "a", "site": "par"})], now=0)
    one = ev({"alertname": "SiteUnreachable", "site": "par"})
    stage.process([one], now=1)
    assert one.inhibited_by is None
    stage.process([ev({"alertname": "LinkDown", "link": "b", "site": "par"})], now=2)
    two = ev({"alertname": "SiteUnreachable", "site": "par"})
    stage.process([two], now=3)
    assert two.inhibited_by and two.inhibited_by.count("LinkDown") == 2


def test_cmdb_mode_inhibits_symptoms_on_dependent_cis():
    deps = {("checkout", "orders-db"), ("checkout", "payments"), ("payments", "orders-db")}
    stage = InhibitStage(
        [rule('{alertname="DatabaseDown"}', '{severity!="critical"}', ci_relation="depends_on")],
        depends_on=lambda a, b: (a, b) in deps,
    )
    db = ev({"alertname": "DatabaseDown", "severity": "critical"}, ci="orders-db")
    checkout = ev({"alertname": "HighLatency", "severity": "warning"}, ci="checkout")
    search = ev({"alertname": "HighLatency", "severity": "warning"}, ci="search")
    no_ci = ev({"alertname": "HighLatency", "severity": "warning"})
    stage.process([db, checkout, search, no_ci], now=0)
    assert checkout.inhibited_by
    assert search.inhibited_by is None and no_ci.inhibited_by is None


def test_source_matchers_may_use_ci_attributes():
    attrs = {"core-router": {"type": "network"}}
    stage = InhibitStage(
        [rule('{ci.type="network"}', '{alertname="Unreachable"}')], ci_attrs=attrs.get
    )
    stage.process([ev({"alertname": "PortDown"}, ci="core-router")], now=0)
    t = ev({"alertname": "Unreachable"})
    stage.process([t], now=1)
    assert t.inhibited_by
