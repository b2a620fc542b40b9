"""`incidentd test-rules`: passing and failing rule tests, and readable diffs."""

import io
import os
import subprocess
import sys
import textwrap

from rules.testing import run_rule_tests

REPO = os.path.join(os.path.dirname(__file__), "..", "..")
EXAMPLES = os.path.join(REPO, "examples")

RULES = """
rules:
  - name: shop
    match: ['service="checkout"']
    set_labels: {team: shop}
    impact: high
    urgency: high
    receiver: shop-pager
inhibit_rules:
  - source_matchers: ['alertname="NodeDown"']
    target_matchers: ['alertname!="NodeDown"']
    equal: [node]
"""


def run(tmp_path, tests: str) -> tuple[int, str, str]:
    """The exit code, the results (stdout) and the errors in the files (stderr)."""
    (tmp_path / "rules.yaml").write_text(RULES)
    path = tmp_path / "rules_test.yaml"
    path.write_text("rule_files: [rules.yaml]\n" + textwrap.dedent(tests))
    out, err = io.StringIO(), io.StringIO()
    code = run_rule_tests([str(path)], out, err)
    return code, out.getvalue(), err.getvalue()


def test_the_example_rules_pass_their_tests():
    out = io.StringIO()
    assert run_rule_tests([os.path.join(EXAMPLES, "rules_test.yaml")], out) == 0, out.getvalue()


def test_passing_test_exits_zero(tmp_path):
    code, out, err = run(
        tmp_path,
        """
        tests:
          - name: checkout pages the shop
            alerts:
              - {at: 0m, labels: {alertname: Errors, service: checkout}}
            expect:
              - alert: {service: checkout}
                labels: {alertname: Errors, service: checkout, team: shop}
                priority: P1
                receiver: shop-pager
        """,
    )
    assert (code, out.strip()) == (0, "1 passed, 0 failed")


def test_failing_test_prints_a_diff_and_exits_one(tmp_path):
    code, out, err = run(
        tmp_path,
        """
        tests:
          - name: checkout pages the shop
            alerts:
              - {at: 0m, labels: {alertname: Errors, service: checkout}}
            expect:
              - alert: {service: checkout}
                labels: {alertname: Errors, service: checkout, team: payments}
                priority: P2
        """,
    )
    assert code == 1
    assert f"FAILED {tmp_path}/rules_test.yaml:4: checkout pages the shop" in out
    assert '      - team="payments"   (expected)\n      + team="shop"   (got)' in out
    assert "    priority: expected 'P2', got 'P1'" in out
    assert out.strip().endswith("0 passed, 1 failed")


def test_inhibition_and_grouping_are_tested_together(tmp_path):
    code, out, err = run(
        tmp_path,
        """
        tests:
          - alerts:
              - {at: 0m, labels: {alertname: NodeDown, node: n1}}
              - {at: 1m, labels: {alertname: DiskSlow, node: n1}}
              - {at: 1m, labels: {alertname: DiskSlow, node: n2}}
            expect:
              - {alert: {alertname: DiskSlow, node: n1}, inhibited: true}
              - {alert: {alertname: DiskSlow, node: n2}, inhibited: false}
            incidents:   # default grouping: by alertname (node is not a grouping label)
              - [{alertname: NodeDown}]
              - [{alertname: DiskSlow, node: n1}, {alertname: DiskSlow, node: n2}]
        """,
    )
    assert code == 0, out + err


def test_wrong_grouping_expectation_is_reported(tmp_path):
    code, out, err = run(
        tmp_path,
        """
        tests:
          - alerts:
              - {at: 0m, labels: {alertname: A, service: x}}
              - {at: 0m, labels: {alertname: B, service: y}}
            incidents:
              - [{alertname: A}, {alertname: B}]
        """,
    )
    assert code == 1 and "incidents[0]: expected one incident, got" in out


def test_silence_expiry_on_the_test_clock(tmp_path):
    code, out, err = run(
        tmp_path,
        """
        tests:
          - silences: [{matchers: ['service="checkout"'], start: 0m, end: 10m}]
            alerts:
              - {at: 5m, labels: {alertname: Errors, service: checkout}}
              - {at: 15m, labels: {alertname: Errors, service: checkout}}
            expect:
              - {alert: {service: checkout}, at: 5m, silenced: true}
              - {alert: {service: checkout}, at: 15m, silenced: false}
        """,
    )
    assert code == 0, out + err


def test_inline_cis_give_ci_attributes(tmp_path):
    (tmp_path / "rules.yaml").write_text(
        "rules:\n  - {match: ['ci.owner=\"team-data\"'], team: data}\n"
    )
    path = tmp_path / "t.yaml"
    path.write_text(
        textwrap.dedent("""
        rule_files: [rules.yaml]
        cis: {orders-db: {owner: team-data, match: {service: orders-db}}}
        tests:
          - alerts:
              - {labels: {alertname: Down, service: orders-db}}
              - {labels: {alertname: Down, service: other}, ci: orders-db}
              - {labels: {alertname: Down, service: web}}
            expect:
              - {alert: {service: orders-db}, team: data}
              - {alert: {service: other}, team: data}
              - {alert: {service: web}, team: null}
        """)
    )
    out = io.StringIO()
    assert run_rule_tests([str(path)], out) == 0, out.getvalue()


def test_errors_in_the_test_file_point_at_the_line(tmp_path):
    code, out, err = run(
        tmp_path,
        """
        tests:
          - alerts:
              - {at: 0m, labels: {alertname: A}}
            expect:
              - {alert: {alertname: Z}, priority: P1}
              - {alert: {alertname: A}, prioity: P1}
        """,
    )
    assert code == 1
    assert (
        f"{tmp_path}/rules_test.yaml:8: unknown field 'prioity' in expect; did you mean 'priority'?"
        in err
    )


def test_selector_matching_no_alert_is_an_error(tmp_path):
    code, out, err = run(
        tmp_path,
        """
        tests:
          - alerts:
              - {at: 0m, labels: {alertname: A}}
            expect:
              - {alert: {alertname: Z}, priority: P1}
        """,
    )
    assert (
        code == 1
        and f'{tmp_path}/rules_test.yaml:7: no input alert with labels {{alertname="Z"}}' in err
    )


def test_broken_rule_file_is_reported_with_its_line(tmp_path):
    (tmp_path / "rules.yaml").write_text("rules:\n  - match: ['a=~\"(\"']\n")
    path = tmp_path / "t.yaml"
    path.write_text("rule_files: [rules.yaml]\ntests:\n  - alerts: [{labels: {a: b}}]\n")
    out, err = io.StringIO(), io.StringIO()
    assert run_rule_tests([str(path)], out, err) == 1
    assert f"{tmp_path}/rules.yaml:2: match[0]: invalid regex" in err.getvalue()


def test_an_alert_still_firing_after_its_change_ends_pages(tmp_path):
    (tmp_path / "rules.yaml").write_text("rules: []\n")
    path = tmp_path / "t.yaml"
    path.write_text(
        textwrap.dedent("""
        rule_files: [rules.yaml]
        cis: {db: {match: {service: db}}}
        tests:
          - changes: [{id: CHG-1, ci: db, start: 0m, end: 10m}]
            alerts:
              - {at: 5m, labels: {alertname: Down, service: db}}
              - {at: 15m, labels: {alertname: Down, service: db}}
            expect:
              - {alert: {alertname: Down}, at: 5m, expected: CHG-1}
              - {alert: {alertname: Down}, at: 15m, expected: false}
            incidents:
              - {alerts: [{alertname: Down}], paging: true}
        """)
    )
    out = io.StringIO()
    assert run_rule_tests([str(path)], out) == 0, out.getvalue()


def file_errors(tmp_path, tests: str) -> list[str]:
    """The errors a test file is refused with (it must be)."""
    code, out, err = run(tmp_path, tests)
    assert (code, out) == (1, "0 passed, 0 failed, errors in test files\n")
    return err.splitlines()


def test_a_test_file_of_the_wrong_shape_is_reported_with_lines_not_python_errors(tmp_path):
    errors = file_errors(tmp_path, """
        cis: {db: [1, 2]}
        tests:
          - just a string
          - name: t
            alerts: [{at: 0m, labels: [a]}]
            expect:
              - {alert: {alertname: A}, labels: [a]}
              - oops
            incidents: [[{alertname: A}], 3]
        """)
    p = f"{tmp_path}/rules_test.yaml"
    assert errors == [
        f"{p}:3: cis: expected a mapping of CI ids to their attributes",
        f"{p}:5: tests[0]: expected a mapping (name, alerts, expect, ...)",
        f"{p}:7: tests[1].alerts[0].labels: expected a mapping of label names to values",
        f"{p}:8: tests[1].expect: expected a list of mappings",
        f"{p}:11: tests[1].incidents[1]: expected a list of alert selectors (or {{alerts: [...], ...}})",
    ]


def test_a_bad_time_in_an_expectation_names_its_line_and_a_rule_file_may_be_a_string(tmp_path):
    (tmp_path / "rules.yaml").write_text(RULES)
    path = tmp_path / "t.yaml"
    path.write_text("rule_files: rules.yaml\ntests:\n  - alerts: [{labels: {alertname: A}}]\n"
                    "    expect: [{alert: {alertname: A}, at: zz}]\n")
    err = io.StringIO()
    assert run_rule_tests([str(path)], io.StringIO(), err) == 1
    assert err.getvalue().startswith(f"{path}:4: at: not a duration")


def test_misspelt_keys_in_incidents_silences_and_changes_and_bad_inline_cis_are_errors_not_passes(tmp_path):
    errors = file_errors(tmp_path, """
        cis:
          checkout: {match: [a, b], depends_on: [orders-db]}
          orders: {depends_on: 5}
        tests:
          - alerts: [{at: 0m, labels: {alertname: A}}]
            silences: [{matchers: ['env="dev"'], ends: 10m}]
            changes: [{id: CHG-1, ci: orders, strat: 0m}]
            incidents:
              - {alerts: [{alertname: A}], priorty: P9}
        """)
    p = f"{tmp_path}/rules_test.yaml"
    assert errors == [
        f"{p}:4: cis.checkout.match: expected a mapping of label names to values",
        f"{p}:4: cis.checkout.depends_on: unknown CI 'orders-db' (not in cis)",
        f"{p}:5: cis.orders.depends_on: expected a list of CI ids",
        f"{p}:8: unknown field 'ends' in tests[0].silences[0]; did you mean 'end'?",
        f"{p}:9: unknown field 'strat' in tests[0].changes[0]; did you mean 'start'?",
        f"{p}:11: unknown field 'priorty' in tests[0].incidents[0]; did you mean 'priority'?",
    ]


def test_an_error_in_the_config_section_names_the_test_file(tmp_path):
    code, out, err = run(tmp_path, """
        config: {incidents: {group_window: banana}}
        tests:
          - alerts: [{at: 0m, labels: {alertname: A}}]
          - alerts: [{at: 0m, labels: {alertname: B}}]
        """)
    assert code == 1
    assert err.splitlines() == [
        f"{tmp_path}/rules_test.yaml:3: config: incidents.group_window: not a duration (use e.g. 30s, 5m, 1h):"
        " 'banana'",
    ]
    assert out == "0 passed, 0 failed, errors in test files\n"


def test_the_command_prints_errors_in_files_on_stderr_and_results_on_stdout(tmp_path):
    (tmp_path / "rules.yaml").write_text(RULES)
    good = tmp_path / "good.yaml"
    good.write_text("rule_files: [rules.yaml]\ntests:\n  - alerts: [{labels: {alertname: A}}]\n")
    broken = tmp_path / "broken.yaml"
    broken.write_text("tests: [\n")
    missing = tmp_path / "missing.yaml"
    done = subprocess.run([sys.executable, "-m", "daemon.cli", "test-rules", str(good), str(broken), str(missing)],
                          cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stdout == "1 passed, 0 failed, errors in test files\n"
    assert [line.split(": ")[:2] for line in done.stderr.splitlines()] == [
        [f"{broken}:2", "invalid YAML"], [f"{missing}:0", "cannot read file"]]
