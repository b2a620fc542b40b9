"""Each rule action, rule order and `continue`."""

import pytest

from rules.loader import RuleFileError, load_rules


@pytest.fixture
def write(tmp_path):
    def write(text, name="rules.yaml"):
        p = tmp_path / name
        p.write_text(text)
        return str(p)

    return write


def rules(write, text):
    return load_rules([write(text)])


def test_set_labels_and_annotations_with_templates(write):
    rs = rules(
        write,
        """
rules:
  - match: ['alertname="HighLatency"']
    set_labels: {team: shop, host: "{{ $labels.instance }}"}
    set_annotations: {summary: "{{ $labels.service | upper }} slow on {{ $labels.instance }}"}
""",
    )
    out = rs.evaluate({"alertname": "HighLatency", "service": "checkout", "instance": "web-1"}, {})
    assert out.labels["team"] == "shop" and out.labels["host"] == "web-1"
    assert out.annotations["summary"] == "CHECKOUT slow on web-1"


def test_template_default_for_a_missing_label(write):
    rs = rules(
        write,
        """
rules:
  - match: []
    set_annotations: {owner: '{{ $labels.owner | default "unowned" }}'}
""",
    )
    assert rs.evaluate({"alertname": "X"}).annotations["owner"] == "unowned"


def test_setting_an_empty_value_removes_the_label(write):
    rs = rules(write, "rules:\n  - match: []\n    set_labels: {pod: ''}\n")
    assert "pod" not in rs.evaluate({"alertname": "X", "pod": "p-1"}).labels


def test_copy_labels_and_ci_attributes(write):
    rs = rules(
        write,
        """
rules:
  - match: []
    copy_labels: [{from: instance, to: host}, {from: ci.owner, to: owner}]
    copy_annotations: [{from: description, to: summary}]
""",
    )
    out = rs.evaluate(
        {"instance": "db-1"},
        {"description": "disk full"},
        "orders-db",
        lambda ci: {"owner": "team-data"},
    )
    assert out.labels == {"instance": "db-1", "host": "db-1", "owner": "team-data"}
    assert out.annotations["summary"] == "disk full"


def test_drop_stops_evaluation(write):
    rs = rules(
        write,
        """
rules:
  - match: ['alertname="Watchdog"']
    drop: true
    continue: true
  - match: []
    team: everyone
""",
    )
    out = rs.evaluate({"alertname": "Watchdog"})
    assert out.dropped and out.team is None


def test_impact_and_urgency_give_priority_from_the_default_itil_matrix(write):
    rs = rules(
        write,
        """
rules:
  - {match: ['sev="1"'], impact: high, urgency: high}
  - {match: ['sev="2"'], impact: high, urgency: low}
  - {match: ['sev="3"'], impact: low}
  - {match: ['sev="4"'], impact: low, urgency: low}
  - {match: ['sev="5"'], priority: P2}
""",
    )
    got = [rs.evaluate({"sev": s}).priority for s in "12345"]
    assert got == ["P1", "P3", "P4", "P5", "P2"]
    assert rs.evaluate({"sev": "9"}).priority is None


def test_priority_matrix_is_configurable(write):
    rs = rules(
        write,
        """
priority_matrix:
  critical: {now: P1, later: P2}
  minor: {now: P3, later: P5}
  defaults: {impact: minor, urgency: later}
rules:
  - {match: ['a="1"'], impact: critical, urgency: now}
  - {match: ['a="2"'], urgency: now}
""",
    )
    assert rs.evaluate({"a": "1"}).priority == "P1"
    assert rs.evaluate({"a": "2"}).priority == "P3"


def test_route_runbook_window_and_grouping(write):
    rs = rules(
        write,
        """
rules:
  - match: ['service="payments"']
    team: payments
    receiver: payments-pager
    runbook: "https://runbooks.example.com/{{ $labels.alertname }}"
    correlation_window: 10m
    group_by: [service, cluster]
""",
    )
    out = rs.evaluate({"alertname": "Errors", "service": "payments"})
    assert (out.team, out.receiver, out.runbook) == (
        "payments",
        "payments-pager",
        "https://runbooks.example.com/Errors",
    )
    assert out.correlation_window == 600 and out.group_by == ["service", "cluster"]


def test_first_match_stops_unless_continue(write):
    rs = rules(
        write,
        """
rules:
  - {name: a, match: ['service="x"'], team: first}
  - {name: b, match: ['service="x"'], team: second}
""",
    )
    out = rs.evaluate({"service": "x"})
    assert out.matched == ["a"] and out.team == "first"


def test_continue_lets_later_rules_apply_and_override(write):
    rs = rules(
        write,
        """
rules:
  - {name: a, match: ['service="x"'], team: first, receiver: r1, continue: true}
  - {name: b, match: ['service="x"'], team: second}
  - {name: c, match: [], team: never}
""",
    )
    out = rs.evaluate({"service": "x"})
    assert out.matched == ["a", "b"] and (out.team, out.receiver) == ("second", "r1")


def test_later_rules_see_labels_set_by_earlier_ones(write):
    rs = rules(
        write,
        """
rules:
  - {name: tag, match: ['namespace=~"shop-.*"'], set_labels: {team: shop}, continue: true}
  - {name: route, match: ['team="shop"'], receiver: shop-pager}
""",
    )
    out = rs.evaluate({"namespace": "shop-web"})
    assert out.matched == ["tag", "route"] and out.receiver == "shop-pager"


def test_matchers_on_ci_attributes(write):
    rs = rules(
        write,
        """
rules:
  - {match: ['ci.criticality=~"high|critical"', 'ci.owner!="legacy"'], impact: high, urgency: high}
""",
    )
    attrs = {
        "checkout": {"criticality": "critical", "owner": "shop"},
        "old": {"criticality": "high", "owner": "legacy"},
    }
    assert rs.evaluate({}, {}, "checkout", attrs.get).priority == "P1"
    assert rs.evaluate({}, {}, "old", attrs.get).priority is None
    assert rs.evaluate({}, {}, None, attrs.get).priority is None


def test_rule_evaluation_does_not_modify_its_input(write):
    rs = rules(write, "rules:\n  - {match: [], set_labels: {team: x}}\n")
    labels = {"a": "b"}
    rs.evaluate(labels, {})
    assert labels == {"a": "b"}


def test_a_file_with_an_error_is_rejected_whole(write):
    path = write("""
rules:
  - {match: ['a="1"'], team: ok}
  - {match: ['a=~"("'], team: broken}
""")
    with pytest.raises(RuleFileError) as exc:
        load_rules([path])
    [error] = exc.value.errors
    assert error.startswith(f"{path}:4: match[0]: invalid regex in a=~'('")
