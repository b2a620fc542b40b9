"""Broken rule files: every error is reported as file:line: message, at the right line."""

import pytest

from rules.loader import load_rules, validate_rules

BROKEN = {
    "unknown field": (
        "rules:\n  - match: []\n    recevier: x\n",
        3,
        "unknown field 'recevier' in rules[0]; did you mean 'receiver'?",
    ),
    "bad regex": (
        "rules:\n  - name: a\n    match:\n      - 'a=\"1\"'\n      - 'b=~\"[\"'\n",
        5,
        "match[1]: invalid regex",
    ),
    "bad matcher": ("rules:\n  - match: ['severity==\"x\"']\n", 2, "match[0]:"),
    "missing match": ("rules:\n  - name: a\n    team: x\n", 2, "rule 'a': 'match' is required"),
    "empty match": (
        "rules:\n  - name: drop-watchdog\n    match:\n    drop: true\n",
        3,
        "rule 'drop-watchdog': 'match' is empty (use match: [] to match every alert)",
    ),
    "set a label name Alertmanager refuses": (
        "rules:\n  - match: []\n    set_labels:\n      équipe: shop\n",
        4,
        "set_labels: invalid name 'équipe'",
    ),
    "copy to a label name Alertmanager refuses": (
        "rules:\n  - match: []\n    copy_labels:\n      - {from: ci.owner, to: owner-team}\n",
        4,
        "copy_labels[0]: invalid target name 'owner-team'",
    ),
    "equal on a label name Alertmanager refuses": (
        "inhibit_rules:\n  - source_matchers: ['a=\"b\"']\n    target_matchers: ['c=\"d\"']\n"
        "    equal: [cluster, kube-namespace]\n",
        4,
        "equal: expected a list of label names",
    ),
    "bad duration": (
        "rules:\n  - match: []\n    correlation_window: 5 minutes\n",
        3,
        "correlation_window: not a duration",
    ),
    "bad template": (
        "rules:\n  - match: []\n    set_labels:\n      host: '{{ $label.instance }}'\n",
        4,
        "set_labels.host: unknown template expression",
    ),
    "unknown impact": (
        "rules:\n  - match: []\n    impact: huge\n",
        3,
        "impact: 'huge' is not one of",
    ),
    "priority and impact": (
        "rules:\n  - match: []\n    impact: high\n    priority: P1\n",
        4,
        "priority: set either priority or impact/urgency",
    ),
    "drop not bool": (
        "rules:\n  - match: []\n    drop: yes please\n",
        3,
        "drop: expected true or false",
    ),
    "duplicate name": (
        "rules:\n  - {name: a, match: []}\n  - {name: a, match: []}\n",
        3,
        "duplicate rule name 'a' (first at line 2)",
    ),
    "invalid yaml": ("rules:\n  - match: [\n", 3, "invalid YAML"),
    "duplicate key": (
        "rules:\n  - match: []\n    team: a\n    team: b\n",
        4,
        "invalid YAML: duplicate key 'team'",
    ),
    "unknown top key": ("rules: []\nroutes: []\n", 2, "unknown field 'routes' in the rule file"),
    "inhibit without source": (
        "inhibit_rules:\n  - target_matchers: ['a=\"b\"']\n",
        2,
        "source_matchers (or sources) are required",
    ),
    "inhibit bad relation": (
        "inhibit_rules:\n  - source_matchers: ['a=\"b\"']\n    target_matchers: ['c=\"d\"']\n    ci_relation: parent\n",
        4,
        "ci_relation: expected one of",
    ),
    "silence without end": (
        "silences:\n  - matchers: ['a=\"b\"']\n    starts_at: 2026-01-01T00:00:00Z\n",
        2,
        "silences[0]: endsAt: required",
    ),
    "silence matching all": (
        "silences:\n  - matchers: ['a=~\".*\"']\n    ends_at: 2026-01-01T00:00:00Z\n",
        2,
        "must not match the empty string",
    ),
    "silence id twice": (
        "silences:\n  - {id: db, matchers: ['a=\"b\"'], ends_at: 2026-01-02T00:00:00Z}\n"
        "  - {id: db, matchers: ['a=\"c\"'], ends_at: 2026-01-02T00:00:00Z}\n",
        3,
        "silences[1]: duplicate silence id 'db' (first at line 2)",
    ),
    "change bad end": (
        "changes:\n  - id: C1\n    ci: db\n    start: 2026-01-01T00:00:00Z\n    end: tomorrow\n",
        5,
        "changes[0]: end: not an RFC 3339",
    ),
    "bad matrix": (
        "priority_matrix:\n  high: {high: P1, low: urgent}\n",
        1,
        "priority must be P1..P9",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_file_reports_the_right_line(tmp_path, case):
    text, line, message = BROKEN[case]
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    errors = validate_rules([str(path)])
    assert any(e.startswith(f"{path}:{line}: ") and message in e for e in errors), errors


def test_every_error_of_a_file_is_reported(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n  - match: ['a=~\"(\"']\n  - match: []\n    team: 3\n")
    errors = validate_rules([str(path)])
    assert [e.split(":")[1] for e in errors] == ["2", "4"]


def test_a_silence_id_used_in_two_files_is_an_error(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    silence = "silences:\n  - {id: db, matchers: ['a=\"b\"'], ends_at: 2026-01-02T00:00:00Z}\n"
    a.write_text(silence)
    b.write_text(silence)
    assert validate_rules([str(a), str(b)]) == [f"{b}:1: silence 'db' already defined in {a}"]


def test_unknown_receiver_or_team_is_an_error_when_known_ones_are_given(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text("rules:\n  - match: []\n    receiver: pagr\n    team: shop\n")
    errors = validate_rules([str(path)], receivers={"pager"}, teams={"shop"})
    assert errors == [f"{path}:2: rule 'rules[0]': unknown receiver 'pagr'"]
    assert validate_rules([str(path)]) == []


def test_files_are_evaluated_in_the_order_given(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text("rules:\n  - {name: from-a, match: [], team: a}\n")
    b.write_text("rules:\n  - {name: from-b, match: [], team: b}\n")
    assert load_rules([str(b), str(a)]).evaluate({}).team == "b"


def test_missing_file_is_an_error(tmp_path):
    errors = validate_rules([str(tmp_path / "nope.yaml")])
    assert len(errors) == 1 and "cannot read file" in errors[0]


def test_empty_file_is_an_empty_rule_set(tmp_path):
    path = tmp_path / "rules.yaml"
    path.write_text("")
    assert len(load_rules([str(path)])) == 0


def test_priority_matrix_may_be_defined_once(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    matrix = "priority_matrix:\n  big: {now: P1}\n"
    a.write_text(matrix + "rules:\n  - {match: [], impact: big}\n")
    b.write_text("rules: []\n" + matrix)
    assert validate_rules([str(a)]) == []
    assert validate_rules([str(a), str(b)]) == [f"{b}:2: priority_matrix: already defined in {a}"]
